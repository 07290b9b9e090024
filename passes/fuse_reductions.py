"""fuse-reductions: row and column reductions of a GEMM-epilogue result become partial
reductions in that epilogue, so the full [M, N] result need not be written.

After fuse-epilogues, a `graph.reduce` of an `epilogue.gemm` result (sum, amax or
logsumexp of a stored tile, seen through reshapes that keep the last dim) becomes an
`epilogue.reduce` of the same tile, written to a new side output of partials, and a
finalize `graph.reduce` over the partials (sum, amax, logsumexp: each kind combines its
own partials):
- over the last dim (row statistics: a norm backward's sum of dy * y, the LM head's
  logsumexp): partials `[..., M, ceil(N / 32)]`, finalized over their last dim;
- over every dim but the last (column sums: a bias or norm-weight gradient): partials
  `[ceil(M / 32), N]`, finalized over their first dim.
A result nothing else reads is no longer stored at all: the LM head's logits feed only
logsumexp and the masked sum that gathers the target logit. A result other GEMMs read
(GPT-2's pre-GELU gradient, read by two GEMMs and summed for the bias gradient) is
written for them, with its partials beside it. Results elementwise ops read are left
alone (see fuse_reductions_in).

A bf16 or f16 result reduces like a float32 one: the epilogue computes in float32 (as a
loop kernel reading the stored result would), the partials, their finalize and a mean's
division stay float32, and the statistic is rounded to its type once, at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import AnyFloat, ModuleOp, TensorType, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.traits import IsTerminator

from coda.dialects import epilogue, graph
from coda.passes.dataflow import function_bodies
from coda.passes.fuse_prologues import PROLOGUE_FNS, feeds_gemm_operands_only

#: graph.reduce kind -> (epilogue.reduce kind, kind of the finalize over the partials)
_PARTIAL_KINDS = {
    "sum": ("sum", "sum"),
    "amax": ("max", "amax"),
    "logsumexp": ("logsumexp", "logsumexp"),
}
#: epilogue.reduce kind -> the graph.reduce that combines its partials
_FINALIZE = {"sum": "sum", "sumsq": "sum", "max": "amax", "logsumexp": "logsumexp"}


def _stored_tile(gemm: epilogue.GemmOp, index: int) -> SSAValue | None:
    """The tile stored to result `index` by an epilogue.store (None: a partial)."""
    for op in gemm.body.block.ops:
        if isinstance(op, epilogue.StoreOp) and op.index.value.data == index:
            return op.value
    return None


def _is_reshape(op: Operation | None) -> bool:
    return isinstance(op, graph.ViewOp) and op.kind.data == "reshape"


def _gemm_result(value: SSAValue) -> SSAValue:
    """`value` seen through the reshapes that produce it."""
    while _is_reshape(value.owner):
        value = value.owner.input
    return value


@dataclass(frozen=True)
class _Candidate:
    gemm: epilogue.GemmOp
    index: int
    axis: str  # "columns": a reduction of each row; "rows": of each column


def _squared(value: SSAValue) -> SSAValue | None:
    """x, where `value` is square(x) (seen through reshapes) and nothing else reads it."""
    square = _gemm_result(value).owner
    if not (isinstance(square, graph.PointwiseOp) and square.fn.data == "square"):
        return None
    if len(_readers(square.result)) != 1:
        return None  # read elsewhere too: computed (and reduced) where it is read
    return square.inputs[0]


def _reduced_tile(op: graph.ReduceOp) -> tuple[SSAValue, str] | None:
    """The GEMM result `op` reduces (through reshapes and a square) and the partial kind."""
    kind = op.kind.data
    squared = _squared(op.input) if kind in ("sum", "mean") else None
    if squared is not None:
        return _gemm_result(squared), "sumsq"
    if kind == "mean":
        return _gemm_result(op.input), "sum"
    if kind in _PARTIAL_KINDS:
        return _gemm_result(op.input), _PARTIAL_KINDS[kind][0]
    return None


def _candidate(op: graph.ReduceOp) -> _Candidate | None:
    found = _reduced_tile(op)
    if found is None:
        return None
    source = found[0]
    gemm = source.owner
    if not isinstance(gemm, epilogue.GemmOp):
        return None
    index = list(gemm.results).index(source)
    if _stored_tile(gemm, index) is None:
        return None
    if not isinstance(source.type.element_type, AnyFloat):
        return None
    viewed = graph.tensor_shape(op.input)
    if viewed[-1:] != gemm.out_shape[-1:]:
        return None  # a reshape that regroups the columns
    rank = len(viewed)
    if op.reduced_dims == (rank - 1,):
        return _Candidate(gemm, index, "columns")
    rows_only = len(gemm.out_shape) == 2 and op.kind.data != "logsumexp"
    if rows_only and op.reduced_dims == tuple(range(rank - 1)):
        return _Candidate(gemm, index, "rows")
    return None


def _rebuilt(gemm: epilogue.GemmOp, block: Block, drop: set[int]) -> epilogue.GemmOp:
    """`gemm` with a result per write in its region (stores and partial reductions, in
    index order), without the results in `drop` (their stores are erased)."""
    body = gemm.body.block
    for op in list(body.ops):
        if isinstance(op, epilogue.StoreOp) and op.index.value.data in drop:
            body.erase_op(op)
    writers = sorted(
        (op for op in body.ops if isinstance(op, epilogue.StoreOp | epilogue.ReduceOp)),
        key=lambda op: op.index.value.data,
    )
    types = []
    for position, writer in enumerate(writers):
        old = writer.index.value.data
        types.append(
            gemm.results[old].type
            if old < len(gemm.results)
            else TensorType(
                f32, epilogue.partial_shape(gemm.out_shape, writer.group_size, writer.axis.data)
            )
        )
        writer.index = type(writer.index)(position, writer.index.type)
    new = epilogue.GemmOp(gemm.accumulators, list(gemm.inputs), types, Region())
    gemm.body.move_blocks(new.body)
    block.insert_op_after(new, gemm)
    kept = [i for i in range(len(gemm.results)) if i not in drop]
    for old_index, result in zip(kept, new.results, strict=False):
        old = gemm.results[old_index]
        result.name_hint = old.name_hint
        old.replace_all_uses_with(result)
    block.erase_op(gemm)
    return new


def _erase_dead_reshapes(value: SSAValue, block: Block) -> None:
    for use in list(value.uses):
        user = use.operation
        if _is_reshape(user) and user.parent is block:
            _erase_dead_reshapes(user.result, block)
            if not user.result.uses:
                block.erase_op(user)


def fuse_reduction(op: graph.ReduceOp, block: Block) -> bool:
    found = _candidate(op)
    if found is None:
        return False
    gemm, index, axis = found.gemm, found.index, found.axis
    tile = _stored_tile(gemm, index)
    reduced = _reduced_tile(op)
    assert tile is not None and reduced is not None
    kind = reduced[1]
    finalize_kind = _FINALIZE[kind]
    square = _gemm_result(op.input).owner if kind == "sumsq" else None
    group = epilogue.PARTIAL_ROWS if axis == "rows" else epilogue.PARTIAL_COLUMNS
    reduce = epilogue.ReduceOp(kind, tile, len(gemm.results), group, axis)
    body = gemm.body.block
    if isinstance(tile.owner, Operation) and tile.owner.parent_block() is body:
        # right after its tile: the tile need not stay live through the rest of the
        # epilogue (a whole-row norm backward spilled on sm_90a with it at the end)
        body.insert_op_after(reduce, tile.owner)
    else:
        body.insert_op_before(reduce, body.first_op) if body.first_op else body.add_op(reduce)
    gemm = _rebuilt(gemm, block, set())
    partials = gemm.results[-1]
    partials.name_hint = f"{op.result.name_hint or axis[:-1]}_partials"
    # the finalize reduces the partials seen in the reduction's own shape ([2, 16, 2]
    # for a [2, 16, 64] row sum), so per-row work after it joins its loop kernel
    viewed = list(graph.tensor_shape(op.input))
    shape = graph.tensor_shape(partials)
    if axis == "rows":
        viewed[:-1] = [1] * (len(viewed) - 2) + [shape[0]]
    else:
        viewed[-1] = shape[-1]
    result: Operation = graph.ViewOp("reshape", partials, TensorType(f32, viewed))
    block.insert_op_after(result, gemm)
    if tuple(viewed) == shape:
        block.erase_op(result)
        result = gemm
    value = partials if result is gemm else result.results[0]
    anchor = result
    # the statistic in float32 (the partials' type), narrowed once at the end: a bf16
    # mean is the float32 sum over the count rounded once, as eager computes it
    wide = TensorType(f32, graph.tensor_shape(op.result))
    if all(viewed[d] == 1 for d in op.reduced_dims):
        # one partial per kept coordinate (no more rows than one group): it is the
        # whole reduction, and a finalize over one value would be a kernel for nothing
        if value.type != wide:
            whole = graph.ViewOp("reshape", value, wide)
            block.insert_op_after(whole, anchor)
            value, anchor = whole.result, whole
    else:
        finalize = graph.ReduceOp(
            finalize_kind, value, list(op.reduced_dims), op.keepdim is not None, wide
        )
        block.insert_op_after(finalize, anchor)
        value, anchor = finalize.results[0], finalize
    if op.kind.data == "mean":  # the sum of the partials over the count
        count = math.prod(graph.tensor_shape(op.input)[d] for d in op.reduced_dims)
        divisor = graph.ConstantOp(float(count), TensorType(f32, ()))
        mean = graph.PointwiseOp("div", [value, divisor.result], wide)
        block.insert_op_after(divisor, anchor)
        block.insert_op_after(mean, divisor)
        value, anchor = mean.result, mean
    if value.type != op.result.type:  # a bf16 or f16 statistic
        narrow = graph.PointwiseOp("cast", [value], op.result.type)
        block.insert_op_after(narrow, anchor)
        value = narrow.result
    if value.owner is not gemm:  # the partials themselves keep their name
        value.name_hint = op.result.name_hint
    op.result.replace_all_uses_with(value)
    block.erase_op(op)
    if square is not None:  # square(x) is computed in the epilogue now
        _erase_dead_reshapes(square.results[0], block)
        block.erase_op(square)
    source = gemm.results[index]
    _erase_dead_reshapes(source, block)
    if not source.uses:  # only reduced: the [M, N] result is never written
        _rebuilt(gemm, block, {index})
    return True


def _readers(value: SSAValue) -> list[Operation]:
    """The ops that read `value`, seen through reshapes."""
    readers = []
    for use in value.uses:
        user = use.operation
        readers += _readers(user.result) if _is_reshape(user) else [user]
    return readers


def _read_by_gemms_only(ops: list[Operation]) -> bool:
    """Every op is a GEMM, a view only GEMMs read (a transposed weight-gradient
    operand), elementwise work on a GEMM operand (fuse-prologues computes it on the
    operand's tiles) or the function's return: a loop kernel would read the result
    for nothing but the reduction."""
    for op in ops:
        if isinstance(op, graph.ViewOp):
            if not _read_by_gemms_only([use.operation for use in op.result.uses]):
                return False
        elif isinstance(op, graph.PointwiseOp):
            if op.fn.data not in PROLOGUE_FNS or not feeds_gemm_operands_only(op.result):
                return False
        elif not (isinstance(op, epilogue.GemmOp | graph.MatmulOp) or op.has_trait(IsTerminator)):
            return False
    return True


def _reduction_reading(user: Operation) -> graph.ReduceOp | None:
    """The fusable reduction `user` is, or that alone reads it (the mean of a square)."""
    if isinstance(user, graph.PointwiseOp) and user.fn.data == "square":
        readers = _readers(user.result)
        user = readers[0] if len(readers) == 1 else user
    return user if isinstance(user, graph.ReduceOp) and _candidate(user) else None


def fuse_reductions_in(block: Block) -> None:
    """Fuse the reductions of each GEMM result that only reductions and other GEMMs read.
    A result that only reductions read is not written at all; one that GEMMs read is
    written for them, and its reductions (a bias gradient's column sum, the mean of
    squares of a residual stream a norm reads) cost a small side output instead of
    another pass over it. A result an elementwise op reads (a softmax's scores) is left
    alone: its loop kernel reduces it in the pass that reads it anyway."""
    for op in [op for op in block.ops if isinstance(op, graph.ReduceOp)]:
        found = _candidate(op) if op.parent is not None else None
        if found is None:
            continue  # erased with an earlier sibling's fusion, or not over a GEMM tile
        users = _readers(found.gemm.results[found.index])
        reductions = [r for r in map(_reduction_reading, users) if r is not None]
        others = [u for u in users if _reduction_reading(u) is None]
        if _read_by_gemms_only(others):
            for reduction in dict.fromkeys(reductions):
                fuse_reduction(reduction, block)


@dataclass(frozen=True)
class FuseReductions(ModulePass):
    name = "fuse-reductions"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            fuse_reductions_in(block)


__all__ = ["FuseReductions", "fuse_reductions_in"]
