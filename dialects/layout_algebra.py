"""CuTe layout algebra in pure Python.

A layout is a pair of congruent hierarchical tuples ``shape:stride``, printed like CuTe:
``(4,(2,8)):(16,(8,1))``. It is the function from coordinates to offsets
``coord -> sum(coord_i * stride_i)``. A flat index becomes a coordinate
colexicographically: the first mode varies fastest. An index past the end of the
layout is absorbed by the last mode, as in CuTe; composition relies on that.

The operations follow NVIDIA CuTe (``cute/layout.hpp``) and give the same
shape:stride. Where CuTe either rejects an input or quietly returns a layout that does
not do what the operation promises, this module raises ``LayoutError``. That covers
composition without the stride or shape divisibility condition, a complement whose
gaps are not whole multiples, and a tile that does not divide the layout.

Extents and strides may be sympy expressions (assumed to be positive integers)
for the operations that make no divisibility decision: construction, evaluation,
size, cosize, flatten, coalesce, printing and parsing, torch conversion. Composition
``a ∘ b`` also takes symbolic strides in ``a`` (its divisibility decisions are about
shapes), which is how a chain of torch views over strides known only at launch becomes
one layout. The other operations need integers and raise ``LayoutError`` otherwise.

torch lists sizes and strides row-major (last dim fastest). CuTe modes are
colexicographic, so a torch ``(size, stride)`` is the same list with the modes
reversed: see ``Layout.from_torch``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import sympy

__all__ = [
    "IntTuple",
    "Layout",
    "LayoutError",
    "Scalar",
    "Tiler",
    "block_scale_layout",
    "blocked_product",
    "coalesce",
    "col_major",
    "complement",
    "composition",
    "crd2idx",
    "flat_divide",
    "flat_product",
    "flatten",
    "idx2crd",
    "interleave_layout",
    "left_inverse",
    "logical_divide",
    "logical_product",
    "make_layout",
    "product",
    "raked_product",
    "right_inverse",
    "row_major",
    "tiled_divide",
    "tiled_product",
    "zipped_divide",
    "zipped_product",
]

Scalar: TypeAlias = "int | sympy.Expr"
IntTuple: TypeAlias = "Scalar | tuple[IntTuple, ...]"
# What composition and divide/product accept as their right operand: a layout, an
# extent n (meaning n:1), None (leave the mode alone, CuTe's `_`), or a tuple of
# those applied mode by mode.
Tiler: TypeAlias = "Layout | int | None | tuple[Tiler, ...]"


class LayoutError(ValueError):
    """An invalid layout, or an operation whose preconditions do not hold."""


# ---------------------------------------------------------------------------------------
# Integer tuples


def _leaf(x: object) -> Scalar:
    if isinstance(x, bool):
        raise LayoutError(f"layout entries must be integers, got {x!r}")
    if isinstance(x, sympy.Basic):
        if isinstance(x, sympy.Integer):
            return int(x)
        if not isinstance(x, sympy.Expr) or x.is_integer is False:
            raise LayoutError(f"layout entries must be integer-valued, got {x}")
        return x
    try:
        return operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        raise LayoutError(
            f"layout entries must be integers or sympy expressions, got {x!r}"
        ) from None


def _int_tuple(t: object) -> IntTuple:
    if isinstance(t, tuple | list):  # torch.Size is a tuple
        return tuple(_int_tuple(e) for e in t)
    return _leaf(t)


def _leaves(t: IntTuple) -> tuple[Scalar, ...]:
    if isinstance(t, tuple):
        return tuple(x for e in t for x in _leaves(e))
    return (t,)


def _congruent(a: IntTuple, b: IntTuple) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(_congruent, a, b))
    return not isinstance(b, tuple)


def _unflatten(flat: Sequence[Scalar], profile: IntTuple) -> IntTuple:
    it = iter(flat)

    def go(p: IntTuple) -> IntTuple:
        return tuple(go(e) for e in p) if isinstance(p, tuple) else next(it)

    return go(profile)


def product(t: IntTuple) -> Scalar:
    """The product of all entries (the size of a shape)."""
    return math.prod(_leaves(t))


def _is_int(t: IntTuple) -> bool:
    return all(isinstance(x, int) for x in _leaves(t))


def _same(a: Scalar, b: Scalar) -> bool:
    """a == b as numbers; for sympy, only when provably equal."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return sympy.expand(a - b) == 0


