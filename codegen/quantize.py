"""Triton source for low-precision quantize and dequantize, for epilogues and mainloops.

The arithmetic is `coda.runtime.quantize`'s, line for line: round to the format's grid
with one float32 add (the hardware's round-to-nearest-even does the rounding), encode
the codes from bits, decode codes by building float32 bits. No float -> fp8 cast is
ever emitted: Triton's interpreter does not round those to nearest-even, and a cast of
an already representable value would be the only thing a GPU could do differently.
Divisions that set scales use `tl.div_rn` (IEEE rounding on every target).

The helpers are module-local source text (`HELPERS_SOURCE`), rendered into each kernel
module that uses them, like coda.codegen.common's JIT helpers: @triton.jit functions
imported from here would have been decorated before the runtime switches the
interpreter on. The `*_call` functions spell a call with a format's constants.
"""

from __future__ import annotations

from coda.runtime.quantize import E8M0_BIAS, FloatFormat, IntFormat, ScaleRule

HELPERS_SOURCE = """

@triton.jit
def _lowp_pow2(e):
    # 2.0**e for integer e in [-126, 127], from float32 bits (exact, no exp2 rounding)
    return ((e + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _lowp_exponent(a):
    # floor(log2(a)) of a non-negative float32 from its exponent bits (0: -127)
    return ((a.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127


@triton.jit
def _lowp_round(x, MBITS: tl.constexpr, EMIN: tl.constexpr, EMAX: tl.constexpr,
                MAXV: tl.constexpr):
    # x rounded to the format's grid, ties to even, saturating (inf -> max, NaN stays):
    # |x| + 2^(e - MBITS + 23) has exactly the format's spacing as its float32 quantum
    a = tl.abs(x)
    a = tl.where(a > MAXV, MAXV, a)
    e = tl.minimum(tl.maximum(_lowp_exponent(a), EMIN), EMAX)
    magic = _lowp_pow2(e - MBITS + 23)
    r = (a + magic) - magic
    sign = x.to(tl.int32, bitcast=True) & -2147483648
    return (r.to(tl.int32, bitcast=True) | sign).to(tl.float32, bitcast=True)


@triton.jit
def _lowp_encode(r, EBITS: tl.constexpr, MBITS: tl.constexpr, BIAS: tl.constexpr,
                 MIN_NORMAL: tl.constexpr, SUB_SCALE: tl.constexpr, NAN_CODE: tl.constexpr):
    # codes (uint8) of float32 values on the grid; NAN_CODE < 0: no NaN, a NaN gives +0
    bits = r.to(tl.int32, bitcast=True)
    a = tl.abs(r)
    normal = a >= MIN_NORMAL
    e_field = tl.where(normal, _lowp_exponent(a) + BIAS, 0)
    mant_normal = (a.to(tl.int32, bitcast=True) >> (23 - MBITS)) & ((1 << MBITS) - 1)
    # only subnormals take this path (masking the rest keeps NaN out of the int cast)
    mant_sub = (tl.where(normal | (a != a), 0.0, a) * SUB_SCALE).to(tl.int32)
    code = (e_field << MBITS) | tl.where(normal, mant_normal, mant_sub)
    sign = (bits >> 31) & 1
    if NAN_CODE >= 0:
        code = tl.where(a != a, NAN_CODE, code)
    else:
        sign = tl.where(a != a, 0, sign)
        code = tl.where(a != a, 0, code)
    return (code | (sign << (EBITS + MBITS))).to(tl.uint8)


@triton.jit
def _lowp_decode(code, EBITS: tl.constexpr, MBITS: tl.constexpr, BIAS: tl.constexpr,
                 SUB_STEP: tl.constexpr, NAN_CODE: tl.constexpr, INF_CODE: tl.constexpr):
    # float32 values of codes; normal numbers are assembled as float32 bits
    c = code.to(tl.int32)
    mant = c & ((1 << MBITS) - 1)
    e = (c >> MBITS) & ((1 << EBITS) - 1)
    normal = (((e - BIAS + 127) << 23) | (mant << (23 - MBITS))).to(tl.float32, bitcast=True)
    value = tl.where(e == 0, mant.to(tl.float32) * SUB_STEP, normal)
    magnitude = c & ((1 << (EBITS + MBITS)) - 1)
    if INF_CODE >= 0:
        value = tl.where(magnitude == INF_CODE, float("inf"), value)
        value = tl.where(magnitude > INF_CODE, float("nan"), value)
    elif NAN_CODE >= 0:
        value = tl.where(magnitude == NAN_CODE, float("nan"), value)
    return tl.where(((c >> (EBITS + MBITS)) & 1) == 1, -value, value)


@triton.jit
def _lowp_mx_exponent(amax, EMAX: tl.constexpr, MAXV: tl.constexpr, RCEIL: tl.constexpr):
    # the shared exponent of MX blocks (see coda.runtime.quantize.mx_scale_exponent)
    if RCEIL:
        descale = tl.div_rn(amax, tl.full(amax.shape, MAXV, tl.float32))
        bits = descale.to(tl.int32, bitcast=True)
        mantissa = bits & 0x7FFFFF
        normal = _lowp_exponent(descale) + (mantissa != 0).to(tl.int32)
        sub = tl.where(mantissa > (1 << 22), -126, -127)
        e = tl.where(((bits >> 23) & 0xFF) == 0, sub, normal)
    else:
        e = _lowp_exponent(amax) - EMAX
    return tl.minimum(tl.maximum(e, -127), 127)


@triton.jit
def _lowp_unpack(lo, hi, shift, BITS: tl.constexpr, SIGNED: tl.constexpr):
    # the BITS-bit code starting at bit `shift` of the little-endian byte pair (lo, hi)
    v = ((lo.to(tl.int32) | (hi.to(tl.int32) << 8)) >> shift) & ((1 << BITS) - 1)
    if SIGNED:
        v = tl.where(v >= (1 << (BITS - 1)), v - (1 << BITS), v)
    return v
"""


