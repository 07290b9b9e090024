"""fuse-epilogues: each group of ops that shares a GEMM's kernel becomes one
`epilogue.gemm` (which ops group: `epilogue_groups.py`).

Each matmul of the group is an accumulator (those summed by a tree of adds share one,
over the concatenated K), and every group value used outside it is stored as a
result. Elementwise ops are chosen by primitive: `add` of two tiles is `accumulate`,
`mul` of a tile by a row, column or scalar is `scale`, everything else is `map`.

A group may hold reshapes that regroup the output's rows (same last dim, same element
count: a Linear on a `[B, S, D]` input computes `[B*S, N]` and views it as `[B, S, N]`).
Such a reshape is the same tile; operands of ops on the `[B, S, N]` view are viewed in
the output's shape (`expand` then `reshape`, read in place by the kernel, reusing a view
that exists), and results used outside in the regrouped shape get a reshape after the
GEMM. The user's weights stay where they are: a merged kernel reads each through its
own pointer, so nothing is concatenated and gradients need no mapping back.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import FloatAttr, ModuleOp, TensorType, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph
from coda.passes.dataflow import function_bodies, topological_reorder, users_outside
from coda.passes.epilogue_groups import (
    EpilogueGroup,
    grow_group,
    input_kind,
    is_splat_constant,
    regrouped_input,
    summed_matmuls,
)


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
                if operand.owner in members or is_splat_constant(operand):
                    continue
                value = self._view_input(op, operand, block)
                self.viewed[(op, operand)] = value
                if value not in self.inputs:
                    self.inputs.append(value)
        arg_types = [
            epilogue.TILE_KINDS[input_kind(v, out_shape)](v.type.element_type) for v in self.inputs
        ]
        count = len(self.accumulators)
        self.block = epilogue.new_epilogue_block(arg_types, count)
        for j in range(count):
            self.block.args[j].name_hint = "acc"
        for value, arg in zip(self.inputs, self.block.args[count:], strict=True):
            # an input is named after the tensor it reads (seen through its views)
            while isinstance(value.owner, graph.ViewOp) and not value.name_hint:
                value = value.owner.input
            arg.name_hint = value.name_hint
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
        view = regrouped_input(graph.tensor_shape(operand), shape, self.group.out_shape)
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

    def reduce_rows(self, op: graph.ReduceOp) -> None:
        """A whole-row statistic: epilogue.row_reduce (a mean divides the sum by N)."""
        kind = {"sum": "sum", "mean": "sum", "amax": "max", "logsumexp": "logsumexp"}[op.kind.data]
        value = self._emit(epilogue.RowReduceOp(kind, self.mapped[op.input]))
        if op.kind.data == "mean":
            count = self._emit(epilogue.ConstantOp(FloatAttr(float(self.group.out_shape[-1]), f32)))
            value = self._emit(epilogue.MapOp("div", [value, count], value.type))
        self.mapped[op.result] = value

    def translate(self, op: graph.PointwiseOp) -> None:
        args = [self._operand(self.viewed.get((op, v), v)) for v in op.inputs]
        fn = op.fn.data
        kind = epilogue.combined_kind([a.type.kind for a in args])
        result_type = epilogue.TILE_KINDS[kind](op.result.type.element_type)
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
            elif isinstance(op, graph.ReduceOp):
                self.reduce_rows(op)
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
            column = isinstance(tile.type, epilogue.ColType)  # one value per row
            result_types.append(TensorType(elem, (*out_shape[:-1], 1) if column else out_shape))
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
        for block in function_bodies(op):
            fuse_epilogues_in(block)


__all__ = ["FuseEpilogues", "fuse_epilogues_in"]