def _compact(shape: IntTuple, reverse: bool) -> IntTuple:
    """Compact strides: prefix products of the flattened shape, colex or reversed."""
    flat = _leaves(shape)
    order = reversed(range(len(flat))) if reverse else range(len(flat))
    strides: list[Scalar] = [0] * len(flat)
    current: Scalar = 1
    for i in order:
        strides[i] = current
        current = current * flat[i]
    return _unflatten(strides, shape)


def idx2crd(idx: Scalar, shape: IntTuple) -> IntTuple:
    """The colexicographic coordinate of a flat index (first mode fastest)."""
    if not isinstance(shape, tuple):
        return idx % shape
    crd = []
    for s in shape:
        crd.append(idx2crd(idx, s))
        idx = idx // product(s)
    return tuple(crd)


def crd2idx(crd: IntTuple, shape: IntTuple, stride: IntTuple) -> Scalar:
    """The offset of a coordinate. A scalar against a tuple mode is split colex over its
    leaves, the last leaf taking whatever is left (CuTe's extension past the end)."""
    if isinstance(crd, tuple):
        if not isinstance(shape, tuple) or len(crd) != len(shape):
            raise LayoutError(f"coordinate {_fmt(crd)} does not match shape {_fmt(shape)}")
        return sum(map(crd2idx, crd, shape, stride), start=0)
    shapes, strides = _leaves(shape), _leaves(stride)
    result: Scalar = 0
    for s, d in zip(shapes[:-1], strides[:-1], strict=True):
        result += crd % s * d
        crd = crd // s
    return result + crd * strides[-1] if strides else result  # () has the one offset 0


# ---------------------------------------------------------------------------------------
# Layout


