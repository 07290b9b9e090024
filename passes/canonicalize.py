"""canonicalize: simplify the graph dialect without changing what it computes.

Patterns (each small, each tested in tests/filecheck/passes/canonicalize.mlir):
  - views that do not change the type disappear; view chains collapse
    (permute of permute composes, reshape of reshape is one reshape);
  - `copy`/`cast` to the operand's own type disappear unless the copy is a
    returned value (a returned copy must not alias an input);
  - pointwise ops over splat constants fold to a constant;
  - a reshape of a reduction (through scalar pointwise ops) that restores the reduced
    dims as size 1 is the reduction with keepdim; sum / N is mean; a reduction over
    size-1 dims is a reshape of its input;
  - negated pieces of a concat become a sign concat multiplied in after it;
  - a concat of slices of f(a, b) is f of the concats of a's and b's slices;
  - an `expand` feeding a pointwise op is dropped where the op broadcasts anyway, or
    moved below it where all its operands are expanded (the op runs on the small shape);
then common-subexpression elimination, and dead pure ops are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerType, ModuleOp, TensorType
from xdsl.dialects.func import ReturnOp
from xdsl.ir import SSAValue
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
from coda.dialects.graph_dims import Dim, canonical, symbolic_shape, symbolic_type
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


def _is_splat_scalar(value: SSAValue) -> bool:
    """A 0-d splat: a constant, or a size symbol's value (`graph.size`)."""
    return isinstance(value.owner, graph.ConstantOp | graph.SizeOp) and symbolic_shape(value) == ()


def _is_count(divisor: SSAValue, count: Dim) -> bool:
    """Whether 0-d `divisor` is the number `count` (a constant, or the size expression
    of a `graph.size` when the count is symbolic)."""
    owner = divisor.owner
    if isinstance(owner, graph.SizeOp):
        return owner.dim == count
    return isinstance(owner, graph.ConstantOp) and owner.scalar == count


class ReshapeBeforeScalarPointwise(RewritePattern):
    """reshape(fn(r, c)) with splat scalars c and r a reduction is fn(reshape(r), c):
    the reshape meets the reduction (`sum(x) * c -> [B, S, 1]` of var_mean)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ViewOp, rewriter: PatternRewriter) -> None:
        inner = op.input.owner
        if op.kind.data != "reshape" or not isinstance(inner, graph.PointwiseOp):
            return
        if inner.fn.data == "cast" or not inner.result.has_one_use():
            return
        tensors = [v for v in inner.inputs if not _is_splat_scalar(v)]
        if len(tensors) != 1 or tensors[0].type != inner.result.type:
            return
        if not isinstance(tensors[0].owner, graph.ReduceOp):
            return  # elsewhere the reshape would split a loop kernel's iteration shape
        element = op.result.type.element_type
        shape = symbolic_shape(op.result)
        source_type = symbolic_type(tensors[0].type.element_type, shape)
        reshaped = graph.ViewOp("reshape", tensors[0], source_type)
        operands = [reshaped.result if v is tensors[0] else v for v in inner.inputs]
        new = graph.PointwiseOp(inner.fn.data, operands, symbolic_type(element, shape))
        rewriter.replace(op, [reshaped, new])


class ReshapeOfReduceIsKeepdim(RewritePattern):
    """reshape(reduce(x, dims)) that puts size-1 dims back where `dims` were is
    reduce(x, dims, keepdim): one op, so the loop kernel computing it stays whole."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ViewOp, rewriter: PatternRewriter) -> None:
        reduce = op.input.owner
        if op.kind.data != "reshape" or not isinstance(reduce, graph.ReduceOp):
            return
        if reduce.keepdim is not None:
            return
        shape = symbolic_shape(reduce.input)
        kept = [1 if d in reduce.reduced_dims else n for d, n in enumerate(shape)]
        if list(symbolic_shape(op.result)) != kept:
            return
        new = graph.ReduceOp(
            reduce.kind.data, reduce.input, reduce.reduced_dims, True, op.result.type
        )
        rewriter.replace(op, new)


