"""Low-precision number formats and their quantizers, in torch.

Everything here is exact float32 arithmetic followed by bit manipulation, never a cast
from a float that is not already representable: casts to fp8 round differently on
different backends (Triton's interpreter does not round to nearest-even at all), while
"round to the grid with one float32 add, then encode the bits" is bit-exact everywhere.
`coda.codegen.quantize` is the same arithmetic in Triton, for epilogues.

Element formats (OCP 8-bit floating point and MX v1.0 element formats):

    e4m3fn  max 448     no inf, NaN = S.1111.111
    e5m2    max 57344   inf and NaN (IEEE-like)
    e3m2    max 28      (FP6)  no inf, no NaN
    e2m3    max 7.5     (FP6)  no inf, no NaN
    e2m1    max 6       (FP4)  no inf, no NaN
    e8m0    scale only: 2^(c - 127), c = 255 is NaN

Saturation: `quantize_elements(..., saturate=True)` (what every scaled quantizer uses,
as the OCP MX spec and the FP8 training recipes do) maps finite overflow and ±inf to
±max and keeps NaN a NaN, sign included (formats without NaN: a NaN input gives +0,
code 0, since no value is right; the MX and NVFP4 quantizers mark such a block through
its scale instead, which is NaN in MX). `saturate=False` is the IEEE-style cast of the
OCP FP8 spec: overflow (after rounding) gives ±inf for e5m2 and NaN for e4m3fn.

Integers of any width 1..8 bits are two's complement (signed) or plain (unsigned)
codes, packed densely into bytes as a little-endian bit stream along the last dim
(code i occupies bits [i*b, (i+1)*b)), so an int3 weight takes 3/8 byte per element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

F32_MANTISSA = 23
F32_BIAS = 127


@dataclass(frozen=True)
class FloatFormat:
    """A small float format: sign, `ebits` exponent bits, `mbits` mantissa bits."""

    name: str
    ebits: int
    mbits: int
    has_inf: bool
    has_nan: bool
    #: torch dtype whose bits are exactly this format's codes, where torch has one
    torch_dtype: torch.dtype | None = None

    @property
    def bias(self) -> int:
        return (1 << (self.ebits - 1)) - 1

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal number (subnormals share it)."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite number."""
        top = (1 << self.ebits) - 1
        # IEEE-like formats (e5m2) reserve the top exponent for inf/NaN; the others use it
        return top - self.bias - (1 if self.has_inf else 0)

    @property
    def max(self) -> float:
        mantissa_steps = (1 << self.mbits) - 1
        if self.has_nan and not self.has_inf:
            mantissa_steps -= 1  # e4m3fn: S.1111.111 is NaN, so the largest mantissa is 110
        return 2.0**self.emax * (1 + mantissa_steps / (1 << self.mbits))

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def nan_code(self) -> int | None:
        if not self.has_nan:
            return None
        # e5m2: the quiet NaN (top mantissa bit), as IEEE casts and torch produce
        return (1 << (self.ebits + self.mbits)) - 1 if not self.has_inf else self.inf_code | 2

    @property
    def inf_code(self) -> int:
        return ((1 << self.ebits) - 1) << self.mbits


E4M3FN = FloatFormat("e4m3fn", 4, 3, has_inf=False, has_nan=True, torch_dtype=torch.float8_e4m3fn)
E5M2 = FloatFormat("e5m2", 5, 2, has_inf=True, has_nan=True, torch_dtype=torch.float8_e5m2)
E3M2 = FloatFormat("e3m2", 3, 2, has_inf=False, has_nan=False)
E2M3 = FloatFormat("e2m3", 2, 3, has_inf=False, has_nan=False)
E2M1 = FloatFormat("e2m1", 2, 1, has_inf=False, has_nan=False)
FLOAT_FORMATS: dict[str, FloatFormat] = {f.name: f for f in (E4M3FN, E5M2, E3M2, E2M3, E2M1)}

#: OCP MX v1.0 table: emax of each element format (the floor rule subtracts it)
MX_ELEMENTS = ("e4m3fn", "e5m2", "e3m2", "e2m3", "e2m1")
E8M0_BIAS = 127
E8M0_NAN = 255