@dataclass(frozen=True, slots=True, init=False)
class Layout:
    """A CuTe layout ``shape:stride``; ``Layout(shape)`` is column-major compact."""

    shape: IntTuple
    stride: IntTuple

    def __init__(self, shape: object, stride: object = None) -> None:
        shape_ = _int_tuple(shape)
        stride_ = _compact(shape_, reverse=False) if stride is None else _int_tuple(stride)
        if not _congruent(shape_, stride_):
            raise LayoutError(f"shape {_fmt(shape_)} and stride {_fmt(stride_)} are not congruent")
        for s in _leaves(shape_):
            if (s < 1) if isinstance(s, int) else s.is_positive is False:
                raise LayoutError(f"extents must be positive, got {s} in {_fmt(shape_)}")
        object.__setattr__(self, "shape", shape_)
        object.__setattr__(self, "stride", stride_)

    # -- queries ---------------------------------------------------------------------

    @property
    def size(self) -> Scalar:
        """Number of coordinates (the domain size)."""
        return product(self.shape)

    @property
    def cosize(self) -> Scalar:
        """One past the largest offset: 1 + sum((s - 1) * |d|), as CuTe's cosize."""
        terms = zip(_leaves(self.shape), _leaves(self.stride), strict=True)
        result = 1 + sum(((s - 1) * abs(d) for s, d in terms), start=0)
        return result if isinstance(result, int) else sympy.expand(result)

    @property
    def rank(self) -> int:
        return len(self.shape) if isinstance(self.shape, tuple) else 1

    @property
    def depth(self) -> int:
        def go(t: IntTuple) -> int:
            return 1 + max(map(go, t), default=0) if isinstance(t, tuple) else 0

        return go(self.shape)

    @property
    def is_static(self) -> bool:
        """All extents and strides are integers (no sympy symbols)."""
        return _is_int(self.shape) and _is_int(self.stride)

    def __len__(self) -> int:
        return self.rank

    def __iter__(self) -> Iterator[Layout]:
        return (self[i] for i in range(self.rank))

    def __getitem__(self, i: int | tuple[int, ...]) -> Layout:
        """Mode i as a layout; ``layout[i, j]`` is mode j of mode i."""
        if isinstance(i, tuple):
            out = self
            for j in i:
                out = out[j]
            return out
        if not isinstance(self.shape, tuple):
            if i not in (0, -1):
                raise IndexError(f"mode {i} of rank-1 layout {self}")
            return self
        return Layout(self.shape[i], self.stride[i])  # type: ignore[index]

    def __call__(self, *coord: object) -> Scalar:
        """The offset of a flat index, a coordinate (one entry per mode, entries may be
        flat indices of their mode), or a flat coordinate (one entry per leaf)."""
        crd = _int_tuple(coord[0] if len(coord) == 1 else coord)
        if (
            isinstance(crd, tuple)
            and isinstance(self.shape, tuple)
            and len(crd) != len(self.shape)
            and len(crd) == len(_leaves(self.shape))
            and all(not isinstance(c, tuple) for c in crd)
        ):
            crd = _unflatten(crd, self.shape)
        return crd2idx(crd, self.shape, self.stride)

    def idx2crd(self, idx: Scalar) -> IntTuple:
        """The hierarchical coordinate of flat index idx (colexicographic)."""
        return idx2crd(idx, self.shape)

    # -- text ------------------------------------------------------------------------

    def __str__(self) -> str:
        return f"{_fmt(self.shape)}:{_fmt(self.stride)}"

    def __repr__(self) -> str:
        return f"Layout.parse({str(self)!r})"

    @staticmethod
    def parse(text: str, symbols: Mapping[str, sympy.Symbol] | None = None) -> Layout:
        """Parse CuTe notation ``(4,(2,8)):(16,(8,1))``. Entries that are not integers are
        sympy expressions; a name not in ``symbols`` becomes a positive integer Symbol."""
        return _Parser(text, symbols or {}).layout()

    # -- torch -----------------------------------------------------------------------

    @staticmethod
    def from_torch(size: Sequence[object], stride: Sequence[object]) -> Layout:
        """The layout of a torch view: its dims reversed, one mode per dim.

        For a tensor ``t`` with ``L = Layout.from_torch(t.size(), t.stride())``:
        ``L(i) + t.storage_offset()`` is the storage position of ``t.flatten()[i]``
        (torch flattens row-major, which is colex order over the reversed dims), and
        ``L(tuple(reversed(idx)))`` is the offset of ``t[idx]``.
        """
        if len(size) != len(stride):
            raise LayoutError(f"torch size {list(size)} and stride {list(stride)} differ in rank")
        return Layout(tuple(reversed(size)), tuple(reversed(stride)))

    def to_torch(self) -> tuple[list[Scalar], list[Scalar]]:
        """torch (size, stride) lists: the flattened modes, reversed."""
        return list(reversed(_leaves(self.shape))), list(reversed(_leaves(self.stride)))


def _fmt(t: IntTuple) -> str:
    if isinstance(t, tuple):
        return "(" + ",".join(map(_fmt, t)) + ")"
    text = str(t)
    # A leading "(" would read back as a tuple; "+" keeps the expression unchanged.
    return "+" + text if text.startswith("(") else text


# Expressions are evaluated by sympy's parse_expr, which runs Python: allow only
# arithmetic, sympy integer functions and names, and evaluate without builtins.
_EXPR = re.compile(r"[\w\s+\-*/%(),]+")
_NAME = re.compile(r"\b([A-Za-z_]\w*)\b(\s*\()?")
_FUNCTIONS = {f.__name__: f for f in (sympy.floor, sympy.ceiling, sympy.Mod, sympy.Min, sympy.Max)}
_GLOBALS = {"__builtins__": {}, "Integer": sympy.Integer, "Symbol": sympy.Symbol, **_FUNCTIONS}


