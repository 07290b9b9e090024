"""The `graph` dialect: the tensor program imported from FX.

A deliberately small, closed op set; everything the importer meets lowers to one of
these, and fusion only has to reason about eight kinds of op (nine with the attention backward):

    graph.matmul     C = A @ B, optional leading batch dim (mm, bmm, addmm, linear)
    graph.pointwise  elementwise function from `pointwise_fns` with broadcasting
    graph.reduce     sum / mean / amax / amin over dims
    graph.view       reshape / permute / expand / slice: no data movement
    graph.concat     tensors joined along a dim (a loop kernel picks by index range)
    graph.constant   a splat scalar (0-d or broadcast) constant
    graph.size       a symbolic size as a 0-d value (before bind-sizes only)
    graph.attention  scaled dot-product attention, and graph.attention_backward
                     (in `graph_attention`: one IO-aware kernel each)
    graph.opaque     any other aten op, run through torch at runtime
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import sympy
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    I64,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    UnitAttr,
    i1,
    i64,
)
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from coda.dialects.graph_attention import AttentionBackwardOp, AttentionOp, RotaryOp
from coda.dialects.graph_dims import (
    Dim,
    DimsAttr,
    SymbolicSizeError,
    canonical,
    dim_text,
    parse_dim,
    verified_shape,
)
from coda.dialects.pointwise_fns import POINTWISE_FNS


def tensor_shape(value: SSAValue | Attribute) -> tuple[int, ...]:
    """Static shape of a tensor-typed value or type. A symbolic type is refused: the
    passes that plan kernels run after `bind-sizes` (graph_dims.py)."""
    ty = value.type if isinstance(value, SSAValue) else value
    assert isinstance(ty, TensorType), f"expected a tensor type, got {ty}"
    shape = tuple(ty.get_shape())
    if DYNAMIC_INDEX in shape:
        raise SymbolicSizeError(f"{ty} has symbolic sizes: bind them first (bind-sizes)")
    return shape


def broadcast_shapes(*shapes: Sequence[Dim]) -> tuple[Dim, ...] | None:
    """Numpy broadcasting of shapes; None when they are incompatible. A symbolic dim
    broadcasts only with 1 or with an equal expression: sizes are at least 1, and a
    symbolic dim that may be 1 is not assumed to broadcast (Dynamo specializes 0 and 1)."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for dim in range(rank):
        sizes = {s[dim - rank + len(s)] for s in shapes if dim - rank + len(s) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _require_tensor(op: IRDLOperation, value: SSAValue | Attribute, what: str) -> TensorType:
    ty = value.type if isinstance(value, SSAValue) else value
    if not isinstance(ty, TensorType):
        raise VerifyException(f"'{op.name}' {what} must be a tensor, got {ty}")
    return ty


@irdl_op_definition
class MatmulOp(IRDLOperation):
    """Matrix product over the last two dims; any leading dims are batch dims, and
    batch dims of size 1 broadcast."""

    name = "graph.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: Attribute):
        super().__init__(operands=[lhs, rhs], result_types=[result_type])

    def verify_(self) -> None:
        a, b, c = verified_shape(self.lhs), verified_shape(self.rhs), verified_shape(self.result)
        if not (len(a) >= 2 and len(a) == len(b) == len(c)):
            raise VerifyException(
                f"'graph.matmul' operands and result must have one rank >= 2 "
                f"(leading dims are batch dims), got {list(a)}, {list(b)} -> {list(c)}"
            )
        if a[-1] != b[-2]:
            raise VerifyException(
                f"'graph.matmul' contraction dims differ: lhs has {a[-1]}, rhs has {b[-2]}"
            )
        batch = broadcast_shapes(a[:-2], b[:-2])
        expected = (*(batch or ()), a[-2], b[-1])
        if batch is None or expected != c:
            raise VerifyException(
                f"'graph.matmul' result shape {list(c)} does not match operands "
                f"{list(a)} x {list(b)}"
            )


@irdl_op_definition
class PointwiseOp(IRDLOperation):
    """An elementwise function of broadcast-compatible operands."""

    name = "graph.pointwise"
    fn = prop_def(StringAttr)
    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$fn `(` $inputs `)` attr-dict `:` functional-type($inputs, $result)"

    def __init__(self, fn: str, inputs: Sequence[SSAValue], result_type: Attribute):
        super().__init__(
            operands=[list(inputs)], result_types=[result_type], properties={"fn": StringAttr(fn)}
        )

    def verify_(self) -> None:
        verify_fn_application(self, self.fn.data, [v.type for v in self.inputs])
        shape = broadcast_shapes(*(verified_shape(v) for v in self.inputs))
        if shape != verified_shape(self.result):
            raise VerifyException(
                f"'graph.pointwise' result shape {list(verified_shape(self.result))} is not the "
                f"broadcast of its operand shapes {[list(verified_shape(v)) for v in self.inputs]}"
            )
        if POINTWISE_FNS[self.fn.data].predicate and self.result.type.element_type != i1:
            raise VerifyException(f"'graph.pointwise' \"{self.fn.data}\" must produce i1")


def verify_fn_application(op: IRDLOperation, fn: str, operand_types: Sequence[Attribute]) -> None:
    """Shared by graph.pointwise and epilogue.map: fn exists and the arity fits."""
    entry = POINTWISE_FNS.get(fn)
    if entry is None:
        raise VerifyException(f"'{op.name}' has unknown function \"{fn}\"")
    if len(operand_types) != entry.arity:
        raise VerifyException(
            f"'{op.name}' \"{fn}\" takes {entry.arity} operand(s), got {len(operand_types)}"
        )


REDUCE_KINDS = ("sum", "mean", "amax", "amin", "logsumexp")


@irdl_op_definition
class ReduceOp(IRDLOperation):
    """Reduction over `dims`; `keepdim` keeps them as size-1 dims."""

    name = "graph.reduce"
    kind = prop_def(StringAttr)
    dims = prop_def(DenseArrayBase)
    keepdim = opt_prop_def(UnitAttr)
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$kind $input `dims` qualified($dims) (`keepdim` $keepdim^)? attr-dict "
        "`:` type($input) `->` type($result)"
    )

    def __init__(
        self, kind: str, value: SSAValue, dims: Sequence[int], keepdim: bool, result_type: Attribute
    ):
        props: dict[str, Attribute] = {
            "kind": StringAttr(kind),
            "dims": DenseArrayBase.from_list(i64, sorted(dims)),
        }
        if keepdim:
            props["keepdim"] = UnitAttr()
        super().__init__(operands=[value], result_types=[result_type], properties=props)

    @property
    def reduced_dims(self) -> tuple[int, ...]:
        return tuple(self.dims.get_values())

    def verify_(self) -> None:
        if self.kind.data not in REDUCE_KINDS:
            raise VerifyException(
                f"'graph.reduce' kind must be one of {', '.join(REDUCE_KINDS)}, "
                f'got "{self.kind.data}"'
            )
        shape = verified_shape(self.input)
        dims = self.reduced_dims
        if any(not 0 <= d < len(shape) for d in dims) or len(set(dims)) != len(dims):
            raise VerifyException(
                f"'graph.reduce' dims {list(dims)} are not distinct dims of a rank-{len(shape)} "
                "tensor"
            )
        keep = self.keepdim is not None
        expected = tuple((1 if keep else None) if d in dims else s for d, s in enumerate(shape))
        expected = tuple(s for s in expected if s is not None)
        if expected != verified_shape(self.result):
            raise VerifyException(
                f"'graph.reduce' result shape {list(verified_shape(self.result))} does not match "
                f"reducing {list(shape)} over {list(dims)} (expected {list(expected)})"
            )


