"""concat-projections: projections of one input to different widths become one GEMM.

Grouped-query attention projects the same normalized activation to q (Hq heads) and to
k and v (Hkv heads each): three GEMMs of one lhs with different N, which fuse-epilogues
cannot merge as accumulators (those share the output tile). Here they become one GEMM
over the weights concatenated along N, `h @ [Wq | Wk | Wv]`, and q, k and v are column
slices of its [M, Nq + 2 Nkv] result, which attention reads in place. The concatenation
moves no data: split-blocks moves it into the GEMM's kernel, whose mainloop loads each
rhs tile from the piece its columns fall in. The backward's weight gradients of the
same projections, `dq^T @ h`, `dk^T @ h`, `dv^T @ h`, share the rhs and differ in M:
they become `[dq | dk | dv]^T @ h`, one GEMM over the lhs concatenated along M, whose
row slices are the three gradients. The input gradient, `dq @ Wq + dk @ Wk + dv @ Wv`,
is already one GEMM (a sum over concatenated K).

Only GEMMs whose results are read through views alone are merged (pure projections),
and only operands that are tensors or views of them (not operand prologues):
an elementwise consumer of one of them (a bias) would fuse into its own GEMM's epilogue,
which a slice of a merged result cannot offer. Projections of equal width stay as they
are: fuse-epilogues merges them as accumulators of one output tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Block, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import graph
from coda.passes.dataflow import dataflow_graph, function_bodies, topological_reorder


def _read_through_views_only(value: SSAValue) -> bool:
    for use in value.uses:
        user = use.operation
        if isinstance(user, graph.ViewOp):
            if not _read_through_views_only(user.result):
                return False
        elif isinstance(user, graph.PointwiseOp | graph.ReduceOp):
            return False
    return True


def _plain(value: SSAValue) -> bool:
    """`value` is a tensor or views of one, not elementwise work on an operand (an
    operand prologue): the pieces of a concatenation are read through addresses only."""
    while isinstance(value.owner, graph.ViewOp):
        value = value.owner.input
    return not isinstance(value.owner, graph.PointwiseOp)


def _projection_groups(block: Block) -> list[tuple[str, list[graph.MatmulOp]]]:
    """(role of the concatenated operand, matmuls) for each set of plain 2D matmuls that
    share the other operand, with one contraction size and different widths."""
    by_operand: dict[tuple[str, SSAValue], list[graph.MatmulOp]] = {}
    for op in block.ops:
        if not isinstance(op, graph.MatmulOp) or len(graph.tensor_shape(op.result)) != 2:
            continue
        if not _read_through_views_only(op.result):
            continue
        by_operand.setdefault(("rhs", op.lhs), []).append(op)
        by_operand.setdefault(("lhs", op.rhs), []).append(op)
    groups = []
    taken: set[graph.MatmulOp] = set()
    for (role, _), matmuls in by_operand.items():
        matmuls = [
            m for m in matmuls if m not in taken and _plain(m.rhs if role == "rhs" else m.lhs)
        ]
        varying = 1 if role == "rhs" else 0  # the output dim the concatenated operand sets
        widths = {graph.tensor_shape(m.result)[varying] for m in matmuls}
        contraction = {graph.tensor_shape(m.lhs)[-1] for m in matmuls}
        if len(matmuls) < 2 or len(widths) < 2 or len(contraction) != 1:
            continue
        groups.append((role, matmuls))
        taken.update(matmuls)
    return groups


def _independent(matmuls: list[graph.MatmulOp], block: Block) -> bool:
    """No matmul of the group depends on another's result."""
    dataflow = dataflow_graph(block)
    return not any(a is not b and nx.has_path(dataflow, a, b) for a in matmuls for b in matmuls)


def concat_projections(role: str, matmuls: list[graph.MatmulOp], block: Block) -> graph.MatmulOp:
    """Replace `matmuls` with one matmul over their `role` operands concatenated (along N
    for the rhs, along M for the lhs), placed after the last of them; each old result
    becomes a slice of the new one."""
    last = max(matmuls, key=lambda m: list(block.ops).index(m))
    dim = 1 if role == "rhs" else 0
    pieces = [m.rhs if role == "rhs" else m.lhs for m in matmuls]
    shapes = [graph.tensor_shape(p) for p in pieces]
    total = sum(s[dim] for s in shapes)
    elem = pieces[0].type.element_type
    concat_shape = list(shapes[0])
    concat_shape[dim] = total
    concat = graph.ConcatOp(pieces, dim, TensorType(elem, concat_shape))
    other = matmuls[0].lhs if role == "rhs" else matmuls[0].rhs
    lhs, rhs = (other, concat.result) if role == "rhs" else (concat.result, other)
    out_shape = list(graph.tensor_shape(matmuls[0].result))
    out_shape[dim] = total
    merged = graph.MatmulOp(lhs, rhs, TensorType(matmuls[0].result.type.element_type, out_shape))
    block.insert_op_after(concat, last)
    block.insert_op_after(merged, concat)
    anchor = merged
    start = 0
    for matmul in matmuls:
        size = graph.tensor_shape(matmul.result)[dim]
        piece = graph.ViewOp("slice", merged.result, matmul.result.type, slice=(dim, start, 1))
        block.insert_op_after(piece, anchor)
        anchor = piece
        piece.result.name_hint = matmul.result.name_hint
        matmul.result.replace_all_uses_with(piece.result)
        block.erase_op(matmul)
        start += size
    return merged


def concat_projections_in(block: Block) -> None:
    merged = False
    for role, matmuls in _projection_groups(block):
        if _independent(matmuls, block):
            concat_projections(role, matmuls, block)
            merged = True
    if merged:  # a user of an earlier projection now reads a slice defined later
        topological_reorder(block)


@dataclass(frozen=True)
class ConcatProjections(ModulePass):
    name = "concat-projections"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            concat_projections_in(block)


__all__ = ["ConcatProjections", "concat_projections_in"]
