"""The tail shared by coda's region ops' custom syntax:

... attributes {...} : (operand types) -> (result types) { region }
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import DictionaryAttr
from xdsl.ir import Attribute, Operation, Region, SSAValue
from xdsl.parser import Parser, UnresolvedOperand
from xdsl.printer import Printer


def print_signature_and_region(printer: Printer, op: Operation) -> None:
    printer.print_op_attributes(op.attributes, print_keyword=True)
    printer.print_string(" : (")
    printer.print_list(op.operand_types, printer.print_attribute)
    printer.print_string(") -> (")
    printer.print_list(op.result_types, printer.print_attribute)
    printer.print_string(") ")
    printer.print_region(op.regions[0])


def parse_signature_and_region(
    parser: Parser, operands: Sequence[UnresolvedOperand], pos: int
) -> tuple[list[SSAValue], list[Attribute], Region, DictionaryAttr | None]:
    """Resolve `operands` (first one at `pos`) against the parsed operand types."""
    attributes = parser.parse_optional_attr_dict_with_keyword()
    parser.parse_punctuation(":")
    types = parser.parse_comma_separated_list(Parser.Delimiter.PAREN, parser.parse_type)
    parser.parse_punctuation("->")
    result_types = parser.parse_comma_separated_list(Parser.Delimiter.PAREN, parser.parse_type)
    resolved = parser.resolve_operands(list(operands), types, pos)
    return resolved, result_types, parser.parse_region(), attributes