VIEW_KINDS = ("reshape", "permute", "expand", "slice")


@irdl_op_definition
class ViewOp(IRDLOperation):
    """A change of shape that moves no data: reshape, permute (with `perm`), expand, or
    slice (with `slice` = [dim, start, step]; the result's size along dim is the count)."""

    name = "graph.view"
    kind = prop_def(StringAttr)
    perm = opt_prop_def(DenseArrayBase)
    slice = opt_prop_def(DenseArrayBase)
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$kind $input (`perm` qualified($perm)^)? (`slice` qualified($slice)^)? attr-dict "
        "`:` type($input) `->` type($result)"
    )

    def __init__(
        self,
        kind: str,
        value: SSAValue,
        result_type: Attribute,
        perm: Sequence[int] | None = None,
        slice: tuple[int, int, int] | None = None,
    ):
        props: dict[str, Attribute] = {"kind": StringAttr(kind)}
        if perm is not None:
            props["perm"] = DenseArrayBase.from_list(i64, list(perm))
        if slice is not None:
            props["slice"] = DenseArrayBase.from_list(i64, list(slice))
        super().__init__(operands=[value], result_types=[result_type], properties=props)

    @property
    def permutation(self) -> tuple[int, ...]:
        assert self.perm is not None
        return tuple(self.perm.get_values())

    @property
    def slice_spec(self) -> tuple[int, int, int]:
        """(dim, start, step) of a slice view."""
        assert self.slice is not None
        dim, start, step = self.slice.get_values()
        return dim, start, step

    def verify_(self) -> None:
        kind = self.kind.data
        src, dst = verified_shape(self.input), verified_shape(self.result)
        if kind not in VIEW_KINDS:
            raise VerifyException(
                f"'graph.view' kind must be one of {', '.join(VIEW_KINDS)}, got \"{kind}\""
            )
        if (self.perm is not None) != (kind == "permute"):
            raise VerifyException("'graph.view' takes `perm` exactly when the kind is permute")
        if self.input.type.element_type != self.result.type.element_type:
            raise VerifyException("'graph.view' cannot change the element type")
        if kind == "reshape" and _numel(src) != _numel(dst):
            raise VerifyException(
                f"'graph.view' reshape changes the element count: {list(src)} -> {list(dst)}"
            )
        if kind == "permute":
            perm = self.permutation
            if sorted(perm) != list(range(len(src))):
                raise VerifyException(
                    f"'graph.view' perm {list(perm)} is not a permutation of {len(src)} dims"
                )
            if tuple(src[p] for p in perm) != dst:
                raise VerifyException(
                    f"'graph.view' permute of {list(src)} by {list(perm)} is not {list(dst)}"
                )
        if (self.slice is not None) != (kind == "slice"):
            raise VerifyException("'graph.view' takes `slice` exactly when the kind is slice")
        if kind == "slice":
            _verify_slice(self.slice.get_values(), src, dst)
        if kind == "expand" and broadcast_shapes(src, dst) != dst:
            raise VerifyException(f"'graph.view' cannot expand {list(src)} to {list(dst)}")


