"""The `epilogue` dialect: a GEMM whose output tile runs a small program on chip.

`epilogue.gemm` fixes the mainloop (acc = A @ B over K, float32 accumulator; or several
accumulators, each a sum of products, for GEMMs merged horizontally) and owns a
single-block region, the epilogue program, run once per output tile. The region's
block arguments are the accumulator tiles followed by one value per extra input, typed
by how that input broadcasts over the tile:

    !epilogue.tile<T>    a full [M, N] operand (residual, saved activation)
    !epilogue.row<T>     one value per column, shared by every row (bias: shape [N])
    !epilogue.col<T>     one value per row (shape [M, 1])
    !epilogue.scalar<T>  one value for the whole tile

Primitives (the CODA set, as far as this issue needs): `map` (elementwise function
from the shared registry), `scale` (multiply by a row/col/scalar), `accumulate` (add a
full tile), `constant`, and `store` (write a value to one of the op's results).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil
from typing import ClassVar

from xdsl.dialects.builtin import (
    I64,
    AnyFloat,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    f32,
    i1,
    i64,
)
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, NoTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from coda.dialects.graph import (
    broadcast_shapes,
    tensor_shape,
    verify_constant_type,
    verify_fn_application,
)
from coda.dialects.pointwise_fns import POINTWISE_FNS
from coda.dialects.region_syntax import parse_signature_and_region, print_signature_and_region


class TileValueType(ParametrizedAttribute, TypeAttribute):
    """Base of the four on-chip value kinds; `kind` orders them for broadcasting."""

    element_type: Attribute
    KIND: ClassVar[str]

    @property
    def kind(self) -> str:
        return self.KIND


@irdl_attr_definition
class TileType(TileValueType):
    name = "epilogue.tile"
    element_type: Attribute  # declared per class: it is an IRDL parameter only here
    KIND = "tile"


@irdl_attr_definition
class RowType(TileValueType):
    name = "epilogue.row"
    element_type: Attribute  # declared per class: it is an IRDL parameter only here
    KIND = "row"


@irdl_attr_definition
class ColType(TileValueType):
    name = "epilogue.col"
    element_type: Attribute  # declared per class: it is an IRDL parameter only here
    KIND = "col"


@irdl_attr_definition
class ScalarType(TileValueType):
    name = "epilogue.scalar"
    element_type: Attribute  # declared per class: it is an IRDL parameter only here
    KIND = "scalar"


TILE_KINDS: dict[str, type[TileValueType]] = {
    t.KIND: t for t in (TileType, RowType, ColType, ScalarType)
}


def combined_kind(kinds: Sequence[str]) -> str:
    """The kind of an elementwise result: a row and a column broadcast to a tile."""
    present = set(kinds)
    if "tile" in present or {"row", "col"} <= present:
        return "tile"
    for kind in ("row", "col"):
        if kind in present:
            return kind
    return "scalar"


def classify_input(shape: Sequence[int], out_shape: Sequence[int]) -> str | None:
    """How a tensor of `shape` broadcasts over a GEMM output of `out_shape`.

    None when it is not one of the four kinds (e.g. it varies along the batch dim
    but not along rows), so it cannot be an epilogue input.
    """
    if broadcast_shapes(shape, out_shape) != tuple(out_shape):
        return None
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    m, n = out_shape[-2], out_shape[-1]
    *batch, rows, cols = padded
    varies_rows, varies_cols = rows == m and m != 1, cols == n and n != 1
    if tuple(padded) == tuple(out_shape) or (varies_rows and varies_cols):
        # a full matrix may still broadcast along some batch dims (stride 0 there)
        return "tile"
    if batch and any(b != 1 for b in batch):
        # row/col/scalar values are shared by every batch: no per-batch vectors
        return None
    if varies_cols:
        return "row"
    if varies_rows:
        return "col"
    return "scalar"


def _tile_type(value: SSAValue, op: IRDLOperation) -> TileValueType:
    if not isinstance(value.type, TileValueType):
        raise VerifyException(f"'{op.name}' operand must be an epilogue value, got {value.type}")
    return value.type


@irdl_op_definition
class MapOp(IRDLOperation):
    """An elementwise function of on-chip values (activations, casts, adds...)."""

    name = "epilogue.map"
    fn = prop_def(StringAttr)
    inputs = var_operand_def(TileValueType)
    result = result_def(TileValueType)
    traits = lazy_traits_def(lambda: (Pure(), HasParent(GemmOp)))
    assembly_format = "$fn `(` $inputs `)` attr-dict `:` functional-type($inputs, $result)"

    def __init__(self, fn: str, inputs: Sequence[SSAValue], result_type: TileValueType):
        super().__init__(
            operands=[list(inputs)], result_types=[result_type], properties={"fn": StringAttr(fn)}
        )

    def verify_(self) -> None:
        verify_fn_application(self, self.fn.data, [v.type for v in self.inputs])
        kind = combined_kind([_tile_type(v, self).kind for v in self.inputs])
        if self.result.type.kind != kind:
            raise VerifyException(
                f"'epilogue.map' result must be !epilogue.{kind} for these operands, "
                f"got {self.result.type}"
            )
        if POINTWISE_FNS[self.fn.data].predicate and self.result.type.element_type != i1:
            raise VerifyException(f"'epilogue.map' \"{self.fn.data}\" must produce i1")


@irdl_op_definition
class ScaleOp(IRDLOperation):
    """Multiply a tile by a broadcast factor: a row scale, a column scale or a scalar."""

    name = "epilogue.scale"
    tile = operand_def(TileType)
    factor = operand_def(RowType | ColType | ScalarType)
    result = result_def(TileType)
    traits = lazy_traits_def(lambda: (Pure(), HasParent(GemmOp)))
    assembly_format = "$tile `,` $factor attr-dict `:` functional-type(operands, results)"

    def __init__(self, tile: SSAValue, factor: SSAValue):
        super().__init__(operands=[tile, factor], result_types=[tile.type])

    def verify_(self) -> None:
        _verify_result_is_tile_type(self, self.tile)


@irdl_op_definition
class AccumulateOp(IRDLOperation):
    """Add a full matrix (a residual, a gradient being accumulated) to the tile."""

    name = "epilogue.accumulate"
    tile = operand_def(TileType)
    addend = operand_def(TileType)
    result = result_def(TileType)
    traits = lazy_traits_def(lambda: (Pure(), HasParent(GemmOp)))
    assembly_format = "$tile `,` $addend attr-dict `:` functional-type(operands, results)"

    def __init__(self, tile: SSAValue, addend: SSAValue):
        super().__init__(operands=[tile, addend], result_types=[tile.type])

    def verify_(self) -> None:
        _verify_result_is_tile_type(self, self.tile)


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A literal, broadcast over the tile."""

    name = "epilogue.constant"
    value = prop_def(FloatAttr | IntegerAttr)
    result = result_def(ScalarType)
    traits = lazy_traits_def(lambda: (Pure(), HasParent(GemmOp)))
    assembly_format = "$value attr-dict `->` type($result)"

    def __init__(self, value: FloatAttr | IntegerAttr):
        super().__init__(properties={"value": value}, result_types=[ScalarType(value.type)])

    def verify_(self) -> None:
        verify_constant_type(self, self.value, self.result.type.element_type)


