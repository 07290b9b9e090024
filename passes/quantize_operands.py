"""quantize-operands: make every GEMM a scaled GEMM (the FP8 / MXFP8 training recipes).

After split-blocks (and fuse-dequantize), each operand of a 2-D `epilogue.gemm` inside
a `kernel.gemm` that is not already a dequantized low-precision value becomes the
dequantize of its quantize, scales running along the contraction dim K (the last dim of
the scaled type, as lowp requires):

    lhs [M, K]  %a  =>  %qa = lowp.quantize %a : ... -> !lowp.scaled<tensor<MxKxf8E4M3FN>, row, ...>
                        %da = lowp.dequantize %qa
    rhs [K, N]  %wt = graph.view "permute" %w            (nn.Linear's weight %w: [N, K])
                    =>  %qw = lowp.quantize %w : ... -> !lowp.scaled<tensor<NxKxf8E4M3FN>, row, ...>
                        %wt = graph.view "permute" (lowp.dequantize %qw)

(a right-hand operand that is not such a transpose is transposed to [N, K] first). So
the kernel's GEMM multiplies two scaled tensors; coda.codegen.quantize_operand
quantizes each tile as the mainloop loads it and, on GPUs, feeds the codes to the fp8
MMA (`tl.dot` with the row/tensor scales applied to the accumulator after the mainloop,
`tl.dot_scaled` for MX). The forward GEMMs (x, W), the backward's dgrad (dy, W) and
wgrad (dyᵀ, x) GEMMs alike: the recipe quantizes the operands of every GEMM; what each
GEMM returns (outputs, gradients) stays float32.

Recipes (`recipe=`):

    fp8-rowwise     e4m3fn, one float32 scale per row of K elements (amax / 448)
    fp8-tensorwise  e4m3fn, one float32 scale for the whole operand
    mxfp8           MX e4m3fn: blocks of 32 along K, E8M0 scale (OCP floor rule); an
                    operand whose K is not a multiple of 32 stays in full precision

Operands already dequantized (activations an epilogue stored as MX codes, packed
weights) and GEMMs with batch dims are left as they are, and so are the GEMMs of layers
a policy excludes: kernels that read a function argument marked `{lowp.keep}` (an
excluded layer's weight) or whose stored output tile reaches a returned value marked
`{lowp.keep}` (its weight gradient), see coda.compiler.precision_policy.mark_excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import (
    AnyFloat,
    DictionaryAttr,
    Float8E4M3FNType,
    Float8E8M0FNUType,
    ModuleOp,
    TensorType,
    f32,
)
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph, kernel, lowp
from coda.dialects.graph import tensor_shape

#: recipe -> (granularity, scale type, rule)
#: marks function arguments and results an excluded layer owns
KEEP_MARK = "lowp.keep"

RECIPES: dict[str, tuple[str, type, str]] = {
    "fp8-rowwise": ("row", type(f32), ""),
    "fp8-tensorwise": ("tensor", type(f32), ""),
    "mxfp8": ("mx", Float8E8M0FNUType, "floor"),
}


def _dequantized(value: SSAValue) -> bool:
    while isinstance(value.owner, graph.ViewOp):
        value = value.owner.input
    return isinstance(value.owner, lowp.DequantizeOp)


def _base_name(value: SSAValue) -> str:
    """`value`'s name hint without the uniquing suffix (%w_1 -> w)."""
    return (value.name_hint or "x").rstrip("_0123456789") or "x"


def _transpose(value: SSAValue) -> graph.ViewOp:
    rows, cols = tensor_shape(value)
    ty = value.type
    assert isinstance(ty, TensorType)
    view = graph.ViewOp("permute", value, TensorType(ty.element_type, [cols, rows]), perm=[1, 0])
    view.result.name_hint = f"{_base_name(value)}t"
    return view


def _is_transpose(value: SSAValue) -> bool:
    owner = value.owner
    return (
        isinstance(owner, graph.ViewOp)
        and owner.kind.data == "permute"
        and list(owner.perm.get_values()) == [1, 0]  # type: ignore[union-attr]
    )


