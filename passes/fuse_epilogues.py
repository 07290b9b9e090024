"""fuse-epilogues: absorb the elementwise consumers of each GEMM into its epilogue.

For every `graph.matmul`, in program order, the pass grows a group: an elementwise
op joins when it uses a value of the group, produces a full output tile, and each of
its other operands is a constant or a tensor that broadcasts over the tile as a
tile, row, column or scalar (bias, residual, saved activation). A candidate is
rejected when joining would create a cycle (one of its operands depends on the group
through ops outside it; checked with networkx). The group becomes one
`epilogue.gemm`; every group value used outside it is stored as a result.

Matmuls join a group too, as further accumulators of one kernel (horizontal merging):
a matmul with the same output shape that shares an operand in the same role and the
contraction size with a member (q/k/v or gate/up projections of the same rows), or
whose result an elementwise op combines with a group value (SwiGLU's silu(gate) * up,
the sum of input gradients). The user's weights stay where they are: the kernel reads
each through its own pointer, so nothing is concatenated and gradients need no mapping
back. A tree of `add`s over matmuls whose values have no other use becomes a single
accumulator summing their products, i.e. a GEMM over the concatenated K.

Elementwise ops are chosen by primitive: `add` of two tiles is `accumulate`, `mul` of
a tile by a row, column or scalar is `scale`, everything else is `map`.

The group also sees through reshapes that regroup the output's rows (same last dim,
same element count: a Linear on a `[B, S, D]` input computes `[B*S, N]` and views it
as `[B, S, N]`). Such a reshape is the same tile, so a residual add or activation on
the `[B, S, N]` view still joins; its other operands are viewed in the output's shape
(`expand` then `reshape`, read in place by the kernel), and results used outside in
the regrouped shape get a reshape after the GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import networkx as nx
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.dialects.func import FuncOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph
from coda.passes.dataflow import can_contract, dataflow_graph, topological_reorder, users_outside


def _is_splat_constant(value: SSAValue) -> bool:
    return isinstance(value.owner, graph.ConstantOp)


def _input_kind(value: SSAValue, out_shape: tuple[int, ...]) -> str | None:
    return epilogue.classify_input(graph.tensor_shape(value), out_shape)


def _regroups_rows(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """`shape` holds the output tile's rows regrouped: same last dim and element count."""
    return bool(shape) and shape[-1] == out_shape[-1] and prod(shape) == prod(out_shape)


