"""Which ops share a GEMM's kernel: the grouping rules of fuse-epilogues.

A group grows from one `graph.matmul`, one op at a time:
  - an elementwise op joins when it uses a value of the group, produces a full output
    tile (or the tile's rows regrouped, `[B*S, N]` viewed as `[B, S, N]`), and its other
    operands are constants or tensors that broadcast over the tile as a tile, row,
    column or scalar (bias, residual, saved activation);
  - another matmul joins as a further accumulator when it has the same output shape
    and shares an operand in the same role and the contraction size (q/k/v or gate/up
    of the same rows), or an elementwise op combines its result with the group's
    (SwiGLU's silu(gate) * up, a sum of input gradients); matmuls are offered first;
  - an elementwise producer joins when all its users are in the group and the
    epilogue can read its operands (silu(gate), recomputed from the gate it reads);
  - a sum, mean, max or logsumexp of a group tile over its last dim joins when one
    program holds
    whole rows (N <= epilogue.FULL_ROW_MAX): a column value, which elementwise ops of
    columns (rstd = rsqrt(mean + eps)) and of tiles (dx = t + c * x) then use;
and never when contracting the group would create a cycle (networkx decides). A tree
of `add`s over matmuls whose values have no other use is one accumulator: a GEMM over
the concatenated K.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import networkx as nx
from xdsl.ir import Block, Operation, SSAValue

from coda.dialects import epilogue, graph
from coda.passes.dataflow import can_contract, dataflow_graph


def is_splat_constant(value: SSAValue) -> bool:
    return isinstance(value.owner, graph.ConstantOp)


def input_kind(value: SSAValue, out_shape: tuple[int, ...]) -> str | None:
    return epilogue.classify_input(graph.tensor_shape(value), out_shape)


def regroups_rows(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """`shape` holds the output tile's rows regrouped: same last dim and element count."""
    return bool(shape) and shape[-1] == out_shape[-1] and prod(shape) == prod(out_shape)


def regrouping_views(value: SSAValue, out_shape: tuple[int, ...]) -> list[graph.ViewOp]:
    """The reshapes of `value`, transitively, that only regroup the tile's rows: on chip
    they are the same tile."""
    views: list[graph.ViewOp] = []
    values = [value]
    for current in values:
        for use in current.uses:
            op = use.operation
            if isinstance(op, graph.ViewOp) and op.kind.data == "reshape":
                if regroups_rows(graph.tensor_shape(op.result), out_shape):
                    views.append(op)
                    values.append(op.result)
    return views


