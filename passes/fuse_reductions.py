"""fuse-reductions: row reductions of a GEMM-epilogue result become partial reductions
in that epilogue, so the full [M, N] result need not be written.

After fuse-epilogues, a `graph.reduce` over the last dim of an `epilogue.gemm` result
(sum, amax or logsumexp of a stored tile) becomes an `epilogue.reduce` of the same tile,
written to a new side output of partials `[..., M, ceil(N / PARTIAL_COLUMNS)]`, and a
finalize `graph.reduce` over the partials' last dim (sum, amax, logsumexp: each kind
combines its own partials). A result nothing else reads is no longer stored at all: the
LM head's logits feed only logsumexp and the masked sum that gathers the target logit.
Only results that nothing but such reductions read are fused (see fuse_reductions_in).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType, f32
from xdsl.ir import Block, Region, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph
from coda.passes.dataflow import function_bodies

#: graph.reduce kind -> (epilogue.reduce kind, kind of the finalize over the partials)
_PARTIAL_KINDS = {
    "sum": ("sum", "sum"),
    "amax": ("max", "amax"),
    "logsumexp": ("logsumexp", "logsumexp"),
}


def _stored_tile(gemm: epilogue.GemmOp, index: int) -> SSAValue | None:
    """The tile stored to result `index` by an epilogue.store (None: a partial)."""
    for op in gemm.body.block.ops:
        if isinstance(op, epilogue.StoreOp) and op.index.value.data == index:
            return op.value
    return None


def _candidate(op: graph.ReduceOp) -> tuple[epilogue.GemmOp, int] | None:
    source = op.input
    gemm = source.owner
    if not isinstance(gemm, epilogue.GemmOp) or op.kind.data not in _PARTIAL_KINDS:
        return None
    rank = len(graph.tensor_shape(source))
    index = list(gemm.results).index(source)
    if op.reduced_dims != (rank - 1,) or _stored_tile(gemm, index) is None:
        return None
    if not isinstance(source.type.element_type, type(f32)):
        return None  # partials are f32; a narrower result would round before reducing
    return gemm, index


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
            else TensorType(f32, epilogue.partial_shape(gemm.out_shape, writer.columns.value.data))
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


def fuse_reduction(op: graph.ReduceOp, block: Block) -> bool:
    found = _candidate(op)
    if found is None:
        return False
    gemm, index = found
    tile = _stored_tile(gemm, index)
    assert tile is not None
    kind, finalize_kind = _PARTIAL_KINDS[op.kind.data]
    gemm.body.block.add_op(epilogue.ReduceOp(kind, tile, len(gemm.results)))
    gemm = _rebuilt(gemm, block, set())
    partials = gemm.results[-1]
    partials.name_hint = f"{op.result.name_hint or 'row'}_partials"
    rank = len(graph.tensor_shape(partials))
    finalize = graph.ReduceOp(
        finalize_kind, partials, [rank - 1], op.keepdim is not None, op.result.type
    )
    block.insert_op_after(finalize, gemm)
    finalize.result.name_hint = op.result.name_hint
    op.result.replace_all_uses_with(finalize.result)
    block.erase_op(op)
    if not gemm.results[index].uses:  # only reduced: the [M, N] result is never written
        _rebuilt(gemm, block, {index})
    return True


def fuse_reductions_in(block: Block) -> None:
    """Fuse the reductions of each GEMM result that only reductions read: a result
    written anyway (a softmax's scores, read again by its loop kernel) gains nothing
    from partials, the loop kernel reduces it in the pass that reads it."""
    for op in [op for op in block.ops if isinstance(op, graph.ReduceOp)]:
        if op.parent is None or _candidate(op) is None:
            continue  # erased with an earlier sibling's fusion, or not over a GEMM tile
        users = [use.operation for use in op.input.uses]
        if all(isinstance(u, graph.ReduceOp) and _candidate(u) is not None for u in users):
            for user in dict.fromkeys(users):
                fuse_reduction(user, block)


@dataclass(frozen=True)
class FuseReductions(ModulePass):
    name = "fuse-reductions"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            fuse_reductions_in(block)


__all__ = ["FuseReductions", "fuse_reductions_in"]