@dataclass(frozen=True)
class IntFormat:
    """An integer of `bits` bits (1..8), two's complement when signed."""

    bits: int
    signed: bool

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ValueError(f"integer formats are 1..8 bits wide, got {self.bits}")

    @property
    def name(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}"

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


# ---------------------------------------------------------------------------- elements


def _pow2(exponent: torch.Tensor) -> torch.Tensor:
    """2.0**exponent as float32 built from its bits (exponent in [-126, 127])."""
    return ((exponent + F32_BIAS).to(torch.int32) << F32_MANTISSA).view(torch.float32)


def _exponent(a: torch.Tensor) -> torch.Tensor:
    """floor(log2(a)) of a non-negative float32 from its exponent bits (subnormals and
    zero give -127)."""
    return ((a.view(torch.int32) >> F32_MANTISSA) & 0xFF) - F32_BIAS


def _div(a: torch.Tensor | float, b: torch.Tensor | float) -> torch.Tensor:
    """a / b correctly rounded in float32: torch computes `scalar / tensor` as
    `tensor.reciprocal() * scalar` (two roundings), which would break bit-exactness."""
    a = torch.as_tensor(a, dtype=torch.float32)
    b = torch.as_tensor(b, dtype=torch.float32)
    return torch.div(a, b)


def round_to_grid(x: torch.Tensor, fmt: FloatFormat, saturate: bool = True) -> torch.Tensor:
    """x (float32) rounded to the nearest value of `fmt`, ties to even, as float32.

    The rounding is one float32 add: with M = 2^(e - mbits + 23), where e is x's exponent
    clamped to the format's normal range, the float32 sum |x| + M has a quantum of exactly
    the format's spacing at |x|, so the hardware's own round-to-nearest-even rounds to the
    grid and subtracting M is exact. Overflow: see the module docstring.
    """
    x = x.to(torch.float32)
    a = x.abs()
    if saturate:
        a = torch.clamp(a, max=fmt.max)  # keeps NaN; inf -> max
    e = torch.clamp(_exponent(a), fmt.emin, fmt.emax)
    magic = _pow2(e - fmt.mbits + F32_MANTISSA)
    r = (a + magic) - magic
    r = torch.where(torch.isinf(a), a, r)  # inf + M - M would be NaN
    if not saturate:
        overflow = float("inf") if fmt.has_inf else float("nan")
        r = torch.where(r > fmt.max, overflow, r)
    return torch.copysign(r, x)