def amax_lines(x: str, out: str, lead: str, group: int) -> list[str]:
    """Statements setting `out` (shape `lead`) to the NaN-propagating absolute maximum of
    `x` (shape `lead`, `group`) over its last axis: halving steps of tl.split, not
    tl.reduce, whose custom combine the interpreter runs element by element in Python
    (20x slower here); on a GPU both are the same few shuffles."""
    if group & (group - 1):
        raise ValueError(f"block amax needs a power-of-two group, got {group}")
    lines = [f"{out} = tl.abs({x})"]
    size = group
    while size > 1:
        size //= 2
        lines += [
            f"{out}_lo, {out}_hi = tl.split(tl.reshape({out}, ({lead}, {size}, 2)))",
            f"{out} = tl.maximum({out}_lo, {out}_hi, propagate_nan=tl.PropagateNan.ALL)",
        ]
    lines.append(f"{out} = tl.reshape({out}, ({lead},))")
    return lines


def _f(value: float) -> str:
    return repr(float(value))


def round_call(x: str, fmt: FloatFormat) -> str:
    """`x` rounded to `fmt`'s grid (float32, saturating)."""
    return f"_lowp_round({x}, {fmt.mbits}, {fmt.emin}, {fmt.emax}, {_f(fmt.max)})"


def encode_call(r: str, fmt: FloatFormat) -> str:
    """uint8 codes of grid values `r`."""
    nan = -1 if fmt.nan_code is None else fmt.nan_code
    return (
        f"_lowp_encode({r}, {fmt.ebits}, {fmt.mbits}, {fmt.bias}, {_f(2.0**fmt.emin)}, "
        f"{_f(2.0 ** (fmt.mbits - fmt.emin))}, {nan})"
    )


def quantize_call(x: str, fmt: FloatFormat) -> str:
    """uint8 codes of `x` cast to `fmt` (round to nearest even, saturating)."""
    return encode_call(round_call(x, fmt), fmt)


def decode_call(code: str, fmt: FloatFormat) -> str:
    """float32 values of `fmt` codes."""
    nan = -1 if fmt.nan_code is None else fmt.nan_code
    inf = fmt.inf_code if fmt.has_inf else -1
    return (
        f"_lowp_decode({code}, {fmt.ebits}, {fmt.mbits}, {fmt.bias}, "
        f"{_f(2.0 ** (fmt.emin - fmt.mbits))}, {nan}, {inf})"
    )


def mx_exponent_call(amax: str, fmt: FloatFormat, rule: ScaleRule) -> str:
    """Unbiased E8M0 exponent (int32) of MX blocks with absolute maximum `amax`."""
    return f"_lowp_mx_exponent({amax}, {fmt.emax}, {_f(fmt.max)}, {rule == 'rceil'})"


def e8m0_decode_expr(code: str) -> str:
    """float32 2^(code - 127) of E8M0 codes, exact (code 0: 2^-127, a float32 subnormal),
    as two exact power-of-two factors; NaN scales (255) are not expected here."""
    half = f"(({code}).to(tl.int32) - {E8M0_BIAS})"
    return f"(_lowp_pow2({half} // 2) * _lowp_pow2({half} - {half} // 2))"


def unpack_call(lo: str, hi: str, shift: str, fmt: IntFormat) -> str:
    """int32 value of the `fmt.bits`-bit code at bit `shift` of bytes (lo, hi)."""
    return f"_lowp_unpack({lo}, {hi}, {shift}, {fmt.bits}, {fmt.signed})"
