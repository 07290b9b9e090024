"""coda.codegen.quantize's Triton helpers, run under Triton's interpreter, against the
torch quantizers (which test_lowp_quantize checks against ml_dtypes and torchao): the
same bits for elements, MX blocks, NVFP4 blocks, FP8 1x128 blocks and packed ints."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch

from coda.codegen import quantize as C
from coda.runtime import quantize as Q
from coda.runtime import triton_interpret
from tests.codegen_support import load
from tests.test_lowp_quantize import VALUES, scaled_matrix

HEADER = "import torch\nimport triton\nimport triton.language as tl\n"


def module(body: str, tmp_path: Path) -> ModuleType:
    return load(HEADER + C.HELPERS_SOURCE + body, tmp_path)


def elementwise_source(fmt: Q.FloatFormat) -> str:
    return f"""

@triton.jit
def quantize(x_ptr, code_ptr, value_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    code = {C.quantize_call("x", fmt)}
    tl.store(code_ptr + offs, code, mask=mask)
    tl.store(value_ptr + offs, {C.decode_call("code", fmt)}, mask=mask)
"""


@pytest.mark.parametrize("name", list(Q.FLOAT_FORMATS))
def test_elements(name: str, tmp_path: Path) -> None:
    fmt = Q.FLOAT_FORMATS[name]
    mod = module(elementwise_source(fmt), tmp_path)
    n = VALUES.numel()
    codes = torch.empty(n, dtype=torch.uint8)
    values = torch.empty(n)
    with triton_interpret(True):
        mod.quantize[(triton_cdiv(n, 4096),)](VALUES, codes, values, n, BLOCK=4096)
    want = Q.quantize_elements(VALUES, fmt)
    assert torch.equal(codes, want)
    torch.testing.assert_close(values, Q.decode(want, fmt), rtol=0, atol=0, equal_nan=True)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


BLOCK_TILE_SOURCE = """

@triton.jit
def quantize_blocks(x_ptr, code_ptr, scale_ptr, g_ptr, K, BM: tl.constexpr,
                    BK: tl.constexpr, GROUP: tl.constexpr):
    # one [BM, BK] tile, as an epilogue holds it: amax per GROUP columns, scale, round
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BK + tl.arange(0, BK)
    x = tl.load(x_ptr + rows[:, None] * K + cols[None, :])
    blocks = tl.reshape(x, (BM, BK // GROUP, GROUP))
{amax}
{body}
    codes = tl.reshape(codes, (BM, BK))
    tl.store(code_ptr + rows[:, None] * K + cols[None, :], codes)
    srows = tl.program_id(0) * BM + tl.arange(0, BM)
    scols = tl.program_id(1) * (BK // GROUP) + tl.arange(0, BK // GROUP)
    tl.store(scale_ptr + srows[:, None] * (K // GROUP) + scols[None, :], scale)
"""


def amax_text(group: int) -> str:
    lines = C.amax_lines("blocks", "amax", "BM, BK // GROUP", group)
    return "\n".join("    " + line for line in lines)


def mx_body(fmt: Q.FloatFormat, rule: Q.ScaleRule) -> str:
    return f"""
    e = {C.mx_exponent_call("amax", fmt, rule)}
    # x * 2^-e in two exact steps (2^127 is not needed as a factor, 2^-127 is subnormal)
    half = (-e) // 2
    scaled = blocks * _lowp_pow2(half)[:, :, None] * _lowp_pow2(-e - half)[:, :, None]
    codes = {C.quantize_call("scaled", fmt)}
    scale = tl.where(amax != amax, 255, e + 127).to(tl.uint8)
"""


NVFP4_BODY = f"""
    g = tl.load(g_ptr)
    s = tl.div_rn(tl.div_rn(amax, tl.full(amax.shape, 6.0, tl.float32)), g)
    s = tl.minimum(tl.maximum(s, 0.015625), 448.0)
    s = {C.round_call("s", Q.E4M3FN)}
    multiplier = tl.div_rn(tl.div_rn(tl.full(amax.shape, 1.0, tl.float32), g), s)
    scaled = blocks * multiplier[:, :, None]
    codes = {C.quantize_call("scaled", Q.E2M1)}
    scale = {C.encode_call("s", Q.E4M3FN)}
"""

FP8_BLOCK_BODY = f"""
    multiplier = tl.div_rn(tl.full(amax.shape, 448.0, tl.float32), tl.maximum(amax, 1e-12))
    codes = {C.quantize_call("blocks * multiplier[:, :, None]", Q.E4M3FN)}
    scale = tl.div_rn(tl.full(amax.shape, 1.0, tl.float32), multiplier)
"""


def run_blocks(
    body: str, x: torch.Tensor, group: int, scale_dtype: torch.dtype, tmp_path: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    mod = module(BLOCK_TILE_SOURCE.format(body=body, amax=amax_text(group)), tmp_path)
    m, k = x.shape
    codes = torch.empty(m, k, dtype=torch.uint8)
    scale = torch.empty(m, k // group, dtype=scale_dtype)
    g = Q.nvfp4_tensor_scale(x.abs().amax()).reshape(1)
    with triton_interpret(True):
        grid = (m // 128, k // 256)
        mod.quantize_blocks[grid](x, codes, scale, g, k, BM=128, BK=256, GROUP=group)
    return codes, scale


@pytest.mark.parametrize("rule", ["floor", "rceil"])
@pytest.mark.parametrize("name", Q.MX_ELEMENTS)
def test_mx_blocks(name: str, rule: Q.ScaleRule, tmp_path: Path) -> None:
    fmt = Q.FLOAT_FORMATS[name]
    x = scaled_matrix()
    codes, scale = run_blocks(mx_body(fmt, rule), x, 32, torch.uint8, tmp_path)
    want = Q.quantize_mx(x, fmt, rule)
    assert torch.equal(scale, want.scale)
    finite = torch.isfinite(x.reshape(512, 8, 32)).all(-1).repeat_interleave(32, 1)
    assert torch.equal(codes[finite], want.codes[finite])


def test_nvfp4_blocks(tmp_path: Path) -> None:
    x = scaled_matrix()[:, :]
    x = torch.where(torch.isfinite(x), x, 0.0).clamp(-1e4, 1e4)
    codes, scale = run_blocks(NVFP4_BODY, x, 16, torch.uint8, tmp_path)
    want = Q.quantize_nvfp4(x)
    assert torch.equal(scale, want.scale)
    assert torch.equal(codes, want.codes)


def test_fp8_1x128_blocks(tmp_path: Path) -> None:
    x = scaled_matrix()
    x = torch.where(torch.isfinite(x), x, 0.0)
    codes, scale = run_blocks(FP8_BLOCK_BODY, x, 128, torch.float32, tmp_path)
    want = Q.quantize_fp8(x, Q.E4M3FN, (1, 128))
    assert torch.equal(codes, want.codes)
    assert torch.equal(scale, want.scale)


UNPACK_SOURCE = """

@triton.jit
def unpack(packed_ptr, out_ptr, K, ROW_BYTES, BITS: tl.constexpr, SIGNED: tl.constexpr,
           BK: tl.constexpr):
    # element k of row n: bits [k*BITS, (k+1)*BITS) of the row; may straddle two bytes
    n = tl.program_id(0)
    k = tl.arange(0, BK)
    mask = k < K
    first = (k * BITS) // 8
    shift = (k * BITS) % 8
    lo = tl.load(packed_ptr + n * ROW_BYTES + first, mask=mask, other=0)
    hi = tl.load(packed_ptr + n * ROW_BYTES + first + 1, mask=mask & (shift + BITS > 8), other=0)
    tl.store(out_ptr + n * K + k, {call}, mask=mask)
"""


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
def test_unpack_ints(bits: int, tmp_path: Path) -> None:
    fmt = Q.IntFormat(bits, signed=bits > 1)
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 1 << bits, (16, 64), generator=g, dtype=torch.uint8)
    packed = Q.pack_bits(codes, bits)
    mod = module(UNPACK_SOURCE.format(call=C.unpack_call("lo", "hi", "shift", fmt)), tmp_path)
    out = torch.empty(16, 64, dtype=torch.int32)
    with triton_interpret(True):
        mod.unpack[(16,)](packed, out, 64, packed.shape[1], BITS=bits, SIGNED=fmt.signed, BK=64)
    assert torch.equal(out, Q.int_values(codes, fmt))
