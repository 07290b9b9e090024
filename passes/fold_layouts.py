"""fold-layouts: evaluate layout algebra ops whose operands are constants.

Each `layout.compose/divide/product/complement/coalesce/*_inverse` of constants is
replaced by a `layout.constant` holding its value; chains fold bottom-up in one
greedy walk, and constants left without users are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from coda.dialects import layout


class FoldConstantLayoutOp(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, layout.LayoutOp):
            return
        value = op.fold()
        if value is not None:
            rewriter.replace(op, layout.ConstantOp(layout.LayoutAttr.from_layout(value)))


@dataclass(frozen=True)
class FoldLayouts(ModulePass):
    name = "fold-layouts"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([FoldConstantLayoutOp()])).rewrite_module(
            op
        )
