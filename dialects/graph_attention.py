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
"""

from __future__ import annotations

from collections.abc import Sequence

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
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException


def _shape(value: SSAValue) -> tuple[int, ...]:
    assert isinstance(value.type, TensorType)
    return tuple(value.type.get_shape())


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


def _check_result(
    op: IRDLOperation, what: str, value: SSAValue, shape: Sequence[int], element: Attribute
) -> None:
    if _shape(value) != tuple(shape) or _element(value) != element:
        raise VerifyException(
            f"'{op.name}' {what} must be {TensorType(element, list(shape))}, got {value.type}"
        )


class _AttentionProperties:
    """The properties both attention ops share (`scale`, `causal`), as Python values."""

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
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    value = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    scale = prop_def(FloatAttr)
    causal = opt_prop_def(UnitAttr)
    out = result_def(TensorType)
    lse = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$query `,` $key `,` $value (`mask` $mask^)? (`causal` $causal^)? `scale` $scale "
        "attr-dict `:` functional-type(operands, results)"
    )

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
    ):
        super().__init__(
            operands=[q, k, v, [mask] if mask is not None else []],
            result_types=[out_type, lse_type],
            properties=_properties(scale, causal),
        )

    def verify_(self) -> None:
        out = verify_attention_operands(self, self.query, self.key, self.value, self.mask)
        _check_result(self, "out", self.out, out, _element(self.query))
        _check_result(self, "lse", self.lse, out[:3], Float32Type())


@irdl_op_definition
class AttentionBackwardOp(_AttentionProperties, IRDLOperation):
    """Gradients of graph.attention: dq, dk, dv from dout and the saved out and lse
    (the probabilities are recomputed from lse, never stored)."""

    name = "graph.attention_backward"
    grad_out = operand_def(TensorType)
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    value = operand_def(TensorType)
    out = operand_def(TensorType)
    lse = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    scale = prop_def(FloatAttr)
    causal = opt_prop_def(UnitAttr)
    grad_query = result_def(TensorType)
    grad_key = result_def(TensorType)
    grad_value = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$grad_out `,` $query `,` $key `,` $value `,` $out `,` $lse (`mask` $mask^)? "
        "(`causal` $causal^)? `scale` $scale attr-dict `:` functional-type(operands, results)"
    )

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
    ):
        super().__init__(
            operands=[grad_out, q, k, v, out, lse, [mask] if mask is not None else []],
            result_types=[q.type, k.type, v.type],
            properties=_properties(scale, causal),
        )

    def verify_(self) -> None:
        out = verify_attention_operands(self, self.query, self.key, self.value, self.mask)
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


__all__ = ["AttentionBackwardOp", "AttentionOp", "verify_attention_operands"]