def _stripped(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape without leading 1s (they broadcast away)."""
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def regrouped_input(
    shape: tuple[int, ...], value_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """How an operand of `shape`, broadcast over a `value_shape` that regroups the rows
    of `out_shape`, is viewed as an epilogue input: (expand to, reshape to), or None
    when it needs no view (a row vector or a scalar broadcasts the same either way)."""
    if len(_stripped(shape)) <= 1:
        return None
    if shape[-1] == 1:  # one value per row: a column
        return (*value_shape[:-1], 1), (*out_shape[:-1], 1)
    return value_shape, out_shape


@dataclass
class EpilogueGroup:
    """Matmuls and the elementwise ops absorbed into their epilogue, in program order.

    Several matmuls share one kernel when they share its output tile and either an
    operand in the same role (q/k/v of the same rows, gate and up) or a consumer that
    joins the group (the sum of input gradients of projections that share an input):
    they are merged horizontally instead of reading the shared operand once per GEMM
    and writing what the epilogue of the other reads back."""

    matmul: graph.MatmulOp
    members: list[Operation]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return graph.tensor_shape(self.matmul.result)

    @property
    def matmuls(self) -> list[graph.MatmulOp]:
        return [op for op in self.members if isinstance(op, graph.MatmulOp)]

    def accepts(self, op: Operation, dataflow) -> bool:
        if op in self.members:
            return False
        if isinstance(op, graph.MatmulOp):
            return self._merges(op, dataflow)
        member_set = set(self.members)
        if isinstance(op, graph.ViewOp):
            return (
                op.kind.data == "reshape"
                and op.input.owner in member_set
                and regroups_rows(graph.tensor_shape(op.result), self.out_shape)
            )
        if isinstance(op, graph.ReduceOp):
            return self._reduces_whole_rows(op) and can_contract(dataflow, [*self.members, op])
        if not isinstance(op, graph.PointwiseOp):
            return False
        shape = graph.tensor_shape(op.result)
        if not (regroups_rows(shape, self.out_shape) or self._is_column(shape)):
            return False
        uses_group = False
        for operand in op.inputs:
            if operand.owner in member_set:
                operand_shape = graph.tensor_shape(operand)
                # a group value of the op's shape, or a group column broadcast over rows
                uses_group = operand_shape == shape or (
                    self._is_column(operand_shape) and operand_shape == (*shape[:-1], 1)
                )
                if not uses_group:  # a group value broadcast against something bigger
                    return False
            elif not is_splat_constant(operand) and not self._takes_input(operand, shape):
                return False
        return uses_group and can_contract(dataflow, [*self.members, op])

    def _is_column(self, shape: tuple[int, ...]) -> bool:
        """One value per row of the tile (its rows regrouped, [B, S, 1])."""
        rows = prod(self.out_shape[:-1])
        return bool(shape) and shape[-1] == 1 and prod(shape) == rows and self.out_shape[-1] != 1

    def _reduces_whole_rows(self, op: graph.ReduceOp) -> bool:
        """A sum, mean, max or logsumexp over the last dim of a group tile, kept as a
        column, when
        one program can hold whole rows (N <= FULL_ROW_MAX): the statistic is complete
        in the epilogue (epilogue.row_reduce), and what uses it can run there too."""
        shape = graph.tensor_shape(op.input)
        return (
            op.kind.data in ("sum", "mean", "amax", "logsumexp")
            and op.keepdim is not None
            and op.reduced_dims == (len(shape) - 1,)
            and op.input.owner in set(self.members)
            and regroups_rows(shape, self.out_shape)
            and self.out_shape[-1] <= epilogue.FULL_ROW_MAX
        )

    def _merges(self, matmul: graph.MatmulOp, dataflow) -> bool:
        """Whether `matmul` joins as another accumulator (see the class docstring)."""
        if graph.tensor_shape(matmul.result) != self.out_shape:
            return False
        contraction = graph.tensor_shape(matmul.lhs)[-1]
        shares = any(
            (mine.lhs == matmul.lhs or mine.rhs == matmul.rhs)
            and graph.tensor_shape(mine.lhs)[-1] == contraction
            for mine in self.matmuls
        )
        consumed_with_group = self._consumed_with_group(matmul, dataflow)
        if not (shares or consumed_with_group):
            return False
        # its operands are read by the mainloop: nothing of the group may feed them
        if any(nx.has_path(dataflow, member, matmul) for member in self.members):
            return False
        return can_contract(dataflow, [*self.members, matmul])

    def _consumed_with_group(self, matmul: graph.MatmulOp, dataflow) -> bool:
        """Whether an elementwise op combines `matmul`'s result (or a regrouping of its
        rows) with a value of the group, and would join the group with it."""
        views = regrouping_views(matmul.result, self.out_shape)
        values = [matmul.result, *(view.result for view in views)]
        trial = EpilogueGroup(self.matmul, [*self.members, matmul, *views])
        member_set = set(self.members)
        return any(
            isinstance(use.operation, graph.PointwiseOp)
            and any(v.owner in member_set for v in use.operation.operands)
            and trial.accepts(use.operation, dataflow)
            for value in values
            for use in value.uses
        )

    def absorbs(self, op: Operation, dataflow) -> list[Operation]:
        """`op` and the reshapes regrouping its rows, if the group can compute `op` on
        chip from its operands: an elementwise op every use of which (directly or
        through those reshapes) is in the group, whose operands the epilogue can read
        (silu(gate) recomputed from the gate the epilogue reads anyway, instead of a
        kernel that writes it for the GEMM to read back). [] when it cannot."""
        if op in self.members or not isinstance(op, graph.PointwiseOp):
            return []
        shape = graph.tensor_shape(op.result)
        if not (regroups_rows(shape, self.out_shape) or self._is_column(shape)):
            return []
        views = regrouping_views(op.result, self.out_shape)
        values = [op.result, *(view.result for view in views)]
        member_set = set(self.members) | set(views)
        users = {use.operation for value in values for use in value.uses}
        if not users & set(self.members) or not users <= member_set:
            return []
        if any(isinstance(user, graph.MatmulOp) for user in users):
            return []  # a mainloop operand is read from memory, not from the epilogue
        for operand in op.inputs:
            if operand.owner in member_set:
                return []  # a consumer, not a producer: `accepts` decides
            if not is_splat_constant(operand) and not self._takes_input(operand, shape):
                return []
        joining = [op, *views]
        return joining if can_contract(dataflow, [*self.members, *joining]) else []

    def _takes_input(self, operand: SSAValue, shape: tuple[int, ...]) -> bool:
        """Whether `operand`, broadcast over a value of `shape`, can be an epilogue input."""
        operand_shape = graph.tensor_shape(operand)
        if shape == self.out_shape:
            return input_kind(operand, self.out_shape) is not None
        if graph.broadcast_shapes(operand_shape, shape) != shape:
            return False
        view = regrouped_input(operand_shape, shape, self.out_shape)
        target = operand_shape if view is None else view[1]
        return epilogue.classify_input(target, self.out_shape) is not None


def grow_group(matmul: graph.MatmulOp, block: Block) -> EpilogueGroup:
    """The group of `matmul`, grown one op at a time. Matmuls are offered first after
    every step: a sum of two GEMMs must adopt the second GEMM before the sum could take
    its result as an input tile."""
    group = EpilogueGroup(matmul, [matmul])
    dataflow = dataflow_graph(block)
    ops = list(block.ops)
    position = {op: index for index, op in enumerate(ops)}
    matmuls = [op for op in ops if isinstance(op, graph.MatmulOp)]
    while True:
        joining = next((op for op in matmuls if group.accepts(op, dataflow)), None)
        consumers = _consumers(group, position)
        joining = joining or next((op for op in consumers if group.accepts(op, dataflow)), None)
        if joining is not None:
            group.members.append(joining)
            continue
        producers = _producers(group, position)
        producer = next((j for op in producers if (j := group.absorbs(op, dataflow))), None)
        if producer is None:
            break
        group.members += producer
    # program order: a producer absorbed late is still computed before its users
    group.members.sort(key=position.__getitem__)
    _leave_recomputable_leaves(group)
    return group


def _consumers(group: EpilogueGroup, position: dict[Operation, int]) -> list[Operation]:
    """The non-matmul ops using a value of the group, in program order: the only ones
    `accepts` can take (an elementwise op, view or reduction must read the group)."""
    members = set(group.members)
    users = {
        use.operation
        for op in group.members
        for result in op.results
        for use in result.uses
        if use.operation in position
        and use.operation not in members
        and not isinstance(use.operation, graph.MatmulOp)
    }
    return sorted(users, key=position.__getitem__)


def _producers(group: EpilogueGroup, position: dict[Operation, int]) -> list[Operation]:
    """The non-matmul ops whose results the group reads, directly or through reshapes,
    in program order: the only ones `absorbs` can take (a member must use them)."""
    members = set(group.members)
    found: set[Operation] = set()
    todo = [operand.owner for op in group.members for operand in op.operands]
    while todo:
        owner = todo.pop()
        if not isinstance(owner, Operation) or owner in found or owner in members:
            continue
        if owner not in position or isinstance(owner, graph.MatmulOp):
            continue  # another block's op, or a mainloop operand
        found.add(owner)
        if isinstance(owner, graph.ViewOp):  # a member may read a regrouping of it
            todo.append(owner.input.owner)
    return sorted(found, key=position.__getitem__)


def _leave_recomputable_leaves(group: EpilogueGroup) -> None:
    """Drop members that the epilogue would only store for loop kernels which can
    compute them from a value the epilogue stores anyway: h^2 of a residual stream h,
    written for the RMSNorm that reads h too, costs a write and a read; left outside,
    it is recomputed by the norm's loop kernel. Only unary ops read by reductions alone
    (the reduction's kernel then reads h instead of h^2, and computes h^2 in its loop)."""
    changed = True
    while changed:
        changed = False
        member_set = set(group.members)
        for op in reversed(group.members):
            if not isinstance(op, graph.PointwiseOp):
                continue
            users = [use.operation for use in op.result.uses]
            if not users or any(user in member_set for user in users):
                continue  # a leaf of the group: nothing inside reads it
            if not all(isinstance(user, graph.ReduceOp) for user in users):
                continue
            tensors = [v for v in op.inputs if not is_splat_constant(v)]
            if len(tensors) != 1 or tensors[0].owner not in member_set:
                continue
            source = tensors[0]
            stored = any(use.operation not in member_set for use in source.uses)
            if not stored or isinstance(source.owner, graph.MatmulOp):
                continue  # h itself is not written (or is the raw accumulator)
            group.members.remove(op)
            changed = True
            break


def single_use(value: SSAValue) -> bool:
    return value.uses.get_length() == 1


@dataclass
class SumTree:
    """`root` = a tree of `add`s over matmuls (seen through reshapes that regroup rows)
    whose inner values have no other use."""

    root: graph.PointwiseOp
    leaves: list[graph.MatmulOp]
    inner: list[Operation]  # the adds and views below the root


def summed_matmuls(group: EpilogueGroup) -> list[SumTree]:
    """The group's sums of matmuls. Each becomes one accumulator summing their products
    (a GEMM over concatenated K), instead of one accumulator per matmul."""
    member_set = set(group.members)
    elem = group.matmul.result.type.element_type
    trees: dict[Operation, SumTree] = {}

    def summand(value: SSAValue) -> tuple[list[graph.MatmulOp], list[Operation]] | None:
        """(matmuls, ops between them and `value`) if `value` is a single-use sum."""
        owner = value.owner
        if not (single_use(value) and owner in member_set):
            return None
        if isinstance(owner, graph.MatmulOp):
            return [owner], []
        if owner in trees:
            tree = trees[owner]
            return tree.leaves, [*tree.inner, tree.root]
        if isinstance(owner, graph.ViewOp):  # a regrouping of the rows: the same tile
            below = summand(owner.input)
            return None if below is None else (below[0], [*below[1], owner])
        return None

    for op in group.members:
        if not (isinstance(op, graph.PointwiseOp) and op.fn.data == "add"):
            continue
        if op.result.type.element_type != elem or len(op.inputs) != 2:
            continue
        sides = [summand(v) for v in op.inputs]
        if None in sides or op.inputs[0].type != op.inputs[1].type:
            continue
        tree = SumTree(op, [], [])
        for leaves, inner in sides:  # type: ignore[misc]
            tree.leaves += leaves
            tree.inner += inner
        for sub in [o for o in tree.inner if o in trees]:
            del trees[sub]
        trees[op] = tree
    return list(trees.values())
