"""CuTe layout algebra (coda.dialects.layout_algebra).

Three kinds of evidence: CuTe's documented examples, properties checked on random layouts
(hypothesis), and agreement with an independent implementation, the pure-Python
`tensor-layouts` package. Two index identities the code generator relies on are proved
with sympy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import sympy
import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from coda.dialects.layout_algebra import (
    IntTuple,
    Layout,
    LayoutError,
    block_scale_layout,
    blocked_product,
    coalesce,
    col_major,
    complement,
    composition,
    flat_divide,
    flatten,
    idx2crd,
    interleave_layout,
    left_inverse,
    logical_divide,
    logical_product,
    make_layout,
    raked_product,
    right_inverse,
    row_major,
    tiled_divide,
    tiled_product,
    zipped_divide,
    zipped_product,
)

PROPERTY = settings(max_examples=500, deadline=None)
P = Layout.parse


# ---------------------------------------------------------------------------------------
# Random layouts


def leaves(t: IntTuple) -> list[Any]:
    return [x for e in t for x in leaves(e)] if isinstance(t, tuple) else [t]


def unflatten(flat: list[Any], profile: IntTuple) -> IntTuple:
    it = iter(flat)

    def go(p: IntTuple) -> IntTuple:
        return tuple(go(e) for e in p) if isinstance(p, tuple) else next(it)

    return go(profile)


# Mostly powers of two, so that random compositions usually meet the divisibility
# conditions; other extents keep the error paths exercised.
EXTENT = st.one_of(st.sampled_from([1, 2, 4, 8]), st.integers(1, 8))


@st.composite
def shapes(draw: st.DrawFn, max_rank: int = 4, max_size: int = 512) -> IntTuple:
    size = 1

    def extent() -> int:
        nonlocal size
        n = min(draw(EXTENT), max_size // size)  # keep the size within max_size
        size *= n
        return n

    modes: list[IntTuple] = []
    for _ in range(draw(st.integers(1, max_rank))):
        depth2 = draw(st.integers(0, 3)) == 0
        modes.append(
            tuple(extent() for _ in range(draw(st.integers(1, 3)))) if depth2 else extent()
        )
    if len(modes) == 1 and not isinstance(modes[0], tuple) and draw(st.booleans()):
        return modes[0]  # an unwrapped rank-1 layout, n:d
    return tuple(modes)


@st.composite
def layouts(draw: st.DrawFn, gaps: bool = True, zeros: bool = False, max_size: int = 512) -> Layout:
    """Injective, complementable layouts (compact strides in a random mode order, with
    optional gaps that are multiples), optionally with broadcast (stride-0) modes."""
    shape = draw(shapes(max_size=max_size))
    flat = leaves(shape)
    strides = [0] * len(flat)
    current = 1
    for i in draw(st.permutations(range(len(flat)))):
        gap = draw(st.sampled_from([1, 1, 1, 2, 3])) if gaps else 1
        strides[i] = current * gap
        current = strides[i] * flat[i]
        if zeros and draw(st.integers(0, 9)) == 0:
            strides[i] = 0
    return Layout(shape, unflatten(strides, shape))


@st.composite
def any_layouts(draw: st.DrawFn, low: int = 0, max_size: int = 512) -> Layout:
    """Arbitrary strides: overlapping, non-divisible, broadcast."""
    shape = draw(shapes(max_size=max_size))
    strides = draw(
        st.lists(st.integers(low, 24), min_size=len(leaves(shape)), max_size=len(leaves(shape)))
    )
    return Layout(shape, unflatten(strides, shape))


def values(layout: Layout) -> list[int]:
    """layout(i) for i in [0, size), enumerated independently of Layout.__call__."""
    out = [0]
    for s, d in zip(leaves(layout.shape), leaves(layout.stride), strict=True):
        out = [o + k * d for k in range(s) for o in out]  # colex: earlier leaves fastest
    return out


def canonical(layout: Any) -> tuple[tuple[int, int], ...]:
    """The modes that matter: flattened, size-1 modes dropped. Two layouts with the same
    canonical form are the same function, also past the end of their domain."""
    pairs = zip(leaves(layout.shape), leaves(layout.stride), strict=True)
    return tuple((s, d) for s, d in pairs if s != 1)


def agree(mine: Layout, other: Any) -> bool:
    """Same size and the same function on it. tensor-layouts nests some results
    differently (and keeps other size-1 modes), so the structure is not compared here;
    the property tests check it against CuTe's definitions."""
    theirs = Layout(other.shape, other.stride)
    return mine.size == theirs.size and coalesce(mine) == coalesce(theirs)


def moving(layout: Layout) -> Layout:
    """The modes complement looks at: no size-1 and no stride-0 modes."""
    modes = [(s, d) for s, d in canonical(layout) if d != 0]
    return Layout(tuple(s for s, _ in modes), tuple(d for _, d in modes))