class _Parser:
    def __init__(self, text: str, symbols: Mapping[str, sympy.Symbol]) -> None:
        self.text, self.pos, self.symbols = text, 0, symbols

    def fail(self, what: str) -> LayoutError:
        return LayoutError(f"cannot parse layout {self.text!r}: {what} at position {self.pos}")

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def layout(self) -> Layout:
        shape = self.int_tuple()
        if self.peek() != ":":
            raise self.fail("expected ':'")
        self.pos += 1
        stride = self.int_tuple()
        if self.peek():
            raise self.fail("unexpected text")
        return Layout(shape, stride)

    def int_tuple(self) -> IntTuple:
        if self.peek() != "(":
            return self.leaf()
        self.pos += 1
        items: list[IntTuple] = []
        if self.peek() == ")":
            self.pos += 1
            return ()
        while True:
            items.append(self.int_tuple())
            c = self.peek()
            self.pos += 1
            if c == ")":
                return tuple(items)
            if c != ",":
                self.pos -= 1
                raise self.fail("expected ',' or ')'")

    def leaf(self) -> Scalar:
        start, depth = self.pos, 0
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if depth == 0 and c in "),:":
                break
            depth += {"(": 1, ")": -1}.get(c, 0)
            self.pos += 1
        token = self.text[start : self.pos].strip()
        if not token:
            raise self.fail("expected an integer or expression")
        if re.fullmatch(r"[+-]?\d+", token):
            return int(token)
        local: dict[str, sympy.Symbol] = {}
        for name, call in _NAME.findall(token):
            if call and name not in _FUNCTIONS:
                raise self.fail(f"unknown function {name!r} in {token!r}")
            if not call:
                local[name] = self.symbols.get(name) or sympy.Symbol(
                    name, integer=True, positive=True
                )
        if not _EXPR.fullmatch(token):
            raise self.fail(f"bad expression {token!r}")
        try:
            expr = sympy.parse_expr(token, local_dict=local, global_dict=_GLOBALS)
        except (SyntaxError, TypeError, NameError, sympy.SympifyError) as e:
            raise self.fail(f"bad expression {token!r} ({e})") from None
        return _leaf(expr)


# ---------------------------------------------------------------------------------------
# Constructors


def make_layout(*layouts: Layout) -> Layout:
    """Concatenate layouts as the modes of a new layout: (L0, L1, ...)."""
    return Layout(tuple(x.shape for x in layouts), tuple(x.stride for x in layouts))


def col_major(shape: object) -> Layout:
    """Compact layout, first (flattened) mode fastest: (4,(2,8)):(1,(4,8))."""
    return Layout(shape)


def row_major(shape: object) -> Layout:
    """Compact layout, last (flattened) mode fastest: (4,(2,8)):(16,(8,1))."""
    shape_ = _int_tuple(shape)
    return Layout(shape_, _compact(shape_, reverse=True))