def encode(grid: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """Codes (uint8) of float32 values already on `fmt`'s grid (see `round_to_grid`)."""
    a = grid.abs()
    bits = a.view(torch.int32)
    normal = a >= 2.0**fmt.emin
    e_field = torch.where(normal, _exponent(a) + fmt.bias, 0)
    mant_normal = (bits >> (F32_MANTISSA - fmt.mbits)) & ((1 << fmt.mbits) - 1)
    # subnormal: an exact integer multiple of the smallest subnormal 2^(emin - mbits)
    mant_sub = (a * 2.0 ** (fmt.mbits - fmt.emin)).to(torch.int32)
    mant = torch.where(normal, mant_normal, mant_sub)
    code = (e_field << fmt.mbits) | mant
    if fmt.has_inf:
        code = torch.where(torch.isinf(a), fmt.inf_code, code)
    code = torch.where(torch.isnan(a), fmt.nan_code or 0, code)
    sign = grid.view(torch.int32) < 0  # NaN keeps its sign bit, as IEEE casts do
    if not fmt.has_nan:
        sign = sign & ~torch.isnan(a)  # no NaN to keep: a NaN becomes +0 (documented)
    code = code | (sign.to(torch.int32) << (fmt.ebits + fmt.mbits))
    return code.to(torch.uint8)


def decode(code: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """float32 values of `fmt` codes (uint8)."""
    c = code.to(torch.int32)
    mant = c & ((1 << fmt.mbits) - 1)
    e_field = (c >> fmt.mbits) & ((1 << fmt.ebits) - 1)
    sub = mant.to(torch.float32) * 2.0 ** (fmt.emin - fmt.mbits)
    normal = (1 + mant.to(torch.float32) / (1 << fmt.mbits)) * torch.exp2(
        (e_field - fmt.bias).to(torch.float32)
    )
    value = torch.where(e_field == 0, sub, normal)
    magnitude = c & ((1 << (fmt.ebits + fmt.mbits)) - 1)
    if fmt.has_inf:
        value = torch.where(magnitude == fmt.inf_code, float("inf"), value)
        value = torch.where(magnitude > fmt.inf_code, float("nan"), value)
    elif fmt.has_nan:
        value = torch.where(magnitude == fmt.nan_code, float("nan"), value)
    sign = (c >> (fmt.ebits + fmt.mbits)) & 1
    return torch.where(sign == 1, -value, value)


def quantize_elements(x: torch.Tensor, fmt: FloatFormat, saturate: bool = True) -> torch.Tensor:
    """Codes (uint8) of x cast to `fmt`, rounding to nearest-even."""
    return encode(round_to_grid(x, fmt, saturate), fmt)


def as_torch(code: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """fp8 codes as the matching torch dtype (a view: no cast, so no rounding)."""
    assert fmt.torch_dtype is not None, f"torch has no {fmt.name} dtype"
    return code.view(fmt.torch_dtype)


# ---------------------------------------------------------------------------- e8m0


def e8m0_decode(code: torch.Tensor) -> torch.Tensor:
    """float32 value 2^(c - 127) of E8M0 codes (c = 255: NaN; c = 0: 2^-127, subnormal
    in float32 but exact)."""
    c = code.to(torch.int32)
    value = torch.exp2((c - E8M0_BIAS).to(torch.float32))
    return torch.where(c == E8M0_NAN, float("nan"), value)


# ---------------------------------------------------------------------------- scaled

ScaleRule = Literal["floor", "rceil"]


@dataclass(frozen=True)
class Quantized:
    """A quantized tensor: element codes plus the scales that dequantize them.

    `codes` is uint8 (one code per element; `pack_bits` packs sub-byte formats).
    `scale` multiplies the decoded elements back (float32, or E8M0/E4M3 codes for
    MX/NVFP4); `tensor_scale` is NVFP4's second-level float32 scale.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    tensor_scale: torch.Tensor | None = None


def _blocks(x: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """[M, K] -> [M/bm, K/bk, bm*bk]: one row per block."""
    m, k = x.shape
    bm, bk = block
    if m % bm or k % bk:
        raise ValueError(f"block {bm}x{bk} does not tile a {m}x{k} tensor")
    return x.reshape(m // bm, bm, k // bk, bk).permute(0, 2, 1, 3).reshape(m // bm, k // bk, -1)


def _unblocks(b: torch.Tensor, shape: tuple[int, int], block: tuple[int, int]) -> torch.Tensor:
    m, k = shape
    bm, bk = block
    return b.reshape(m // bm, k // bk, bm, bk).permute(0, 2, 1, 3).reshape(m, k)


#: floor on amax of the FP8 scaling recipes: an all-zero block gets a finite scale
AMAX_EPS = 1e-12


def quantize_fp8(
    x: torch.Tensor, fmt: FloatFormat, granularity: Literal["tensor", "row"] | tuple[int, int]
) -> Quantized:
    """FP8 with float32 scales: per tensor, per row, or per block (1x128, 128x128...).

    The recipe of FP8 training (torchao's, NVIDIA Transformer Engine's): the multiplier
    max / amax scales the block onto the format's range, then values are rounded with
    saturation. `scale` is the dequantization factor 1 / multiplier (what a scaled GEMM
    multiplies its accumulator by), one per block.
    """
    x = x.to(torch.float32)
    if granularity == "tensor":
        amax = x.abs().amax().reshape(1, 1)
        block = tuple(x.shape)
    elif granularity == "row":
        amax = x.abs().amax(dim=-1, keepdim=True)
        block = (1, x.shape[-1])
    else:
        block = granularity
        amax = _blocks(x, block).abs().amax(dim=-1)
    multiplier = _div(fmt.max, torch.clamp(amax, min=AMAX_EPS))
    expanded = multiplier.repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)
    codes = quantize_elements(x * expanded, fmt)
    return Quantized(codes, _div(1.0, multiplier))


def mx_scale_exponent(amax: torch.Tensor, fmt: FloatFormat, rule: ScaleRule) -> torch.Tensor:
    """Unbiased shared exponent of MX blocks with absolute maximum `amax` (float32).

    floor (OCP MX v1.0, section 6.3): floor(log2(amax)) - emax_elem; the largest element
    may then exceed the format's max and saturate.
    rceil (round up, NVIDIA's cvt.rp rule): ceil(log2(amax / max_elem)), so nothing
    saturates. Both read exponents from float32 bits (no log2 rounding), and clamp to
    E8M0's range [-127, 127].
    """
    if rule == "floor":
        e = _exponent(amax) - fmt.emax
    elif rule == "rceil":
        descale = _div(amax, fmt.max)
        bits = descale.view(torch.int32)
        mantissa = bits & 0x7FFFFF
        # exact ceil(log2): the exponent, plus one unless the mantissa is zero (a power of
        # two). A float32 subnormal descale is m * 2^-149: its ceil(log2) is -126 when it
        # exceeds 2^-127 (m > 2^22) and at most -127 (clamped to -127) otherwise
        normal = _exponent(descale) + (mantissa != 0).to(torch.int32)
        subnormal = torch.where(mantissa > (1 << 22), -126, -127)
        e = torch.where((bits >> F32_MANTISSA) & 0xFF == 0, subnormal, normal)
    else:
        raise ValueError(f"MX scale rule must be floor or rceil, got {rule!r}")
    return torch.clamp(e, -E8M0_BIAS, E8M0_BIAS)


def quantize_mx(
    x: torch.Tensor, fmt: FloatFormat, rule: ScaleRule = "floor", block: int = 32
) -> Quantized:
    """MX: blocks of `block` elements along the last (reduction) dim share an E8M0 scale.

    `scale` holds E8M0 codes [M, K/block]; NaN anywhere in a block gives scale 255 (NaN),
    and every element of that block decodes to NaN through it. Elements are
    x / 2^e rounded to nearest-even with saturation (the division by a power of two is
    exact, including the scale 2^-127, which float32 holds as a subnormal).
    """
    x = x.to(torch.float32)
    m, k = x.shape
    if k % block:
        raise ValueError(f"MX block {block} does not divide the reduction dim {k}")
    blocks = x.reshape(m, k // block, block)
    amax = blocks.abs().amax(dim=-1)
    e = mx_scale_exponent(amax, fmt, rule)
    # x * 2^-e as two exact steps: 2^-e alone may not be a float32 (e = -127)
    half = torch.div(-e, 2, rounding_mode="floor")
    scaled = blocks * _pow2(half).unsqueeze(-1) * _pow2(-e - half).unsqueeze(-1)
    codes = quantize_elements(scaled.reshape(m, k), fmt)
    scale = torch.where(torch.isnan(amax), E8M0_NAN, e + E8M0_BIAS).to(torch.uint8)
    return Quantized(codes, scale)


def nvfp4_tensor_scale(amax: torch.Tensor) -> torch.Tensor:
    """NVFP4's second-level float32 scale: amax / (448 * 6), so the largest block scale
    uses E4M3's whole range."""
    return _div(amax.to(torch.float32), E4M3FN.max * E2M1.max)


def quantize_nvfp4(x: torch.Tensor, tensor_scale: torch.Tensor | None = None) -> Quantized:
    """NVFP4: blocks of 16 e2m1 elements along the last dim, an E4M3 scale per block and
    a float32 scale per tensor (NVIDIA's recipe, as cuBLAS and torchao implement it):

        g = amax / (448 * 6)                       (or a calibrated `tensor_scale`)
        s = e4m3(clamp(block_amax / 6 / g, 2^-6, 448))
        q = e2m1(clamp(x * ((1 / g) / s), -6, 6))  dequantized as q * s * g
    """
    x = x.to(torch.float32)
    m, k = x.shape
    if k % 16:
        raise ValueError(f"NVFP4 block 16 does not divide the reduction dim {k}")
    g = nvfp4_tensor_scale(x.abs().amax()) if tensor_scale is None else tensor_scale
    g = g.to(torch.float32).reshape(())
    blocks = x.reshape(m, k // 16, 16)
    block_scale = _div(blocks.abs().amax(dim=-1), E2M1.max)
    s = torch.clamp(_div(block_scale, g), min=2.0**E4M3FN.emin, max=E4M3FN.max)
    s = round_to_grid(s, E4M3FN)
    multiplier = _div(_div(1.0, g), s)
    codes = quantize_elements((blocks * multiplier.unsqueeze(-1)).reshape(m, k), E2M1)
    return Quantized(codes, encode(s, E4M3FN), g.reshape(1))


def dequantize_mx(q: Quantized, fmt: FloatFormat, block: int = 32) -> torch.Tensor:
    m, k = q.codes.shape
    values = decode(q.codes, fmt).reshape(m, k // block, block)
    return (values * e8m0_decode(q.scale).unsqueeze(-1)).reshape(m, k)


def dequantize_nvfp4(q: Quantized) -> torch.Tensor:
    m, k = q.codes.shape
    values = decode(q.codes, E2M1).reshape(m, k // 16, 16)
    s = decode(q.scale, E4M3FN) * q.tensor_scale
    return (values * s.unsqueeze(-1)).reshape(m, k)


def dequantize_fp8(q: Quantized, fmt: FloatFormat) -> torch.Tensor:
    m, k = q.codes.shape
    sm, sk = q.scale.shape
    scale = q.scale.repeat_interleave(m // sm, 0).repeat_interleave(k // sk, 1)
    return decode(q.codes, fmt) * scale


# ---------------------------------------------------------------------------- integers


def quantize_int(x: torch.Tensor, fmt: IntFormat, group: int) -> Quantized:
    """Symmetric integer quantization (weights): groups of `group` elements along the
    last dim share a float32 scale amax / qmax; q = clamp(round_half_even(x / s)).
    Unsigned formats quantize non-negative data (scale amax / qmax, no zero point).
    Codes are the low `bits` bits (two's complement), ready for `pack_bits`."""
    x = x.to(torch.float32)
    m, k = x.shape
    if k % group:
        raise ValueError(f"group {group} does not divide the reduction dim {k}")
    blocks = x.reshape(m, k // group, group)
    amax = blocks.abs().amax(dim=-1)
    scale = torch.where(amax > 0, _div(amax, fmt.qmax), 1.0)
    q = torch.clamp(torch.round(_div(blocks, scale.unsqueeze(-1))), fmt.qmin, fmt.qmax)
    codes = (q.to(torch.int32) & ((1 << fmt.bits) - 1)).to(torch.uint8)
    return Quantized(codes.reshape(m, k), scale)


def int_values(codes: torch.Tensor, fmt: IntFormat) -> torch.Tensor:
    """Integer values (int32) of `bits`-bit codes (sign-extended when signed)."""
    c = codes.to(torch.int32)
    if fmt.signed:
        c = torch.where(c >= (1 << (fmt.bits - 1)), c - (1 << fmt.bits), c)
    return c


def dequantize_int(q: Quantized, fmt: IntFormat) -> torch.Tensor:
    m, k = q.codes.shape
    group = k // q.scale.shape[-1]
    values = int_values(q.codes, fmt).to(torch.float32).reshape(m, k // group, group)
    return (values * q.scale.unsqueeze(-1)).reshape(m, k)


# ---------------------------------------------------------------------------- packing


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack `bits`-bit codes (uint8, last dim K with K * bits % 8 == 0) densely into
    K * bits / 8 bytes, little-endian: code i is bits [i*bits, (i+1)*bits) of the row."""
    *lead, k = codes.shape
    if (k * bits) % 8:
        raise ValueError(f"{k} codes of {bits} bits do not fill whole bytes")
    shifts = torch.arange(bits, dtype=torch.int32)
    stream = ((codes.to(torch.int32).unsqueeze(-1) >> shifts) & 1).reshape(*lead, k * bits // 8, 8)
    weights = 1 << torch.arange(8, dtype=torch.int32)
    return (stream * weights).sum(dim=-1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """Inverse of `pack_bits`: [..., K * bits / 8] bytes -> [..., K] codes (uint8)."""
    *lead, nbytes = packed.shape
    stream = (packed.to(torch.int32).unsqueeze(-1) >> torch.arange(8, dtype=torch.int32)) & 1
    stream = stream.reshape(*lead, k, bits)
    return (stream << torch.arange(bits, dtype=torch.int32)).sum(dim=-1).to(torch.uint8)
