"""`graph.attention` and `graph.attention_backward`: scaled dot-product attention as
one op each, so that it becomes one IO-aware kernel (online softmax over key tiles,
never the S x S scores) instead of matmul + softmax + matmul.

    %out, %lse = graph.attention %q, %k, %v [mask %m] [causal] scale 1.25e-01 : f64
    %dq, %dk, %dv = graph.attention_backward %dout, %q, %k, %v, %out, %lse [mask %m] ...

Shapes: q `[B, Hq, S, D]`, k `[B, Hkv, Skv, D]`, v `[B, Hkv, Skv, Dv]` with Hq a
multiple of Hkv (grouped-query attention: query head h reads key/value head
h // (Hq / Hkv)); out `[B, Hq, S, Dv]`; lse `[B, Hq, S]` float32, the natural-log
logsumexp of each row of the scaled, masked scores (what the backward recomputes the
probabilities from, as torch's flash attention saves it). The mask is additive and has
the full score shape `[B, Hq, S, Skv]`: a broadcast mask reaches it through expand
views, read in place. `causal` hides key j from query i when j > i (top-left aligned,
as `scaled_dot_product_attention(is_causal=True)`).

`rotary %cos, %sin` applies rotary position embeddings to q and k inside the kernel
(the pairwise primitive: column d pairs with d +- D/2): the op reads q and k before the
rotation, `rot(x) = cat(-x[..., D/2:], x[..., :D/2])`, and computes

    q' = q * cos + rot(q) * sin,    k' = k * cos + rot(k) * sin

with cos and sin `[B, 1, S, D]` (one table for every head; S == Skv, position i of q
and of k reads row i). The backward op then returns the gradients of q and k before
the rotation, R^T(dq') = dq' * cos + rot^T(dq' * sin) with
`rot^T(z) = cat(z[..., D/2:], -z[..., :D/2])`. Neither q' nor k' is ever stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

from xdsl.dialects.builtin import (
    AnyFloat,
    Float32Type,
    Float64Type,
    FloatAttr,
    TensorType,
    UnitAttr,
)
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

# batch and sequence may be symbolic (graph_dims.py); heads and head dims are not
from coda.dialects.graph_dims import verified_shape as _shape


def _element(value: SSAValue) -> Attribute:
    assert isinstance(value.type, TensorType)
    return value.type.element_type


def _properties(scale: float, causal: bool) -> dict[str, Attribute]:
    props: dict[str, Attribute] = {"scale": FloatAttr(scale, Float64Type())}
    if causal:
        props["causal"] = UnitAttr()
    return props


def verify_attention_operands(
    op: IRDLOperation, q: SSAValue, k: SSAValue, v: SSAValue, mask: SSAValue | None
) -> tuple[int, ...]:
    """Checks shared by the forward and the backward; returns out's shape."""
    name = op.name
    for role, value in (("query", q), ("key", k), ("value", v)):
        if len(_shape(value)) != 4:
            raise VerifyException(
                f"'{name}' {role} must be [batch, heads, seq, head_dim], got {list(_shape(value))}"
            )
        if not isinstance(_element(value), AnyFloat):
            raise VerifyException(f"'{name}' {role} must be a float tensor")
    (b, hq, s, d), (bk, hkv, skv, dk), (bv, hv, sv, dv) = _shape(q), _shape(k), _shape(v)
    if (bk, dk) != (b, d) or (bv, hv, sv) != (bk, hkv, skv):
        raise VerifyException(
            f"'{name}' key {list(_shape(k))} and value {list(_shape(v))} do not fit query "
            f"{list(_shape(q))}"
        )
    if hkv == 0 or hq % hkv:
        raise VerifyException(
            f"'{name}' query heads ({hq}) must be a multiple of key/value heads ({hkv})"
        )
    if not _element(q) == _element(k) == _element(v):
        raise VerifyException(f"'{name}' query, key and value must have one element type")
    if mask is not None:
        if _shape(mask) != (b, hq, s, skv):
            raise VerifyException(
                f"'{name}' mask must have the score shape {[b, hq, s, skv]}, got "
                f"{list(_shape(mask))} (broadcast it with views)"
            )
        if not isinstance(_element(mask), AnyFloat):
            raise VerifyException(f"'{name}' mask must be additive (a float tensor)")
    return (b, hq, s, dv)


def verify_rotary(
    op: IRDLOperation, q: SSAValue, k: SSAValue, cos: SSAValue | None, sin: SSAValue | None
) -> None:
    if cos is None and sin is None:
        return
    if cos is None or sin is None:
        raise VerifyException(f"'{op.name}' rotary takes both cos and sin")
    (b, _, s, d), skv = _shape(q), _shape(k)[2]
    if s != skv:
        raise VerifyException(
            f"'{op.name}' rotary embeddings need as many keys as queries, got {s} and {skv}"
        )
    if d % 2:
        raise VerifyException(f"'{op.name}' rotary embeddings pair columns: odd head dim {d}")
    for what, table in (("cos", cos), ("sin", sin)):
        if _shape(table) != (b, 1, s, d):
            raise VerifyException(
                f"'{op.name}' rotary {what} must be [batch, 1, seq, head_dim] = "
                f"{[b, 1, s, d]}, got {list(_shape(table))} (broadcast it with views)"
            )
        if _element(table) != _element(q):
            raise VerifyException(
                f"'{op.name}' rotary {what} must be {_element(q)} like the query, "
                f"got {_element(table)}"
            )