def _provable(condition: object) -> bool:
    """A comparison of sizes that holds for every value of its symbols (a symbolic
    bound the verifier cannot decide is not an error)."""
    return bool(sympy.sympify(condition) is sympy.true)


def _verify_slice(spec: Sequence[int], src: Sequence[Dim], dst: Sequence[Dim]) -> None:
    if len(spec) != 3:
        raise VerifyException(f"'graph.view' slice must be [dim, start, step], got {list(spec)}")
    dim, start, step = spec
    if not 0 <= dim < len(src) or start < 0 or step < 1:
        raise VerifyException(
            f"'graph.view' slice [dim {dim}, start {start}, step {step}] is out of range for "
            f"{list(src)}"
        )
    other_dims_kept = len(dst) == len(src) and all(
        a == b for d, (a, b) in enumerate(zip(src, dst, strict=True)) if d != dim
    )
    count = dst[dim] if len(dst) == len(src) else -1
    past_end = count != 0 and _provable(start + step * (count - 1) >= src[dim])
    if not other_dims_kept or _provable(count < 0) or past_end:
        raise VerifyException(
            f"'graph.view' slice of {list(src)} along dim {dim} from {start} by {step} "
            f"cannot give {list(dst)}"
        )


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """`inputs` joined along `dim` (torch.cat): equal shapes but for `dim`, whose sizes
    add up. A loop kernel computes it by reading input k at index - offset_k where
    the index falls in input k's range, so concatenation is never a copy of its own."""

    name = "graph.concat"
    dim = prop_def(IntegerAttr[I64])
    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$inputs `dim` $dim attr-dict `:` functional-type($inputs, $result)"

    def __init__(self, inputs: Sequence[SSAValue], dim: int, result_type: Attribute):
        super().__init__(
            operands=[list(inputs)],
            result_types=[result_type],
            properties={"dim": IntegerAttr(dim, i64)},
        )

    @property
    def axis(self) -> int:
        return self.dim.value.data

    def offsets(self) -> list[int]:
        """Where each input starts along `axis`."""
        starts, start = [], 0
        for value in self.inputs:
            starts.append(start)
            start += tensor_shape(value)[self.axis]
        return starts

    def verify_(self) -> None:
        out = verified_shape(self.result)
        dim = self.axis
        if not self.inputs:
            raise VerifyException("'graph.concat' needs at least one input")
        if not 0 <= dim < len(out):
            raise VerifyException(f"'graph.concat' dim {dim} is out of range for {list(out)}")
        element = self.result.type.element_type
        for k, value in enumerate(self.inputs):
            shape = verified_shape(value)
            if value.type.element_type != element:
                raise VerifyException(
                    f"'graph.concat' input {k} has element type {value.type.element_type}, "
                    f"the result {element}"
                )
            if len(shape) != len(out) or any(
                a != b for d, (a, b) in enumerate(zip(shape, out, strict=True)) if d != dim
            ):
                raise VerifyException(
                    f"'graph.concat' input {k} of shape {list(shape)} does not fit "
                    f"{list(out)} along dim {dim}"
                )
        total = canonical(sum(verified_shape(v)[dim] for v in self.inputs))
        if total != out[dim]:
            raise VerifyException(
                f"'graph.concat' inputs add up to {total} along dim {dim}, the result has "
                f"{out[dim]}"
            )


