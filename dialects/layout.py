"""The `layout` dialect: CuTe layouts as IR.

    #layout.cute<(4,(2,8)):(16,(8,1))>     a layout attribute: shape:stride, nested
    %l = layout.constant #layout.cute<...>  a layout value
    %c = layout.compose %a, %b              A o B
    %d = layout.divide "logical" %a, %b     logical / zipped / tiled divide
    %p = layout.product "blocked" %a, %b    logical / blocked / raked product
    %k = layout.complement %a cotarget 64
    %s = layout.coalesce %a
    %r = layout.right_inverse %a            (and layout.left_inverse)

The algebra itself lives in `layout_algebra` (pure Python); these ops apply it and
`fold-layouts` replaces each op whose operands are constants by its value. When
operands are constants the verifiers run the operation, so an invalid composition or
a divide by a non-divisor is reported at the op that asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from xdsl.dialects.builtin import I64, IntegerAttr, StringAttr, i64
from xdsl.ir import Dialect, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import ConstantLike, Pure
from xdsl.utils.exceptions import VerifyException

from coda.dialects import layout_algebra as la

IntTuple = int | tuple["IntTuple", ...]


def _parse_int_tuple(parser: AttrParser) -> IntTuple:
    value = parser.parse_optional_integer(allow_boolean=False, allow_negative=False)
    if value is not None:
        return value
    items = parser.parse_comma_separated_list(
        Parser.Delimiter.PAREN, lambda: _parse_int_tuple(parser)
    )
    return tuple(items)


@irdl_attr_definition
class LayoutAttr(ParametrizedAttribute):
    """A CuTe layout `shape:stride` (hierarchical, integer extents)."""

    name = "layout.cute"
    text: StringAttr  # canonical `shape:stride` text; `.layout` is the algebra object

    @staticmethod
    def from_layout(layout: la.Layout) -> LayoutAttr:
        return LayoutAttr(StringAttr(str(layout)))

    @property
    def layout(self) -> la.Layout:
        return la.Layout.parse(self.text.data)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[StringAttr]:
        with parser.in_angle_brackets():
            pos = parser.pos
            shape = _parse_int_tuple(parser)
            parser.parse_punctuation(":")
            stride = _parse_int_tuple(parser)
            try:
                layout = la.Layout(shape, stride)
            except la.LayoutError as err:
                parser.raise_error(str(err), pos, parser.pos)
        return (StringAttr(str(layout)),)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.text.data}>")


@irdl_attr_definition
class LayoutType(ParametrizedAttribute, TypeAttribute):
    """The type of a layout value."""

    name = "layout.layout"


def _constant(value: SSAValue) -> la.Layout | None:
    owner = value.owner
    return owner.value.layout if isinstance(owner, ConstantOp) else None


@irdl_op_definition
class ConstantOp(IRDLOperation):
    name = "layout.constant"
    value = prop_def(LayoutAttr)
    result = result_def(LayoutType)
    traits = traits_def(Pure(), ConstantLike())
    assembly_format = "qualified($value) attr-dict"

    def __init__(self, value: LayoutAttr):
        super().__init__(properties={"value": value}, result_types=[LayoutType()])


class LayoutOp(IRDLOperation):
    """An algebra op: `fold()` computes its value when all operands are constants."""

    def fold(self) -> la.Layout | None:
        raise NotImplementedError

    def verify_(self) -> None:
        try:
            self.fold()
        except la.LayoutError as err:
            raise VerifyException(f"'{self.name}' {err}") from None


_BINARY: dict[str, dict[str, Callable[[la.Layout, la.Layout], la.Layout]]] = {
    "layout.divide": {
        "logical": la.logical_divide,
        "zipped": la.zipped_divide,
        "tiled": la.tiled_divide,
    },
    "layout.product": {
        "logical": la.logical_product,
        "blocked": la.blocked_product,
        "raked": la.raked_product,
    },
}


class _BinaryKindOp(LayoutOp):
    KINDS: ClassVar[tuple[str, ...]]
    kind = prop_def(StringAttr)
    lhs = operand_def(LayoutType)
    rhs = operand_def(LayoutType)
    result = result_def(LayoutType)
    traits = traits_def(Pure())
    assembly_format = "$kind $lhs `,` $rhs attr-dict"

    def __init__(self, kind: str, lhs: SSAValue, rhs: SSAValue):
        super().__init__(
            operands=[lhs, rhs], result_types=[LayoutType()], properties={"kind": StringAttr(kind)}
        )

    def fold(self) -> la.Layout | None:
        kinds = _BINARY[self.name]
        if self.kind.data not in kinds:
            raise la.LayoutError(f'kind must be one of {", ".join(kinds)}, got "{self.kind.data}"')
        a, b = _constant(self.lhs), _constant(self.rhs)
        return None if a is None or b is None else kinds[self.kind.data](a, b)


@irdl_op_definition
class DivideOp(_BinaryKindOp):
    name = "layout.divide"


@irdl_op_definition
class ProductOp(_BinaryKindOp):
    name = "layout.product"


@irdl_op_definition
class ComposeOp(LayoutOp):
    name = "layout.compose"
    lhs = operand_def(LayoutType)
    rhs = operand_def(LayoutType)
    result = result_def(LayoutType)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict"

    def __init__(self, lhs: SSAValue, rhs: SSAValue):
        super().__init__(operands=[lhs, rhs], result_types=[LayoutType()])

    def fold(self) -> la.Layout | None:
        a, b = _constant(self.lhs), _constant(self.rhs)
        return None if a is None or b is None else la.composition(a, b)


@irdl_op_definition
class ComplementOp(LayoutOp):
    name = "layout.complement"
    input = operand_def(LayoutType)
    cotarget = prop_def(IntegerAttr[I64])
    result = result_def(LayoutType)
    traits = traits_def(Pure())
    assembly_format = "$input `cotarget` $cotarget attr-dict"

    def __init__(self, value: SSAValue, cotarget: int):
        super().__init__(
            operands=[value],
            result_types=[LayoutType()],
            properties={"cotarget": IntegerAttr(cotarget, i64)},
        )

    def fold(self) -> la.Layout | None:
        a = _constant(self.input)
        return None if a is None else la.complement(a, self.cotarget.value.data)


class _UnaryOp(LayoutOp):
    FUNCTION: ClassVar[Callable[[la.Layout], la.Layout]]
    input = operand_def(LayoutType)
    result = result_def(LayoutType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict"

    def __init__(self, value: SSAValue):
        super().__init__(operands=[value], result_types=[LayoutType()])

    def fold(self) -> la.Layout | None:
        a = _constant(self.input)
        return None if a is None else type(self).FUNCTION(a)


@irdl_op_definition
class CoalesceOp(_UnaryOp):
    name = "layout.coalesce"
    FUNCTION: ClassVar[Callable[[la.Layout], la.Layout]] = staticmethod(la.coalesce)


@irdl_op_definition
class RightInverseOp(_UnaryOp):
    name = "layout.right_inverse"
    FUNCTION: ClassVar[Callable[[la.Layout], la.Layout]] = staticmethod(la.right_inverse)


@irdl_op_definition
class LeftInverseOp(_UnaryOp):
    name = "layout.left_inverse"
    FUNCTION: ClassVar[Callable[[la.Layout], la.Layout]] = staticmethod(la.left_inverse)


Layout = Dialect(
    "layout",
    [
        ConstantOp,
        ComposeOp,
        DivideOp,
        ProductOp,
        ComplementOp,
        CoalesceOp,
        RightInverseOp,
        LeftInverseOp,
    ],
    [LayoutAttr, LayoutType],
)

__all__ = ["Layout", "LayoutAttr", "LayoutOp", "LayoutType"]