def _rotary(rotary: tuple[SSAValue, SSAValue] | None) -> list[list[SSAValue]]:
    return [[rotary[0]], [rotary[1]]] if rotary is not None else [[], []]


def _check_result(
    op: IRDLOperation, what: str, value: SSAValue, shape: Sequence[int], element: Attribute
) -> None:
    if _shape(value) != tuple(shape) or _element(value) != element:
        raise VerifyException(
            f"'{op.name}' {what} must be {TensorType(element, list(shape))}, got {value.type}"
        )


class _AttentionProperties:
    """The properties both attention ops share (`scale`, `causal`, `rotary`), as Python
    values, and their syntax: the leading operands, then `mask %m`, `rotary %cos, %sin`,
    `causal`, `scale <f64>` and `: functional-type(operands, results)`."""

    #: how many operands come before the optional mask and rotary tables
    POSITIONAL: ClassVar[int]

    def print(self, printer: Printer) -> None:
        op = cast(IRDLOperation, self)
        printer.print_string(" ")
        printer.print_list(op.operands[: self.POSITIONAL], printer.print_operand)
        if op.mask is not None:  # type: ignore[attr-defined]
            printer.print_string(" mask ")
            printer.print_operand(op.mask)  # type: ignore[attr-defined]
        if self.rotary is not None:
            printer.print_string(" rotary ")
            printer.print_list(self.rotary, printer.print_operand)
        if self.is_causal:
            printer.print_string(" causal")
        printer.print_string(" scale ")
        printer.print_attribute(op.scale)  # type: ignore[attr-defined]
        printer.print_op_attributes(op.attributes)
        printer.print_string(" : ")
        printer.print_function_type([o.type for o in op.operands], [r.type for r in op.results])

    @classmethod
    def parse(cls, parser: Parser) -> Any:
        operands = [parser.parse_unresolved_operand()]
        for _ in range(cls.POSITIONAL - 1):
            parser.parse_punctuation(",")
            operands.append(parser.parse_unresolved_operand())
        mask, rotary = [], []
        if parser.parse_optional_keyword("mask"):
            mask = [parser.parse_unresolved_operand()]
        if parser.parse_optional_keyword("rotary"):
            rotary = [parser.parse_unresolved_operand()]
            parser.parse_punctuation(",")
            rotary.append(parser.parse_unresolved_operand())
        causal = parser.parse_optional_keyword("causal") is not None
        parser.parse_keyword("scale")
        scale = parser.parse_attribute()
        attributes = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        signature = parser.parse_function_type()
        unresolved = [*operands, *mask, *rotary]
        if len(signature.inputs.data) != len(unresolved):
            parser.raise_error(
                f"expected {len(unresolved)} operand types, got {len(signature.inputs.data)}",
                pos,
            )
        values = [
            parser.resolve_operand(o, t)
            for o, t in zip(unresolved, signature.inputs.data, strict=True)
        ]
        props: dict[str, Attribute] = {"scale": scale}
        if causal:
            props["causal"] = UnitAttr()
        positional = values[: cls.POSITIONAL]
        tail = values[cls.POSITIONAL :]
        groups = [*positional, tail[: len(mask)], tail[len(mask) :][:1], tail[len(mask) + 1 :]]
        if not rotary:
            groups[-2:] = [[], []]
        op = cls.build(  # type: ignore[attr-defined]
            operands=groups,
            result_types=list(signature.outputs.data),
            properties=props,
            attributes=attributes or {},
        )
        return op

    @property
    def rotary(self) -> tuple[SSAValue, SSAValue] | None:
        cos, sin = self.cos, self.sin  # type: ignore[attr-defined]
        return (cos, sin) if cos is not None and sin is not None else None

    @property
    def scale_value(self) -> float:
        return self.scale.value.data  # type: ignore[attr-defined]

    @property
    def is_causal(self) -> bool:
        return self.causal is not None  # type: ignore[attr-defined]


