"""sympy index expressions -> Triton code (offsets of views: `coda.dialects.view_layout`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter


class _TritonPrinter(StrPrinter):
    """sympy -> Triton/Python integer arithmetic: floor(a/b) is `a // b`, Mod is `%`."""

    def _operand(self, expr: sympy.Expr) -> str:
        return self.parenthesize(expr, PRECEDENCE["Mul"], strict=True)

    def _print_floor(self, expr: sympy.floor) -> str:
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        # a call-like atom to the enclosing printer, so it needs its own parentheses
        return f"({self._operand(num)} // {self._operand(den)})"

    def _print_Mod(self, expr: sympy.Mod) -> str:
        a, b = expr.args
        return f"{self._operand(a)} % {self._operand(b)}"


def triton_expr(expr: sympy.Expr, names: Mapping[sympy.Symbol, str]) -> str:
    """Print an index expression with `names` substituted for its symbols."""
    placeholders = {s: sympy.Symbol(n) for s, n in names.items()}
    text = _TritonPrinter().doprint(sympy.sympify(expr).xreplace(placeholders))
    return re.sub(r"(?<!\*)\*(?!\*)", " * ", text)  # sympy prints a*b; PEP 8 says a * b