@dataclass
class _Quantizer:
    recipe: str
    block: Block
    before: Operation

    def scaled(self, value: SSAValue) -> lowp.ScaledType | None:
        ty = value.type
        if not isinstance(ty, TensorType) or not isinstance(ty.element_type, AnyFloat):
            return None
        shape = ty.get_shape()
        granularity, scale_type, rule = RECIPES[self.recipe]
        if len(shape) != 2 or (granularity == "mx" and shape[-1] % 32):
            return None
        data = TensorType(Float8E4M3FNType(), shape)
        return lowp.ScaledType.get(data, granularity, scale_type(), rule=rule)

    def round_trip(self, value: SSAValue) -> SSAValue | None:
        """dequantize(quantize(value)) of an [R, K] value, inserted before the GEMM."""
        scaled = self.scaled(value)
        if scaled is None:
            return None
        quantize = lowp.QuantizeOp(value, scaled)
        dequantize = lowp.DequantizeOp(quantize.result, value.type)
        quantize.result.name_hint = f"{_base_name(value)}_{self.recipe.replace('-', '_')}"
        self.block.insert_ops_before([quantize, dequantize], self.before)
        return dequantize.result

    def lhs(self, value: SSAValue) -> SSAValue | None:
        return self.round_trip(value)

    def rhs(self, value: SSAValue) -> SSAValue | None:
        """The [K, N] operand as the transpose of a quantized [N, K] one."""
        if _is_transpose(value):
            source = value.owner.operands[0]  # type: ignore[union-attr]
        else:
            view = _transpose(value)
            self.block.insert_op_before(view, self.before)
            source = view.result
        dequantized = self.round_trip(source)
        if dequantized is None:
            if source is not value and not source.uses:
                self.block.erase_op(source.owner)  # type: ignore[arg-type]
            return None
        back = _transpose(dequantized)
        back.result.name_hint = value.name_hint  # it stands for the operand it replaces
        self.block.insert_op_before(back, self.before)
        return back.result


def quantize_operands_in(kernel_op: kernel.GemmKernelOp, recipe: str) -> int:
    """Quantize the operands of the GEMM in `kernel_op`; returns how many."""
    block = kernel_op.body.block
    gemm = next(op for op in block.ops if isinstance(op, epilogue.GemmOp))
    if len(gemm.out_shape) != 2:
        return 0
    quantizer = _Quantizer(recipe, block, gemm)
    done: dict[tuple[int, SSAValue], SSAValue] = {}
    count = 0
    for position, value in enumerate(list(gemm.products)):
        side = position % 2  # 0: lhs, 1: rhs
        if _dequantized(value):
            continue
        key = (side, value)
        if key not in done:
            new = quantizer.rhs(value) if side else quantizer.lhs(value)
            if new is None:
                continue
            done[key] = new
            count += 1
        old = gemm.operands[position]
        gemm.operands[position] = done[key]
        if isinstance(old.owner, graph.ViewOp) and not old.uses:
            block.erase_op(old.owner)  # the transpose the quantized one replaces
    return count


@dataclass(frozen=True)
class QuantizeOperands(ModulePass):
    name = "quantize-operands"
    recipe: str = "fp8-rowwise"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe}")
        for func in [o for o in op.walk() if isinstance(o, FuncOp) and not o.is_declaration]:
            kept = kept_values(func)
            for kernel_op in [o for o in func.body.block.ops if isinstance(o, kernel.GemmKernelOp)]:
                if any(v in kept for v in kernel_op.inputs) or any(
                    _reaches(r, kept) for r in _tile_results(kernel_op)
                ):
                    continue  # an excluded layer's GEMM stays in full precision
                quantize_operands_in(kernel_op, self.recipe)


def _tile_results(kernel_op: kernel.GemmKernelOp) -> list[SSAValue]:
    """The kernel's results its GEMM stores as output tiles: a weight gradient is one.
    Partials an epilogue writes beside them (the next layer's bias gradient, reduced
    from the input gradient this GEMM computes) do not make it that layer's GEMM."""
    gemm = next(op for op in kernel_op.body.block.ops if isinstance(op, epilogue.GemmOp))
    stored = {op.index.value.data for op in gemm.body.block.ops if isinstance(op, epilogue.StoreOp)}
    found = []
    yields = kernel_op.body.block.last_op.operands
    for result, yielded in zip(kernel_op.results, yields, strict=True):
        while isinstance(yielded.owner, graph.ViewOp):
            yielded = yielded.owner.input
        if yielded.owner is gemm and list(gemm.results).index(yielded) in stored:
            found.append(result)
    return found


def _marked(attrs: DictionaryAttr) -> bool:
    return KEEP_MARK in attrs.data


def kept_values(func: FuncOp) -> set[SSAValue]:
    """The arguments and returned values of `func` marked {lowp.keep}."""
    kept: set[SSAValue] = set()
    if func.arg_attrs is not None:
        kept |= {a for a, d in zip(func.args, func.arg_attrs.data, strict=False) if _marked(d)}
    ret = func.body.block.last_op
    if func.res_attrs is not None and isinstance(ret, ReturnOp):
        kept |= {v for v, d in zip(ret.arguments, func.res_attrs.data, strict=False) if _marked(d)}
    return kept


def _reaches(value: SSAValue, kept: set[SSAValue]) -> bool:
    """Is `value`, or a view of it, in `kept`?"""
    if value in kept:
        return True
    return any(
        isinstance(use.operation, graph.ViewOp) and _reaches(use.operation.result, kept)
        for use in value.uses
    )


__all__ = ["KEEP_MARK", "RECIPES", "QuantizeOperands", "kept_values", "quantize_operands_in"]