#: the widest output a GEMM may hold whole rows of in one program (BLOCK_N >= N): a
#: 64 x 256 float32 accumulator is what a GPU's registers hold comfortably next to the
#: mainloop's tiles. Wider rows reduce in partials (epilogue.reduce) and a finalize.
FULL_ROW_MAX = 256

#: what epilogue.row_reduce computes over each whole row
ROW_REDUCE_KINDS = ("sum", "sumsq", "max", "logsumexp")


@irdl_op_definition
class RowReduceOp(IRDLOperation):
    """Reduce each whole row of the tile to one value per row (a column). The program
    holds entire rows (the kernel's BLOCK_N covers N, at most FULL_ROW_MAX), so the
    statistic is complete on chip: a norm's mean of squares or its backward's
    sum(dy * w * x), and what uses it, run in the epilogue with no partials and no
    finalize kernel."""

    name = "epilogue.row_reduce"
    kind = prop_def(StringAttr)
    tile = operand_def(TileType)
    result = result_def(ColType)
    traits = lazy_traits_def(lambda: (Pure(), HasParent(GemmOp)))
    assembly_format = "$kind $tile attr-dict `:` type($tile) `->` type($result)"

    def __init__(self, kind: str, tile: SSAValue):
        assert isinstance(tile.type, TileType)
        super().__init__(
            operands=[tile],
            result_types=[ColType(tile.type.element_type)],
            properties={"kind": StringAttr(kind)},
        )

    def verify_(self) -> None:
        if self.kind.data not in ROW_REDUCE_KINDS:
            raise VerifyException(
                f"'epilogue.row_reduce' kind must be one of {', '.join(ROW_REDUCE_KINDS)}, "
                f'got "{self.kind.data}"'
            )
        if self.result.type.element_type != self.tile.type.element_type:
            raise VerifyException(
                "'epilogue.row_reduce' result must have the tile's element type "
                f"{self.tile.type.element_type}, got {self.result.type}"
            )


