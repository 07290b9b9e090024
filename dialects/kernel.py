"""The `kernel` dialect: the program after splitting, one op per launch.

Each kernel op is isolated from above: its region's block arguments stand for the
op's operands (the buffers it reads) and `kernel.yield` names the buffers it writes.
Codegen turns each op into one Triton kernel (or, for `kernel.fallback`, a torch
call); what stays outside kernels in the function (`graph.view`, `graph.constant`)
moves no data and costs no launch.

    kernel.gemm      one epilogue.gemm: GEMM mainloop + epilogue program; or two
                     chained, the second's lhs the first's output tiles (chain-gemms)
    kernel.loop      loop-fused graph.pointwise / graph.reduce ops over one shape
    kernel.attention one graph.attention or graph.attention_backward (tiled, online
                     softmax), reading its operands through views in place
    kernel.fallback  one graph.opaque (or other unsupported work) run by torch
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Attribute, Block, Dialect, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import IsolatedFromAbove, IsTerminator
from xdsl.utils.exceptions import VerifyException

from coda.dialects.region_syntax import parse_signature_and_region, print_signature_and_region

if TYPE_CHECKING:
    from coda.dialects.epilogue import GemmOp


@irdl_op_definition
class YieldOp(IRDLOperation):
    name = "kernel.yield"
    values = var_operand_def()
    traits = traits_def(IsTerminator())
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, values: Sequence[SSAValue]):
        super().__init__(operands=[list(values)])


class KernelOp(IRDLOperation):
    """Shared structure and syntax of the four kernel kinds:

    %r = kernel.gemm "name" (%a, %b) : (types) -> (types) { ^bb0(...): ... kernel.yield }
    """

    KIND: ClassVar[str]
    sym_name = prop_def(StringAttr)
    inputs = var_operand_def()
    outputs = var_result_def()
    body = region_def("single_block")
    traits = traits_def(IsolatedFromAbove())

    def __init__(
        self,
        name: str,
        inputs: Sequence[SSAValue],
        result_types: Sequence[Attribute],
        body: Region,
    ):
        super().__init__(
            operands=[list(inputs)],
            result_types=[list(result_types)],
            regions=[body],
            properties={"sym_name": StringAttr(name)},
        )

    @property
    def kernel_name(self) -> str:
        return self.sym_name.data

    @property
    def terminator(self) -> YieldOp:
        last = self.body.block.last_op
        assert isinstance(last, YieldOp)
        return last

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_attribute(self.sym_name)
        printer.print_string(" (")
        printer.print_list(self.inputs, printer.print_operand)
        printer.print_string(")")
        print_signature_and_region(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> KernelOp:
        name = parser.parse_str_literal()
        pos = parser.pos
        operands = parser.parse_comma_separated_list(
            Parser.Delimiter.PAREN, parser.parse_unresolved_operand
        )
        resolved, result_types, body, attributes = parse_signature_and_region(parser, operands, pos)
        op = cls(name, resolved, result_types, body)
        if attributes is not None:
            op.attributes |= attributes.data
        return op

    def verify_(self) -> None:
        block = self.body.block
        if [a.type for a in block.args] != list(self.operand_types):
            raise VerifyException(
                f"'{self.name}' block arguments must match its operand types one to one"
            )
        last = block.last_op
        if not isinstance(last, YieldOp):
            raise VerifyException(f"'{self.name}' body must end in kernel.yield")
        if [v.type for v in last.values] != list(self.result_types):
            raise VerifyException(
                f"'{self.name}' yields ({', '.join(str(v.type) for v in last.values)}) but "
                f"declares results ({', '.join(str(t) for t in self.result_types)})"
            )
        self.verify_contents(block)

    def verify_contents(self, block: Block) -> None:
        """Kind-specific checks on the ops inside the kernel."""


def _body_ops(block: Block) -> list[IRDLOperation]:
    return [op for op in block.ops if not isinstance(op, YieldOp)]


@irdl_op_definition
class GemmKernelOp(KernelOp):
    name = "kernel.gemm"
    KIND: ClassVar[str] = "gemm"

    @property
    def gemms(self) -> list[GemmOp]:
        """Its epilogue.gemm ops: one, or a chain's two (producer first)."""
        ops = _body_ops(self.body.block)
        return [op for op in ops if op.name == "epilogue.gemm"]  # type: ignore[misc]

    def verify_contents(self, block: Block) -> None:
        gemms = self.gemms
        if len(gemms) == 2:
            _verify_chain(*gemms)
        elif len(gemms) != 1:
            raise VerifyException(
                "'kernel.gemm' must contain one epilogue.gemm, or two chained (the second "
                f"reading the first's results as its lhs), found {len(gemms)}"
            )
        # A yielded view is a store in another layout: it must be invertible
        for value in block.last_op.operands:
            while isinstance(value.owner, IRDLOperation) and value.owner.name == "graph.view":
                if value.owner.kind.data not in ("reshape", "permute"):
                    raise VerifyException(
                        "'kernel.gemm' can yield its results through reshape and permute views "
                        f"only (a store in another layout), not through a "
                        f"{value.owner.kind.data} view"
                    )
                value = value.owner.operands[0]


