"""fuse-prologues: elementwise work on a GEMM operand runs on the operand's tiles in the
GEMM's mainloop, so its result is never written.

A normalized activation `hn = w * (x * rstd)` that only GEMMs read (the q/k/v or gate/up
projections after an RMSNorm) costs a loop kernel that reads x and writes hn, and the
GEMM then reads hn back. Computed on each tile the mainloop loads, it costs neither:
the GEMM reads x, one rstd per row and one w per column of K instead of hn. The same
holds for a LayerNorm's `(x - mean) * rstd * w + b` and, in the backward, for the
recomputed hn a weight gradient reads (`saved_values.prefer_recomputing_norms`).

For each matrix operand of a `graph.matmul` (or `epilogue.gemm` product) that is,
through views, the result of a short chain of cheap pointwise ops whose every use is
such an operand, the chain is
rebuilt in the operand's own shape: each leaf is broadcast (`expand`) to the chain's
shape, then viewed as the operand is, and the pointwise ops are cloned on those views.
Pointwise ops commute with views (a view only renames the index each element is read
at), so the operand's every element is unchanged. split-blocks then moves the chain
into the GEMM's kernel and codegen applies it to each loaded tile. The pass runs before
fuse-epilogues, so what the chain no longer needs (a norm backward's x * rstd, now read
only by the next GEMM's epilogue) is free to fuse there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType, i1
from xdsl.ir import Block, Operation, SSAValue, Use
from xdsl.passes import ModulePass
from xdsl.traits import IsTerminator

from coda.dialects import epilogue, graph
from coda.dialects.view_layout import is_addressable_view
from coda.passes.dataflow import function_bodies

#: pointwise functions cheap enough to recompute on every tile a mainloop loads
PROLOGUE_FNS = frozenset({"add", "sub", "mul", "div", "neg", "cast"})
#: the most pointwise ops a prologue recomputes per tile
MAX_PROLOGUE_OPS = 4


def _unviewed(value: SSAValue) -> tuple[SSAValue, list[graph.ViewOp]]:
    """The value `value` views, and the views from it to `value` (producers first)."""
    views: list[graph.ViewOp] = []
    while isinstance(value.owner, graph.ViewOp):
        views.append(value.owner)
        value = value.owner.input
    return value, views[::-1]


def _is_prologue_op(op: Operation | None) -> bool:
    return isinstance(op, graph.PointwiseOp) and op.fn.data in PROLOGUE_FNS


def _is_gemm_operand(use: Use) -> bool:
    """`use` is a matrix operand of a matmul or an epilogue.gemm product."""
    user = use.operation
    return isinstance(user, graph.MatmulOp) or (
        isinstance(user, epilogue.GemmOp) and use.index < len(user.products)
    )


def _gemm_operand_uses(value: SSAValue) -> list[tuple[Operation, int]] | None:
    """(matmul or gemm, operand index) of every use of `value` through views; None if
    something other than a GEMM's matrix operand reads it."""
    found: list[tuple[Operation, int]] = []
    for use in value.uses:
        if isinstance(use.operation, graph.ViewOp):
            inner = _gemm_operand_uses(use.operation.result)
            if inner is None:
                return None
            found += inner
        elif _is_gemm_operand(use):
            found.append((use.operation, use.index))
        else:
            return None
    return found


def feeds_gemm_operands_only(value: SSAValue) -> bool:
    """Only GEMM matrix operands read `value`, through views and prologue ops."""
    for use in value.uses:
        user = use.operation
        if isinstance(user, graph.ViewOp) or _is_prologue_op(user):
            if not feeds_gemm_operands_only(user.results[0]):
                return False
        elif not _is_gemm_operand(use):
            return False
    return True