@irdl_op_definition
class StoreOp(IRDLOperation):
    """Write a tile to result `index` of the enclosing epilogue.gemm, or a column (one
    value per row, e.g. a norm's rstd) to a result of shape [..., M, 1]."""

    name = "epilogue.store"
    value = operand_def(TileType | ColType)
    index = prop_def(IntegerAttr[I64])
    traits = lazy_traits_def(lambda: (HasParent(GemmOp),))
    assembly_format = "$value `:` type($value) `->` `result` $index attr-dict"

    def __init__(self, value: SSAValue, index: int):
        super().__init__(operands=[value], properties={"index": IntegerAttr(index, i64)})

    def verify_(self) -> None:
        gemm, index = _target_result(self)
        want = gemm.outputs[index].type.element_type
        if self.value.type.element_type != want:
            raise VerifyException(
                f"'epilogue.store' of {self.value.type} to result {index} of element type "
                f"{want}: insert a cast"
            )


#: partial reductions an epilogue computes per row and group of columns. `logsumexp`
#: stores log(sum(exp)) of each group: numerically safe (max-shifted) and combined by
#: another logsumexp, so one side output suffices instead of a (max, sum-exp) pair.
PARTIAL_REDUCE_KINDS = ("sum", "max", "sumsq", "logsumexp")

#: columns (or rows) per partial that planning uses: the narrowest BLOCK_N (BLOCK_M) of
#: any target's tile (coda.codegen.tile_config keeps every one a multiple of it), so the
#: side output's shape is fixed before a target is chosen and each program writes
#: BLOCK_N / 32 partials per row (BLOCK_M / 32 per column)
PARTIAL_COLUMNS = 32
PARTIAL_ROWS = 32

#: what a partial reduction groups: "columns" reduces each row over groups of columns
#: (row statistics), "rows" reduces each column over groups of rows (column sums:
#: bias and norm-weight gradients)
PARTIAL_AXES = ("columns", "rows")


def partial_shape(out_shape: Sequence[int], group: int, axis: str = "columns") -> tuple[int, ...]:
    """Shape of the side output of a partial reduction over an `out_shape` tile grid:
    [..., M, ceil(N / group)] for groups of columns, [..., ceil(M / group), N] for rows."""
    if axis == "columns":
        return (*out_shape[:-1], ceil(out_shape[-1] / group))
    return (*out_shape[:-2], ceil(out_shape[-2] / group), out_shape[-1])


