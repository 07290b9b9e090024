"""The `lowp` dialect: low-precision tensors as types, and the ops that cross into them.

Element types are builtin ones (xDSL has them, with encodings): `f8E4M3FN`, `f8E5M2`,
`f6E3M2FN`, `f6E2M3FN`, `f4E2M1FN`, scales `f8E8M0FNU` / `f8E4M3FN` / `f32`, and integers
of any width 1..8 as `si3`, `ui5`... (stored densely packed, see coda.runtime.quantize).
This dialect adds the scaled structure:

    !lowp.scaled<tensor<256x128xf8E4M3FN>, row, f32, #layout.cute<...>>

is a [256, 128] tensor of e4m3 codes with one float32 scale per row, placed by the
layout from element coordinates (CuTe order: the last torch dim first) to offsets in the
scale tensor. The last dim is the reduction dim (K): activations are [M, K] and weights
are stored as nn.Linear keeps them, [N, K]; a GEMM reads the weight transposed through a
view. Granularities (scale block = rows x cols of elements sharing one scale):

    tensor            one scale                                 fp8, int
    row               1 x K                                     fp8, int
    block<1x128>      bm x bk, any divisors of the shape        fp8, int (groups: 1 x g)
    mx<32, floor>     1 x 32, E8M0 scale, rule floor | rceil    fp8, fp6, fp4
    nvfp4             1 x 16, E4M3 scale, plus a f32 tensor scale   fp4 (e2m1)

The scale layout may be any layout of the right size and cosize (a tensor-core swizzle
of MX scales included); the type's builder gives the row-major one
(`layout_algebra.block_scale_layout`).

    %q = lowp.quantize %x : tensor<256x128xf32> -> !lowp.scaled<...>
    %y = lowp.dequantize %q : !lowp.scaled<...> -> tensor<256x128xf32>
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from xdsl.dialects.builtin import (
    I64,
    AnyFloat,
    ArrayAttr,
    Float8E4M3FNType,
    Float8E5M2Type,
    Float8E8M0FNUType,
    IntAttr,
    IntegerAttr,
    IntegerType,
    Signedness,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.dialects.builtin import (
    Float4E2M1FNType as F4E2M1,
)
from xdsl.dialects.builtin import (
    Float6E2M3FNType as F6E2M3,
)
from xdsl.dialects.builtin import (
    Float6E3M2FNType as F6E3M2,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import HasParent, Pure
from xdsl.utils.exceptions import VerifyException

from coda.dialects import layout_algebra as la
from coda.dialects.epilogue import GemmOp, TileType
from coda.dialects.layout import LayoutAttr

GRANULARITIES = ("tensor", "row", "block", "mx", "nvfp4")
MX_RULES = ("floor", "rceil")
FP8 = (Float8E4M3FNType, Float8E5M2Type)
MX_ELEMENTS = (*FP8, F6E3M2, F6E2M3, F4E2M1)


def element_name(element: Attribute) -> str:
    """coda.runtime.quantize's name of a builtin element type (e4m3fn, int3, uint5...)."""
    names = {
        Float8E4M3FNType: "e4m3fn",
        Float8E5M2Type: "e5m2",
        F6E3M2: "e3m2",
        F6E2M3: "e2m3",
        F4E2M1: "e2m1",
    }
    for cls, name in names.items():
        if isinstance(element, cls):
            return name
    if isinstance(element, IntegerType):
        unsigned = element.signedness.data == Signedness.UNSIGNED
        return f"{'u' if unsigned else ''}int{element.width.data}"
    raise ValueError(f"{element} is not a lowp element type")


def _is_int(element: Attribute) -> bool:
    return isinstance(element, IntegerType) and element.signedness.data != Signedness.SIGNLESS


