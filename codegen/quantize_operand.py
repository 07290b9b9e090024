"""Quantize a GEMM operand where the mainloop loads it: the scaled GEMM of FP8/MX training.

After quantize-operands (coda.passes.quantize_operands), a kernel.gemm may read an
operand as

    lhs [M, K]:   %d = lowp.dequantize (lowp.quantize %x)        %x: [M, K], float
    rhs [K, N]:   graph.view "permute" (lowp.dequantize (lowp.quantize %x))   %x: [N, K]

i.e. the product of two scaled tensors (scales along K, the last dim of each scaled
type). The mainloop loads %x's float tile, scales and rounds it to the element grid with
coda.codegen.quantize's exact arithmetic (never a float -> fp8 cast, which the
interpreter does not round to nearest-even), and then multiplies:

  - row-wise / tensor-wise fp8. The scales do not depend on k, so
    dequant(A) @ dequant(B) = diag(sa) (Qa @ Qb) diag(sb): on a GPU (`NATIVE_LOWP`,
    any device but the CPU) the codes go to `tl.dot` as float8 (the tensor cores' fp8
    MMA, float32 accumulator) and the epilogue's first step multiplies the accumulator by
    the row scale of A and the column scale of B. Row scales need the amax over all of K
    first: a pre-pass over K reads the program's rows (columns of B) once before the
    mainloop; a tensor scale comes from a pre-pass over the whole operand in every
    program (correct, but on a GPU a separate amax reduction would be cheaper).
  - MX (blocks of 32 along K, E8M0 scale): BLOCK_K is a multiple of 32, so every block
    lies in one tile; on a GPU `tl.dot_scaled` takes the codes and the E8M0 scales.
  - Known GPU cost (`lowerc --model llama-block --precision fp8-rowwise --target
    cuda:sm_90a --emit resources`): the forward kernels compile clean, but backward
    GEMMs that read both operands through transposes spill about 4 KB with the row
    pre-pass, and a GEMM summing several products in one accumulator takes the float32
    branch on GPUs too (no per-product scale can factor out of a shared accumulator;
    under mxfp8 the Llama block's such kernel spills). Not tuned yet.
  - Under Triton's interpreter (CPU tensors), whose fp8 and scaled dots are not trusted
    (see docs), each tile is dequantized (grid value x scale, the one float32 product
    the torch reference computes) and multiplied with a float32 `tl.dot`: the numbers
    are exactly those of quantize-dequantize followed by a float32 GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import Float8E4M3FNType, Float8E5M2Type
from xdsl.ir import SSAValue

from coda.codegen.common import CodegenError
from coda.codegen.dequantize import is_transpose
from coda.codegen.quantize import amax_lines, e8m0_decode_expr, mx_exponent_call, round_call
from coda.dialects.graph import ViewOp, tensor_shape
from coda.dialects.lowp import DequantizeOp, QuantizeOp, ScaledType, element_name
from coda.runtime.quantize import AMAX_EPS, FLOAT_FORMATS

if TYPE_CHECKING:
    from coda.codegen.gemm import _GemmGenerator, _Operand

#: element -> the Triton dtype GPUs feed to tl.dot / its tl.dot_scaled format name
_NATIVE = {Float8E4M3FNType: ("tl.float8e4nv", "e4m3"), Float8E5M2Type: ("tl.float8e5", "e5m2")}
#: elements per pre-pass step of a tensor-wise amax
_SCAN = 1024


def quantized_source(value: SSAValue) -> tuple[DequantizeOp, QuantizeOp] | None:
    """The dequantize(quantize(x)) that `value` is (a transpose of), if any."""
    root = value.owner.input if isinstance(value.owner, ViewOp) else value
    deq = root.owner
    if isinstance(deq, DequantizeOp) and isinstance(deq.input.owner, QuantizeOp):
        return deq, deq.input.owner
    return None


@dataclass
class ScaledOperandInfo:
    """What a scaled mainloop needs besides the dequantized tile."""

    kind: str  # row | tensor | mx
    grid: str  # the tile on the element grid (float32 values of the codes)
    native_type: str  # tl dtype of the codes for a GPU dot
    native_format: str  # tl.dot_scaled format name
    scale: str  # row/tensor: the float32 scale vector/scalar; mx: E8M0 codes [R, BK/32]


def quantize_operand(
    gen: _GemmGenerator,
    value: SSAValue,
    role: str,
    prefix: str,
    deq: DequantizeOp,
    quantize: QuantizeOp,
) -> _Operand:
    """The mainloop operand `value` = (transpose of) dequantize(quantize(x))."""
    from coda.codegen.gemm import _address, _Operand

    name = f'kernel.gemm "{gen.kernel.kernel_name}"'
    if gen.batch_dims:
        raise CodegenError(f"{name}: mainloop quantize of a batched GEMM")
    if role == "lhs" and value is deq.result:
        rows, offs, mask_r, block_r = "m", "offs_m", "mask_m", "BLOCK_M"
    elif role == "rhs" and is_transpose(value, deq.result):
        rows, offs, mask_r, block_r = "n", "offs_n", "mask_n", "BLOCK_N"
    else:
        raise CodegenError(
            f"{name}: a quantized operand must be a left-hand [M, K] operand or a right-hand "
            "operand read as the transpose of an [N, K] one"
        )
    scaled = quantize.result.type
    assert isinstance(scaled, ScaledType)
    elem = scaled.element_type
    kind = scaled.granularity.data
    if type(elem) not in _NATIVE or kind not in ("row", "tensor", "mx"):
        raise CodegenError(
            f"{name}: mainloop quantize supports fp8 elements with row, tensor or mx "
            f"scales, got {elem} with {kind}"
        )
    fmt = FLOAT_FORMATS[element_name(elem)]
    x = quantize.input
    access = gen._access(x, role)
    names = {rows: offs, "k": "kk"}
    address = _address(access, [rows, "k"], rows, "k", names)
    ptr = gen.ptr_of[access.source]
    v = {
        s: gen.namer.fresh(f"{prefix}_{s}")
        for s in ("rows", "cols", "ptrs", "x", "amax", "mult", "scale", "grid", "tile", "k0")
    }
    setup: list[str] = []
    if address.rows:
        setup.append(f"{v['rows']} = {address.rows}")
    tile_shape = f"({block_r}, BLOCK_K)"
    address_lines = []
    if address.cols:
        address_lines.append(f"{v['cols']} = {address.cols}")
    pointer = address.pointer(
        ptr, v["rows"] if address.rows else None, v["cols"] if address.cols else None, tile_shape
    )
    address_lines.append(f"{v['ptrs']} = {pointer}")
    load = (
        f"{v['x']} = tl.load({v['ptrs']}, mask={mask_r}[:, None] & mask_k[None, :], "
        "other=0.0).to(tl.float32)"
    )
    k_size = tensor_shape(x)[-1]
    native_type, native_format = _NATIVE[type(elem)]
    lines: list[str] = []
    if kind in ("row", "tensor"):
        if kind == "row":
            tmax = gen.namer.fresh(f"{prefix}_tile_amax")
            # the amax over all of K of this program's rows, before the mainloop
            setup += [
                f"{v['amax']} = tl.full(({block_r},), 0.0, tl.float32)",
                f"for {v['k0']} in range(0, {k_size}, BLOCK_K):",
                f"    kk = {v['k0']} + offs_k",
                f"    mask_k = kk < {k_size}",
                *(f"    {line}" for line in address_lines),
                f"    {load}",
                # halving steps, not tl.max: triton.language's @jit reductions cannot be
                # called from kernels the runtime interprets (coda.codegen.common)
                *(f"    {line}" for line in amax_lines(v["x"], tmax, block_r, gen.tile.block_k)),
                f"    {v['amax']} = tl.maximum({v['amax']}, {tmax})",
            ]
            shape, bcast = f"({block_r},)", "[:, None]"
        else:
            setup += _tensor_amax(gen, access.source, v["amax"], prefix)
            shape, bcast = "(1,)", ""  # a [1] vector broadcasts like a scalar
        setup += [
            f"{v['mult']} = tl.div_rn(tl.full({shape}, {fmt.max!r}, tl.float32), "
            f"tl.maximum({v['amax']}, {AMAX_EPS!r}))",
            f"{v['scale']} = tl.div_rn(tl.full({shape}, 1.0, tl.float32), {v['mult']})",
        ]
        scaled_x = f"{v['x']} * {v['mult']}{bcast}"
        lines += [
            f"{v['grid']} = {round_call(scaled_x, fmt)}",
            f"{v['tile']} = {v['grid']} * {v['scale']}{bcast}",
        ]
        scale = v["scale"]
    else:
        block = scaled.block_shape[1]
        if gen.tile.block_k % block:
            raise CodegenError(
                f"{name}: BLOCK_K {gen.tile.block_k} is not a multiple of the {block}-element "
                "MX block"
            )
        groups = f"BLOCK_K // {block}"
        # x * 2^-e in two exact steps (2^-e alone may not be a float32), as the reference
        pow2 = "_lowp_pow2({})[:, :, None]"
        blocks, e, half, e8 = (gen.namer.fresh(f"{prefix}_{s}") for s in ("blocks", "e", "h", "e8"))
        exact = f"{blocks} * {pow2.format(half)} * {pow2.format(f'-{e} - {half}')}"
        lines += [
            f"{blocks} = tl.reshape({v['x']}, ({block_r}, {groups}, {block}))",
            *amax_lines(blocks, v["amax"], f"{block_r}, {groups}", block),
            f"{e} = {mx_exponent_call(v['amax'], fmt, scaled.rule.data)}",  # type: ignore[arg-type]
            f"{half} = (-{e}) // 2",
            f"{v['grid']} = tl.reshape({round_call(exact, fmt)}, {tile_shape})",
            f"{e8} = ({e} + 127).to(tl.uint8)",
            f"{v['tile']} = tl.reshape(tl.reshape({v['grid']}, ({block_r}, {groups}, {block}))"
            f" * {e8m0_decode_expr(e8)}[:, :, None], {tile_shape})",
        ]
        scale = e8
    gen.lowp_helpers = True
    tile = v["tile"]
    if role == "rhs":
        # [BLOCK_N, BLOCK_K] loaded along K: the mainloop multiplies [BLOCK_K, BLOCK_N]
        lines.append(f"{tile} = tl.trans({tile})")
    operand = _Operand(
        name=gen.ir.name(value),
        comment=(
            f"{gen.ir.name(value)} = {gen.ir.name(deq.result)}"
            f"{'ᵀ' if role == 'rhs' else ''}: {gen.ir.name(x)} quantized to {fmt.name} "
            f"({kind} scales along K) as the mainloop loads it"
        ),
        setup=setup,
        address=address_lines,
        load="\n".join([load, *lines]),
        tile=tile,
    )
    operand.scaled = ScaledOperandInfo(kind, v["grid"], native_type, native_format, scale)  # type: ignore[attr-defined]
    return operand


def _tensor_amax(gen: _GemmGenerator, source: SSAValue, out: str, prefix: str) -> list[str]:
    """Lines setting `out` ([1]) to the amax of the whole kernel operand `source`, scanned
    flat through its strides (a view that reads every element has the same amax)."""
    shape = tensor_shape(source)
    strides = gen.strides_of[source]
    idx, offs, vals, i = (gen.namer.fresh(f"{prefix}_{s}") for s in ("idx", "offs", "vals", "i"))
    terms = []
    inner = 1
    for d in reversed(range(len(shape))):
        terms.append(f"(({idx} // {inner}) % {shape[d]}) * {strides[d]}")
        inner *= shape[d]
    numel = prod(shape)
    return [
        f"{out} = tl.full(({_SCAN},), 0.0, tl.float32)",
        f"for {i} in range(0, {numel}, {_SCAN}):",
        f"    {idx} = {i} + tl.arange(0, {_SCAN})",
        f"    {offs} = {' + '.join(terms) or '0'}",
        f"    {vals} = tl.load({gen.ptr_of[source]} + {offs}, mask={idx} < {numel}, other=0.0)",
        f"    {out} = tl.maximum({out}, tl.abs({vals}.to(tl.float32)))",
        *amax_lines(f"tl.reshape({out}, (1, {_SCAN}))", out, "1", _SCAN),
    ]


def scaled_dot_lines(
    operands: list[_Operand], dots: list[tuple[str, str, str]]
) -> tuple[list[str], list[str]] | None:
    """The mainloop's dot lines and the lines after the loop for products whose two
    operands are both quantized here with the same kind of scales (None: not such a
    mainloop). Two branches, chosen by the NATIVE_LOWP constexpr: GPUs multiply the codes
    natively; the interpreter multiplies the dequantized tiles in float32."""
    by_tile = {o.tile: getattr(o, "scaled", None) for o in operands}
    infos = [(by_tile[a], by_tile[b]) for _, a, b in dots]
    if not infos or any(a is None or b is None for a, b in infos):
        return None
    kinds = {i.kind for pair in infos for i in pair}
    accs = [acc for acc, _, _ in dots]
    if len(kinds) != 1 or (kinds != {"mx"} and len(set(accs)) != len(accs)):
        return None  # row/tensor scales factor out of one product per accumulator only
    (kind,) = kinds
    body = ["if NATIVE_LOWP:"]
    after: list[str] = []
    for (acc, _, _), (ia, ib) in zip(dots, infos, strict=True):
        if kind == "mx":
            body.append(
                f"    {acc} = tl.dot_scaled({ia.grid}.to({ia.native_type}), {ia.scale}, "
                f'"{ia.native_format}", tl.trans({ib.grid}.to({ib.native_type})), {ib.scale}, '
                f'"{ib.native_format}", {acc})'
            )
        else:
            body.append(
                f"    {acc} = tl.dot({ia.grid}.to({ia.native_type}), "
                f"tl.trans({ib.grid}).to({ib.native_type}), {acc})"
            )
            sa = f"{ia.scale}[:, None]" if ia.kind == "row" else ia.scale
            sb = f"{ib.scale}[None, :]" if ib.kind == "row" else ib.scale
            after += [
                "if NATIVE_LOWP:",
                "    # the scales of A's rows and B's columns factor out of the sum over K",
                f"    {acc} = {acc} * {sa} * {sb}",
            ]
    body.append("else:")
    body += [
        f"    {acc} = tl.dot({a}, {b}, {acc}, input_precision=INPUT_PRECISION)"
        for acc, a, b in dots
    ]
    return body, after
