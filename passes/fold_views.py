"""fold-views: let GEMMs read views in place instead of through reshapes.

A batched matmul of reshapes that only merge leading batch dims,

    matmul(reshape(x: [*B, M, K] -> [prod B, M, K]), reshape(y: [*B, K, N] -> ...))

is the same product over the unmerged operands, reshaped afterwards:

    reshape(matmul(x, y): [*B, M, N] -> [prod B, M, N])

Merging batch dims is not a view when they are strided apart (a head split
`[B,S,H*D] -> [B,H,S,D]` followed by `q @ k^T`): torch's reshape would copy. The
GEMM instead walks the batch dims with their own strides, and the result reshape is
of a fresh contiguous buffer, always a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from coda.dialects import graph
from coda.dialects.graph_dims import canonical, symbolic_shape, symbolic_type


def _unmerged(value: SSAValue) -> SSAValue | None:
    """The source of a reshape that merges only leading (batch) dims, else None."""
    view = value.owner
    if not (isinstance(view, graph.ViewOp) and view.kind.data == "reshape"):
        return None
    src, dst = symbolic_shape(view.input), symbolic_shape(view.result)
    if len(dst) != 3 or len(src) < 3 or src[-2:] != dst[-2:]:
        return None
    return view.input if canonical(prod(src[:-2])) == dst[0] else None


class MatmulOfBatchReshapes(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.MatmulOp, rewriter: PatternRewriter) -> None:
        lhs, rhs = _unmerged(op.lhs), _unmerged(op.rhs)
        if lhs is None or rhs is None:
            return
        lhs_shape, rhs_shape = symbolic_shape(lhs), symbolic_shape(rhs)
        batch = graph.broadcast_shapes(lhs_shape[:-2], rhs_shape[:-2])
        # both sides must enumerate the merged batch in the same order
        if batch is None or lhs_shape[:-2] != batch or rhs_shape[:-2] != batch:
            return
        result_type = op.result.type
        assert isinstance(result_type, TensorType)
        out_shape = symbolic_shape(op.result)
        unmerged_type = symbolic_type(result_type.element_type, [*batch, *out_shape[-2:]])
        matmul = graph.MatmulOp(lhs, rhs, unmerged_type)
        merged = graph.ViewOp("reshape", matmul.result, result_type)
        rewriter.replace(op, [matmul, merged])


@dataclass(frozen=True)
class FoldViews(ModulePass):
    name = "fold-views"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([MatmulOfBatchReshapes()])).rewrite_module(
            op
        )
