"""Views inside a kernel are address maps: a chain of `graph.view` ops over a kernel
operand becomes one CuTe layout of that operand, and the generated code indexes the
operand's memory through it. No view is ever copied.

The operand arrives at launch as a torch tensor whose strides are kernel parameters,
so the layout starts as ``Layout.from_torch(shape, (s0, s1, ...))`` with symbolic
strides. Each view is a layout operation:

    permute  reorder the modes            slice    offset += start * stride, stride *= step
    expand   stride 0 on broadcast dims   reshape  compose with the compact layout of the
                                                   new shape (CuTe's `a ∘ b`)

A reshape that composition cannot express (the new dims straddle the old ones without
dividing them) is still addressable: the element's flat index is unflattened over the
old shape, with div/mod. The offset of an element is then a sympy expression of the
kernel's per-dim indices and the stride symbols; sympy simplifies it and `triton_expr`
prints it as Triton code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import prod

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter
from xdsl.ir import Block, BlockArgument, SSAValue

from coda.codegen.common import CodegenError
from coda.dialects.graph import ViewOp, tensor_shape
from coda.dialects.layout_algebra import Layout, LayoutError, col_major, composition

Index = sympy.Symbol


@dataclass(frozen=True)
class ViewAccess:
    """How to address a (view of a) kernel operand.

    `offset(indices)` is the element offset, from the operand's data pointer, of the
    view's element at `indices` (one sympy index per view dim). Its free symbols are
    the indices and `strides`, the operand's strides (kernel parameters, one per dim).
    """

    source: BlockArgument
    shape: tuple[int, ...]  # the view's torch shape
    strides: tuple[sympy.Symbol, ...]
    layout: Layout | None  # CuTe layout of the view (modes = dims reversed); None: flat
    base: sympy.Expr  # offset of element 0 (slices start inside the operand)
    # flat fallback: the layout of the last addressable tensor and the reshape after it
    flat_source: Layout | None = None

    def offset(self, indices: Sequence[sympy.Expr]) -> sympy.Expr:
        if len(indices) != len(self.shape):
            raise ValueError(f"{len(indices)} indices for a rank-{len(self.shape)} view")
        # size-1 dims have index 0 whatever the caller iterates over (broadcasting)
        crd = [0 if n == 1 else i for i, n in zip(indices, self.shape, strict=True)]
        if self.layout is not None:
            value = self.layout(tuple(reversed(crd))) if crd else 0
        else:
            assert self.flat_source is not None
            flat = sum((c * prod(self.shape[d + 1 :]) for d, c in enumerate(crd)), start=0)
            value = self.flat_source(flat)
        return sympy.expand(self.base + value)

    @property
    def distinct_elements(self) -> int:
        """How many different elements of the operand the view reads (expanded dims
        re-read the same ones)."""
        layout = self.layout if self.layout is not None else self.flat_source
        assert layout is not None
        if 0 in self.shape:
            return 0
        leaves = zip(_flat(layout.shape), _flat(layout.stride), strict=True)
        return prod(int(s) for s, d in leaves if d != 0)

    def describe(self) -> str:
        """One line for a comment in the generated code."""
        base = f" + {self.base}" if self.base != 0 else ""
        if self.layout is not None:
            return f"{self.layout}{base}"
        return f"{self.flat_source}{base} over the flat index of {list(self.shape)}"


def view_access(value: SSAValue, block: Block, stride_names: Sequence[str]) -> ViewAccess:
    """The access of `value`: a block argument of `block` or a chain of views of one.
    `stride_names` names the argument's strides (one per dim)."""
    chain: list[ViewOp] = []
    while isinstance(value.owner, ViewOp) and value.owner.parent_block() is block:
        chain.append(value.owner)
        value = value.owner.input
    if not (isinstance(value, BlockArgument) and value.block is block):
        raise CodegenError(f"{value} is neither a kernel operand nor a view of one")
    shape = tensor_shape(value)
    if len(stride_names) != len(shape):
        raise ValueError(f"{len(stride_names)} stride names for a rank-{len(shape)} operand")
    strides = tuple(sympy.Symbol(n, integer=True, nonnegative=True) for n in stride_names)
    view_shape = tensor_shape(chain[0].result) if chain else shape
    if 0 in shape:
        # an empty tensor has no element to address (and layouts have no empty modes)
        return ViewAccess(value, view_shape, strides, None, sympy.Integer(0), Layout(1, 0))
    state = _ViewState(Layout.from_torch(shape, strides) if shape else Layout(1, 0), 0, None)
    for view in reversed(chain):
        state = state.apply(view)
    return ViewAccess(value, view_shape, strides, *state.finish())


@dataclass
class _ViewState:
    layout: Layout | None
    base: sympy.Expr | int
    # after a reshape composition cannot express: the layout before it (flat-indexed)
    flat: Layout | None

    def apply(self, view: ViewOp) -> _ViewState:
        dst = tensor_shape(view.result)
        kind = view.kind.data
        if self.layout is None:
            # already flat-indexed: any further view is expressed on the flat index only
            # if it is a reshape; the rest would need the per-dim form
            if kind != "reshape":
                raise CodegenError(
                    f"a {kind} view after a reshape that is not a layout cannot be addressed"
                )
            return self
        modes = _modes(self.layout, len(tensor_shape(view.input)))  # torch order
        if kind == "permute":
            modes = [modes[p] for p in view.permutation]
        elif kind == "expand":
            src = tensor_shape(view.input)
            padded = [(1, 0)] * (len(dst) - len(src)) + modes
            modes = [(n, 0) if s == 1 else (s, d) for (s, d), n in zip(padded, dst, strict=True)]
        elif kind == "slice":
            dim, start, step = view.slice_spec
            size, stride = modes[dim]
            self.base = self.base + start * stride
            modes[dim] = (dst[dim], stride * step)
        elif kind == "reshape":
            current = _from_modes(modes)
            try:
                new = composition(current, col_major(tuple(reversed(dst))) if dst else Layout(1))
            except LayoutError:
                return _ViewState(None, self.base, current)
            return _ViewState(new, self.base, None)
        else:
            raise CodegenError(f"graph.view kind '{kind}' has no layout")
        return _ViewState(_from_modes(modes), self.base, None)

    def finish(self) -> tuple[Layout | None, sympy.Expr, Layout | None]:
        return self.layout, sympy.sympify(self.base), self.flat


def _modes(layout: Layout, rank: int) -> list[tuple[object, object]]:
    """The (shape, stride) of each torch dim (CuTe modes reversed); modes may be nested."""
    if rank == 0:
        return []
    shape, stride = layout.shape, layout.stride
    if not isinstance(shape, tuple):
        shape, stride = (shape,), (stride,)
    assert isinstance(stride, tuple) and len(shape) == rank, (layout, rank)
    return list(reversed(list(zip(shape, stride, strict=True))))


def _flat(t: object) -> list[object]:
    return [x for e in t for x in _flat(e)] if isinstance(t, tuple) else [t]


def _from_modes(modes: Sequence[tuple[object, object]]) -> Layout:
    """A layout with one mode per torch dim (reversed into CuTe order)."""
    if not modes:
        return Layout(1, 0)
    rev = list(reversed(modes))
    return Layout(tuple(s for s, _ in rev), tuple(d for _, d in rev))


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