def _stripped(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape without leading 1s (they broadcast away)."""
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _regrouped_input(
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
                and _regroups_rows(graph.tensor_shape(op.result), self.out_shape)
            )
        if not isinstance(op, graph.PointwiseOp):
            return False
        shape = graph.tensor_shape(op.result)
        if not _regroups_rows(shape, self.out_shape):
            return False
        uses_group = False
        for operand in op.inputs:
            if operand.owner in member_set:
                uses_group = graph.tensor_shape(operand) == shape
                if not uses_group:  # a group value broadcast against something bigger
                    return False
            elif not _is_splat_constant(operand) and not self._takes_input(operand, shape):
                return False
        return uses_group and can_contract(dataflow, [*self.members, op])

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
        views: list[Operation] = []
        values = [matmul.result]
        for value in values:
            for use in value.uses:
                op = use.operation
                if isinstance(op, graph.ViewOp) and op.kind.data == "reshape":
                    if _regroups_rows(graph.tensor_shape(op.result), self.out_shape):
                        views.append(op)
                        values.append(op.result)
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
        if not _regroups_rows(shape, self.out_shape):
            return []
        views: list[Operation] = []
        values = [op.result]
        member_set = set(self.members)
        for value in values:
            for use in value.uses:
                user = use.operation
                if isinstance(user, graph.MatmulOp):
                    return []  # a mainloop operand is read from memory, not the epilogue
                if user in member_set:
                    continue
                if not (isinstance(user, graph.ViewOp) and user.kind.data == "reshape"):
                    return []
                if not _regroups_rows(graph.tensor_shape(user.result), self.out_shape):
                    return []
                views.append(user)
                values.append(user.result)
        if not any(use.operation in member_set for value in values for use in value.uses):
            return []
        for operand in op.inputs:
            if operand.owner in member_set:
                return []  # a consumer, not a producer: `accepts` decides
            if not _is_splat_constant(operand) and not self._takes_input(operand, shape):
                return []
        joining = [op, *views]
        return joining if can_contract(dataflow, [*self.members, *joining]) else []

    def _takes_input(self, operand: SSAValue, shape: tuple[int, ...]) -> bool:
        """Whether `operand`, broadcast over a value of `shape`, can be an epilogue input."""
        operand_shape = graph.tensor_shape(operand)
        if shape == self.out_shape:
            return _input_kind(operand, self.out_shape) is not None
        if graph.broadcast_shapes(operand_shape, shape) != shape:
            return False
        view = _regrouped_input(operand_shape, shape, self.out_shape)
        target = operand_shape if view is None else view[1]
        return epilogue.classify_input(target, self.out_shape) is not None


def grow_group(matmul: graph.MatmulOp, block: Block) -> EpilogueGroup:
    """The group of `matmul`, grown one op at a time. Matmuls are offered first after
    every step: a sum of two GEMMs must adopt the second GEMM before the sum could take
    its result as an input tile."""
    group = EpilogueGroup(matmul, [matmul])
    dataflow = dataflow_graph(block)
    ops = list(block.ops)
    matmuls = [op for op in ops if isinstance(op, graph.MatmulOp)]
    others = [op for op in ops if not isinstance(op, graph.MatmulOp)]
    while True:
        joining = next((op for op in matmuls if group.accepts(op, dataflow)), None)
        joining = joining or next((op for op in others if group.accepts(op, dataflow)), None)
        if joining is not None:
            group.members.append(joining)
            continue
        producer = next((j for op in others if (j := group.absorbs(op, dataflow))), None)
        if producer is None:
            break
        group.members += producer
    # program order: a producer absorbed late is still computed before its users
    position = {op: index for index, op in enumerate(ops)}
    group.members.sort(key=position.__getitem__)
    return group


def _single_use(value: SSAValue) -> bool:
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
        if not (_single_use(value) and owner in member_set):
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


class _EpilogueBuilder:
    """Translates a group's elementwise ops into an epilogue region."""

    def __init__(self, group: EpilogueGroup, block: Block):
        self.group = group
        members = set(group.members)
        out_shape = group.out_shape
        # accumulators: a tree of adds of matmuls sums into one, other matmuls have one each
        trees = summed_matmuls(group)
        summed = {leaf for tree in trees for leaf in tree.leaves}
        self.accumulators: list[tuple[SSAValue, list[graph.MatmulOp]]] = [
            (tree.root.result, tree.leaves) for tree in trees
        ] + [(m.result, [m]) for m in group.matmuls if m not in summed]
        self.accumulators.sort(key=lambda acc: group.members.index(acc[1][0]))
        # the adds of a sum are the accumulator itself, not epilogue ops
        adds = {add for tree in trees for add in (tree.root, *tree.inner)}
        self.elementwise = [
            op for op in group.members if not isinstance(op, graph.MatmulOp) and op not in adds
        ]
        self.inputs: list[SSAValue] = []
        # operand of a member -> the value the epilogue reads (a view of it, if regrouped)
        self.viewed: dict[tuple[Operation, SSAValue], SSAValue] = {}
        for op in self.elementwise:
            for operand in op.operands:
                if operand.owner in members or _is_splat_constant(operand):
                    continue
                value = self._view_input(op, operand, block)
                self.viewed[(op, operand)] = value
                if value not in self.inputs:
                    self.inputs.append(value)
        arg_types = [
            epilogue.TILE_KINDS[_input_kind(v, out_shape)](v.type.element_type) for v in self.inputs
        ]
        count = len(self.accumulators)
        self.block = epilogue.new_epilogue_block(arg_types, count)
        for j in range(count):
            self.block.args[j].name_hint = "acc"
        self.mapped: dict[SSAValue, SSAValue] = dict(
            zip(self.inputs, self.block.args[count:], strict=True)
        )
        for arg, (value, _) in zip(self.block.args, self.accumulators, strict=False):
            self.mapped[value] = self._cast_to(arg, value.type.element_type)

    def _view_input(self, op: Operation, operand: SSAValue, block: Block) -> SSAValue:
        """`operand` as an input over the output tile: viewed into the output's shape
        (views placed before `op`) when `op` works on regrouped rows."""
        shape = graph.tensor_shape(op.results[0])
        if shape == self.group.out_shape:
            return operand
        view = _regrouped_input(graph.tensor_shape(operand), shape, self.group.out_shape)
        if view is None:
            return operand
        expand_to, reshape_to = view
        value = operand
        if graph.tensor_shape(value) != expand_to:
            value = self._view(value, "expand", expand_to, op, block)
        return self._view(value, "reshape", reshape_to, op, block)

    def _view(
        self, value: SSAValue, kind: str, shape: tuple[int, ...], op: Operation, block: Block
    ) -> SSAValue:
        """The `kind` view of `value` in `shape`, placed before `op`: an existing one if
        there is one (so that a tensor read twice is one epilogue input; it depends on
        `value` alone, which `op` already uses, so it may move up), else a new one."""
        ty = TensorType(value.type.element_type, shape)
        ops = list(block.ops)
        for use in value.uses:
            view = use.operation
            if isinstance(view, graph.ViewOp) and view.kind.data == kind and view.result.type == ty:
                if ops.index(view) > ops.index(op):
                    view.detach()
                    block.insert_op_before(view, op)
                return view.result
        new = graph.ViewOp(kind, value, ty)
        block.insert_op_before(new, op)
        return new.result

    def _emit(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def _cast_to(self, value: SSAValue, elem) -> SSAValue:
        if value.type.element_type == elem:
            return value
        return self._emit(epilogue.MapOp("cast", [value], type(value.type)(elem)))

    def _operand(self, value: SSAValue) -> SSAValue:
        if value not in self.mapped:
            const = value.owner
            assert isinstance(const, graph.ConstantOp)
            self.mapped[value] = self._emit(epilogue.ConstantOp(const.value))
        return self.mapped[value]

    def translate(self, op: graph.PointwiseOp) -> None:
        args = [self._operand(self.viewed.get((op, v), v)) for v in op.inputs]
        fn = op.fn.data
        result_type = epilogue.TileType(op.result.type.element_type)
        kinds = [a.type.kind for a in args]
        same_type = args[0].type == result_type
        if fn == "add" and kinds == ["tile", "tile"] and same_type and args[1].type == result_type:
            new = epilogue.AccumulateOp(args[0], args[1])
        elif fn == "mul" and kinds[0] == "tile" and kinds[1] != "tile" and same_type:
            new = epilogue.ScaleOp(args[0], args[1])
        elif (
            fn == "mul"
            and kinds[1] == "tile"
            and kinds[0] != "tile"
            and (args[1].type == result_type)
        ):
            new = epilogue.ScaleOp(args[1], args[0])
        else:
            new = epilogue.MapOp(fn, args, result_type)
        self.mapped[op.result] = self._emit(new)

    def build(self) -> tuple[epilogue.GemmOp, list[list[SSAValue]]]:
        """The epilogue.gemm, and per result the group values it stands for."""
        for op in self.elementwise:
            if isinstance(op, graph.ViewOp):  # a regrouping of rows: the same tile
                self.mapped[op.result] = self.mapped[op.input]
            else:
                assert isinstance(op, graph.PointwiseOp)
                self.translate(op)
        members = set(self.group.members)
        # one store per epilogue value, however many shapes it is used in outside
        stored: dict[SSAValue, list[SSAValue]] = {}
        for value in users_outside([op.results[0] for op in self.group.members], members):
            stored.setdefault(self.mapped[value], []).append(value)
        out_shape = self.group.out_shape
        result_types = []
        for index, (tile, values) in enumerate(stored.items()):
            self.block.add_op(epilogue.StoreOp(tile, index))
            elem = values[0].type.element_type
            result_types.append(TensorType(elem, out_shape))
        accumulators = [[(m.lhs, m.rhs) for m in leaves] for _, leaves in self.accumulators]
        gemm = epilogue.GemmOp(accumulators, self.inputs, result_types, Region(self.block))
        return gemm, list(stored.values())


def fuse_group(group: EpilogueGroup, block: Block) -> epilogue.GemmOp:
    gemm, replaced = _EpilogueBuilder(group, block).build()
    block.insert_op_after(gemm, group.members[-1])
    for values, result in zip(replaced, gemm.results, strict=True):
        result.name_hint = values[0].name_hint
        for old in values:
            new = result
            if old.type != result.type:  # used outside in a regrouped shape: view it
                view = graph.ViewOp("reshape", result, old.type)
                block.insert_op_after(view, gemm)
                new = view.result
                new.name_hint = old.name_hint
            old.replace_all_uses_with(new)
    for op in reversed(group.members):
        op.detach()
        op.erase()
    topological_reorder(block)
    return gemm


def fuse_epilogues_in(block: Block) -> None:
    for matmul in [op for op in block.ops if isinstance(op, graph.MatmulOp)]:
        if matmul.parent_block() is block:  # not merged into an earlier group
            fuse_group(grow_group(matmul, block), block)


@dataclass(frozen=True)
class FuseEpilogues(ModulePass):
    name = "fuse-epilogues"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for func in op.walk():
            if isinstance(func, FuncOp) and func.body.blocks:
                fuse_epilogues_in(func.body.block)


__all__ = ["FuseEpilogues", "fuse_epilogues_in"]