def _verify_chain(first: IRDLOperation, second: IRDLOperation) -> None:
    """Two GEMMs in one kernel are a chain (passes/chain_gemms.py): every product of the
    second multiplies a result of the first, which nothing else in the kernel but the
    yield reads; each program then computes the first's tiles of its rows as the second's
    mainloop needs them."""
    products = 2 * sum(second.sums.get_values())
    if not all(second.operands[i].owner is first for i in range(0, products, 2)):
        raise VerifyException(
            "'kernel.gemm' with two epilogue.gemm ops: every product of the second must "
            "multiply a result of the first (a chain)"
        )
    for result in first.results:
        for use in result.uses:
            lhs = use.operation is second and use.index < products and use.index % 2 == 0
            if not (lhs or use.operation.name == "kernel.yield"):
                raise VerifyException(
                    "'kernel.gemm' chain: the first epilogue.gemm's results may only be the "
                    f"second's lhs operands or yielded, not read by '{use.operation.name}'"
                )


@irdl_op_definition
class LoopKernelOp(KernelOp):
    name = "kernel.loop"
    KIND: ClassVar[str] = "loop"

    def verify_contents(self, block: Block) -> None:
        allowed = {"graph.pointwise", "graph.reduce", "graph.concat", "graph.constant"}
        allowed.add("graph.view")
        for op in _body_ops(block):
            if op.name not in allowed:
                raise VerifyException(f"'kernel.loop' cannot contain '{op.name}'")
        for value in block.last_op.operands:
            if isinstance(value.owner, IRDLOperation) and value.owner.name == "graph.view":
                raise VerifyException(
                    "'kernel.loop' cannot yield a view: views inside a loop kernel only "
                    "address its operands"
                )


@irdl_op_definition
class AttentionKernelOp(KernelOp):
    name = "kernel.attention"
    KIND: ClassVar[str] = "attention"

    def verify_contents(self, block: Block) -> None:
        ops = _body_ops(block)
        attention = [op for op in ops if op.name in ("graph.attention", "graph.attention_backward")]
        if len(attention) != 1:
            raise VerifyException(
                "'kernel.attention' must contain exactly one graph.attention or "
                f"graph.attention_backward, found {len(attention)}"
            )
        for op in ops:
            if op is not attention[0] and op.name != "graph.view":
                raise VerifyException(
                    f"'kernel.attention' cannot contain '{op.name}': only the attention op "
                    "and the views it reads its operands through"
                )


@irdl_op_definition
class FallbackKernelOp(KernelOp):
    name = "kernel.fallback"
    KIND: ClassVar[str] = "fallback"


Kernel = Dialect(
    "kernel", [GemmKernelOp, LoopKernelOp, AttentionKernelOp, FallbackKernelOp, YieldOp], []
)