def _chain(root: graph.PointwiseOp) -> list[graph.PointwiseOp] | None:
    """The cheap pointwise ops computing `root` (producers first), or None if there are
    more than MAX_PROLOGUE_OPS. A producer that something else reads too is recomputed
    (it stays for its other readers: a norm backward's x * rstd); an input computed by
    anything else is a leaf the prologue loads."""
    ops: list[graph.PointwiseOp] = []

    size = math.prod(graph.tensor_shape(root.result))

    def visit(op: graph.PointwiseOp) -> None:
        for value in op.inputs:
            producer = value.owner
            if not _is_prologue_op(producer) or producer in ops:
                continue
            assert isinstance(producer, graph.PointwiseOp)
            shared = any(use.operation is not op for use in value.uses)
            full = [v for v in producer.inputs if math.prod(graph.tensor_shape(v)) == size]
            if shared and len(full) > 1:
                continue  # a residual add the stream stores anyway: read, not recomputed
            visit(producer)
        ops.append(op)

    visit(root)
    return ops if len(ops) <= MAX_PROLOGUE_OPS else None


def _replay(value: SSAValue, views: list[graph.ViewOp], before: Operation) -> SSAValue:
    """`views` applied to `value` (of any element type), inserted before `before`."""
    block = before.parent_block()
    assert block is not None and isinstance(value.type, TensorType)
    elem = value.type.element_type
    for view in views:
        kind = view.kind.data
        clone = graph.ViewOp(
            kind,
            value,
            TensorType(elem, graph.tensor_shape(view.result)),
            perm=view.permutation if kind == "permute" else None,
            slice=view.slice_spec if kind == "slice" else None,
        )
        block.insert_op_before(clone, before)
        value = clone.result
    return value


def _viewed_leaf(
    leaf: SSAValue, shape: tuple[int, ...], views: list[graph.ViewOp], before: Operation
) -> SSAValue:
    """`leaf` broadcast to `shape`, then viewed like the operand; ops go before `before`."""
    assert isinstance(leaf.type, TensorType)
    value = leaf
    if graph.tensor_shape(leaf) != shape:
        expand = graph.ViewOp("expand", leaf, TensorType(leaf.type.element_type, shape))
        before.parent_block().insert_op_before(expand, before)  # type: ignore[union-attr]
        value = expand.result
    return _replay(value, views, before)


def _is_scalar_constant(value: SSAValue) -> bool:
    return isinstance(value.owner, graph.ConstantOp) and graph.tensor_shape(value) == ()


def _leaves(chain: list[graph.PointwiseOp]) -> list[SSAValue]:
    results = {op.result for op in chain}
    leaves: list[SSAValue] = []
    for op in chain:
        for value in op.inputs:
            if value not in results and value not in leaves and not _is_scalar_constant(value):
                leaves.append(value)
    return leaves


def _materialized(leaf: SSAValue, size: int) -> bool:
    """A leaf the prologue can load without making anyone write it for the prologue's
    sake: a small vector (a norm's statistics, its weight: cheap whoever computes
    them), a function argument (a saved activation, a parameter), a value the function
    returns (the residual stream the backward reads), or the result of a kernel that
    is not elementwise work on a GEMM (a reduction, attention, a fallback). Elementwise
    work and GEMM results are refused: fuse-epilogues fuses the chain into the GEMM that
    produces them (the backward's du = dp * silu(g)), which costs nothing extra, where
    a prologue would need silu(g) or dp written for it."""
    if math.prod(graph.tensor_shape(leaf)) < size:
        return True
    root, _ = _unviewed(leaf)
    if not isinstance(root.owner, graph.PointwiseOp | graph.MatmulOp | epilogue.GemmOp):
        return True
    return _returned(root)


def _returned(value: SSAValue) -> bool:
    """The function returns `value` or a view of it."""
    for use in value.uses:
        user = use.operation
        if isinstance(user, graph.ViewOp) and _returned(user.result):
            return True
        if user.has_trait(IsTerminator):
            return True
    return False