@irdl_op_definition
class AttentionOp(_AttentionProperties, IRDLOperation):
    """softmax(scale * q @ k^T + mask, causal) @ v, and the rows' logsumexp."""

    name = "graph.attention"
    POSITIONAL: ClassVar[int] = 3
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    value = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    cos = opt_operand_def(TensorType)
    sin = opt_operand_def(TensorType)
    scale = prop_def(FloatAttr)
    causal = opt_prop_def(UnitAttr)
    out = result_def(TensorType)
    lse = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(
        self,
        q: SSAValue,
        k: SSAValue,
        v: SSAValue,
        mask: SSAValue | None,
        scale: float,
        causal: bool,
        out_type: Attribute,
        lse_type: Attribute,
        rotary: tuple[SSAValue, SSAValue] | None = None,
    ):
        super().__init__(
            operands=[q, k, v, [mask] if mask is not None else [], *_rotary(rotary)],
            result_types=[out_type, lse_type],
            properties=_properties(scale, causal),
        )

    def verify_(self) -> None:
        out = verify_attention_operands(self, self.query, self.key, self.value, self.mask)
        verify_rotary(self, self.query, self.key, self.cos, self.sin)
        _check_result(self, "out", self.out, out, _element(self.query))
        _check_result(self, "lse", self.lse, out[:3], Float32Type())


@irdl_op_definition
class AttentionBackwardOp(_AttentionProperties, IRDLOperation):
    """Gradients of graph.attention: dq, dk, dv from dout and the saved out and lse
    (the probabilities are recomputed from lse, never stored)."""

    name = "graph.attention_backward"
    POSITIONAL: ClassVar[int] = 6
    grad_out = operand_def(TensorType)
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    value = operand_def(TensorType)
    out = operand_def(TensorType)
    lse = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    cos = opt_operand_def(TensorType)
    sin = opt_operand_def(TensorType)
    scale = prop_def(FloatAttr)
    causal = opt_prop_def(UnitAttr)
    grad_query = result_def(TensorType)
    grad_key = result_def(TensorType)
    grad_value = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(
        self,
        grad_out: SSAValue,
        q: SSAValue,
        k: SSAValue,
        v: SSAValue,
        out: SSAValue,
        lse: SSAValue,
        mask: SSAValue | None,
        scale: float,
        causal: bool,
        rotary: tuple[SSAValue, SSAValue] | None = None,
    ):
        operands = [grad_out, q, k, v, out, lse, [mask] if mask is not None else []]
        super().__init__(
            operands=[*operands, *_rotary(rotary)],
            result_types=[q.type, k.type, v.type],
            properties=_properties(scale, causal),
        )

    def verify_(self) -> None:
        out = verify_attention_operands(self, self.query, self.key, self.value, self.mask)
        verify_rotary(self, self.query, self.key, self.cos, self.sin)
        elem = _element(self.query)
        _check_result(self, "grad_out", self.grad_out, out, elem)
        _check_result(self, "out", self.out, out, elem)
        _check_result(self, "lse", self.lse, out[:3], Float32Type())
        for what, grad, like in (
            ("grad_query", self.grad_query, self.query),
            ("grad_key", self.grad_key, self.key),
            ("grad_value", self.grad_value, self.value),
        ):
            _check_result(self, what, grad, _shape(like), elem)


@irdl_op_definition
class RotaryOp(IRDLOperation):
    """Rotary position embedding of the last dim, pairing column d with d +- D/2:
    `x * cos + rot(x) * sin` (R x), or with `transpose` its transpose
    `x * cos + rot^T(x * sin)` (R^T x, the backward), `rot` and `rot^T` as in the module
    docstring; cos and sin broadcast to x. fuse-rotary moves it into attention or
    expands it into slices, a concat and pointwise ops."""

    name = "graph.rotary"
    input = operand_def(TensorType)
    cos = operand_def(TensorType)
    sin = operand_def(TensorType)
    transpose = opt_prop_def(UnitAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$input `,` $cos `,` $sin (`transpose` $transpose^)? attr-dict `:` "
        "functional-type(operands, results)"
    )

    def __init__(self, x: SSAValue, cos: SSAValue, sin: SSAValue, transpose: bool = False):
        super().__init__(
            operands=[x, cos, sin],
            result_types=[x.type],
            properties={"transpose": UnitAttr()} if transpose else {},
        )

    @property
    def is_transpose(self) -> bool:
        return self.transpose is not None

    def verify_(self) -> None:
        shape = _shape(self.input)
        if not shape or shape[-1] % 2:
            raise VerifyException(
                f"'graph.rotary' pairs the columns of the last dim: {list(shape)} has no even "
                "last dim"
            )
        for what, table in (("cos", self.cos), ("sin", self.sin)):
            padded = (1,) * (len(shape) - len(_shape(table))) + _shape(table)
            fits = len(padded) == len(shape) and all(
                t in (1, n) for t, n in zip(padded, shape, strict=True)
            )
            if not fits:
                raise VerifyException(
                    f"'graph.rotary' {what} {list(_shape(table))} does not broadcast to "
                    f"{list(shape)}"
                )
            if _element(table) != _element(self.input):
                raise VerifyException(
                    f"'graph.rotary' {what} must be {_element(self.input)}, got {_element(table)}"
                )
        if self.result.type != self.input.type:
            raise VerifyException(
                f"'graph.rotary' result must be {self.input.type}, got {self.result.type}"
            )


__all__ = [
    "AttentionBackwardOp",
    "AttentionOp",
    "RotaryOp",
    "verify_attention_operands",
    "verify_rotary",
]