@irdl_attr_definition
class ScaledType(ParametrizedAttribute, TypeAttribute):
    """A quantized tensor: element codes, the scaling granularity, the scales' element
    type and where each element's scale is (a layout)."""

    name = "lowp.scaled"
    data: TensorType
    granularity: StringAttr
    #: elements per scale along each dim (rows, cols); for tensor/row, derived from shape
    block: ArrayAttr[IntAttr]
    #: MX scale rule (floor | rceil); empty for the other granularities
    rule: StringAttr
    scale_type: Attribute
    scale_layout: LayoutAttr

    @staticmethod
    def get(
        data: TensorType,
        granularity: str,
        scale_type: Attribute,
        block: Sequence[int] | None = None,
        rule: str = "",
        scale_layout: LayoutAttr | None = None,
    ) -> ScaledType:
        """The type with the canonical block of `granularity` and a row-major scale
        layout unless given."""
        shape = tuple(data.get_shape())
        block = tuple(block) if block is not None else _default_block(granularity, shape)
        if scale_layout is None:
            try:
                scale_layout = LayoutAttr.from_layout(la.block_scale_layout(shape, block))
            except la.LayoutError as err:
                raise VerifyException(_block_error(granularity, shape, block)) from err
        return ScaledType(
            data,
            StringAttr(granularity),
            ArrayAttr(IntAttr(b) for b in block),
            StringAttr(rule),
            scale_type,
            scale_layout,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.get_shape())

    @property
    def element_type(self) -> Attribute:
        return self.data.element_type

    @property
    def block_shape(self) -> tuple[int, ...]:
        return tuple(b.data for b in self.block.data)

    @property
    def scale_shape(self) -> tuple[int, ...]:
        return tuple(n // b for n, b in zip(self.shape, self.block_shape, strict=True))

    # -- syntax ------------------------------------------------------------------------

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            start = parser.pos
            data = parser.parse_type()
            if not isinstance(data, TensorType):
                parser.raise_error(f"'lowp.scaled' data must be a tensor type, got {data}")
            parser.parse_punctuation(",")
            pos = parser.pos
            granularity = parser.parse_identifier()
            if granularity not in GRANULARITIES:
                parser.raise_error(
                    f"'lowp.scaled' granularity must be one of {', '.join(GRANULARITIES)}, "
                    f"got {granularity}",
                    pos,
                    parser.pos,
                )
            block, rule = None, ""
            if granularity == "block":
                with parser.in_angle_brackets():
                    block = parser.parse_dimension_list()
            elif granularity == "mx":
                with parser.in_angle_brackets():
                    block = (1, parser.parse_integer(allow_negative=False, allow_boolean=False))
                    parser.parse_punctuation(",")
                    rule = parser.parse_identifier()
            parser.parse_punctuation(",")
            scale_type = parser.parse_type()
            layout = None
            if parser.parse_optional_punctuation(",") is not None:
                layout = parser.parse_attribute()
                if not isinstance(layout, LayoutAttr):
                    parser.raise_error(f"'lowp.scaled' scale layout must be a layout, got {layout}")
            try:
                typ = cls.get(data, granularity, scale_type, block, rule, layout)
            except VerifyException as err:
                parser.raise_error(str(err), start, parser.pos)
        return list(typ.parameters)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string("<")
        printer.print_attribute(self.data)
        printer.print_string(f", {self.granularity.data}")
        if self.granularity.data == "block":
            printer.print_string(f"<{'x'.join(str(b) for b in self.block_shape)}>")
        elif self.granularity.data == "mx":
            printer.print_string(f"<{self.block_shape[-1]}, {self.rule.data}>")
        printer.print_string(", ")
        printer.print_attribute(self.scale_type)
        printer.print_string(", ")
        printer.print_attribute(self.scale_layout)
        printer.print_string(">")

    # -- verification -------------------------------------------------------------------

    def verify(self) -> None:
        kind, shape, block = self.granularity.data, self.shape, self.block_shape
        elem, scale = self.element_type, self.scale_type
        if kind not in GRANULARITIES:
            raise VerifyException(f"'lowp.scaled' granularity {kind} is unknown")
        if len(shape) != 2:
            raise VerifyException(f"'lowp.scaled' data must be 2-D [rows, K], got {list(shape)}")
        if len(block) != 2 or any(b < 1 for b in block):
            raise VerifyException(f"'lowp.scaled' block {list(block)} must be two positive dims")
        for n, b, what in zip(shape, block, ("rows", "reduction dim"), strict=True):
            if n % b:
                raise VerifyException(
                    f"'lowp.scaled' {kind} scaling: block {block[0]}x{block[1]} does not "
                    f"divide the {what} {n} of {shape[0]}x{shape[1]}"
                )
        if _is_int(elem) and not 1 <= elem.width.data <= 8:
            raise VerifyException(
                f"'lowp.scaled' integer elements are 1 to 8 bits wide, got {elem}"
            )
        if kind == "mx":
            _require(
                isinstance(elem, MX_ELEMENTS), f"mx elements must be fp8, fp6 or fp4, got {elem}"
            )
            _require(
                block[0] == 1 and block[1] == 32, f"mx blocks are 1x32, got {block[0]}x{block[1]}"
            )
            _require(isinstance(scale, Float8E8M0FNUType), f"mx scales are f8E8M0FNU, got {scale}")
            _require(
                self.rule.data in MX_RULES, f"mx rule must be floor or rceil, got {self.rule.data}"
            )
        elif kind == "nvfp4":
            _require(isinstance(elem, F4E2M1), f"nvfp4 elements are f4E2M1FN, got {elem}")
            _require(tuple(block) == (1, 16), f"nvfp4 blocks are 1x16, got {block[0]}x{block[1]}")
            _require(
                isinstance(scale, Float8E4M3FNType), f"nvfp4 block scales are f8E4M3FN, got {scale}"
            )
        else:
            _require(
                isinstance(elem, FP8) or _is_int(elem),
                f"{kind} scaling takes fp8 or integer (si/ui 1..8) elements, got {elem}",
            )
            _require(
                isinstance(scale, AnyFloat) and scale.bitwidth >= 16,
                f"{kind} scales are f32, bf16 or f16, got {scale}",
            )
            want = _default_block(kind, shape) if kind != "block" else block
            _require(tuple(block) == tuple(want), f"{kind} block must be {want[0]}x{want[1]}")
            _require(not self.rule.data, f"a rule is for mx scaling only, got {self.rule.data}")
        layout = self.scale_layout.layout
        if layout.size != prod(shape) or layout.cosize != prod(self.scale_shape):
            raise VerifyException(
                f"'lowp.scaled' scale layout {layout} must map {prod(shape)} elements onto "
                f"{prod(self.scale_shape)} scales, it has size {layout.size} and cosize "
                f"{layout.cosize}"
            )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise VerifyException(f"'lowp.scaled' {message}")


def _default_block(granularity: str, shape: Sequence[int]) -> tuple[int, ...]:
    return {
        "tensor": tuple(shape),
        "row": (1, shape[-1]),
        "mx": (1, 32),
        "nvfp4": (1, 16),
        "block": (1, 128),
    }[granularity]


def _block_error(granularity: str, shape: Sequence[int], block: Sequence[int]) -> str:
    what = "reduction dim" if shape[-1] % block[-1] else "rows"
    n = shape[-1] if shape[-1] % block[-1] else shape[0]
    return (
        f"'lowp.scaled' {granularity} scaling: block {block[0]}x{block[1]} does not divide "
        f"the {what} {n} of {shape[0]}x{shape[1]}"
    )


@irdl_op_definition
class QuantizeOp(IRDLOperation):
    """Quantize a float tensor: per scale block, amax -> scale -> round to the element
    grid (coda.runtime.quantize defines the arithmetic of each granularity)."""

    name = "lowp.quantize"
    input = operand_def(TensorType)
    result = result_def(ScaledType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, result_type: ScaledType):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        _verify_pair(self, self.input.type, self.result.type)


@irdl_op_definition
class DequantizeOp(IRDLOperation):
    """Decode the elements and multiply by their scales."""

    name = "lowp.dequantize"
    input = operand_def(ScaledType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, result_type: TensorType):
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        _verify_pair(self, self.result.type, self.input.type)


def _verify_pair(op: IRDLOperation, plain: TensorType, scaled: ScaledType) -> None:
    if tuple(plain.get_shape()) != scaled.shape:
        raise VerifyException(
            f"'{op.name}' shapes differ: {list(plain.get_shape())} and {list(scaled.shape)}"
        )
    if not isinstance(plain.element_type, AnyFloat):
        raise VerifyException(f"'{op.name}' high-precision side must be float, got {plain}")


def element_bits(element: Attribute) -> int:
    """Bits per element as stored (fp8 8, fp6 6, fp4 4, integers their width)."""
    if isinstance(element, IntegerType):
        return element.width.data
    return {F6E3M2: 6, F6E2M3: 6, F4E2M1: 4}.get(type(element), 8)


def storage_types(scaled: ScaledType) -> list[TensorType]:
    """The buffers a scaled tensor is stored in: codes packed densely along K as bytes
    (ui8), then the scales (8-bit float scales travel as ui8: torch cannot pass
    float8_e8m0fnu to a kernel), then NVFP4's float32 tensor scale."""
    ui8 = IntegerType(8, Signedness.UNSIGNED)
    rows, k = scaled.shape
    codes = TensorType(ui8, [rows, -(-k * element_bits(scaled.element_type) // 8)])
    scale_elem = (
        ui8
        if isinstance(scaled.scale_type, Float8E8M0FNUType | Float8E4M3FNType)
        else (scaled.scale_type)
    )
    types = [codes, TensorType(scale_elem, list(scaled.scale_shape))]
    if scaled.granularity.data == "nvfp4":
        types.append(TensorType(f32, [1]))
    return types


@irdl_op_definition
class AssembleOp(IRDLOperation):
    """View packed codes and their scales (and NVFP4's tensor scale) as one scaled
    tensor: no data moves. This is how a weight quantized ahead of time enters a
    kernel, to be dequantized tile by tile in the GEMM mainloop that reads it."""

    name = "lowp.assemble"
    parts = var_operand_def(TensorType)
    result = result_def(ScaledType)
    traits = traits_def(Pure())
    assembly_format = "$parts attr-dict `:` functional-type($parts, $result)"

    def __init__(self, parts: Sequence[SSAValue], result_type: ScaledType):
        super().__init__(operands=[list(parts)], result_types=[result_type])

    def verify_(self) -> None:
        want = storage_types(self.result.type)
        got = [v.type for v in self.parts]
        if got != want:
            raise VerifyException(
                f"'lowp.assemble' of {self.result.type} takes ({', '.join(map(str, want))}), "
                f"got ({', '.join(map(str, got))})"
            )


@irdl_op_definition
class StoreQuantizedOp(IRDLOperation):
    """Inside an epilogue: quantize the output tile and store codes and scales to two
    results of the enclosing epilogue.gemm (amax per block, scale, round, store: one
    pass over the tile while it is on chip, no high-precision copy written).

        lowp.store_quantized %t : !epilogue.tile<f32> -> results(1, 2)
            as !lowp.scaled<tensor<64x96xf8E4M3FN>, mx<32, floor>, f8E8M0FNU>

    The scale blocks must lie within one row (mx, nvfp4, block<1xB>): a tile then holds
    whole blocks, as long as BLOCK_N is a multiple of the block (codegen checks)."""

    name = "lowp.store_quantized"
    value = operand_def(TileType)
    codes = prop_def(IntegerAttr[I64])
    scales = prop_def(IntegerAttr[I64])
    format = prop_def(ScaledType)
    traits = lazy_traits_def(lambda: (HasParent(GemmOp),))
    assembly_format = (
        "$value `:` type($value) `->` `results` `(` $codes `,` $scales `)` "
        "`as` qualified($format) attr-dict"
    )

    def __init__(self, value: SSAValue, codes: int, scales: int, format: ScaledType):
        super().__init__(
            operands=[value],
            properties={
                "codes": IntegerAttr(codes, i64),
                "scales": IntegerAttr(scales, i64),
                "format": format,
            },
        )

    def written_results(self, out_shape: Sequence[int]) -> dict[int, tuple[int, ...]]:
        """Result index -> the shape this op stores there (epilogue.gemm's verifier)."""
        codes, scales = storage_types(self.format)[:2]
        return {
            self.codes.value.data: tuple(codes.get_shape()),
            self.scales.value.data: tuple(scales.get_shape()),
        }

    def verify_(self) -> None:
        fmt = self.format
        gemm = self.parent_op()
        assert isinstance(gemm, GemmOp)  # HasParent
        if fmt.shape != tuple(gemm.out_shape):
            raise VerifyException(
                f"'lowp.store_quantized' format shape {list(fmt.shape)} is not the output "
                f"tile's {list(gemm.out_shape)}"
            )
        if fmt.block_shape[0] != 1 or fmt.granularity.data in ("tensor", "row"):
            raise VerifyException(
                f"'lowp.store_quantized' quantizes blocks within a row (mx, nvfp4, block<1xB>), "
                f"not {fmt.granularity.data} {fmt.block_shape[0]}x{fmt.block_shape[1]}"
            )
        want = storage_types(fmt)
        for index, ty in zip((self.codes, self.scales), want, strict=False):
            i = index.value.data
            if not 0 <= i < len(gemm.outputs):
                raise VerifyException(
                    f"'lowp.store_quantized' to result {i}, but the gemm has "
                    f"{len(gemm.outputs)} result(s)"
                )
            if gemm.outputs[i].type != ty:
                raise VerifyException(
                    f"'lowp.store_quantized' result {i} must be {ty}, got {gemm.outputs[i].type}"
                )


Lowp = Dialect("lowp", [QuantizeOp, DequantizeOp, AssembleOp, StoreQuantizedOp], [ScaledType])

__all__ = [
    "AssembleOp",
    "DequantizeOp",
    "Lowp",
    "QuantizeOp",
    "ScaledType",
    "StoreQuantizedOp",
    "element_bits",
    "element_name",
    "storage_types",
]
