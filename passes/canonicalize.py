"""canonicalize: simplify the graph dialect without changing what it computes.

Patterns (each small, each tested in tests/filecheck/passes/canonicalize.mlir):
  - views that do not change the type disappear; view chains collapse
    (permute of permute composes, reshape of reshape is one reshape);
  - `copy`/`cast` to the operand's own type disappear unless the copy is a
    returned value (a returned copy must not alias an input);
  - pointwise ops over splat constants fold to a constant;
then common-subexpression elimination, and dead pure ops are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerType, ModuleOp, TensorType
from xdsl.dialects.func import ReturnOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.transforms.common_subexpression_elimination import CommonSubexpressionElimination

from coda.dialects import graph
from coda.dialects.dtypes import torch_dtype_of
from coda.dialects.pointwise_fns import POINTWISE_FNS


class DropIdentityView(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ViewOp, rewriter: PatternRewriter) -> None:
        if op.input.type == op.result.type and (
            op.kind.data != "permute" or op.permutation == tuple(range(len(op.permutation)))
        ):
            rewriter.replace(op, [], [op.input])


class ComposeViews(RewritePattern):
    """permute(permute(x)) is one permute; reshape(reshape(x)) is one reshape."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ViewOp, rewriter: PatternRewriter) -> None:
        inner = op.input.owner
        if not isinstance(inner, graph.ViewOp) or inner.kind.data != op.kind.data:
            return
        if op.kind.data == "permute":
            first, second = inner.permutation, op.permutation
            perm = [first[p] for p in second]
            if perm == list(range(len(perm))):
                rewriter.replace(op, [], [inner.input])
                return
            new = graph.ViewOp("permute", inner.input, op.result.type, perm)
        elif op.kind.data == "reshape":
            new = graph.ViewOp("reshape", inner.input, op.result.type)
        else:
            return
        rewriter.replace(op, new)


class DropIdentityCopy(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.PointwiseOp, rewriter: PatternRewriter) -> None:
        if op.fn.data not in ("copy", "cast") or op.inputs[0].type != op.result.type:
            return
        if any(isinstance(use.operation, ReturnOp) for use in op.result.uses):
            return
        rewriter.replace(op, [], [op.inputs[0]])


class FoldConstantPointwise(RewritePattern):
    """fn(splat a, splat b) is the splat fn(a, b), computed by the torch reference."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.PointwiseOp, rewriter: PatternRewriter) -> None:
        constants = [v.owner for v in op.inputs]
        if not all(isinstance(c, graph.ConstantOp) for c in constants):
            return
        import torch  # noqa: PLC0415 - only when there is something to fold

        args = [
            torch.tensor(c.scalar, dtype=torch_dtype_of(c.result.type.element_type))
            for c in constants
        ]
        out_type = op.result.type
        assert isinstance(out_type, TensorType)
        folded = (
            POINTWISE_FNS[op.fn.data].torch_ref(*args).to(torch_dtype_of(out_type.element_type))
        )
        value = folded.item()
        if isinstance(out_type.element_type, IntegerType):
            value = int(value)
        elif not isinstance(value, float):
            value = float(value)
        rewriter.replace(op, graph.ConstantOp(value, out_type))


CANONICALIZATION_PATTERNS = (
    DropIdentityView(),
    ComposeViews(),
    DropIdentityCopy(),
    FoldConstantPointwise(),
)


@dataclass(frozen=True)
class Canonicalize(ModulePass):
    name = "canonicalize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(list(CANONICALIZATION_PATTERNS))
        ).rewrite_module(op)
        CommonSubexpressionElimination().apply(ctx, op)