def _rebuild(
    chain: list[graph.PointwiseOp], views: list[graph.ViewOp], before: Operation
) -> SSAValue:
    """The chain recomputed in the operand's shape, inserted before `before`."""
    shape = graph.tensor_shape(chain[-1].result)
    mapping: dict[SSAValue, SSAValue] = {
        leaf: _viewed_leaf(leaf, shape, views, before) for leaf in _leaves(chain)
    }
    operand_shape = graph.tensor_shape(views[-1].result) if views else shape
    for op in chain:
        result_type = TensorType(op.result.type.element_type, operand_shape)
        inputs = [mapping.get(v, v) for v in op.inputs]
        clone = graph.PointwiseOp(op.fn.data, inputs, result_type)
        before.parent_block().insert_op_before(clone, before)  # type: ignore[union-attr]
        mapping[op.result] = clone.result
    return mapping[chain[-1].result]


def _signature(views: list[graph.ViewOp]) -> tuple[object, ...]:
    """What a view chain does, so GEMMs reading the operand the same way share one
    rebuilt chain (and fuse-epilogues can still merge GEMMs that share an input)."""
    return tuple((v.kind.data, graph.tensor_shape(v.result), v.perm, v.slice) for v in views)


def _addressable(chain: list[graph.PointwiseOp], views: list[graph.ViewOp]) -> bool:
    """Every leaf, through its own views, broadcast and viewed like the operand, has an
    address map: probed on a scratch block, so nothing is inserted into the IR."""
    shape = graph.tensor_shape(chain[-1].result)
    for leaf in _leaves(chain):
        root, own_views = _unviewed(leaf)
        scratch = Block(arg_types=[root.type])
        anchor = graph.ConstantOp(0, TensorType(i1, ()))
        scratch.add_op(anchor)
        probe = _viewed_leaf(_replay(scratch.args[0], own_views, anchor), shape, views, anchor)
        if not is_addressable_view(probe):
            return False
    return True


def _erase_dead(values: list[SSAValue], block: Block) -> None:
    """Erase the ops producing `values` (views and pointwise, transitively) that nothing
    reads any more."""
    pending = list(values)
    while pending:
        value = pending.pop()
        op = value.owner
        if not isinstance(op, graph.ViewOp | graph.PointwiseOp) or op.parent is not block:
            continue
        if any(r.uses for r in op.results):
            continue
        pending += list(op.operands)
        block.erase_op(op)


def fuse_prologue(root: graph.PointwiseOp, block: Block) -> bool:
    """Recompute `root` (and the chain only it reads) in every GEMM that reads it."""
    uses = _gemm_operand_uses(root.result)
    chain = _chain(root) if uses else None
    if not uses or chain is None:
        return False
    size = math.prod(graph.tensor_shape(root.result))
    if not all(_materialized(leaf, size) for leaf in _leaves(chain)):
        return False
    rewrites = []
    for gemm, index in uses:
        _, views = _unviewed(gemm.operands[index])
        if not _addressable(chain, views):
            return False
        rewrites.append((gemm, index, views))
    # after the root: every leaf is defined before it, every GEMM reading it after it
    before = root.next_op
    assert before is not None
    rebuilt: dict[tuple[object, ...], SSAValue] = {}
    replaced: list[SSAValue] = []
    for gemm, index, views in rewrites:
        replaced.append(gemm.operands[index])
        key = _signature(views)
        if key not in rebuilt:
            rebuilt[key] = _rebuild(chain, views, before)
        gemm.operands[index] = rebuilt[key]
    # only now: `before` may be a view an earlier rewrite left unread
    _erase_dead(replaced, block)
    return True


def fuse_prologues_in(block: Block) -> None:
    for op in [op for op in block.ops if _is_prologue_op(op)]:
        if op.parent is block:  # not erased as part of an earlier chain
            assert isinstance(op, graph.PointwiseOp)
            fuse_prologue(op, block)


@dataclass(frozen=True)
class FusePrologues(ModulePass):
    name = "fuse-prologues"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            fuse_prologues_in(block)


__all__ = [
    "MAX_PROLOGUE_OPS",
    "PROLOGUE_FNS",
    "FusePrologues",
    "feeds_gemm_operands_only",
    "fuse_prologues_in",
]
