"""`lowp.store_quantized` -> Triton: quantize the output tile in the epilogue.

The tile [BLOCK_M, BLOCK_N] is regrouped as [BLOCK_M, BLOCK_N / B, B] blocks of B
columns (B = 32 for MX, 128 for block<1x128>...), each block's amax comes from halving
steps, then the scale and the codes follow coda.runtime.quantize's arithmetic exactly
(so a tile quantized here has the bits the torch quantizer gives for the stored f32
result). Codes and scales are stored; the high-precision tile need not be.

Supported here: fp8 (e4m3fn/e5m2) and fp4 (e2m1, two codes a byte) elements with MX
E8M0 scales or float32 block scales. fp6 and integer codes, which straddle bytes or
need a zero point, are not stored from epilogues yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects.builtin import Float4E2M1FNType, Float8E4M3FNType, Float8E5M2Type

from coda.codegen.common import CodegenError
from coda.codegen.quantize import amax_lines, mx_exponent_call, quantize_call
from coda.dialects.lowp import StoreQuantizedOp, storage_types
from coda.runtime.quantize import AMAX_EPS, E2M1, E4M3FN, E5M2

if TYPE_CHECKING:
    from coda.codegen.gemm import _GemmGenerator


def store_quantized_lines(gen: _GemmGenerator, op: StoreQuantizedOp) -> list[str]:
    fmt = op.format
    name = f'kernel.gemm "{gen.kernel.kernel_name}"'
    elem = fmt.element_type
    elements = {Float8E4M3FNType: E4M3FN, Float8E5M2Type: E5M2, Float4E2M1FNType: E2M1}
    element = elements.get(type(elem))
    if element is None:
        raise CodegenError(f"{name}: no epilogue quantize to {elem} yet (fp8 and fp4 only)")
    if gen.batch_dims:
        raise CodegenError(f"{name}: epilogue quantize of a batched GEMM")
    block = fmt.block_shape[1]
    if gen.tile.block_n % block:
        raise CodegenError(
            f"{name}: BLOCK_N {gen.tile.block_n} is not a multiple of the {block}-column "
            "scale block"
        )
    gen.lowp_helpers = True
    x = gen.var[op.value]
    v = {s: gen.namer.fresh(f"q_{s}") for s in ("blocks", "amax", "scaled", "codes", "scale")}
    groups = f"BLOCK_N // {block}"
    lines = [
        # columns past N hold whatever the epilogue computed there: keep them out of amax
        f"{v['blocks']} = tl.reshape(tl.where(mask, {x}, 0.0), (BLOCK_M, {groups}, {block}))",
        *amax_lines(v["blocks"], v["amax"], f"BLOCK_M, {groups}", block),
    ]
    if fmt.granularity.data == "mx":
        e = gen.namer.fresh("q_exp")
        half = gen.namer.fresh("q_half")
        lines += [
            f"{e} = {mx_exponent_call(v['amax'], element, fmt.rule.data)}",  # type: ignore[arg-type]
            f"{half} = (-{e}) // 2",
            f"{v['scaled']} = {v['blocks']} * _lowp_pow2({half})[:, :, None]"
            f" * _lowp_pow2(-{e} - {half})[:, :, None]",
            f"{v['scale']} = tl.where({v['amax']} != {v['amax']}, 255, {e} + 127).to(tl.uint8)",
        ]
    elif fmt.granularity.data == "block":
        mult = gen.namer.fresh("q_multiplier")
        lines += [
            f"{mult} = tl.div_rn(tl.full({v['amax']}.shape, {element.max!r}, tl.float32), "
            f"tl.maximum({v['amax']}, {AMAX_EPS!r}))",
            f"{v['scaled']} = {v['blocks']} * {mult}[:, :, None]",
            f"{v['scale']} = tl.div_rn(tl.full({mult}.shape, 1.0, tl.float32), {mult})",
        ]
    else:
        raise CodegenError(f"{name}: no epilogue quantize for {fmt.granularity.data} scaling")
    lines.append(
        f"{v['codes']} = tl.reshape({quantize_call(v['scaled'], element)}, (BLOCK_M, BLOCK_N))"
    )
    code_cols, code_bound = "offs_n", None
    if element.bits == 4:
        # two codes a byte, the even column in the low nibble (coda.runtime.quantize's
        # little-endian packing); this program's BLOCK_N columns fill BLOCK_N / 2 bytes
        lo, hi = gen.namer.fresh("q_lo"), gen.namer.fresh("q_hi")
        code_cols = gen.namer.fresh("q_byte_offs")
        lines += [
            f"{lo}, {hi} = tl.split(tl.reshape({v['codes']}, (BLOCK_M, BLOCK_N // 2, 2)))",
            f"{v['codes']} = ({lo}.to(tl.int32) | ({hi}.to(tl.int32) << 4)).to(tl.uint8)",
            f"{code_cols} = pid_n * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)",
        ]
        code_bound = storage_types(fmt)[0].get_shape()[1]
    scales_n = fmt.scale_shape[1]
    offs = gen.namer.fresh("q_scale_offs")
    lines.append(f"{offs} = pid_n * ({groups}) + tl.arange(0, {groups})")
    for index, value, cols, bound in (
        (op.codes.value.data, v["codes"], code_cols, code_bound),
        (op.scales.value.data, v["scale"], offs, scales_n),
    ):
        for out in gen._outputs_of(index):
            if out.address is not None:
                raise CodegenError(f"{name}: quantized results are stored in place")
            mask = "mask" if bound is None else f"mask_m[:, None] & ({cols} < {bound})[None, :]"
            lines += [
                f"{out.ptrs} = {out.ptr} + offs_m[:, None] * {out.strides['m']}"
                f" + {cols}[None, :] * {out.strides['n']}",
                f"tl.store({out.ptrs}, {value}, mask={mask})",
            ]
    return lines