class ReduceOverUnitDims(RewritePattern):
    """A reduction over dims of size 1 (one element per output) is its input, reshaped:
    sum, mean, amax, amin and logsumexp of one value are that value. A loop kernel
    could otherwise hold a reduction of a reduction it cannot run in one pass (a softmax
    over a size-1 dim of a max)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ReduceOp, rewriter: PatternRewriter) -> None:
        shape = symbolic_shape(op.input)
        if any(shape[d] != 1 for d in op.reduced_dims):
            return
        if op.input.type.element_type != op.result.type.element_type:
            return
        if op.input.type == op.result.type:
            rewriter.replace(op, [], [op.input])
        else:
            rewriter.replace(op, graph.ViewOp("reshape", op.input, op.result.type))


class SumOverCountIsMean(RewritePattern):
    """sum(x, dims) / N, N the number of reduced elements, is mean(x, dims) (also
    `* (1/N)` when 1/N is exact): CSE then merges it with an existing mean."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.PointwiseOp, rewriter: PatternRewriter) -> None:
        if op.fn.data not in ("div", "mul") or len(op.inputs) != 2:
            return
        total, divisor = op.inputs
        reduce = total.owner
        if not (isinstance(reduce, graph.ReduceOp) and reduce.kind.data == "sum"):
            return
        if not _is_splat_scalar(divisor) or total.type != op.result.type:
            return
        shape = symbolic_shape(reduce.input)
        count = canonical(prod(shape[d] for d in reduce.reduced_dims))
        if op.fn.data == "mul":
            # only an exact reciprocal: x * (1/N) rounds like x / N
            if not isinstance(count, int) or not isinstance(divisor.owner, graph.ConstantOp):
                return
            if count & (count - 1) or divisor.owner.scalar * count != 1.0:
                return
        elif not _is_count(divisor, count):
            return
        new = graph.ReduceOp(
            "mean", reduce.input, reduce.reduced_dims, reduce.keepdim is not None, op.result.type
        )
        rewriter.replace(op, new)


class ConcatOfSlicesThroughPointwise(RewritePattern):
    """concat(slice(f(a, b)), slice(f(a, b)), ...) along one dim is f(concat(slices of
    a), concat(slices of b)): elementwise functions commute with rearranging elements
    (RoPE's rotate-half of dq * sin). The concatenation then reads a and b, which
    exist, instead of f(a, b), which a kernel would have to write first; operands that
    broadcast along the dim are used as they are."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ConcatOp, rewriter: PatternRewriter) -> None:
        axis = op.axis
        views = [v.owner for v in op.inputs]
        if not all(
            isinstance(view, graph.ViewOp)
            and view.kind.data == "slice"
            and view.slice_spec[0] == axis
            and view.slice_spec[2] == 1
            and view.result.has_one_use()
            for view in views
        ):
            return
        source = views[0].input  # type: ignore[union-attr]
        producer = source.owner
        if not isinstance(producer, graph.PointwiseOp) or producer.fn.data == "cast":
            return
        if any(view.input is not source for view in views):  # type: ignore[union-attr]
            return
        if source.uses.get_length() != len(views):
            return  # f(a, b) is needed anyway: reading it is cheaper than its operands
        full = symbolic_shape(source)
        new_ops: list = []
        operands: list[SSAValue] = []
        for operand in producer.inputs:
            shape = symbolic_shape(operand)
            dim = axis - (len(full) - len(shape))
            if dim < 0 or shape[dim] == 1:
                operands.append(operand)  # the same along the axis: nothing to rearrange
                continue
            if shape != full:
                # a broadcast table (RoPE's sin): rearranged in the full shape, so the
                # concat iterates like its users and runs in their loop kernel
                element = operand.type.element_type
                expand = graph.ViewOp("expand", operand, symbolic_type(element, full))
                new_ops.append(expand)
                operand, shape, dim = expand.result, full, axis
            pieces = []
            for view in views:
                _, start, _ = view.slice_spec  # type: ignore[union-attr]
                size = symbolic_shape(view.result)[axis]  # type: ignore[union-attr]
                piece_shape = [*shape[:dim], size, *shape[dim + 1 :]]
                piece = graph.ViewOp(
                    "slice",
                    operand,
                    symbolic_type(operand.type.element_type, piece_shape),
                    slice=(dim, start, 1),
                )
                new_ops.append(piece)
                pieces.append(piece.result)
            out_shape = [*shape[:dim], symbolic_shape(op.result)[axis], *shape[dim + 1 :]]
            element = operand.type.element_type
            joined = graph.ConcatOp(pieces, dim, symbolic_type(element, out_shape))
            new_ops.append(joined)
            operands.append(joined.result)
        new_ops.append(graph.PointwiseOp(producer.fn.data, operands, op.result.type))
        rewriter.replace(op, new_ops)


def _expanded(value: SSAValue) -> SSAValue | None:
    """The input of the `expand` view that makes `value`, if it is one."""
    view = value.owner
    if isinstance(view, graph.ViewOp) and view.kind.data == "expand":
        return view.input
    return None


class ExpandIsBroadcast(RewritePattern):
    """fn(expand(a), b) is fn(a, b) when a broadcasts with the other operands to the
    same result: pointwise ops broadcast by themselves, and without the view a loop
    kernel sees that `a` holds one value per row (so it is read once per row)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.PointwiseOp, rewriter: PatternRewriter) -> None:
        shape = symbolic_shape(op.result)
        for index, operand in enumerate(op.inputs):
            source = _expanded(operand)
            if source is None:
                continue
            others = [symbolic_shape(v) for v in op.inputs if v is not operand]
            if graph.broadcast_shapes(symbolic_shape(source), *others) == shape:
                operands = [source if i == index else v for i, v in enumerate(op.inputs)]
                rewriter.replace(op, graph.PointwiseOp(op.fn.data, operands, op.result.type))
                return