def raises(f: Callable[[], Any]) -> bool:
    try:
        f()
    except Exception:
        return True
    return False


# ---------------------------------------------------------------------------------------
# CuTe's documented examples and basic semantics


@pytest.mark.parametrize(
    ("got", "want"),
    [
        (lambda: coalesce(P("(2,(1,6)):(1,(6,2))")), "12:1"),
        (lambda: coalesce(P("(2,(1,6)):(1,(6,2))"), (1, 1)), "(2,6):(1,2)"),
        (lambda: composition(P("(6,2):(8,2)"), P("(4,3):(3,1)")), "((2,2),3):((24,2),8)"),
        (lambda: composition(P("20:2"), P("(5,4):(4,1)")), "(5,4):(8,2)"),
        (lambda: composition(P("(10,2):(16,4)"), P("(5,4):(1,5)")), "(5,(2,2)):(16,(80,4))"),
        (
            lambda: composition(P("(12,(4,8)):(59,(13,1))"), (P("3:4"), P("8:2"))),
            "(3,(2,4)):(236,(26,1))",
        ),
        (lambda: composition(P("(12,(4,8)):(59,(13,1))"), (3, 8)), "(3,(4,2)):(59,(13,1))"),
        (lambda: complement(P("4:1"), 24), "6:4"),
        (lambda: complement(P("6:4"), 24), "4:1"),
        (lambda: complement(P("(4,6):(1,4)"), 24), "1:0"),
        (lambda: complement(P("4:2"), 24), "(2,3):(1,8)"),
        (lambda: complement(P("(2,4):(1,6)"), 24), "3:2"),
        (lambda: complement(P("(2,2):(1,6)"), 24), "(3,2):(2,12)"),
        (lambda: complement(P("4:2")), "2:1"),
        (lambda: logical_divide(P("(4,2,3):(2,1,8)"), P("4:2")), "((2,2),(2,3)):((4,1),(2,8))"),
        (
            lambda: logical_divide(P("(9,(4,8)):(59,(13,1))"), (P("3:3"), P("(2,4):(1,8)"))),
            "((3,3),((2,4),(2,2))):((177,59),((13,2),(26,1)))",
        ),
        (
            lambda: zipped_divide(P("(9,(4,8)):(59,(13,1))"), (P("3:3"), P("(2,4):(1,8)"))),
            "((3,(2,4)),(3,(2,2))):((177,(13,2)),(59,(26,1)))",
        ),
        (
            lambda: tiled_divide(P("(9,(4,8)):(59,(13,1))"), (P("3:3"), P("(2,4):(1,8)"))),
            "((3,(2,4)),3,(2,2)):((177,(13,2)),59,(26,1))",
        ),
        (
            lambda: flat_divide(P("(9,(4,8)):(59,(13,1))"), (P("3:3"), P("(2,4):(1,8)"))),
            "(3,(2,4),3,(2,2)):(177,(13,2),59,(26,1))",
        ),
        (lambda: logical_product(P("(2,2):(4,1)"), P("6:1")), "((2,2),(2,3)):((4,1),(2,8))"),
        (
            lambda: logical_product(P("(2,2):(4,1)"), P("(4,2):(2,1)")),
            "((2,2),(4,2)):((4,1),(8,2))",
        ),
        (
            lambda: logical_product(P("(2,5):(5,1)"), (P("3:5"), P("4:6"))),
            "((2,3),(5,4)):((5,10),(1,30))",
        ),
        (
            lambda: blocked_product(P("(2,2):(1,2)"), P("(3,4):(4,1)")),
            "((2,3),(2,4)):((1,16),(2,4))",
        ),
        (lambda: raked_product(P("(2,2):(1,2)"), P("(3,4):(4,1)")), "((3,2),(4,2)):((16,1),(4,2))"),
        (lambda: blocked_product(P("4:1"), 3), "((4,3)):((1,4))"),
        (
            lambda: zipped_product(P("(2,5):(5,1)"), (P("3:5"), P("4:6"))),
            "((2,5),(3,4)):((5,1),(10,30))",
        ),
        (
            lambda: tiled_product(P("(2,5):(5,1)"), (P("3:5"), P("4:6"))),
            "((2,5),3,4):((5,1),10,30)",
        ),
        (lambda: right_inverse(P("(8,4):(4,1)")), "(4,8):(8,1)"),
        (lambda: right_inverse(P("4:2")), "1:0"),
        (lambda: right_inverse(P("(2,4):(0,1)")), "4:2"),
        (lambda: left_inverse(P("(4,8):(1,5)")), "(5,8):(1,4)"),
        (lambda: left_inverse(P("4:2")), "(2,4):(0,1)"),
        (lambda: row_major((4, (2, 8))), "(4,(2,8)):(16,(8,1))"),
        (lambda: col_major((4, (2, 8))), "(4,(2,8)):(1,(4,8))"),
        (lambda: make_layout(P("4:1"), P("(2,3):(4,8)")), "(4,(2,3)):(1,(4,8))"),
        (
            lambda: flatten(P("((2,3),(4,(5,6))):((1,2),(6,(24,120)))")),
            "(2,3,4,5,6):(1,2,6,24,120)",
        ),
        (lambda: Layout.from_torch([2, 3, 4], [12, 4, 1]), "(4,3,2):(1,4,12)"),
        (lambda: Layout.from_torch([], []), "():()"),
    ],
)
def test_cute_examples(got: Callable[[], Layout], want: str) -> None:
    assert str(got()) == want
    assert got() == P(want)


