"""split-blocks: partition each function into `kernel` ops, one per launch.

  - each `epilogue.gemm` (and any bare `graph.matmul`) becomes a `kernel.gemm`; a
    result its users only read head-split (reshape + permute) is stored in that
    layout (the kernel yields the view);
  - each `graph.attention` / `graph.attention_backward` becomes a `kernel.attention`
    that reads q, k, v (and the mask, dout, ...) through their view chains in place: a
    head split, a GQA broadcast of k/v (expand + reshape) or a broadcast mask is an
    address map, never a copy;
  - each `graph.opaque` becomes a `kernel.fallback`;
  - `graph.pointwise`, `graph.reduce` and `graph.concat` ops are loop-fused into
    `kernel.loop`s: an op joins the group of one of its producers when it iterates
    over the same shape S, every reduction of the group reduces S over the same dims,
    and the merged group keeps the graph acyclic. Ops on a reduction's result run after
    its loop; ops of shape S that read it (x - amax(x)) run in another pass over the
    rows in the same kernel (a softmax or a LayerNorm is one kernel); an op
    reading two reduction-free groups of one shape merges them; independent groups
    over one shape and reduced dims that read the same producer run as one kernel;
    a concat reads its inputs at shifted indices, so never from its own group; per-row
    work (one value per kept coordinate) that a reduction's ops combine with runs after
    that reduction's loop; a pointwise op used only by another loop kernel that can read
    its operands is recomputed there instead of stored; a reduction-free group over S
    that reads the per-row result of a small reduction (a kernel operand such as a GEMM
    epilogue's row partials, with S's kept extents and a static extent of at most
    MAX_SMALL_REDUCTION along S's reduced dims) absorbs it and its per-row work: the
    kernel reduces the partials before its pass (a norm backward's finalize and dx);
  - a reshape that no strides can express, read outside kernels (returned, or by a
    fallback), gets a `copy` loop kernel before it;
  - `graph.view` and `graph.constant` stay outside kernels: they move no data. The
    view chains that feed a GEMM (operands and epilogue inputs) are also cloned into
    its kernel, which reads the viewed tensor in place through their layout; a copy
    outside stays only while something else uses it.
Constants a kernel reads are cloned into it so generated code sees literals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import networkx as nx
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph, kernel
from coda.dialects.view_layout import is_strided_view
from coda.passes.dataflow import (
    can_contract,
    dataflow_graph,
    function_bodies,
    topological_reorder,
    users_outside,
)
from coda.passes.epilogue_groups import EpilogueGroup
from coda.passes.fuse_epilogues import fuse_group
from coda.passes.fuse_prologues import PROLOGUE_FNS, feeds_gemm_operands_only

# The most values a small reduction reduces per kept coordinate: they are loaded as one
# block per program, so they must fit in registers next to the pass's own blocks.
MAX_SMALL_REDUCTION = 1024


@dataclass
class LoopGroup:
    shape: tuple[int, ...]
    members: list[Operation] = field(default_factory=list)
    reduce_dims: tuple[int, ...] | None = None

    def reductions(self) -> set[Operation]:
        return {op for op in self.members if isinstance(op, graph.ReduceOp)}

    def small_reductions(self) -> set[Operation]:
        """Reductions of a kernel operand smaller than the group's shape along the reduced
        dims (the partials of a row sum): computed in one block per row before the loop."""
        return {op for op in self.reductions() if _iteration_shape(op) != self.shape}

    def after_reduction(self) -> set[Operation]:
        """Members computed once per kept coordinate: reductions and the pointwise ops
        on their results (run after the loop over the reduced dims)."""
        return {op for op in self.members if _iteration_shape(op) != self.shape} | set(
            self.reductions()
        )


def _iteration_shape(op: Operation) -> tuple[int, ...]:
    if isinstance(op, graph.ReduceOp):
        return graph.tensor_shape(op.input)
    return graph.tensor_shape(op.results[0])


def _fits(group: LoopGroup, op: Operation) -> bool:
    after = group.after_reduction()
    if isinstance(op, graph.ConcatOp):
        # it reads its inputs at shifted indices: they must come from outside the group
        return False
    if _iteration_shape(op) != group.shape:
        # e.g. rsqrt(mean + eps) of RMSNorm: pointwise on the group's reduce results
        # (and constants), computed after the loop in the same kernel
        shape = graph.tensor_shape(op.results[0])
        return (
            isinstance(op, graph.PointwiseOp)
            and any(v.owner in after for v in op.inputs)
            and all(
                (v.owner in after and graph.tensor_shape(v) == shape)
                or isinstance(v.owner, graph.ConstantOp)
                for v in op.inputs
            )
        )
    if isinstance(op, graph.PointwiseOp):
        # x - amax(x) of a softmax: a later pass over the same rows reads the reduction
        # (broadcast back over the reduced dims, so kept as size-1 dims)
        reduced = group.reduce_dims or ()
        kept = tuple(1 if d in reduced else n for d, n in enumerate(group.shape))
        return all(graph.tensor_shape(v) == kept for v in op.inputs if v.owner in after)
    assert isinstance(op, graph.ReduceOp)
    if any(isinstance(m, graph.ConcatOp) for m in group.members):
        return False  # a concatenation is computed in pointwise loops only
    if group.small_reductions():
        return False  # a kernel with small reductions runs one pointwise pass, no reduction
    return group.reduce_dims in (None, op.reduced_dims)


def _mergeable(a: LoopGroup, b: LoopGroup) -> bool:
    """Two groups over one shape that reduce the same dims (or nothing) can run as one
    kernel, in passes over the rows (the two row sums of a LayerNorm backward), unless
    a concat of one reads what the other computes."""
    if a.shape != b.shape:
        return False
    if None not in (a.reduce_dims, b.reduce_dims) and a.reduce_dims != b.reduce_dims:
        return False
    if any(isinstance(m, graph.ConcatOp) for m in (*a.members, *b.members)) and (
        a.reduce_dims is not None or b.reduce_dims is not None
    ):
        return False  # a concatenation is computed in pointwise loops only
    if _mixes_reductions(a, b):
        return False
    members = set(a.members) | set(b.members)
    return not any(
        isinstance(op, graph.ConcatOp) and any(v.owner in members for v in op.inputs)
        for op in members
    )


def _mixes_reductions(a: LoopGroup, b: LoopGroup) -> bool:
    """Merging two groups of one shape would put a main reduction (over the shape) in a
    kernel with small reductions: the loop codegen is planned for small reductions and
    one pointwise pass only."""
    small = a.small_reductions() | b.small_reductions()
    return bool(small) and bool((a.reductions() | b.reductions()) - small)


def _kept_shape(group: LoopGroup) -> tuple[int, ...] | None:
    """The shape of one value per kept coordinate of a reducing group (keepdim)."""
    if group.reduce_dims is None:
        return None
    return tuple(1 if d in group.reduce_dims else n for d, n in enumerate(group.shape))


def _row_work_of(a: LoopGroup, b: LoopGroup) -> tuple[LoopGroup, LoopGroup] | None:
    """(reducing group, row group) when one of `a`, `b` reduces and the other is
    reduction-free pointwise work with one value per kept coordinate of it (rstd^3 of a
    norm's backward): that work runs after the reduction's loop, in its kernel."""
    for red, row in ((a, b), (b, a)):
        if (
            _kept_shape(red) == row.shape
            and row.reduce_dims is None
            and all(isinstance(op, graph.PointwiseOp) for op in row.members)
        ):
            return red, row
    return None


def _small_reduction_of(a: LoopGroup, b: LoopGroup) -> tuple[LoopGroup, LoopGroup] | None:
    """(pointwise group, small-reduction group) when one of `a`, `b` is reduction-free
    work over S and the other reduces kernel operands (the partials of a row sum, read
    from outside the group) that have S's kept extents and a different, small extent
    along the reduced dims, plus per-row work on the results (a norm backward's
    finalize, then dx = t + c * h). The pointwise group absorbs the reductions: they run
    before its loop over the rows, one block of partials per row. Only reduction-free
    groups absorb them: a kernel runs small reductions and one pointwise pass, not a
    main reduction as well."""
    for pw, small in ((a, b), (b, a)):
        if pw.reduce_dims is not None or small.reduce_dims is None:
            continue
        if any(isinstance(m, graph.ConcatOp) for m in pw.members):
            continue
        if _kept_of(pw.shape, small.reduce_dims) != _kept_shape(small):
            continue
        if _kept_of(pw.shape, small.reduce_dims) == pw.shape or pw.shape == small.shape:
            continue  # per-row work or a reduction over pw's shape: the other rules decide
        if small.after_reduction() != set(small.members):
            continue  # something iterates over the partials themselves
        per_row = {r for m in small.members for r in m.results}
        kept = _kept_shape(small)
        if any(
            graph.tensor_shape(v) != kept for m in pw.members for v in m.operands if v in per_row
        ):
            continue  # the pass reads a per-row value broadcast back over the reduced dims
        members = {*pw.members, *small.members}
        if all(_is_small_reduction(r, members) for r in small.reductions()):
            return pw, small
    return None


def _kept_of(shape: tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if d in dims else n for d, n in enumerate(shape))


def _is_small_reduction(op: Operation, members: set[Operation]) -> bool:
    """`op` reduces a value the merged kernel reads as an operand (not one of `members`,
    seen through views) with at most MAX_SMALL_REDUCTION values per kept coordinate."""
    assert isinstance(op, graph.ReduceOp)
    value = op.input
    while isinstance(value.owner, graph.ViewOp):
        value = value.owner.input
    if value.owner in members:
        return False
    shape = graph.tensor_shape(op.input)
    return math.prod(shape[d] for d in op.reduced_dims) <= MAX_SMALL_REDUCTION


def plan_loop_groups(block: Block) -> list[LoopGroup]:
    dataflow = dataflow_graph(block)
    position = {op: i for i, op in enumerate(block.ops)}
    group_of: dict[Operation, LoopGroup] = {}
    groups: list[LoopGroup] = []
    for op in block.ops:
        if not isinstance(op, graph.PointwiseOp | graph.ReduceOp | graph.ConcatOp):
            continue
        chosen = None
        for operand in op.operands:
            candidate = group_of.get(operand.owner)  # type: ignore[arg-type]
            if (
                candidate is not None
                and _fits(candidate, op)
                and can_contract(
                    dataflow, [*candidate.members, op], _Contracted(group_of, candidate)
                )
            ):
                chosen = candidate
                break
        if chosen is None:
            chosen = _sibling_reduction(op, groups, dataflow)
        if chosen is None:
            chosen = LoopGroup(_iteration_shape(op))
            groups.append(chosen)
        chosen.members.append(op)
        if isinstance(op, graph.ReduceOp):
            chosen.reduce_dims = op.reduced_dims
        group_of[op] = chosen
        # an op reading two groups (x * cos + rotate_half(x) * sin) joins them into one;
        # so does per-row work with the reduction it combines with
        for operand in op.operands:
            other = group_of.get(operand.owner)  # type: ignore[arg-type]
            if other is None or other is chosen:
                continue
            row_work = _row_work_of(chosen, other)
            small = None if row_work else _small_reduction_of(chosen, other)
            if not (_mergeable(chosen, other) or row_work or small):
                continue
            if not can_contract(
                dataflow, [*chosen.members, *other.members], _Contracted(group_of, chosen, other)
            ):
                continue
            keep, gone = row_work or small or (chosen, other)
            keep.members = sorted([*keep.members, *gone.members], key=position.__getitem__)
            keep.reduce_dims = keep.reduce_dims or gone.reduce_dims
            for member in gone.members:
                group_of[member] = keep
            groups.remove(gone)
            chosen = keep
    return _recompute_in_consumers(_merge_siblings(groups, dataflow, position), position)


class _Contracted:
    """The other loop groups, each to become one kernel, for `can_contract`: an op of
    one of them -> all of its members (the groups in `merging` are left out)."""

    def __init__(self, group_of: dict[Operation, LoopGroup], *merging: LoopGroup) -> None:
        self.group_of = group_of
        self.merging = merging

    def get(self, op: Operation, default: Collection[Operation] = (), /) -> Collection[Operation]:
        group = self.group_of.get(op)
        if group is None or any(group is m for m in self.merging):
            return default
        return group.members


def _recompute_in_consumers(
    groups: list[LoopGroup], position: dict[Operation, int]
) -> list[LoopGroup]:
    """A pointwise op whose every user is in one other loop kernel, and whose operands
    that kernel can read (values its own kernel stores anyway, or values from outside),
    moves to that kernel: recomputing 2 * h where it is used costs no memory traffic,
    storing it costs a write and a read (a norm backward's 2x of the mean of squares)."""
    group_of = {op: g for g in groups for op in g.members}
    moved = True
    while moved:
        moved = False
        for group in groups:
            for op in list(group.members):
                target = _recompute_target(op, group, group_of)
                if target is None:
                    continue
                group.members.remove(op)
                target.members = sorted([*target.members, op], key=position.__getitem__)
                group_of[op] = target
                moved = True
    return [g for g in groups if g.members]


def _recompute_target(
    op: Operation, group: LoopGroup, group_of: dict[Operation, LoopGroup]
) -> LoopGroup | None:
    if not isinstance(op, graph.PointwiseOp) or _iteration_shape(op) != group.shape:
        return None
    targets = {
        id(group_of.get(use.operation)): group_of.get(use.operation) for use in op.result.uses
    }
    if len(targets) != 1:
        return None
    (target,) = targets.values()
    if target is None or target is group or target.shape != group.shape:
        return None
    if any(isinstance(m, graph.ConcatOp) for m in target.members):
        return None  # a concat reads its pieces from memory
    for operand in op.inputs:
        owner = operand.owner
        if group_of.get(owner) is group and all(  # type: ignore[arg-type]
            group_of.get(use.operation) is group for use in operand.uses
        ):
            return None  # the operand is not stored: moving the op would store it
    return target


def _sibling_reduction(
    op: Operation, groups: list[LoopGroup], dataflow: nx.DiGraph
) -> LoopGroup | None:
    """A group `op`, a reduction, joins as a sibling at once (not only in
    `_merge_siblings`): same shape and reduced dims, a shared producer, no edge between
    them. Then an op reading both reductions (the loss `logsumexp - target logit` from
    one GEMM's two partials) finds them in one group and runs in the same kernel."""
    if not isinstance(op, graph.ReduceOp):
        return None
    probe = LoopGroup(_iteration_shape(op), [op], op.reduced_dims)
    for group in groups:
        if (group.shape, group.reduce_dims) != (probe.shape, probe.reduce_dims):
            continue
        if any(isinstance(m, graph.ConcatOp) for m in group.members):
            continue
        if group.small_reductions():
            continue  # small reductions and a pointwise pass only
        if not _sources(group) & _sources(probe):
            continue
        if any(dataflow.has_edge(m, op) or dataflow.has_edge(op, m) for m in group.members):
            continue
        if can_contract(dataflow, [*group.members, op]):
            return group
    return None


def _sources(group: LoopGroup) -> set[object]:
    """What a group reads from outside: producing ops (seen through views) and block
    arguments; constants are free and do not count."""
    members = set(group.members)
    found: set[object] = set()
    for op in group.members:
        for value in op.operands:
            while isinstance(value.owner, graph.ViewOp):
                value = value.owner.input
            owner = value.owner
            if owner in members or isinstance(owner, graph.ConstantOp):
                continue
            found.add(owner if isinstance(owner, Operation) else value)
    return found


def _merge_siblings(
    groups: list[LoopGroup], dataflow: nx.DiGraph, position: dict[Operation, int]
) -> list[LoopGroup]:
    """Independent loop groups over one iteration shape (and the same reduced dims)
    that read the same producer run as one kernel: the four row and column sums of a
    LayerNorm backward read the outputs of one GEMM, so they are one launch, not four."""
    merged: list[LoopGroup] = []
    for index, group in enumerate(groups):
        for other in merged:
            if (other.shape, other.reduce_dims) != (group.shape, group.reduce_dims):
                continue
            if _mixes_reductions(other, group):
                continue
            if not _sources(other) & _sources(group):
                continue
            members = [*other.members, *group.members]
            if any(
                dataflow.has_edge(a, b) or dataflow.has_edge(b, a)
                for a in other.members
                for b in group.members
            ):
                continue  # a consumer, not a sibling: the grouping rules decide those
            rest = [g for g in (*merged, *groups[index + 1 :]) if g is not other]
            group_of = {op: g for g in rest for op in g.members}
            if not can_contract(dataflow, members, _Contracted(group_of)):
                continue
            other.members = sorted(members, key=position.__getitem__)
            break
        else:
            merged.append(group)
    return merged


def _view_chains(op: Operation) -> list[graph.ViewOp]:
    """The views `op` reads through, transitively, producers first."""
    views: list[graph.ViewOp] = []

    def visit(value: SSAValue) -> None:
        view = value.owner
        if isinstance(view, graph.ViewOp) and view not in views:
            visit(view.input)
            views.append(view)

    for operand in op.operands:
        visit(operand)
    return views


def _prologue(gemm: epilogue.GemmOp) -> list[Operation]:
    """The pointwise ops fuse-prologues left on the GEMM's product operands (each in its
    operand's shape) and the concatenations concat-projections made, with the views
    and constants they read, producers first: they are cloned into the kernel, which
    computes them on each tile its mainloop loads."""
    ops: list[Operation] = []

    def qualifies(op: Operation, shape: tuple[int, ...]) -> bool:
        if not (
            isinstance(op, graph.PointwiseOp)
            and op.fn.data in PROLOGUE_FNS
            and graph.tensor_shape(op.result) == shape
        ):
            return False
        return all(
            graph.tensor_shape(v) == ()
            if isinstance(v.owner, graph.ConstantOp)
            else qualifies(v.owner, shape)
            if isinstance(v.owner, graph.PointwiseOp)
            else graph.tensor_shape(v) == shape
            for v in op.inputs
        )

    def visit(op: Operation) -> None:
        for value in op.operands:
            views: list[Operation] = []
            while isinstance(value.owner, graph.ViewOp):
                views.insert(0, value.owner)
                value = value.owner.input
            if isinstance(value.owner, graph.PointwiseOp | graph.ConstantOp) and not views:
                visit(value.owner)
            ops.extend(v for v in views if v not in ops)
        if op not in ops:
            ops.append(op)

    for value in gemm.products:
        owner = value.owner
        # only a value GEMM mainloops alone read: one the epilogue also takes as an input
        # (a residual of the product's own operand) is read from memory by both
        if (
            isinstance(owner, Operation)
            and qualifies(owner, graph.tensor_shape(value))
            and feeds_gemm_operands_only(value)
        ):
            visit(owner)
        elif isinstance(owner, graph.ConcatOp) and all(
            use.operation is gemm for use in value.uses
        ):  # weights of different widths (concat-projections): read piece by piece
            visit(owner)
    return ops


def _outline(
    kind: type[kernel.KernelOp],
    label: str,
    members: Sequence[Operation],
    block: Block,
    cloned: Sequence[Operation] = (),
) -> kernel.KernelOp:
    """Move `members` into a new isolated kernel op placed after the last member; the
    pure ops `cloned` (producers first) are copied in front of them, not moved."""
    member_set = set(members) | set(cloned)
    inputs: list[SSAValue] = []
    constants: list[graph.ConstantOp] = []
    for op in [*cloned, *members]:
        for operand in op.operands:
            owner = operand.owner
            if owner in member_set or operand in inputs:
                continue
            if isinstance(owner, graph.ConstantOp) and kind is kernel.LoopKernelOp:
                if owner not in constants:
                    constants.append(owner)
            else:
                inputs.append(operand)
    results = users_outside([r for op in members for r in op.results], member_set)
    if kind is kernel.AttentionKernelOp:
        # the templates write every result (an unused lse costs S floats per head)
        results = [r for op in members for r in op.results]
    body = Block(arg_types=[v.type for v in inputs])
    mapping: dict[SSAValue, SSAValue] = {}
    for outer, arg in zip(inputs, body.args, strict=True):
        mapping[outer] = arg
        arg.name_hint = outer.name_hint
    for const in constants:
        clone = const.clone()
        body.add_op(clone)
        mapping[const.result] = clone.result
    for op in [*cloned, *members]:
        clone = op.clone(value_mapper=mapping)
        body.add_op(clone)
        for old, new in zip(op.results, clone.results, strict=True):
            mapping[old] = new
    body.add_op(kernel.YieldOp([mapping[v] for v in results]))
    new = kind(label, inputs, [v.type for v in results], Region(body))
    block.insert_op_after(new, members[-1])
    for old, replacement in zip(results, new.results, strict=True):
        replacement.name_hint = old.name_hint
        old.replace_all_uses_with(replacement)
    for op in reversed(members):
        op.detach()
        op.erase()
    for op in reversed(cloned):
        if not any(r.uses for r in op.results):
            block.erase_op(op)
    return new


def _gemm_label(gemm: epilogue.GemmOp) -> str:
    labels = []
    for op in gemm.body.block.ops:
        if isinstance(op, epilogue.MapOp) and op.fn.data != "cast":
            labels.append("bias" if op.fn.data == "add" else op.fn.data)
        elif isinstance(op, epilogue.AccumulateOp):
            labels.append("residual")
        elif isinstance(op, epilogue.ScaleOp):
            labels.append("scale")
        elif isinstance(op, epilogue.ReduceOp):
            labels.append(op.kind.data)
    return "_".join(dict.fromkeys(labels))


def _loop_label(members: Sequence[Operation]) -> str:
    labels = [
        op.fn.data
        if isinstance(op, graph.PointwiseOp)
        else op.kind.data
        if isinstance(op, graph.ReduceOp)
        else "concat"
        for op in members
    ]
    return "_".join(list(dict.fromkeys(labels))[:4])


def _attention_label(op: graph.AttentionOp | graph.AttentionBackwardOp) -> str:
    heads = (graph.tensor_shape(op.query)[1], graph.tensor_shape(op.key)[1])
    labels = ["backward"] if isinstance(op, graph.AttentionBackwardOp) else []
    labels += ["causal"] if op.is_causal else []
    labels += ["mask"] if op.mask is not None else []
    labels += ["gqa"] if heads[0] != heads[1] else []
    labels += ["rotary"] if op.rotary is not None else []
    return "_".join(labels)


_PREFIXES = {"gemm": "gemm", "loop": "loop", "attention": "attn", "fallback": "torch"}


def number_kernels(block: Block) -> None:
    """Name kernels `<kind><position>_<label>` in launch order."""
    kernels = [op for op in block.ops if isinstance(op, kernel.KernelOp)]
    for index, op in enumerate(kernels):
        prefix = _PREFIXES[op.KIND]
        # renumbering an already split module keeps the labels, not the old numbers
        label = re.sub(rf"^{prefix}\d+_?", "", op.kernel_name)
        op.sym_name = StringAttr(f"{prefix}{index}_{label}" if label else f"{prefix}{index}")


def _fresh_buffer(value: SSAValue) -> bool:
    """`value` will be a contiguous buffer that a generated kernel writes."""
    return isinstance(
        value.owner,
        kernel.GemmKernelOp
        | kernel.AttentionKernelOp
        | graph.PointwiseOp
        | graph.ReduceOp
        | graph.ConcatOp,
    )


def _store_through_views(op: kernel.GemmKernelOp, block: Block) -> kernel.GemmKernelOp:
    """Let a GEMM write each result in the layout its users read: when a result is only
    read through reshapes and a permute (a head split `[B*S, H*D] -> [B, H, S, D]`),
    the kernel yields that view, stored through the inverse layout into a buffer that
    is contiguous in the users' order. Attention then reads q, k, v contiguously, and a
    later merge `[B, H, S, D] -> [B*H, S, D]` is a plain view instead of a copy."""
    chains: dict[int, list[graph.ViewOp]] = {}
    for index, result in enumerate(op.results):
        chain: list[graph.ViewOp] = []
        value: SSAValue = result
        while value.uses.get_length() == 1:
            user = next(iter(value.uses)).operation
            if not (isinstance(user, graph.ViewOp) and user.kind.data in ("reshape", "permute")):
                break
            chain.append(user)
            value = user.result
        permutes = [v for v in chain if v.kind.data == "permute"]
        if any(v.permutation != tuple(range(len(v.permutation))) for v in permutes):
            chains[index] = chain
    if not chains:
        return op
    body = op.body.block
    yielded = list(body.last_op.operands)
    for index, chain in chains.items():
        value = yielded[index]
        for view in chain:
            clone = view.clone(value_mapper={view.input: value})
            body.insert_op_before(clone, body.last_op)
            value = clone.result
        yielded[index] = value
    body.last_op.operands = yielded
    new = kernel.GemmKernelOp(op.kernel_name, list(op.inputs), [v.type for v in yielded], Region())
    op.body.move_blocks(new.body)
    block.insert_op_after(new, op)
    for index, (old, result) in enumerate(zip(op.results, new.results, strict=True)):
        chain = chains.get(index)
        if chain is None:
            result.name_hint = old.name_hint
            old.replace_all_uses_with(result)
            continue
        result.name_hint = chain[-1].result.name_hint
        chain[-1].result.replace_all_uses_with(result)
        for view in reversed(chain):
            block.erase_op(view)
    block.erase_op(op)
    return new


def _needs_tensor(value: SSAValue) -> bool:
    """Something outside generated kernels reads `value` (a return, a torch fallback):
    it must be a real strided tensor. Kernels read views through their layouts."""
    for use in value.uses:
        user = use.operation
        if isinstance(user, graph.ViewOp):
            if _needs_tensor(user.result):
                return True
        elif not isinstance(user, graph.PointwiseOp | graph.ReduceOp | graph.ConcatOp):
            return True
    return False


def _copy_reshapes_that_move_data(block: Block) -> None:
    """A reshape that no strides can express (merging dims that a permute moved apart),
    read outside generated kernels, reads through a `copy` loop kernel: the data moves
    in a kernel we generate and count, not in a torch call behind the IR's back. Views
    of graph inputs and fallback results have strides only known at run time: there the
    runtime copies if it must, and logs it."""
    for view in [op for op in block.ops if isinstance(op, graph.ViewOp)]:
        root = view.result
        while isinstance(root.owner, graph.ViewOp):
            root = root.owner.input
        if view.kind.data != "reshape" or not _fresh_buffer(root):
            continue
        if not _needs_tensor(view.result) or is_strided_view(view.result):
            continue
        copy = graph.PointwiseOp("copy", [view.input], view.input.type)
        block.insert_op_before(copy, view)
        view.operands[0] = copy.result


def split_block(block: Block) -> None:
    # a matmul nothing was fused into is a GEMM with a store-only epilogue
    for matmul in [op for op in block.ops if isinstance(op, graph.MatmulOp)]:
        fuse_group(EpilogueGroup(matmul, [matmul]), block)
    for gemm in [op for op in block.ops if isinstance(op, epilogue.GemmOp)]:
        cloned = list(dict.fromkeys([*_prologue(gemm), *_view_chains(gemm)]))
        outlined = _outline(kernel.GemmKernelOp, _gemm_label(gemm), [gemm], block, cloned)
        assert isinstance(outlined, kernel.GemmKernelOp)
        _store_through_views(outlined, block)
    attention = graph.AttentionOp | graph.AttentionBackwardOp
    for op in [op for op in block.ops if isinstance(op, attention)]:
        label = _attention_label(op)
        _outline(kernel.AttentionKernelOp, label, [op], block, _view_chains(op))
    for opaque in [op for op in block.ops if isinstance(op, graph.OpaqueOp)]:
        label = opaque.target.data.split(".")[1] if "." in opaque.target.data else "op"
        _outline(kernel.FallbackKernelOp, label, [opaque], block)
    _copy_reshapes_that_move_data(block)
    for group in plan_loop_groups(block):
        views = [v for op in group.members for v in _view_chains(op)]
        label = _loop_label(group.members)
        _outline(kernel.LoopKernelOp, label, group.members, block, list(dict.fromkeys(views)))
    topological_reorder(block)
    number_kernels(block)
    for op in reversed(list(block.ops)):
        if isinstance(op, graph.ConstantOp) and not op.result.uses:
            block.erase_op(op)


@dataclass(frozen=True)
class SplitBlocks(ModulePass):
    name = "split-blocks"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            split_block(block)
