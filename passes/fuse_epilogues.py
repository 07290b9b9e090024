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
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, f32
from xdsl.dialects.func import FuncOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph
from coda.passes.dataflow import can_contract, dataflow_graph, topological_reorder, users_outside


def _is_splat_constant(value: SSAValue) -> bool:
    return isinstance(value.owner, graph.ConstantOp)


def _input_kind(value: SSAValue, out_shape: tuple[int, ...]) -> str | None:
    return epilogue.classify_input(graph.tensor_shape(value), out_shape)


@dataclass
class EpilogueGroup:
    """A matmul and the elementwise ops absorbed into its epilogue, in program order."""

    matmul: graph.MatmulOp
    members: list[Operation]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return graph.tensor_shape(self.matmul.result)

    def accepts(self, op: Operation, dataflow) -> bool:
        if not isinstance(op, graph.PointwiseOp) or op in self.members:
            return False
        if graph.tensor_shape(op.result) != self.out_shape:
            return False
        member_set = set(self.members)
        uses_group = False
        for operand in op.inputs:
            if operand.owner in member_set:
                uses_group = True
            elif not _is_splat_constant(operand) and _input_kind(operand, self.out_shape) is None:
                return False
        return uses_group and can_contract(dataflow, [*self.members, op])


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

    def __init__(self, group: EpilogueGroup):
        self.group = group
        members = set(group.members)
        self.inputs: list[SSAValue] = []
        for op in group.members[1:]:
            for operand in op.operands:
                if (
                    operand.owner not in members
                    and not _is_splat_constant(operand)
                    and operand not in self.inputs
                ):
                    self.inputs.append(operand)
        out_shape = group.out_shape
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
        args = [self._operand(v) for v in op.inputs]
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

    def build(self) -> tuple[epilogue.GemmOp, list[SSAValue]]:
        for op in self.group.members[1:]:
            assert isinstance(op, graph.PointwiseOp)
            self.translate(op)
        members = set(self.group.members)
        results = users_outside([op.results[0] for op in self.group.members], members)
        for index, value in enumerate(results):
            self.block.add_op(epilogue.StoreOp(self.mapped[value], index))
        matmul = self.group.matmul
        gemm = epilogue.GemmOp(
            matmul.lhs, matmul.rhs, self.inputs, [v.type for v in results], Region(self.block)
        )
        return gemm, results


def fuse_group(group: EpilogueGroup, block: Block) -> epilogue.GemmOp:
    gemm, replaced = _EpilogueBuilder(group).build()
    block.insert_op_after(gemm, group.members[-1])
    for old, new in zip(replaced, gemm.results, strict=True):
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