def test_queries_and_evaluation() -> None:
    layout = P("(4,(2,8)):(16,(8,1))")
    assert (layout.size, layout.cosize, layout.rank, layout.depth) == (64, 64, 2, 2)
    assert (layout.shape, layout.stride) == ((4, (2, 8)), (16, (8, 1)))
    assert layout[1] == P("(2,8):(8,1)") and layout[1, 0] == P("2:8") and len(layout) == 2
    assert [str(m) for m in layout] == ["4:16", "(2,8):(8,1)"]
    # Flat index 29 = 1 + 4 * (1 + 2 * 3): colex, the first mode fastest.
    assert layout.idx2crd(29) == (1, (1, 3)) == idx2crd(29, layout.shape)
    for crd in [29, (1, (1, 3)), (1, 7), (1, 1, 3)]:  # index, hierarchical, by-mode, flat
        assert layout(crd) == 16 + 8 + 3
    assert layout(1, 7) == 27
    assert P("(2,3):(1,2)").cosize == 6 and P("4:-2").cosize == 7
    # Past the end, the last mode absorbs the rest (CuTe's extension).
    assert P("(4,2):(1,10)")(9) == 1 + 2 * 10
    assert P("():()").size == 1 and P("():()")(0) == 0 and P("():()").rank == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Layout((4, 2), (1,)), "not congruent"),
        (lambda: Layout((4, (2, 3)), (1, 4, 8)), "not congruent"),
        (lambda: Layout(0, 1), "positive"),
        (lambda: Layout(2.5, 1), "integers"),
        (lambda: Layout(True, 1), "integers"),
        (lambda: Layout(sympy.Rational(1, 2), 1), "integer-valued"),
        (
            lambda: composition(P("(6,4):(1,10)"), P("4:4")),
            "stride 4 and mode shape 6 do not divide",
        ),
        (lambda: composition(P("(3,4):(1,10)"), P("4:1")), "shape 4 is not divisible by 3"),
        (lambda: composition(P("4:1"), P("2:-1")), "negative stride"),
        # 2:1 and 2:2 each fit in the mode of shape 3, but (1,1) -> 3 carries out of it.
        (lambda: composition(P("(3,2):(1,6)"), P("(2,2):(1,2)")), "overflow mode 3:1"),
        (lambda: composition(P("4:1"), (P("2:1"), P("2:1"))), "longer than rank-1"),
        (lambda: complement(P("(2,2):(1,1)")), "not injective"),
        (lambda: complement(P("(2,3):(1,3)"), 24), "stride 3 is not a multiple of 2"),
        (lambda: complement(P("4:1"), 0), "cotarget must be a positive integer"),
        (lambda: complement(P("4:-1"), 8), "negative stride"),
        (lambda: logical_divide(P("6:1"), 4), "does not divide size 6"),
        (lambda: logical_divide(P("12:1"), P("2:4")), "does not divide size 12"),
        (lambda: zipped_divide(P("(8,6):(1,8)"), (4, 4)), "does not divide size 6"),
        (lambda: left_inverse(P("(2,2):(2,3)")), "stride 3 is not a positive multiple of 2"),
        (lambda: P("(4,2:(1,2)"), "expected ',' or '\\)'"),
        (lambda: P("(4,2)"), "expected ':'"),
        (lambda: P("4:1)"), "unexpected text"),
        (lambda: P("(,):(1)"), "expected an integer"),
        (lambda: P("M+:1"), "bad expression"),
        (lambda: P("exit(0):1"), "unknown function 'exit'"),
        (lambda: P("M.real:1"), "bad expression"),
        (lambda: Layout.from_torch([2, 3], [1]), "differ in rank"),
    ],
)
def test_errors(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        make()


def test_symbolic_layouts() -> None:
    m, k = sympy.symbols("M K", integer=True, positive=True)
    scales = P("((32,4,M/128),(4,K/4)):((16,4,512*K/4),(1,512))")  # the MX scale swizzle
    assert scales.size == m * k and not scales.is_static
    assert sympy.simplify(scales.cosize - m * k) == 0  # a permutation of [0, M*K)
    assert P(str(scales)) == scales and P("(M):(1)").shape == (m,)
    view = Layout((4, m), (m, 1))
    assert view.to_torch() == ([m, 4], [1, m])
    assert Layout.from_torch(*view.to_torch()) == view
    i, j = sympy.symbols("i j", integer=True, nonnegative=True)
    assert view((i, j)) == i * m + j
    assert coalesce(Layout((2, m, 4), (1, 2, 2 * m))) == Layout(8 * m, 1)
    assert coalesce(Layout((2, m), (1, 3))) == Layout((2, m), (1, 3))
    for op in [lambda: complement(view), lambda: composition(view, 2), lambda: right_inverse(view)]:
        with pytest.raises(LayoutError, match="symbolic"):
            op()
    # A name given as a symbol is used as is; a leading parenthesis stays an expression.
    n = sympy.Symbol("N")
    assert P("N:1", symbols={"N": n}).shape is n
    assert P("(floor(M/4),Mod(K, 8)):(1,Max(M, 2))").shape == (sympy.floor(m / 4), sympy.Mod(k, 8))
    product_ = Layout((m + 1) * (k + 1), 1)
    assert str(product_).startswith("+(") and P(str(product_)) == product_


# ---------------------------------------------------------------------------------------
# Properties


@PROPERTY
@given(any_layouts(low=-4))
def test_coalesce_preserves_function(layout: Layout) -> None:
    assert [layout(i) for i in range(layout.size)] == values(layout)
    result = coalesce(layout)
    assert result.size == layout.size and values(result) == values(layout)
    assert result.depth <= 1 and coalesce(result) == result
    modes = canonical(result)
    assert all(s * d != d2 for (s, d), (_, d2) in zip(modes, modes[1:], strict=False))
    by_mode = coalesce(layout, (1,) * layout.rank)
    assert by_mode.rank == layout.rank and values(by_mode) == values(layout)
    assert all(by_mode[i] == coalesce(layout[i]) for i in range(layout.rank) if layout.rank > 1)


@PROPERTY
@given(any_layouts(), layouts(), st.data())
def test_composition_is_function_composition(a: Layout, b: Layout, data: st.DataObject) -> None:
    try:
        c = composition(a, b)
    except LayoutError:
        assume(False)
    assert c.size == b.size
    if isinstance(b.shape, tuple):  # c has b's modes (an unwrapped b may give several)
        assert c.rank == b.rank and all(c[i].size == b[i].size for i in range(b.rank))
    # a(b(i)) also past the end of a: the last mode of a absorbs the rest.
    assert values(c) == [a(x) for x in values(b)]
    # By-mode (tiler) composition keeps the modes it does not reach.
    if a.rank > 1:
        tiler = tuple(Layout(data.draw(st.sampled_from([1, m.size])), 1) for m in list(a)[:-1])
        by_mode = composition(a, tiler)
        assert list(by_mode)[-1] == list(a)[-1]
        assert all(by_mode[i] == composition(a[i], t) for i, t in enumerate(tiler))


@PROPERTY
@given(any_layouts(), layouts(), st.data())
def test_composition_with_symbolic_strides(a: Layout, b: Layout, data: st.DataObject) -> None:
    """a's strides as symbols (a torch view whose strides are known at launch): the
    composition is the same function once the symbols are given the strides' values."""
    flat_strides = leaves(a.stride)
    symbols = sympy.symbols(f"d0:{len(flat_strides)}", integer=True, nonnegative=True)
    symbolic = Layout(a.shape, unflatten(list(symbols), a.stride))
    try:
        c = composition(symbolic, b)
    except LayoutError:
        # symbols never merge modes, so it may only reject more than the static one
        assume(False)
    values_of = {s: sympy.Integer(v) for s, v in zip(symbols, flat_strides, strict=True)}
    assert [int(sympy.sympify(c(i)).xreplace(values_of)) for i in range(b.size)] == values(
        composition(a, b)
    )


@PROPERTY
@given(layouts(zeros=True), st.integers(0, 2))
def test_complement(a: Layout, which: int) -> None:
    cotarget = [None, 1, 3 * a.cosize][which]
    r = complement(a, cotarget)
    a_f = moving(a)
    image, rest = set(values(a_f)), values(r)
    assert image.isdisjoint(rest[1:])  # disjoint images
    together = values(make_layout(a_f, r))
    assert sorted(together) == list(range(a_f.size * r.size))  # covers exactly once
    assert a_f.size * r.size >= (a.cosize if cotarget is None else cotarget)
    modes = canonical(r)
    assert all(s * d <= d2 for (s, d), (_, d2) in zip(modes, modes[1:], strict=False))
    assert rest == sorted(rest)  # ordered


@PROPERTY
@given(any_layouts(), st.integers(1, 64))
def test_complement_of_arbitrary_layouts(a: Layout, cotarget: int) -> None:
    """Where complement answers, the answer is a true complement."""
    try:
        r = complement(a, cotarget)
    except LayoutError:
        return
    a_f = moving(a)
    assert sorted(values(make_layout(a_f, r))) == list(range(a_f.size * r.size))


def _divides(a: Layout, tiler: Any) -> Layout | None:
    try:
        return logical_divide(a, tiler)
    except LayoutError:
        return None


@PROPERTY
@given(layouts(zeros=True), layouts(gaps=False), st.data())
def test_divides(a: Layout, b: Layout, data: st.DataObject) -> None:
    # A random compact tile: it divides a, or the refusal has a stated reason.
    d = _divides(a, b)
    if d is not None:
        assert d == composition(a, make_layout(b, complement(b, a.size)))
        assert d[0] == composition(a, b) and d.size == a.size
        assert sorted(values(d)) == sorted(values(a))
    else:  # b does not divide a, or a ∘ (b, rest) fails the divisibility conditions
        rest = None if raises(lambda: complement(b, a.size)) else complement(b, a.size)
        assert (
            rest is None
            or b.size * rest.size != a.size
            or raises(lambda: composition(a, make_layout(b, rest)))
        )
    # By mode: per mode a compact tile over a prefix of its leaves, which always divides.
    tiler = tuple(
        Layout(data.draw(st.sampled_from([math.prod(leaves(m.shape)[:k]) for k in range(4)])))
        for m in list(a)[: data.draw(st.integers(1, a.rank))]
    )
    logical, zipped = logical_divide(a, tiler), zipped_divide(a, tiler)
    tiled, flat = tiled_divide(a, tiler), flat_divide(a, tiler)
    n = len(tiler)
    rest = list(a)[n:]
    assert all(logical[i] == logical_divide(a[i], t) for i, t in enumerate(tiler))
    assert zipped == make_layout(
        make_layout(*(logical[i][0] for i in range(n))),
        make_layout(*(logical[i][1] for i in range(n)), *rest),
    )
    assert tiled == make_layout(zipped[0], *zipped[1])
    assert flat == make_layout(*zipped[0], *zipped[1])
    assert values(tiled) == values(zipped) == values(flat)
    # Tile t, element e of the tile: zipped((e, t)) is logical((e_i, t_i) per mode).
    for i in data.draw(st.lists(st.integers(0, a.size - 1), max_size=8)):
        e, t = zipped.idx2crd(i)
        crd = tuple((e[k], t[k]) for k in range(n)) + tuple(t[n:])
        assert zipped(i) == logical(crd)


def pad(layout: Layout, rank: int) -> Layout:
    """Append 1:0 modes up to rank (CuTe's append<R>)."""
    if layout.rank >= rank:
        return layout
    return make_layout(*layout, *[Layout(1, 0)] * (rank - layout.rank))


def _pairs(x: Layout, y: Layout, crd: Any) -> tuple[Any, Any]:
    """Split ((x0, y0), (x1, y1), ...) into coordinates of x and y (unwrapped for an
    unwrapped layout)."""
    first, second = tuple(p[0] for p in crd), tuple(p[1] for p in crd)
    return (
        first if isinstance(x.shape, tuple) else first[0],
        second if isinstance(y.shape, tuple) else second[0],
    )


@PROPERTY
@given(
    layouts(zeros=True, max_size=64),
    layouts(gaps=False, max_size=64),
    layouts(gaps=False, max_size=64),
    st.data(),
)
def test_products(a: Layout, b: Layout, block: Layout, data: st.DataObject) -> None:
    try:
        p = logical_product(a, b)
    except LayoutError:  # a with gaps: its complement may not compose with b
        assume(False)
    assert p[0] == a
    assert p[1] == composition(complement(a, a.size * b.cosize), b)
    assert p.size == a.size * b.size
    if all(d != 0 for _, d in canonical(a)):
        assert len(set(values(p))) == p.size  # copies of an injective a do not overlap
    # Blocked and raked: block is compact, so its copies tile [0, size) exactly.
    block = Layout(block.shape)
    rank = max(block.rank, b.rank)
    blocked, raked = blocked_product(block, b), raked_product(block, b)
    c = logical_product(pad(block, rank), pad(b, rank))[1]
    assert blocked.rank == raked.rank == rank and blocked.size == block.size * b.size
    assert sorted(values(blocked)) == sorted(values(raked)) == list(range(blocked.size))
    block_, b_ = pad(block, rank), pad(b, rank)
    for i in data.draw(st.lists(st.integers(0, blocked.size - 1), max_size=8)):
        x, y = _pairs(block_, b_, blocked.idx2crd(i))  # ((block_k, copy_k) per mode)
        assert blocked(i) == block_(x) + c(y)
        y, x = _pairs(b_, block_, raked.idx2crd(i))  # ((copy_k, block_k) per mode)
        assert raked(i) == block_(x) + c(y)


@PROPERTY
@given(any_layouts(), layouts(gaps=False))
def test_right_inverse(a: Layout, compact: Layout) -> None:
    r = right_inverse(a)
    assert [a(x) for x in values(r)] == list(range(r.size))
    r = right_inverse(compact)  # a bijection: the inverse covers it
    assert r.size == compact.size and [compact(x) for x in values(r)] == list(range(r.size))
    assert left_inverse(compact) == r


@PROPERTY
@given(layouts(), any_layouts())
def test_left_inverse(a: Layout, b: Layout) -> None:
    inverse = left_inverse(a)
    assert [inverse(x) for x in values(a)] == list(range(a.size))
    if len(set(values(b))) == b.size and not raises(lambda: left_inverse(b)):
        assert [left_inverse(b)(x) for x in values(b)] == list(range(b.size))


@PROPERTY
@given(any_layouts(low=-30), st.booleans())
def test_print_parse_round_trip(layout: Layout, spaces: bool) -> None:
    text = str(layout)
    assert P(text) == layout
    assert P(text.replace(",", " , ").replace(":", " : ") if spaces else text) == layout


@st.composite
def torch_views(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    size = draw(st.lists(st.integers(1, 5), max_size=4))
    assume(math.prod(size) <= 256)
    kind = draw(st.sampled_from(["permuted", "any"]))
    if kind == "permuted":  # a permute of a contiguous tensor, maybe with broadcasts
        stride = [0] * len(size)
        current = 1
        for i in draw(st.permutations(range(len(size)))):
            stride[i] = current if draw(st.integers(0, 5)) else 0
            current *= size[i]
    else:  # anything as_strided accepts, overlaps included
        stride = draw(st.lists(st.integers(0, 12), min_size=len(size), max_size=len(size)))
    return size, stride, draw(st.integers(0, 3))


@PROPERTY
@given(torch_views(), st.data())
def test_torch_round_trip(view: tuple[list[int], list[int], int], data: st.DataObject) -> None:
    size, stride, offset = view
    storage = offset + sum((s - 1) * d for s, d in zip(size, stride, strict=True)) + 1
    t = torch.arange(storage).as_strided(size, stride, offset)  # values = storage positions
    layout = Layout.from_torch(t.size(), t.stride())
    assert layout.to_torch() == (list(t.size()), list(t.stride()))
    # Flat index i of the layout is element i of t.flatten() (row-major).
    assert [offset + layout(i) for i in range(layout.size)] == t.flatten().tolist()
    if size:
        idx = tuple(data.draw(st.integers(0, s - 1)) for s in size)
        assert layout(tuple(reversed(idx))) + offset == t[idx].item()


# ---------------------------------------------------------------------------------------
# Independent oracle: tensor-layouts (PyPI), a pure-Python CuTe implementation.


def _oracle() -> Any:
    # a test extra (pyproject): missing, these tests fail rather than skip
    import tensor_layouts

    return tensor_layouts


def _tl(tl: Any, x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_tl(tl, e) for e in x)
    if isinstance(x, int):  # n means n:1; tensor-layouts' own shortcut mis-nests n = 1
        return tl.Layout(x, 1)
    return tl.Layout(x.shape, x.stride)


def _from_tl(x: Any) -> Layout:
    return Layout(x.shape, x.stride)


def _outcome(op: str, mine: Any, other: Any) -> str:
    ours, theirs = ("refuses" if x is None else "answers" for x in (mine, other))
    return f"{op}: ours {ours}, oracle {theirs}"


def _compare(ours: Callable[[], Layout], theirs: Callable[[], Any]) -> tuple[Any, Any]:
    """Both results, None for a refusal."""
    try:
        mine = ours()
    except LayoutError:
        mine = None
    try:
        other = theirs()
    except Exception:
        other = None
    return mine, other


@PROPERTY
@given(any_layouts(), layouts(zeros=True), st.integers(0, 2), st.data())
def test_oracle_coalesce_complement_inverses(
    a: Layout, injective: Layout, which: int, data: st.DataObject
) -> None:
    tl = _oracle()
    assert coalesce(a) == _from_tl(tl.coalesce(_tl(tl, a)))
    mine, other = right_inverse(a), _from_tl(tl.right_inverse(_tl(tl, a)))
    if mine != other:  # equal strides (a is not injective): both are right inverses
        for r in (mine, other):
            assert [a(x) for x in values(r)] == list(range(r.size))
    mine, other = _compare(lambda: left_inverse(a), lambda: tl.left_inverse(_tl(tl, a)))
    event(_outcome("left_inverse", mine, other))
    if mine is not None:
        assert other is not None and mine == _from_tl(other)
    else:  # we refuse where CuTe does: a stride is not a multiple of the one below it
        strides = sorted(d for _, d in canonical(coalesce(a)) if d != 0)
        assert any(d2 % d for d, d2 in zip(strides, strides[1:], strict=False))
    for x in (a, injective):
        cotarget = [None, data.draw(st.integers(1, 64)), 2 * x.cosize][which]
        mine, other = _compare(
            lambda x=x, m=cotarget: complement(x, m),
            lambda x=x, m=cotarget: tl.complement(_tl(tl, x), m),
        )
        event(_outcome("complement", mine, other))
        if mine is not None:
            assert other is not None and mine == _from_tl(other)
        elif other is not None:  # we refuse: the oracle's answer is no complement of x
            x_f = moving(x)
            other_l = _from_tl(other)
            assert sorted(values(make_layout(x_f, other_l))) != list(range(x_f.size * other_l.size))


@PROPERTY
@given(any_layouts(), layouts())
def test_oracle_composition(a: Layout, b: Layout) -> None:
    tl = _oracle()
    assume(b.cosize <= a.size)  # inside a's domain, where CuTe's variants agree
    mine, other = _compare(lambda: composition(a, b), lambda: tl.compose(_tl(tl, a), _tl(tl, b)))
    event(_outcome("composition", mine, other))
    if mine is not None and other is not None:
        assert agree(mine, other)
    elif other is not None:  # we refuse: the oracle's answer is not a ∘ b
        other_l = _from_tl(other)
        assert values(other_l) != [a(x) for x in values(b)]
    elif mine is not None:  # the oracle refuses: ours must still be a ∘ b
        assert values(mine) == [a(x) for x in values(b)]


def _is_product(a: Layout, tile: Any, p: Layout) -> bool:
    """p is (a, complement(a, size(a) * cosize(tile)) ∘ tile) as functions, by mode for a
    tuple tile."""
    if isinstance(tile, tuple):
        return all(_is_product(a[i], t, p[i]) for i, t in enumerate(tile))
    tile = tile if isinstance(tile, Layout) else Layout(tile)
    try:
        rest = complement(a, a.size * tile.cosize)
    except LayoutError:
        return False  # no complement: no product (the complement test checks the oracle's)
    return values(p[0]) == values(a) and values(p[1]) == [rest(x) for x in values(tile)]


@PROPERTY
@given(layouts(zeros=True), layouts(max_size=64), st.data())
def test_oracle_divide_and_product(a: Layout, b: Layout, data: st.DataObject) -> None:
    tl = _oracle()
    n = data.draw(st.integers(1, a.rank))
    tiler = tuple(
        data.draw(st.one_of(layouts(gaps=False, max_size=16), st.integers(1, 8))) for _ in range(n)
    )
    for tile in (b, tiler):
        for op in ("logical_divide", "zipped_divide", "tiled_divide"):
            mine, other = _compare(
                lambda op=op, tile=tile: globals()[op](a, tile),
                lambda op=op, tile=tile: getattr(tl, op)(_tl(tl, a), _tl(tl, tile)),
            )
            event(_outcome(op, mine, other))
            if mine is not None and other is not None:
                assert agree(mine, other)
            elif mine is not None:  # the oracle refuses: ours still tiles a
                assert sorted(values(mine)) == sorted(values(a))
            elif other is not None:  # we refuse: the oracle's answer does not tile a
                assert sorted(values(_from_tl(other))) != sorted(values(a))
        mine, other = _compare(
            lambda tile=tile: logical_product(a, tile),
            lambda tile=tile: tl.logical_product(_tl(tl, a), _tl(tl, tile)),
        )
        event(_outcome("logical_product", mine, other))
        if mine is not None and other is not None:
            assert agree(mine, other)
        elif mine is not None:  # the oracle refuses: ours is still the product
            assert _is_product(a, tile, mine)
        elif other is not None:  # we refuse: the oracle's answer is not the product
            assert not _is_product(a, tile, _from_tl(other))
    compact = Layout(a.shape, row_major(a.shape).stride if data.draw(st.booleans()) else None)
    for op in ("blocked_product", "raked_product"):
        mine = globals()[op](compact, b)
        other = getattr(tl, op)(_tl(tl, compact), _tl(tl, b))
        assert agree(mine, other)


# ---------------------------------------------------------------------------------------
# Index identities, proved symbolically


def test_proof_torch_view_offsets() -> None:
    """A permuted, broadcast view of a contiguous (a, b, c) tensor: the layout's offset at
    coordinate (k, j, i, e) is the storage offset of base[j, k, i], and (k, j, i, e) are
    the mixed-radix digits of the view's row-major flat index."""
    a, b, c, e = sympy.symbols("a b c e", integer=True, positive=True)
    i, j, k, n = sympy.symbols("i j k n", integer=True, nonnegative=True)
    base_stride = [b * c, c, 1]  # contiguous (a, b, c)
    # view = base.permute(2, 0, 1)[None].expand(e, c, a, b)
    size = [e, c, a, b]
    stride = [0, base_stride[2], base_stride[0], base_stride[1]]
    layout = Layout.from_torch(size, stride)
    assert layout.to_torch() == (size, stride)
    crd = (k, j, i, n)  # the view index (n, i, j, k), reversed
    assert sympy.expand(layout(crd) - (j * b * c + k * c + i)) == 0
    # The colex index of crd in the layout's shape is the row-major flat index of
    # (n, i, j, k) in the view, so layout(flat) walks t.flatten().
    flat = ((n * c + i) * a + j) * b + k
    assert sympy.expand(col_major(layout.shape)(crd) - flat) == 0


def test_proof_tile_offsets() -> None:
    """zipped_divide of a row-major (256, 512) matrix by 128x64 tiles: element (i, j) of
    tile (tm, tn) sits at (tm*128 + i)*512 + tn*64 + j, i.e. tile offset + in-tile offset."""
    i, j, tm, tn = sympy.symbols("i j tm tn", integer=True, nonnegative=True)
    matrix = row_major((256, 512))
    tiles = zipped_divide(matrix, (128, 64))
    assert str(tiles) == "((128,64),(2,8)):((512,1),(65536,64))"
    offset = tiles(((i, j), (tm, tn)))
    assert sympy.expand(offset - ((tm * 128 + i) * 512 + tn * 64 + j)) == 0
    assert sympy.expand(offset - tiles(((0, 0), (tm, tn))) - tiles(((i, j), (0, 0)))) == 0
    # The same tiling of the transposed view (a column-major operand).
    t_tiles = zipped_divide(Layout((256, 512), (1, 256)), (128, 64))
    assert sympy.expand(t_tiles(((i, j), (tm, tn))) - ((tn * 64 + j) * 256 + tm * 128 + i)) == 0


@PROPERTY
@given(
    st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=3),
    st.lists(st.integers(1, 4), min_size=3, max_size=3),
)
def test_block_scale_layout_broadcasts_each_scale_over_its_block(
    block: list[int], counts: list[int]
) -> None:
    """Each element reads the scale of its block: the layout applied to a scale tensor
    equals the scales repeated over each block (torch's repeat_interleave per dim)."""
    shape = [b * c for b, c in zip(block, counts, strict=False)]
    layout = block_scale_layout(shape, block)
    scales = torch.arange(math.prod(n // b for n, b in zip(shape, block, strict=True)))
    scales = scales.reshape([n // b for n, b in zip(shape, block, strict=True)])
    expected = scales
    for dim, b in enumerate(block):
        expected = expected.repeat_interleave(b, dim=dim)
    flat = scales.flatten()
    # layout(i) for the flat (row-major) index i of an element: CuTe order is reversed
    got = torch.tensor([int(flat[layout(i)]) for i in range(math.prod(shape))])
    assert torch.equal(got.reshape(shape), expected)
    # the scale tensor is compact: every scale is read, and nothing past it
    assert layout.cosize == scales.numel()


def test_block_scale_layout_mx_and_errors() -> None:
    # MX: one scale per 32 elements along K of a 4 x 64 tensor -> 4 x 2 scales
    assert str(block_scale_layout([4, 64], [1, 32])) == "((32,2),(1,4)):((0,1),(0,2))"
    with pytest.raises(LayoutError, match=r"block \[1, 32\] does not divide shape \[4, 48\]"):
        block_scale_layout([4, 48], [1, 32])


@PROPERTY
@given(st.integers(1, 16), st.integers(1, 4), st.integers(1, 6))
def test_interleave_layout_pairs_adjacent_columns_and_inverts(n: int, ways: int, rows: int) -> None:
    """Gate/up (or RoPE halves) side by side become adjacent columns; the right inverse
    takes the interleaved columns back (gradients reach the original parameters)."""
    stacked = torch.randn(rows, ways * n)  # [W_0 | W_1 | ...], each n columns
    layout = interleave_layout(n, ways)
    interleaved = stacked[:, [layout(c) for c in range(ways * n)]]
    for c in range(ways * n):
        block, column = c % ways, c // ways
        assert torch.equal(interleaved[:, c], stacked[:, block * n + column])
    inverse = right_inverse(layout)
    assert [layout(inverse(i)) for i in range(ways * n)] == list(range(ways * n))
    back = interleaved[:, [inverse(i) for i in range(ways * n)]]
    assert torch.equal(back, stacked)