@irdl_op_definition
class ReduceOp(IRDLOperation):
    """Reduce the tile over groups of `columns` columns of each row (or `rows` rows of
    each column) and write one partial per group to result `index`: of shape
    [..., M, ceil(N / columns)] (or [..., ceil(M / rows), N]). Elements past the edge do
    not take part. A finalize (a graph.reduce over the partials' grouped dim) completes
    the reduction: sum for sum/sumsq, max, logsumexp."""

    name = "epilogue.reduce"
    kind = prop_def(StringAttr)
    value = operand_def(TileType)
    index = prop_def(IntegerAttr[I64])
    axis = prop_def(StringAttr)
    group = prop_def(IntegerAttr[I64])
    traits = lazy_traits_def(lambda: (HasParent(GemmOp),))

    def __init__(
        self,
        kind: str,
        value: SSAValue,
        index: int,
        group: int = PARTIAL_COLUMNS,
        axis: str = "columns",
    ):
        super().__init__(
            operands=[value],
            properties={
                "kind": StringAttr(kind),
                "index": IntegerAttr(index, i64),
                "axis": StringAttr(axis),
                "group": IntegerAttr(group, i64),
            },
        )

    def print(self, printer: Printer) -> None:
        # `"sum" %t : !epilogue.tile<f32> -> result 1 rows 32`
        printer.print_string(" ")
        printer.print_attribute(self.kind)
        printer.print_string(" ")
        printer.print_operand(self.value)
        printer.print_string(" : ")
        printer.print_attribute(self.value.type)
        printer.print_string(
            f" -> result {self.index.value.data} {self.axis.data} {self.group_size}"
        )
        printer.print_op_attributes(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> ReduceOp:
        kind = parser.parse_str_literal("reduction kind")
        operand = parser.parse_unresolved_operand()
        parser.parse_punctuation(":")
        tile = parser.parse_type()
        parser.parse_punctuation("->")
        parser.parse_keyword("result")
        index = parser.parse_integer(allow_boolean=False, allow_negative=False)
        pos = parser.pos
        axis = parser.parse_optional_keyword("columns") or parser.parse_optional_keyword("rows")
        if axis is None:
            parser.raise_error("expected 'columns' or 'rows' (what a partial groups)", pos)
        group = parser.parse_integer(allow_boolean=False, allow_negative=False)
        attributes = parser.parse_optional_attr_dict()
        op = cls(kind, parser.resolve_operand(operand, tile), index, group, axis)
        op.attributes.update(attributes)
        return op

    @property
    def group_size(self) -> int:
        return self.group.value.data

    @property
    def over_rows(self) -> bool:
        """True for column partials (each column reduced over groups of rows)."""
        return self.axis.data == "rows"

    def verify_(self) -> None:
        if self.kind.data not in PARTIAL_REDUCE_KINDS:
            raise VerifyException(
                f"'epilogue.reduce' kind must be one of {', '.join(PARTIAL_REDUCE_KINDS)}, "
                f'got "{self.kind.data}"'
            )
        if self.axis.data not in PARTIAL_AXES:
            raise VerifyException(
                f"'epilogue.reduce' groups columns or rows, got \"{self.axis.data}\""
            )
        group = self.group_size
        if group <= 0 or group & (group - 1):
            raise VerifyException(
                f"'epilogue.reduce' {self.axis.data} must be a power of two, got {group}"
            )
        if self.over_rows and self.kind.data not in ("sum", "sumsq", "max"):
            raise VerifyException(
                f"'epilogue.reduce' over rows: sum, sumsq or max, got \"{self.kind.data}\""
            )
        if not isinstance(self.value.type.element_type, AnyFloat):
            raise VerifyException(f"'epilogue.reduce' of a {self.value.type}: floats only")
        gemm, index = _target_result(self)
        if gemm.outputs[index].type.element_type != f32:
            raise VerifyException(
                f"'epilogue.reduce' partials are f32, result {index} is {gemm.outputs[index].type}"
            )


def _target_result(op: StoreOp | ReduceOp) -> tuple[GemmOp, int]:
    """The enclosing gemm and the result index `op` writes, checked to exist."""
    gemm = op.parent_op()
    assert isinstance(gemm, GemmOp)  # HasParent
    index = op.index.value.data
    if not 0 <= index < len(gemm.outputs):
        raise VerifyException(
            f"'{op.name}' to result {index}, but the gemm has {len(gemm.outputs)} result(s)"
        )
    return gemm, index


def _verify_result_is_tile_type(op: IRDLOperation, tile: SSAValue) -> None:
    if op.results[0].type != tile.type:
        raise VerifyException(
            f"'{op.name}' result type {op.results[0].type} must be the tile's type {tile.type}"
        )


def _gemm_out_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    if not (len(a) >= 2 and len(a) == len(b)) or a[-1] != b[-2]:
        return None
    batch = broadcast_shapes(a[:-2], b[:-2])
    return None if batch is None else (*batch, a[-2], b[-1])


Product = tuple[SSAValue, SSAValue]  # (lhs, rhs) of one matrix product


@irdl_op_definition
class GemmOp(IRDLOperation):
    """Accumulators acc_j = sum_p lhs_p @ rhs_p (float32), then the region runs on each
    output tile.

    One accumulator of one product is the plain GEMM (`epilogue.gemm %a, %b`). Several
    accumulators are GEMMs merged horizontally: they share the output tile (q, k and v
    projections of the same rows; gate and up), so one kernel reads their common operand
    once and their epilogue sees all of them (`%x, %wg | %x, %wu`). Several products in
    one accumulator are a GEMM over concatenated K (`%dq, %wq + %dk, %wk`: the input
    gradient of projections that share an input), summed in one accumulator instead of
    written and added.
    """

    name = "epilogue.gemm"
    products = var_operand_def(TensorType)  # lhs, rhs of each product, in order
    inputs = var_operand_def(TensorType)
    #: how many consecutive products each accumulator sums
    sums = prop_def(DenseArrayBase)
    outputs = var_result_def(TensorType)
    body = region_def("single_block")
    # stores are the program's effects; a yield would only repeat them
    traits = traits_def(NoTerminator())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(
        self,
        accumulators: Sequence[Sequence[Product]],
        inputs: Sequence[SSAValue],
        result_types: Sequence[Attribute],
        body: Region,
    ):
        products = [v for acc in accumulators for product in acc for v in product]
        super().__init__(
            operands=[products, list(inputs)],
            result_types=[list(result_types)],
            regions=[body],
            properties={"sums": DenseArrayBase.from_list(i64, [len(a) for a in accumulators])},
        )

    @property
    def accumulators(self) -> list[list[Product]]:
        """Per accumulator, the (lhs, rhs) products it sums."""
        pairs = iter(self.product_pairs)
        return [[next(pairs) for _ in range(count)] for count in self.sums.get_values()]

    @property
    def product_pairs(self) -> list[Product]:
        return list(zip(self.products[::2], self.products[1::2], strict=True))

    @property
    def out_shape(self) -> tuple[int, ...]:
        lhs, rhs = self.products[0], self.products[1]
        shape = _gemm_out_shape(tensor_shape(lhs), tensor_shape(rhs))
        assert shape is not None
        return shape

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        for j, acc in enumerate(self.accumulators):
            if j:
                printer.print_string(" | ")
            for p, (lhs, rhs) in enumerate(acc):
                if p:
                    printer.print_string(" + ")
                printer.print_operand(lhs)
                printer.print_string(", ")
                printer.print_operand(rhs)
        if self.inputs:
            printer.print_string(" inputs(")
            printer.print_list(self.inputs, printer.print_operand)
            printer.print_string(")")
        print_signature_and_region(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> GemmOp:
        pos = parser.pos
        shape: list[int] = []  # products per accumulator
        operands = []
        while True:
            count = 0
            while True:
                operands.append(parser.parse_unresolved_operand())
                parser.parse_punctuation(",")
                operands.append(parser.parse_unresolved_operand())
                count += 1
                if parser.parse_optional_punctuation("+") is None:
                    break
            shape.append(count)
            if parser.parse_optional_punctuation("|") is None:
                break
        if parser.parse_optional_keyword("inputs"):
            operands += parser.parse_comma_separated_list(
                Parser.Delimiter.PAREN, parser.parse_unresolved_operand
            )
        resolved, result_types, body, attributes = parse_signature_and_region(parser, operands, pos)
        operand_list = iter(resolved)
        accumulators = [
            [(next(operand_list), next(operand_list)) for _ in range(count)] for count in shape
        ]
        op = cls(accumulators, list(operand_list), result_types, body)
        if attributes is not None:
            op.attributes |= attributes.data
        return op

    @property
    def holds_full_rows(self) -> bool:
        """Whether a program must hold whole rows of the output (a row_reduce)."""
        return any(isinstance(op, RowReduceOp) for op in self.body.block.ops)

    def verify_(self) -> None:
        sums = self.sums.get_values()
        if not sums or any(n < 1 for n in sums) or 2 * sum(sums) != len(self.products):
            raise VerifyException(
                f"'epilogue.gemm' sums {list(sums)} do not describe its "
                f"{len(self.products)} product operands (two per product, at least one "
                "product per accumulator)"
            )
        out = None
        for lhs, rhs in self.product_pairs:
            a, b = tensor_shape(lhs), tensor_shape(rhs)
            shape = _gemm_out_shape(a, b)
            if shape is None:
                raise VerifyException(
                    f"'epilogue.gemm' operands {list(a)} x {list(b)} are not a (batched) "
                    "matrix product"
                )
            if out is not None and shape != out:
                raise VerifyException(
                    f"'epilogue.gemm' products must share the output tile: {list(a)} x "
                    f"{list(b)} gives {list(shape)}, the first product {list(out)}"
                )
            out = shape
        assert out is not None
        block = self.body.block
        accs = len(sums)
        if len(block.args) != accs + len(self.inputs):
            raise VerifyException(
                f"'epilogue.gemm' region takes {accs} accumulator(s) and {len(self.inputs)} "
                f"input(s), so {accs + len(self.inputs)} block arguments, got {len(block.args)}"
            )
        for arg in block.args[:accs]:
            if arg.type != TileType(f32):
                raise VerifyException(
                    f"'epilogue.gemm' accumulator must be !epilogue.tile<f32>, got {arg.type}"
                )
        for i, (value, arg) in enumerate(zip(self.inputs, block.args[accs:], strict=True)):
            kind = classify_input(tensor_shape(value), out)
            expected = None if kind is None else TILE_KINDS[kind](value.type.element_type)
            if arg.type != expected:
                raise VerifyException(
                    f"'epilogue.gemm' input {i} of shape {list(tensor_shape(value))} over a "
                    f"{list(out)} output must be {expected or 'a tile, row, col or scalar'}, "
                    f"block argument is {arg.type}"
                )
        stored: dict[int, StoreOp | ReduceOp] = {}
        # ops of other dialects that write results (lowp.store_quantized): index -> shape
        written: dict[int, tuple[int, ...]] = {}
        for op in block.ops:
            writes = getattr(op, "written_results", None)
            if writes is not None:
                for index, shape in writes(out).items():
                    if index in stored or index in written:
                        raise VerifyException(f"'epilogue.gemm' result {index} is stored twice")
                    written[index] = shape
                continue
            if not isinstance(op, StoreOp | ReduceOp):
                continue
            index = op.index.value.data  # range and element type: StoreOp.verify_
            if index in stored or index in written:
                raise VerifyException(f"'epilogue.gemm' result {index} is stored twice")
            stored[index] = op
        if out[-1] > FULL_ROW_MAX and any(isinstance(op, RowReduceOp) for op in block.ops):
            raise VerifyException(
                f"'epilogue.gemm' reduces whole rows of {out[-1]} columns: at most "
                f"{FULL_ROW_MAX} fit one program (reduce wider rows in partials)"
            )
        missing = sorted(set(range(len(self.outputs))) - set(stored) - set(written))
        if missing:
            raise VerifyException(f"'epilogue.gemm' results {missing} are never stored")
        for i, ty in enumerate(self.result_types):
            if i in written:
                if tensor_shape(ty) != written[i]:
                    raise VerifyException(
                        f"'epilogue.gemm' result {i} has shape {list(tensor_shape(ty))}, "
                        f"its writer stores {list(written[i])}"
                    )
                continue
            writer = stored[i]
            if isinstance(writer, ReduceOp):
                want = partial_shape(out, writer.group_size, writer.axis.data)
            elif isinstance(writer.value.type, ColType):
                want = (*out[:-1], 1)
            else:
                want = out
            if tensor_shape(ty) != want:
                what = (
                    "its partials cover"
                    if isinstance(writer, ReduceOp)
                    else "the stored column covers"
                    if isinstance(writer.value.type, ColType)
                    else "the output tile covers"
                )
                raise VerifyException(
                    f"'epilogue.gemm' result {i} has shape {list(tensor_shape(ty))}, "
                    f"{what} {list(want)}"
                )


def new_epilogue_block(input_types: Sequence[Attribute], accumulators: int = 1) -> Block:
    """The region block of an epilogue.gemm: the accumulator tiles, then one arg per
    input."""
    return Block(arg_types=[*[TileType(f32)] * accumulators, *input_types])


Epilogue = Dialect(
    "epilogue",
    [GemmOp, MapOp, ScaleOp, AccumulateOp, ConstantOp, StoreOp, ReduceOp, RowReduceOp],
    [TileType, RowType, ColType, ScalarType],
)
