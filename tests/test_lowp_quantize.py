"""The torch quantizers of coda.runtime.quantize, bit-exact against independent oracles:
ml_dtypes for element casts, torchao's FP8, MX and NVFP4 reference quantizers for the
scaled formats, and a reference written from the OCP MX v1.0 spec text (float64 +
ml_dtypes) for the blocks where torchao deliberately differs (see test_mx_vs_torchao).
"""

from __future__ import annotations

import logging

import ml_dtypes
import numpy as np
import pytest
import torch

from coda.runtime import quantize as Q

logging.getLogger("torchao").setLevel(logging.ERROR)
# torchao warns that its CUDA extensions do not load on this CPU-only machine
from torchao.float8.float8_utils import amax_to_scale, to_fp8_saturated  # noqa: E402
from torchao.prototype.mx_formats.config import ScaleCalculationMode  # noqa: E402
from torchao.prototype.mx_formats.constants import DTYPE_FP6_E2M3, DTYPE_FP6_E3M2  # noqa: E402
from torchao.prototype.mx_formats.kernels import unpack_uint4  # noqa: E402
from torchao.prototype.mx_formats.mx_tensor import to_mx  # noqa: E402
from torchao.prototype.mx_formats.nvfp4_tensor import (  # noqa: E402
    nvfp4_quantize,
    per_tensor_amax_to_scale,
)

ML_DTYPES = {
    "e4m3fn": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
    "e3m2": ml_dtypes.float6_e3m2fn,
    "e2m3": ml_dtypes.float6_e2m3fn,
    "e2m1": ml_dtypes.float4_e2m1fn,
}
TORCHAO_ELEM = {
    "e4m3fn": torch.float8_e4m3fn,
    "e5m2": torch.float8_e5m2,
    "e3m2": DTYPE_FP6_E3M2,
    "e2m3": DTYPE_FP6_E2M3,
    "e2m1": torch.float4_e2m1fn_x2,
}