class SinkExpandBelowPointwise(RewritePattern):
    """fn(expand(a), c) with splat scalar constants c is expand(fn(a, c)): the function
    runs once per element of `a`, not of its broadcast (a per-row value of a norm's
    backward stays a per-row value)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.PointwiseOp, rewriter: PatternRewriter) -> None:
        tensors = [v for v in op.inputs if not _is_splat_scalar(v)]
        sources = [_expanded(v) for v in tensors]
        if not tensors or None in sources:
            return
        small = graph.broadcast_shapes(*(symbolic_shape(s) for s in sources if s))
        if small is None or small == symbolic_shape(op.result):
            return
        operands = [sources[tensors.index(v)] if v in tensors else v for v in op.inputs]
        element = op.result.type.element_type
        new = graph.PointwiseOp(op.fn.data, operands, symbolic_type(element, small))
        expand = graph.ViewOp("expand", new.result, op.result.type)
        rewriter.replace(op, [new, expand])


class NegOutOfConcat(RewritePattern):
    """concat(.., -a, ..) is concat(.., a, ..) * concat(.., -1, ..): the pieces become
    plain reads of their sources (slices of one tensor in RoPE's rotate-half), so the
    concatenation and what uses it run as one loop kernel. x * -1 is exactly -x."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ConcatOp, rewriter: PatternRewriter) -> None:
        negated = [
            isinstance(v.owner, graph.PointwiseOp) and v.owner.fn.data == "neg" and v.has_one_use()
            for v in op.inputs
        ]
        if not any(negated):
            return
        signs, sources = [], []
        for value, neg in zip(op.inputs, negated, strict=True):
            sign = graph.ConstantOp(-1.0 if neg else 1.0, value.type)
            signs.append(sign)
            sources.append(value.owner.inputs[0] if neg else value)
        values = graph.ConcatOp(sources, op.axis, op.result.type)
        sign = graph.ConcatOp([c.result for c in signs], op.axis, op.result.type)
        product = graph.PointwiseOp("mul", [values.result, sign.result], op.result.type)
        rewriter.replace(op, [*signs, values, sign, product])


CANONICALIZATION_PATTERNS = (
    DropIdentityView(),
    ComposeViews(),
    DropIdentityCopy(),
    FoldConstantPointwise(),
    ReshapeBeforeScalarPointwise(),
    ReshapeOfReduceIsKeepdim(),
    ReduceOverUnitDims(),
    SumOverCountIsMean(),
    NegOutOfConcat(),
    ExpandIsBroadcast(),
    SinkExpandBelowPointwise(),
    ConcatOfSlicesThroughPointwise(),
)


@dataclass(frozen=True)
class Canonicalize(ModulePass):
    name = "canonicalize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(list(CANONICALIZATION_PATTERNS))
        ).rewrite_module(op)
        CommonSubexpressionElimination().apply(ctx, op)
