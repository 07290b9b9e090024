"""fuse-epilogues: absorb the elementwise consumers of each GEMM into its epilogue.

For every `graph.matmul`, in program order, the pass grows a group: an elementwise
op joins when it uses a value of the group, produces a full output tile, and each of
its other operands is a constant or a tensor that broadcasts over the tile as a
tile, row, column or scalar (bias, residual, saved activation). A candidate is
rejected when joining would create a cycle (one of its operands depends on the group
through ops outside it; checked with networkx). The group becomes one
`epilogue.gemm`; every group value used outside it is stored as a result.

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

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType, f32
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
    """A matmul and the elementwise ops absorbed into its epilogue, in program order."""

    matmul: graph.MatmulOp
    members: list[Operation]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return graph.tensor_shape(self.matmul.result)

    def accepts(self, op: Operation, dataflow) -> bool:
        if op in self.members:
            return False
        member_set = set(self.members)
        if isinstance(op, graph.ViewOp):
            return (
                op.kind.data == "reshape"
                and op.input.owner in member_set
                and _regroups_rows(graph.tensor_shape(op.result), self.out_shape)
            )
        if not isinstance(op, graph.PointwiseOp):
            return False
        if self._broadcast_producer(op, member_set):
            return can_contract(dataflow, [*self.members, op])
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

    def _broadcast_producer(self, op: graph.PointwiseOp, members: set[Operation]) -> bool:
        """`op` builds a full tile from rows, columns and scalars only (a one-hot mask
        `iota == target`) for elementwise ops over the tile, which then join through
        it: computed on chip, the mask is never written as an [M, N] tensor."""
        if graph.tensor_shape(op.result) != self.out_shape or not op.result.uses:
            return False
        if not all(
            _is_splat_constant(v) or _input_kind(v, self.out_shape) in ("row", "col", "scalar")
            for v in op.inputs
        ):
            return False
        users_are_tiles = all(
            isinstance(use.operation, graph.PointwiseOp)
            and graph.tensor_shape(use.operation.results[0]) == self.out_shape
            for use in op.result.uses
        )
        return users_are_tiles and self._feeds_group(op.result, members, depth=3)

    def _feeds_group(self, value: SSAValue, members: set[Operation], depth: int) -> bool:
        """`value` reaches an elementwise op that also reads this group within `depth`
        steps (the mask -> where(mask, 1, 0) -> probs - onehot): only then is it this
        GEMM's mask and not another GEMM's of the same shape."""
        for use in value.uses:
            user = use.operation
            if not isinstance(user, graph.PointwiseOp):
                continue
            if any(v.owner in members for v in user.operands):
                return True
            if depth > 1 and self._feeds_group(user.result, members, depth - 1):
                return True
        return False

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
    group = EpilogueGroup(matmul, [matmul])
    dataflow = dataflow_graph(block)
    grown = True
    while grown:
        grown = False
        for op in block.ops:
            if group.accepts(op, dataflow):
                group.members.append(op)
                grown = True
    return group


class _EpilogueBuilder:
    """Translates a group's elementwise ops into an epilogue region."""

    def __init__(self, group: EpilogueGroup, block: Block):
        self.group = group
        members = set(group.members)
        out_shape = group.out_shape
        self.inputs: list[SSAValue] = []
        # operand of a member -> the value the epilogue reads (a view of it, if regrouped)
        self.viewed: dict[tuple[Operation, SSAValue], SSAValue] = {}
        for op in group.members[1:]:
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
        self.block = epilogue.new_epilogue_block(epilogue.TileType(f32), arg_types)
        self.block.args[0].name_hint = "acc"
        self.mapped: dict[SSAValue, SSAValue] = dict(
            zip(self.inputs, self.block.args[1:], strict=True)
        )
        self.mapped[group.matmul.result] = self._cast_to(
            self.block.args[0], group.matmul.result.type.element_type
        )

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
        elem = operand.type.element_type
        value = operand
        if graph.tensor_shape(value) != expand_to:
            expand = graph.ViewOp("expand", value, TensorType(elem, expand_to))
            block.insert_op_before(expand, op)
            value = expand.result
        reshape = graph.ViewOp("reshape", value, TensorType(elem, reshape_to))
        block.insert_op_before(reshape, op)
        return reshape.result

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
        for op in self.group.members[1:]:
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
        matmul = self.group.matmul
        gemm = epilogue.GemmOp(
            matmul.lhs, matmul.rhs, self.inputs, result_types, Region(self.block)
        )
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
        fuse_group(grow_group(matmul, block), block)


@dataclass(frozen=True)
class FuseEpilogues(ModulePass):
    name = "fuse-epilogues"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for func in op.walk():
            if isinstance(func, FuncOp) and func.body.blocks:
                fuse_epilogues_in(func.body.block)


__all__ = ["FuseEpilogues", "fuse_epilogues_in"]