def element_values() -> torch.Tensor:
    """>= 100k float32 values: random over 60 binades, every grid point of every format,
    every midpoint (ties) and its two float32 neighbours, overflow, f32 subnormals,
    format subnormals, signed zeros, ±inf, NaN."""
    g = torch.Generator().manual_seed(0)
    n = 100_000
    parts = [torch.randn(n, generator=g) * torch.exp2(torch.randint(-30, 30, (n,), generator=g))]
    parts.append(torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan")]))
    parts.append(torch.tensor([1e-45, 1e-40, 1.17e-38, 3e38, 3.4e38]))
    for fmt in Q.FLOAT_FORMATS.values():
        grid = Q.decode(torch.arange(1 << fmt.bits, dtype=torch.uint8), fmt)
        grid = torch.sort(grid[torch.isfinite(grid)].unique()).values
        mids = (grid[1:] + grid[:-1]) / 2
        edges = torch.tensor([fmt.max * 1.01, fmt.max * 1.5, fmt.max * 100])
        tiny = torch.tensor([2.0 ** (fmt.emin - fmt.mbits - k) for k in (1, 2)])
        for v in (grid, mids, mids.nextafter(mids + 1), mids.nextafter(mids - 1), edges, tiny):
            parts += [v, -v]
    return torch.cat(parts).float()


VALUES = element_values()


def test_values_cover_the_acceptance_cases() -> None:
    assert VALUES.numel() >= 100_000
    assert torch.isnan(VALUES).any() and torch.isinf(VALUES).any()
    assert ((VALUES == 0) & torch.signbit(VALUES)).any()
    assert ((VALUES.abs() < 1.17549435e-38) & (VALUES != 0)).any()  # float32 subnormals


@pytest.mark.parametrize("name", list(Q.FLOAT_FORMATS))
def test_saturating_cast_matches_ml_dtypes(name: str) -> None:
    fmt = Q.FLOAT_FORMATS[name]
    x = VALUES.numpy()
    # ml_dtypes casts are IEEE-style (overflow -> inf/NaN): saturate first, as OCP's
    # satfinite conversion does
    want = np.clip(x, -fmt.max, fmt.max).astype(ML_DTYPES[name]).view(np.uint8)
    got = Q.quantize_elements(VALUES, fmt, saturate=True).numpy()
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    if fmt.has_nan:
        np.testing.assert_array_equal(got[nan], want[nan])
    else:
        # documented: no NaN in FP6/FP4, a NaN element becomes +0 (ml_dtypes gives -0)
        assert (got[nan] == 0).all()


@pytest.mark.parametrize("name", ["e4m3fn", "e5m2"])
def test_ieee_cast_matches_ml_dtypes(name: str) -> None:
    """saturate=False: overflow gives NaN (e4m3fn) or inf (e5m2) after rounding."""
    fmt = Q.FLOAT_FORMATS[name]
    want = VALUES.numpy().astype(ML_DTYPES[name]).view(np.uint8)
    got = Q.quantize_elements(VALUES, fmt, saturate=False).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", list(Q.FLOAT_FORMATS))
def test_decode_every_code(name: str) -> None:
    fmt = Q.FLOAT_FORMATS[name]
    codes = np.arange(1 << fmt.bits, dtype=np.uint8)
    want = codes.view(ML_DTYPES[name]).astype(np.float32)
    got = Q.decode(torch.from_numpy(codes), fmt).numpy()
    np.testing.assert_array_equal(got, want)
    assert np.nanmax(np.abs(want[np.isfinite(want)])) == fmt.max


def test_saturation() -> None:
    """Documented saturation: finite overflow and ±inf go to ±max, NaN stays NaN."""
    x = torch.tensor([1e6, -1e6, float("inf"), -float("inf"), 464.0, 465.0, float("nan")])
    got = Q.decode(Q.quantize_elements(x, Q.E4M3FN), Q.E4M3FN)
    assert got[:6].tolist() == [448.0, -448.0, 448.0, -448.0, 448.0, 448.0]
    assert torch.isnan(got[6])
    ieee = Q.decode(Q.quantize_elements(x, Q.E4M3FN, saturate=False), Q.E4M3FN)
    # 464 is the tie between 448 and (absent) 480: to even, 448; 465 overflows to NaN
    assert ieee[4] == 448.0 and torch.isnan(ieee[5]) and torch.isnan(ieee[:4]).all()
    e5 = Q.decode(Q.quantize_elements(x, Q.E5M2, saturate=False), Q.E5M2)
    assert e5[:4].tolist() == [float("inf"), -float("inf"), float("inf"), -float("inf")]


def test_fp8_torch_dtype_view() -> None:
    x = VALUES[torch.isfinite(VALUES)]
    codes = Q.quantize_elements(x, Q.E4M3FN)
    # torch's own CPU cast rounds to nearest-even and saturates: the same bits
    want = x.clamp(-448, 448).to(torch.float8_e4m3fn)
    assert torch.equal(Q.as_torch(codes, Q.E4M3FN).view(torch.uint8), want.view(torch.uint8))


# ---------------------------------------------------------------------------- scaled


def scaled_matrix(m: int = 512, k: int = 256) -> torch.Tensor:
    """m*k >= 100k values, each 32-block at its own magnitude (2^-20..2^20), plus blocks
    of zeros, float32 subnormals, tiny normals, an inf, a NaN, overflow-sized values and
    elements at exactly the format maxima."""
    g = torch.Generator().manual_seed(1)
    mag = torch.exp2(torch.randint(-20, 20, (m, k // 32, 1), generator=g).float())
    x = (torch.randn(m, k // 32, 32, generator=g) * mag).reshape(m, k)
    x[0, :40] = 0.0
    x[1, 3] = float("inf")
    x[2, 5] = float("nan")
    x[3, :32] = 1e-40  # float32 subnormal block
    x[4, 0] = 3e38
    x[5, :32] = 2.0**-125
    x[6, :32] = torch.linspace(-448, 448, 32)
    x[7, :32] = torch.linspace(-6, 6, 32)
    x[8, 7] = 1e-42  # a float32 subnormal inside a normal block
    x[9, 32:64] = -0.0
    return x


MX_MODES = {"floor": ScaleCalculationMode.FLOOR, "rceil": ScaleCalculationMode.RCEIL}


def torchao_mx(x: torch.Tensor, name: str, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    scale, data = to_mx(x, TORCHAO_ELEM[name], 32, MX_MODES[rule])
    if name == "e2m1":
        data = unpack_uint4(data.view(torch.uint8)).reshape(x.shape)
    return scale.view(torch.uint8), data.view(torch.uint8)


def spec_mx(x: torch.Tensor, name: str, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """OCP MX v1.0 section 6.3, written from the text in float64: X = 2^(floor(log2(amax))
    - emax_elem) (floor) or 2^ceil(log2(fl32(amax / max_elem))) (rceil), clamped to
    E8M0's [-127, 127]; P_i = saturating round-to-nearest-even cast of V_i / X."""
    fmt = Q.FLOAT_FORMATS[name]
    v = x.double().numpy().reshape(x.shape[0], -1, 32)
    amax = np.abs(v).max(axis=-1)
    mant, exp = np.frexp(amax)  # amax = mant * 2^exp, mant in [0.5, 1)
    if rule == "floor":
        e = exp - 1 - {"e4m3fn": 8, "e5m2": 15, "e3m2": 4, "e2m3": 2, "e2m1": 2}[name]
    else:
        descale = (amax.astype(np.float32) / np.float32(fmt.max)).astype(np.float64)
        mant, exp = np.frexp(descale)
        e = np.where(mant == 0.5, exp - 1, exp)
    e = np.where(amax == 0, -127, np.clip(e, -127, 127))
    scaled = np.clip(v / np.exp2(e)[..., None], -fmt.max, fmt.max)
    codes = scaled.astype(ML_DTYPES[name]).view(np.uint8).reshape(x.shape)
    return (e + 127).astype(np.uint8), codes


@pytest.mark.parametrize("rule", ["floor", "rceil"])
@pytest.mark.parametrize("name", Q.MX_ELEMENTS)
def test_mx_vs_torchao(name: str, rule: str) -> None:
    """Bit-exact with torchao's to_mx, scales everywhere and elements in every block but
    those whose scale is 2^-127 (code 0, amax below ~2^-118): there torchao divides by
    2^-126 (floor) or by 1 (rceil) while storing 2^-127, so its own dequantization is off;
    coda divides by the stored 2^-127 and test_mx_vs_spec covers those blocks."""
    x = scaled_matrix()
    fmt = Q.FLOAT_FORMATS[name]
    q = Q.quantize_mx(x, fmt, rule)
    scale, data = torchao_mx(x, name, rule)
    assert torch.equal(q.scale, scale)
    compared = ~torch.isnan(x.reshape(512, 8, 32)).any(-1) & (scale != 0)
    assert compared.sum() > 4000
    mask = compared.repeat_interleave(32, 1)
    assert torch.equal(q.codes[mask], data[mask])
    # a NaN anywhere in a block: NaN scale, every element of the block dequantizes to NaN
    assert q.scale[2, 0] == Q.E8M0_NAN
    assert torch.isnan(Q.dequantize_mx(q, fmt)[2, :32]).all()


@pytest.mark.parametrize("rule", ["floor", "rceil"])
@pytest.mark.parametrize("name", Q.MX_ELEMENTS)
def test_mx_vs_spec(name: str, rule: str) -> None:
    x = scaled_matrix()
    q = Q.quantize_mx(x, Q.FLOAT_FORMATS[name], rule)
    scale, codes = spec_mx(x, name, rule)
    finite = torch.isfinite(x.reshape(512, 8, 32)).all(-1).numpy()
    np.testing.assert_array_equal(q.scale.numpy()[finite], scale[finite])
    mask = np.repeat(finite, 32, axis=1)
    np.testing.assert_array_equal(q.codes.numpy()[mask], codes[mask])
    assert (scale[finite] == 0).any()  # the 2^-127 blocks torchao differs on are here


def test_mx_rules_differ_as_documented() -> None:
    """floor keeps more resolution and saturates the largest elements; rceil never
    saturates."""
    x = torch.full((1, 32), 1.0)
    x[0, 0] = 500.0  # floor(log2 500) = 8: scale 2^0, 500 > 448 saturates
    floor = Q.quantize_mx(x, Q.E4M3FN, "floor")
    rceil = Q.quantize_mx(x, Q.E4M3FN, "rceil")
    assert floor.scale.item() == 127 and rceil.scale.item() == 128
    assert Q.dequantize_mx(floor, Q.E4M3FN)[0, 0] == 448.0
    # 500 / 2 = 250 rounds to 256 on e4m3's grid (spacing 16 in [128, 256))
    assert Q.dequantize_mx(rceil, Q.E4M3FN)[0, 0] == 512.0


def test_nvfp4_vs_torchao() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(512, 256, generator=g) * torch.exp2(torch.randint(-8, 8, (512, 1), generator=g))
    x[0, :16] = 0.0
    x[1, :16] = 1e-30  # below the smallest E4M3 block scale: clamped to 2^-6
    x[2, 1] = 1e4
    x[3, :16] = -0.0
    q = Q.quantize_nvfp4(x)
    tensor_scale = per_tensor_amax_to_scale(x.abs().amax())
    scale, data = nvfp4_quantize(x, 16, tensor_scale)
    assert torch.equal(q.tensor_scale, tensor_scale.reshape(1))
    assert torch.equal(q.scale, scale.view(torch.uint8))
    assert torch.equal(q.codes, unpack_uint4(data.view(torch.uint8)).reshape(x.shape))
    err = (Q.dequantize_nvfp4(q) - x).abs() / x.abs().amax()
    assert err.max() < 0.1


@pytest.mark.parametrize(
    ("granularity", "fmt"),
    [
        ("tensor", Q.E4M3FN),
        ("row", Q.E4M3FN),
        ("row", Q.E5M2),
        ((1, 128), Q.E4M3FN),
        ((128, 128), Q.E4M3FN),
    ],
)
def test_fp8_scaled_vs_torchao(granularity: str | tuple[int, int], fmt: Q.FloatFormat) -> None:
    """Tensor-, row- and block-wise FP8 against torchao's float8 training recipe
    (amax_to_scale, then a saturated cast), block by block."""
    x = scaled_matrix()
    x[1, 3] = 0.0  # an inf would make the whole row/block NaN: covered by the element tests
    x[2, 5] = 0.0
    q = Q.quantize_fp8(x, fmt, granularity)
    block = {"tensor": (512, 256), "row": (1, 256)}.get(granularity, granularity)
    bm, bk = block
    amax = x.reshape(512 // bm, bm, 256 // bk, bk).abs().amax(dim=(1, 3))
    scale = amax_to_scale(amax, fmt.torch_dtype)
    expanded = scale.repeat_interleave(bm, 0).repeat_interleave(bk, 1)
    want = to_fp8_saturated(x * expanded, fmt.torch_dtype).view(torch.uint8)
    assert torch.equal(q.codes, want)
    assert torch.equal(q.scale, scale.reciprocal())


def test_block_must_tile() -> None:
    with pytest.raises(ValueError, match="block 128x128 does not tile a 100x256 tensor"):
        Q.quantize_fp8(torch.ones(100, 256), Q.E4M3FN, (128, 128))
    with pytest.raises(ValueError, match="MX block 32 does not divide the reduction dim 48"):
        Q.quantize_mx(torch.ones(4, 48), Q.E4M3FN)


# ---------------------------------------------------------------------------- integers


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("signed", [True, False])
def test_int_quantize_and_pack(bits: int, signed: bool) -> None:
    if signed and bits == 1:
        fmt = Q.IntFormat(1, True)  # values -1, 0: symmetric scale amax / 0 is not usable
        assert (fmt.qmin, fmt.qmax) == (-1, 0)
        return
    fmt = Q.IntFormat(bits, signed)
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(64, 256, generator=g)
    if not signed:
        x = x.abs()
    q = Q.quantize_int(x, fmt, group=32)
    # numpy oracle: round half to even of x / s, clamped, two's complement low bits
    xs = x.numpy().reshape(64, 8, 32)
    s = np.abs(xs).max(-1, keepdims=True) / np.float32(fmt.qmax)
    ref = np.clip(np.rint(xs / s), fmt.qmin, fmt.qmax).astype(np.int64).reshape(64, 256)
    np.testing.assert_array_equal(Q.int_values(q.codes, fmt).numpy(), ref)
    # dense packing: an independent little-endian bit stream from numpy
    bitstream = np.unpackbits(q.codes.numpy()[..., None], axis=-1, bitorder="little")[..., :bits]
    want = np.packbits(bitstream.reshape(64, -1), axis=-1, bitorder="little")
    packed = Q.pack_bits(q.codes, bits)
    assert packed.shape == (64, 256 * bits // 8)
    np.testing.assert_array_equal(packed.numpy(), want)
    assert torch.equal(Q.unpack_bits(packed, bits, 256), q.codes)
    err = (Q.dequantize_int(q, fmt) - x).abs().max()
    assert err <= q.scale.max() / 2 + 1e-6


def test_int_width_checked() -> None:
    with pytest.raises(ValueError, match="integer formats are 1..8 bits wide, got 9"):
        Q.IntFormat(9, True)
