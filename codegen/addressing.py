"""sympy index expressions -> Triton code (offsets of views: `coda.dialects.view_layout`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter


class _TritonPrinter(StrPrinter):
    """sympy -> Triton/Python integer arithmetic: floor(a/b) is `a // b`, Mod is `%`."""

    def _operand(self, expr: sympy.Expr, right: bool = False) -> str:
        # //, % and * share a precedence and associate left: `a // (b * c)` needs the
        # parentheses on the right, `a * b // c` does not on the left
        return self.parenthesize(expr, PRECEDENCE["Mul"], strict=not right)

    def _print_floor(self, expr: sympy.floor) -> str:
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        # a call-like atom to the enclosing printer, so it needs its own parentheses
        return f"({self._operand(num)} // {self._operand(den, right=True)})"

    def _print_Mod(self, expr: sympy.Mod) -> str:
        a, b = expr.args
        return f"{self._operand(a)} % {self._operand(b, right=True)}"


def triton_expr(expr: sympy.Expr, names: Mapping[sympy.Symbol, str]) -> str:
    """Print an index expression with `names` substituted for its symbols."""
    placeholders = {s: sympy.Symbol(n) for s, n in names.items()}
    expr = sympy.sympify(expr).xreplace(placeholders)
    text = _TritonPrinter().doprint(expr)
    if isinstance(expr, sympy.floor):  # a whole expression needs no parentheses
        text = text[1:-1]
    return re.sub(r"(?<!\*)\*(?!\*)", " * ", text)  # sympy prints a*b; PEP 8 says a * b