def block_scale_layout(shape: Sequence[int], block: Sequence[int]) -> Layout:
    """Where the scale of each element of a block-scaled torch tensor is: the layout from
    element coordinates of `shape` (CuTe order, like ``Layout.from_torch``) to offsets
    in the row-major scale tensor of shape ``shape[d] / block[d]``.

    Each dim splits into (within block, block index) with strides (0, scale stride):
    every element of a block reads the same scale. MX formats use ``block = (1, 32)``
    (one E8M0 scale per 32 elements along K), NVFP4 ``(1, 16)``, DeepSeek-style FP8
    weights ``(128, 128)``; per-row is ``(1, K)`` and per-tensor ``shape`` itself.
    """
    if len(shape) != len(block):
        raise LayoutError(f"block {list(block)} has not the rank of shape {list(shape)}")
    for n, b in zip(shape, block, strict=True):
        if b < 1 or n % b:
            raise LayoutError(f"block {list(block)} does not divide shape {list(shape)}")
    blocks = [n // b for n, b in zip(shape, block, strict=True)]
    scale_strides = _compact(tuple(blocks), reverse=True) if blocks else ()
    modes = [
        ((b, nb), (0, d))
        for b, nb, d in zip(block, blocks, scale_strides, strict=True)  # type: ignore[arg-type]
    ]
    return Layout(tuple(m[0] for m in reversed(modes)), tuple(m[1] for m in reversed(modes)))


def interleave_layout(n: int, ways: int = 2) -> Layout:
    """Column c of an interleaved layout of `ways` stacked n-column blocks reads column
    ``(c % ways) * n + c // ways`` of the stack: ``(ways, n):(n, 1)``.

    A pairwise epilogue (SwiGLU's gate/up, RoPE's rotary halves) needs both members of
    a pair in adjacent columns of one tile: composing ``[W_gate | W_up]``'s column layout
    with this one gives the GEMM weight with the pairs interleaved; its right inverse
    maps the interleaved gradient columns back to the user's parameters.
    """
    if n < 1 or ways < 1:
        raise LayoutError(f"cannot interleave {ways} blocks of {n} columns")
    return Layout((ways, n), (n, 1))


def flatten(layout: Layout) -> Layout:
    """The same function with depth <= 1: the leaves as modes."""
    if not isinstance(layout.shape, tuple):
        return layout
    return Layout(_leaves(layout.shape), _leaves(layout.stride))


# ---------------------------------------------------------------------------------------
# Algebra


def _require_static(op: str, *layouts: Layout) -> None:
    for x in layouts:
        if not x.is_static:
            raise LayoutError(f"{op} needs integer shapes and strides, {x} is symbolic")


def _from_modes(modes: Sequence[tuple[Scalar, Scalar]]) -> Layout:
    """A layout from flat (shape, stride) modes; a single mode stays unwrapped."""
    if len(modes) == 1:
        return Layout(*modes[0])
    return Layout(tuple(s for s, _ in modes), tuple(d for _, d in modes))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _as_layout(b: Layout | int) -> Layout:
    return b if isinstance(b, Layout) else Layout(b)


def _by_mode(op: Callable[[Layout, Tiler], Layout], a: Layout, tiler: tuple[Tiler, ...]) -> Layout:
    """Apply op to the modes of a paired with the tiler; modes past the tiler stay."""
    if len(tiler) > a.rank:
        raise LayoutError(f"tiler of {len(tiler)} modes is longer than rank-{a.rank} {a}")
    rest = [a[i] for i in range(len(tiler), a.rank)]
    return make_layout(*(op(a[i], t) for i, t in enumerate(tiler)), *rest)


def coalesce(layout: Layout, profile: IntTuple | None = None) -> Layout:
    """Same function on [0, size), fewest modes: drop size-1 modes and merge a mode into
    the previous one when its stride is the previous shape * stride. With a tuple
    profile, coalesce each mode i < len(profile) by profile[i] and keep the rest."""
    if isinstance(profile, tuple):
        return _by_mode(lambda m, p: coalesce(m, p), layout, profile)  # type: ignore[arg-type]
    modes: list[tuple[Scalar, Scalar]] = [(1, 0)]
    for s, d in zip(_leaves(layout.shape), _leaves(layout.stride), strict=True):
        last_s, last_d = modes[-1]
        if s == 1:
            continue
        if last_s == 1:
            modes[-1] = (s, d)
        elif _same(last_s * last_d, d):
            modes[-1] = (last_s * s, last_d)
        else:
            modes.append((s, d))
    return _from_modes(modes)


def _coalesce_ext(layout: Layout) -> list[tuple[int, int]]:
    """Coalesced flat modes that keep the function past the end too (CuTe's coalesce_x):
    the last mode is unbounded, so it is kept even with size 1 and its shape is unused."""
    leaves = list(zip(_leaves(layout.shape), _leaves(layout.stride), strict=True))
    if not leaves:
        return [(1, 0)]
    modes = [leaves[-1]]
    for s, d in reversed(leaves[:-1]):
        if s == 1:
            continue
        if s * d == modes[0][1]:
            modes[0] = (s * modes[0][0], d)
        else:
            modes.insert(0, (s, d))
    return modes  # type: ignore[return-value]


def _compose_1d(
    a: Layout, modes: list[tuple[int, int]], shape: int, stride: int, reach: list[int]
) -> Layout:
    """a ∘ (shape:stride): walk a's modes, dividing out the stride, then the shape.
    Adds to reach[i] the largest coordinate the result uses in a's mode i."""
    if stride == 0:
        return Layout(shape, 0)
    if stride < 0:
        raise LayoutError(f"cannot compose {a} with {shape}:{stride}: negative stride")
    result: list[tuple[int, int]] = []
    rest_shape, rest_stride = shape, stride
    for i, (s, d) in enumerate(modes[:-1]):
        # The points left are rest_stride * [0, rest_shape); if they all fall in this
        # mode, no divisibility is needed.
        fits = (rest_shape - 1) * rest_stride < s
        if rest_shape != 1 and not fits and s % rest_stride and rest_stride % s:
            raise LayoutError(
                f"cannot compose {a} with {shape}:{stride}: stride {rest_stride} and "
                f"mode shape {s} do not divide one another"
            )
        next_shape, next_stride = _ceil_div(s, rest_stride), _ceil_div(rest_stride, s)
        if next_shape == 1 or rest_shape == 1:
            rest_stride = next_stride
            continue
        new_shape = min(next_shape, rest_shape)
        if rest_shape % new_shape:
            raise LayoutError(
                f"cannot compose {a} with {shape}:{stride}: shape {rest_shape} is not "
                f"divisible by {new_shape}, the part of it that fits in mode shape {s}"
            )
        result.append((new_shape, rest_stride * d))
        reach[i] += (new_shape - 1) * rest_stride
        rest_shape, rest_stride = rest_shape // new_shape, next_stride
    if not result or rest_shape != 1:
        result.append((rest_shape, rest_stride * modes[-1][1]))
    return _from_modes(result)


def composition(a: Layout, b: Tiler) -> Layout:
    """a ∘ b: the layout with b's shape whose value at c is a(b(c)).

    b may be a tiler (tuple), composed with a's modes one by one; a's remaining modes
    are kept (pycute; recent CuTe C++ drops them).
    """
    if b is None:
        return a
    if isinstance(b, tuple):
        return _by_mode(composition, a, b)
    b = _as_layout(b)
    # Every decision below is about shapes (and b's strides); a's strides only scale the
    # result, so they may be symbols: a torch view with strides known only at launch.
    _require_static("composition", Layout(a.shape), b)
    modes = _coalesce_ext(a)
    reach = [0] * len(modes)

    def go(shape: IntTuple, stride: IntTuple) -> Layout:
        if isinstance(shape, tuple):
            return make_layout(*map(go, shape, stride))  # type: ignore[arg-type]
        return _compose_1d(a, modes, shape, stride, reach)  # type: ignore[arg-type]

    result = go(b.shape, b.stride)
    # Each mode of b is composed on its own, which is a(b(c)) only if adding the
    # modes' offsets never carries from one mode of a into the next. CuTe assumes it.
    for (s, d), top in zip(modes[:-1], reach, strict=False):
        if top >= s:
            raise LayoutError(
                f"cannot compose {a} with {b}: the modes of {b} together overflow mode "
                f"{s}:{d} of {a}, so the result would not be {a}({b}(c))"
            )
    return result


def _filter(layout: Layout) -> list[tuple[int, int]]:
    """The flat modes that move: no size-1 and no stride-0 modes."""
    leaves = zip(_leaves(layout.shape), _leaves(layout.stride), strict=True)
    return [(s, d) for s, d in leaves if s != 1 and d != 0]  # type: ignore[misc]


def complement(a: Layout, cotarget: int | None = None) -> Layout:
    """The layout R (strides increasing) whose offsets fill the gaps of a's: with a's
    moving modes (size-1 and stride-0 modes dropped), R is a bijection onto
    [0, size * size(R)), and that range reaches at least cotarget.

    cotarget defaults to cosize(a). A cotarget below cosize(a) is allowed, as in CuTe:
    the trailing mode is then 1. Raises for a non-injective a, and for gaps that are not
    whole multiples (CuTe would floor them and return a layout that overlaps a).
    """
    _require_static("complement", a)
    target = a.cosize if cotarget is None else cotarget
    if not isinstance(target, int) or target < 1:
        raise LayoutError(f"complement of {a}: cotarget must be a positive integer, got {target}")
    shapes: list[int] = []
    strides: list[int] = []
    current = 1
    for d, s in sorted((d, s) for s, d in _filter(a)):
        if d < 0:
            raise LayoutError(f"complement of {a}: negative stride {d}")
        if d < current:
            raise LayoutError(f"complement of {a}: the layout is not injective")
        if d % current:
            raise LayoutError(
                f"complement of {a}: stride {d} is not a multiple of {current}, the extent "
                f"of the modes below it, so the gap has no layout"
            )
        shapes.append(d // current)
        strides.append(current)
        current = d * s
    shapes.append(_ceil_div(target, current))
    strides.append(current)
    return coalesce(Layout(tuple(shapes), tuple(strides)))


def right_inverse(a: Layout) -> Layout:
    """R with a(R(i)) == i for all i < size(R), as large as possible (CuTe)."""
    _require_static("right_inverse", a)
    c = flatten(coalesce(a))
    shapes, strides = _leaves(c.shape), _leaves(c.stride)
    prefix = _leaves(_compact(c.shape, reverse=False))
    result: list[tuple[Scalar, Scalar]] = [(1, 0)]
    current = 1
    for i in sorted(range(len(shapes)), key=lambda i: strides[i]):
        if strides[i] == current:
            result.append((shapes[i], prefix[i]))
            current = shapes[i] * strides[i]
    return coalesce(_from_modes(result))


def left_inverse(a: Layout) -> Layout:
    """L with L(a(i)) == i for all i < size(a) when a is injective; for any a,
    a(L(a(i))) == a(i) (CuTe). Raises when a stride is not a multiple of the one below."""
    _require_static("left_inverse", a)
    c = flatten(coalesce(a))
    shapes, strides = _leaves(c.shape), _leaves(c.stride)
    prefix = _leaves(_compact(c.shape, reverse=False))
    order = sorted(range(len(shapes)), key=lambda i: strides[i])
    # Each stride d becomes a mode of shape d / (previous stride) at the inverse's
    # stride of the mode's coordinate; a leading stride-0 mode absorbs the offsets below.
    result_shapes: list[int] = []
    result_strides: list[int] = [0]
    below = 1
    for i in order:
        d = strides[i]
        if d == 0:
            continue
        if d < 0 or d % below:
            raise LayoutError(
                f"left_inverse of {a}: stride {d} is not a positive multiple of {below}"
            )
        result_shapes.append(d // below)
        result_strides.append(prefix[i])
        below = d
    result_shapes.append(shapes[order[-1]])
    return coalesce(Layout(tuple(result_shapes), tuple(result_strides)))


def logical_divide(a: Layout, tiler: Tiler) -> Layout:
    """a ∘ (B, complement(B, size(a))): mode 0 walks one tile, mode 1 the tiles.

    A tuple tiler divides mode by mode. Unlike CuTe, the tile must divide a exactly
    (tile and complement spanning size(a)); CuTe would pad with out-of-range tiles.
    """
    if tiler is None:
        return a
    if isinstance(tiler, tuple):
        return _by_mode(logical_divide, a, tiler)
    b = _as_layout(tiler)
    _require_static("logical_divide", a, b)
    rest = complement(b, a.size)
    if b.size * rest.size != a.size:
        raise LayoutError(
            f"cannot divide {a} by {b}: the tile does not divide size {a.size} "
            f"(tile and its complement {rest} cover {b.size * rest.size})"
        )
    return composition(a, make_layout(b, rest))


def logical_product(a: Layout, tiler: Tiler) -> Layout:
    """(a, complement(a, size(a) * cosize(B)) ∘ B): a repeated as B lays out copies."""
    if tiler is None:
        return a
    if isinstance(tiler, tuple):
        return _by_mode(logical_product, a, tiler)
    b = _as_layout(tiler)
    _require_static("logical_product", a, b)
    return make_layout(a, composition(complement(a, a.size * b.cosize), b))


def _hier_unzip(split: Callable[[Layout, Tiler], Layout], a: Layout, tiler: Tiler) -> Layout:
    """Split by the tiler, then gather the first halves and the second halves:
    ((tile0, tile1, ...), (rest0, rest1, ..., untouched modes))."""
    if tiler is None:
        return make_layout(Layout(1, 0), a)
    if not isinstance(tiler, tuple):
        return split(a, tiler)
    if len(tiler) > a.rank:
        raise LayoutError(f"tiler of {len(tiler)} modes is longer than rank-{a.rank} {a}")
    parts = [_hier_unzip(split, a[i], t) for i, t in enumerate(tiler)]
    rest = [a[i] for i in range(len(tiler), a.rank)]
    return make_layout(
        make_layout(*(p[0] for p in parts)), make_layout(*(p[1] for p in parts), *rest)
    )


def zipped_divide(a: Layout, tiler: Tiler) -> Layout:
    """((tile modes), (rest modes)): logical_divide with the tile modes gathered."""
    return _hier_unzip(logical_divide, a, tiler)


def tiled_divide(a: Layout, tiler: Tiler) -> Layout:
    """((tile modes), rest0, rest1, ...)."""
    tile, rest = zipped_divide(a, tiler)
    return make_layout(tile, *rest)


def flat_divide(a: Layout, tiler: Tiler) -> Layout:
    """(tile0, tile1, ..., rest0, rest1, ...)."""
    tile, rest = zipped_divide(a, tiler)
    return make_layout(*tile, *rest)


def zipped_product(a: Layout, tiler: Tiler) -> Layout:
    """((block modes), (copy modes)): logical_product with the block modes gathered."""
    return _hier_unzip(logical_product, a, tiler)


def tiled_product(a: Layout, tiler: Tiler) -> Layout:
    """((block modes), copy0, copy1, ...)."""
    block, rest = zipped_product(a, tiler)
    return make_layout(block, *rest)


def flat_product(a: Layout, tiler: Tiler) -> Layout:
    """(block0, block1, ..., copy0, copy1, ...)."""
    block, rest = zipped_product(a, tiler)
    return make_layout(*block, *rest)


def _pad(x: Layout, rank: int) -> Layout:
    if x.rank >= rank:
        return x
    return make_layout(*x, *[Layout(1, 0)] * (rank - x.rank))


def _zipped_product_modes(a: Layout, b: Layout) -> list[tuple[Layout, Layout]]:
    """Pairs (a_i, c_i) of the logical product (a, c) of a and b padded to equal rank."""
    rank = max(a.rank, b.rank)
    a, b = _pad(a, rank), _pad(b, rank)
    _, c = logical_product(a, b)
    # c has b's modes; an unwrapped b gives one mode of c even if c has several.
    return list(zip(a, c if isinstance(b.shape, tuple) else [c], strict=True))


def blocked_product(a: Layout, b: Layout | int) -> Layout:
    """((a0, c0), (a1, c1), ...): a is the block, copies of it laid out by b."""
    pairs = _zipped_product_modes(a, _as_layout(b))
    return make_layout(*(make_layout(x, c) for x, c in pairs))


def raked_product(a: Layout, b: Layout | int) -> Layout:
    """((c0, a0), (c1, a1), ...): like blocked_product with the copies interleaved."""
    pairs = _zipped_product_modes(a, _as_layout(b))
    return make_layout(*(make_layout(c, x) for x, c in pairs))