def _numel(shape: Sequence[Dim]) -> Dim:
    n: Dim = 1
    for s in shape:
        n *= s
    return canonical(n)


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A tensor whose every element is `value`."""

    name = "graph.constant"
    value = prop_def(FloatAttr | IntegerAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$value attr-dict `->` type($result)"

    def __init__(self, value: float | int | bool, result_type: TensorType):
        elem = result_type.element_type
        attr: Attribute
        if isinstance(elem, IntegerType):
            attr = IntegerAttr(int(value), elem)
        else:
            attr = FloatAttr(float(value), elem)
        super().__init__(result_types=[result_type], properties={"value": attr})

    @property
    def scalar(self) -> float | int:
        return self.value.value.data

    def verify_(self) -> None:
        verify_constant_type(self, self.value, self.result.type.element_type)


def verify_constant_type(op: IRDLOperation, value: Attribute, element_type: Attribute) -> None:
    """Shared by graph.constant and epilogue.constant: the literal has the result's type."""
    if value.type != element_type:
        raise VerifyException(
            f"'{op.name}' value type {value.type} does not match the element type {element_type}"
        )


@irdl_op_definition
class SizeOp(IRDLOperation):
    """A size used as a value (a mean's `/ s0`): a 0-d tensor holding the size expression
    `size` (graph_dims.py). Only a graph with symbolic sizes has one: `bind-sizes`
    replaces it with the graph.constant of its value."""

    name = "graph.size"
    size = prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$size attr-dict `->` type($result)"

    def __init__(self, size: Dim, result_type: TensorType):
        super().__init__(
            result_types=[result_type], properties={"size": StringAttr(dim_text(size))}
        )

    @property
    def dim(self) -> Dim:
        return parse_dim(self.size.data)

    def verify_(self) -> None:
        try:
            parse_dim(self.size.data)
        except SymbolicSizeError as err:
            raise VerifyException(f"'graph.size' {err}") from None
        if verified_shape(self.result) != ():
            raise VerifyException("'graph.size' result must be a 0-d tensor")


@irdl_op_definition
class OpaqueOp(IRDLOperation):
    """An aten op coda does not compile; the runtime calls torch for it.

    `args` is a Python literal (read back with `ast.literal_eval`): the call's
    positional and keyword arguments, tensor operands written as {'operand': i} and
    dtypes as {'dtype': 'float32'}.
    """

    name = "graph.opaque"
    target = prop_def(StringAttr)
    args = prop_def(StringAttr)
    reason = opt_prop_def(StringAttr)
    inputs = var_operand_def()
    outputs = var_result_def()
    assembly_format = (
        "$target `(` $inputs `)` `args` $args (`reason` $reason^)? attr-dict "
        "`:` functional-type($inputs, $outputs)"
    )

    def __init__(
        self,
        target: str,
        inputs: Sequence[SSAValue],
        args: str,
        result_types: Sequence[Attribute],
        reason: str | None = None,
    ):
        props: dict[str, Attribute] = {"target": StringAttr(target), "args": StringAttr(args)}
        if reason:
            props["reason"] = StringAttr(reason)
        super().__init__(
            operands=[list(inputs)], result_types=[list(result_types)], properties=props
        )

    def verify_(self) -> None:
        try:
            call = ast.literal_eval(self.args.data)
        except (ValueError, SyntaxError) as err:
            raise VerifyException(f"'graph.opaque' args are not a Python literal: {err}") from None
        if not (isinstance(call, dict) and set(call) == {"args", "kwargs"}):
            raise VerifyException("'graph.opaque' args must be {'args': [...], 'kwargs': {...}}")


Graph = Dialect(
    "graph",
    [
        MatmulOp,
        PointwiseOp,
        ReduceOp,
        ViewOp,
        ConcatOp,
        ConstantOp,
        SizeOp,
        OpaqueOp,
        AttentionOp,
        AttentionBackwardOp,
        RotaryOp,
    ],
    [DimsAttr],
)

__all__ = [
    "AttentionBackwardOp",
    "AttentionOp",
    "RotaryOp",
    "ConcatOp",
    "SizeOp",
    "ConstantOp",
    "Graph",
    "MatmulOp",
    "OpaqueOp",
    "PointwiseOp",
    "REDUCE_KINDS",
    "ReduceOp",
    "VIEW_KINDS",
    "ViewOp",
    "broadcast_shapes",
    "tensor_shape",
    "verify_fn_application",
]
