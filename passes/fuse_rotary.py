"""fuse-rotary: rotary position embeddings run inside the attention kernels.

`graph.rotary` (R x, or R^T x with `transpose`) comes from the importer (see
`coda.compiler.rotary`). When both q and k of a `graph.attention` are rotations of
their pre-rotation tensors by the same cos and sin tables, the attention op takes the
tables instead (`rotary %cos, %sin`) and reads q and k before the rotation: the kernel
rotates each tile it loads, so the rotated q' and k' are never written. A
`graph.attention_backward` fuses the same way when, besides, its dq' and dk' are read
only by the transposed rotation (R^T, autograd's backward of R): it then returns the
gradients of q and k before the rotation itself.

The tables are viewed as `[B, 1, S, D]` (a reshape adding leading 1s, an expand over
the batch): the kernels read them in place with stride 0 on broadcast dims. The
kernels swap the two halves of a head's columns on chip, so the head dim must be a
power of two of at least 16 (the width of their smallest tile); otherwise, and for any
rotation attention does not read, the op is expanded into what loop kernels compute:
two slices of the last dim, a negation, a concat and pointwise multiply-adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import graph
from coda.dialects.graph_dims import SymbolicSizeError, symbolic_shape, symbolic_type
from coda.passes.dataflow import function_bodies


def _rotation(value: SSAValue, transpose: bool = False) -> graph.RotaryOp | None:
    op = value.owner
    if isinstance(op, graph.RotaryOp) and op.is_transpose == transpose:
        return op
    return None


def _fits_kernels(q: SSAValue) -> bool:
    d = symbolic_shape(q)[-1]
    return isinstance(d, int) and d >= 16 and d & (d - 1) == 0


def _tables_of(q: graph.RotaryOp, k: graph.RotaryOp) -> tuple[SSAValue, SSAValue] | None:
    """The shared (cos, sin) of the rotations of q and k, if they broadcast over heads:
    one table per (batch, position)."""
    if q.cos != k.cos or q.sin != k.sin:
        return None
    shape = symbolic_shape(q.input)
    for table in (q.cos, q.sin):
        padded = (1,) * (4 - len(symbolic_shape(table))) + symbolic_shape(table)
        if len(padded) != 4 or padded[1] != 1:
            return None  # per-head tables (never seen in practice) stay outside
        if padded[0] not in (1, shape[0]):
            return None
    return q.cos, q.sin


def _as_batch_table(table: SSAValue, like: SSAValue, before: Operation, block: Block) -> SSAValue:
    """`table` viewed as [B, 1, S, D] for a q of shape [B, H, S, D]."""
    b, _, s, d = symbolic_shape(like)
    element = table.type.element_type
    shape = symbolic_shape(table)
    padded = (1,) * (4 - len(shape)) + shape
    if padded != shape:
        view = graph.ViewOp("reshape", table, symbolic_type(element, padded))
        block.insert_op_before(view, before)
        table = view.result
    if padded != (b, 1, s, d):
        view = graph.ViewOp("expand", table, symbolic_type(element, (b, 1, s, d)))
        block.insert_op_before(view, before)
        table = view.result
    return table


@dataclass
class _Fusion:
    q: graph.RotaryOp
    k: graph.RotaryOp
    tables: tuple[SSAValue, SSAValue]


def _fusion(op: graph.AttentionOp | graph.AttentionBackwardOp) -> _Fusion | None:
    if op.rotary is not None:
        return None
    q, k = _rotation(op.query), _rotation(op.key)
    if q is None or k is None or not _fits_kernels(op.query):
        return None
    tables = _tables_of(q, k)
    return _Fusion(q, k, tables) if tables is not None else None


def _gradient_rotations(
    grad: SSAValue, tables: tuple[SSAValue, SSAValue]
) -> list[graph.RotaryOp] | None:
    """The transposed rotations by `tables` that are all `grad`'s uses (None: another
    use, which needs the rotated gradient itself)."""
    found = []
    for use in grad.uses:
        user = use.operation
        if not (
            isinstance(user, graph.RotaryOp)
            and user.is_transpose
            and user.input == grad
            and (user.cos, user.sin) == tables
        ):
            return None
        found.append(user)
    return found


def fuse_forward(op: graph.AttentionOp, block: Block) -> bool:
    fusion = _fusion(op)
    if fusion is None:
        return False
    cos, sin = (_as_batch_table(t, op.query, op, block) for t in fusion.tables)
    fused = graph.AttentionOp(
        fusion.q.input,
        fusion.k.input,
        op.value,
        op.mask,
        op.scale_value,
        op.is_causal,
        op.out.type,
        op.lse.type,
        rotary=(cos, sin),
    )
    block.insert_op_before(fused, op)
    for old, new in zip(op.results, fused.results, strict=True):
        new.name_hint = old.name_hint
        old.replace_all_uses_with(new)
    block.erase_op(op)
    return True


def fuse_backward(op: graph.AttentionBackwardOp, block: Block) -> bool:
    fusion = _fusion(op)
    if fusion is None:
        return False
    dq = _gradient_rotations(op.grad_query, fusion.tables)
    dk = _gradient_rotations(op.grad_key, fusion.tables)
    if not dq or not dk:
        return False
    cos, sin = (_as_batch_table(t, op.query, op, block) for t in fusion.tables)
    fused = graph.AttentionBackwardOp(
        op.grad_out,
        fusion.q.input,
        fusion.k.input,
        op.value,
        op.out,
        op.lse,
        op.mask,
        op.scale_value,
        op.is_causal,
        rotary=(cos, sin),
    )
    block.insert_op_before(fused, op)
    for rotations, grad in ((dq, fused.grad_query), (dk, fused.grad_key)):
        for rotation in rotations:
            rotation.result.replace_all_uses_with(grad)
            block.erase_op(rotation)
    op.grad_value.replace_all_uses_with(fused.grad_value)
    for old, new in zip(op.results, fused.results, strict=True):
        new.name_hint = old.name_hint
    block.erase_op(op)
    return True


def expand_rotary(op: graph.RotaryOp, block: Block) -> None:
    """R x = x * cos + cat(-x_hi, x_lo) * sin; R^T x = x * cos + cat(z_hi, -z_lo) with
    z = x * sin."""
    ty = op.input.type
    shape = symbolic_shape(op.input)
    if not isinstance(shape[-1], int):  # the importer matches static head dims only
        raise SymbolicSizeError(f"graph.rotary over a symbolic last dim {shape[-1]}")
    half = shape[-1] // 2
    element = ty.element_type
    half_type = symbolic_type(element, [*shape[:-1], half])
    new: list[Operation] = []

    def emit(operation: Operation) -> SSAValue:
        new.append(operation)
        return operation.results[0]

    def halves(value: SSAValue) -> tuple[SSAValue, SSAValue]:
        axis = len(shape) - 1
        lo = emit(graph.ViewOp("slice", value, half_type, slice=(axis, 0, 1)))
        hi = emit(graph.ViewOp("slice", value, half_type, slice=(axis, half, 1)))
        return lo, hi

    scaled = emit(graph.PointwiseOp("mul", [op.input, op.cos], ty))
    if op.is_transpose:
        z = emit(graph.PointwiseOp("mul", [op.input, op.sin], ty))
        lo, hi = halves(z)
        rotated = emit(
            graph.ConcatOp(
                [hi, emit(graph.PointwiseOp("neg", [lo], half_type))], len(shape) - 1, ty
            )
        )
    else:
        lo, hi = halves(op.input)
        swapped = emit(
            graph.ConcatOp(
                [emit(graph.PointwiseOp("neg", [hi], half_type)), lo], len(shape) - 1, ty
            )
        )
        rotated = emit(graph.PointwiseOp("mul", [swapped, op.sin], ty))
    result = emit(graph.PointwiseOp("add", [scaled, rotated], ty))
    for operation in new:
        block.insert_op_before(operation, op)
    result.name_hint = op.result.name_hint
    op.result.replace_all_uses_with(result)
    block.erase_op(op)


def fuse_rotary_in(block: Block) -> None:
    for op in list(block.ops):
        if isinstance(op, graph.AttentionOp):
            fuse_forward(op, block)
        elif isinstance(op, graph.AttentionBackwardOp):
            fuse_backward(op, block)
    for op in list(block.ops):
        if isinstance(op, graph.RotaryOp):
            if op.result.uses:
                expand_rotary(op, block)
            else:
                block.erase_op(op)  # its attention reads the tables instead


@dataclass(frozen=True)
class FuseRotary(ModulePass):
    name = "fuse-rotary"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            fuse_rotary_in(block)


__all__ = ["FuseRotary", "expand_rotary", "fuse_rotary_in"]
