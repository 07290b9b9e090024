"""expand-logsumexp: a `graph.reduce "logsumexp"` that no epilogue computes becomes the
max-shifted form loop kernels run in two passes over the rows (like a softmax):

    m = amax(x, dims, keepdim);  lse = log(sum(exp(x - m), dims, keepdim)) + m

A row of -inf only would give -inf - -inf = NaN: m is replaced by 0 where it is -inf,
so such a row yields log(0) = -inf, as torch.logsumexp does.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType, i1
from xdsl.ir import Block, Operation
from xdsl.passes import ModulePass

from coda.dialects import graph
from coda.passes.dataflow import function_bodies


def expand(op: graph.ReduceOp, block: Block) -> None:
    x = op.input
    elem = x.type.element_type
    shape = graph.tensor_shape(x)
    dims = op.reduced_dims
    kept = TensorType(elem, [1 if d in dims else s for d, s in enumerate(shape)])
    new: list[Operation] = []

    def emit(o: Operation) -> Operation:
        new.append(o)
        return o

    scalar = TensorType(elem, [])
    inf = emit(graph.ConstantOp(float("-inf"), scalar)).results[0]
    zero = emit(graph.ConstantOp(0.0, scalar)).results[0]
    top = emit(graph.ReduceOp("amax", x, dims, True, kept)).results[0]
    is_inf = emit(graph.PointwiseOp("eq", [top, inf], TensorType(i1, graph.tensor_shape(top))))
    safe = emit(graph.PointwiseOp("where", [is_inf.results[0], zero, top], kept)).results[0]
    shifted = emit(graph.PointwiseOp("sub", [x, safe], x.type)).results[0]
    exp = emit(graph.PointwiseOp("exp", [shifted], x.type)).results[0]
    total = emit(graph.ReduceOp("sum", exp, dims, True, kept)).results[0]
    log = emit(graph.PointwiseOp("log", [total], kept)).results[0]
    lse = emit(graph.PointwiseOp("add", [log, safe], kept)).results[0]
    if graph.tensor_shape(op.result) != graph.tensor_shape(lse):
        lse = emit(graph.ViewOp("reshape", lse, op.result.type)).results[0]
    block.insert_ops_before(new, op)
    lse.name_hint = op.result.name_hint
    op.result.replace_all_uses_with(lse)
    block.erase_op(op)


@dataclass(frozen=True)
class ExpandLogsumexp(ModulePass):
    name = "expand-logsumexp"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            for reduce in [o for o in block.ops if isinstance(o, graph.ReduceOp)]:
                if reduce.kind.data == "logsumexp":
                    expand(reduce, block)


__all__ = ["ExpandLogsumexp"]
