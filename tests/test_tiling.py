"""GEMM program indexing from the layout algebra (coda.codegen.tiling) and the printer
of index expressions (coda.codegen.addressing.triton_expr), evaluated as the kernel
would: Python integer arithmetic has Triton's // and % on nonnegative operands."""

from __future__ import annotations

import itertools
import math

import numpy as np
import sympy
from hypothesis import example, given, settings
from hypothesis import strategies as st

from coda.codegen.addressing import triton_expr
from coda.codegen.tiling import batch_indices, tile_offsets


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.sampled_from([16, 32, 64, 128]))
def test_tile_offsets_cover_each_row_once(extent: int, block: int) -> None:
    index = tile_offsets("offs_m", extent, block, "pid_m", "BLOCK_M")
    code = compile(index.expr.replace("tl.arange(0, BLOCK_M)", "lane"), "<offs>", "eval")
    tiles = math.ceil(extent / block)  # the launch grid: cdiv(M, BLOCK_M)
    rows = [
        eval(code, {}, {"BLOCK_M": block, "pid_m": pid, "lane": lane})
        for pid in range(tiles)
        for lane in range(block)
    ]
    assert sorted(r for r in rows if r < extent) == list(range(extent))  # masks keep these
    assert len(set(rows)) == len(rows)


def test_tile_offsets_text() -> None:
    index = tile_offsets("offs_n", 96, 32, "pid_n", "BLOCK_N")
    assert str(index.layout) == "(32,3):(1,32)"
    assert index.expr == "BLOCK_N * pid_n + tl.arange(0, BLOCK_N)"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_batch_indices_are_row_major(shape: list[int]) -> None:
    dims = [f"b{d}" for d in range(len(shape))]
    sizes = [f"B{d}" for d in range(len(shape))]
    exprs = [compile(e, "<b>", "eval") for _, e in batch_indices(dims, sizes, "pid_b")]
    env = dict(zip(sizes, shape, strict=True))
    for pid in range(math.prod(shape)):
        got = tuple(eval(e, {}, env | {"pid_b": pid}) for e in exprs)
        assert got == tuple(int(i) for i in np.unravel_index(pid, shape))


_X, _Y, _Z = sympy.symbols("x y z", integer=True, nonnegative=True)


@st.composite
def index_exprs(draw: st.DrawFn, depth: int = 3) -> sympy.Expr:
    """Nonnegative integer expressions of x, y, z with floor division and Mod."""
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from([_X, _Y, _Z, sympy.Integer(draw(st.integers(1, 7)))]))
    a, b = draw(index_exprs(depth - 1)), draw(index_exprs(depth - 1))
    kind = draw(st.sampled_from(["add", "mul", "floor", "mod"]))
    if kind in ("floor", "mod"):
        b = b + 1  # a nonzero divisor
        return sympy.floor(a / b) if kind == "floor" else sympy.Mod(a, b)
    return a + b if kind == "add" else a * b


@settings(max_examples=500, deadline=None)
@example(sympy.Mod(2 * _X * sympy.Mod(_X, _Y + 1), _X + 1))
@given(index_exprs())
def test_triton_expr_evaluates_like_sympy(expr: sympy.Expr) -> None:
    code = compile(triton_expr(expr, {}), "<expr>", "eval")
    for x, y, z in itertools.product(range(0, 7, 3), range(1, 8, 3), range(2, 5)):
        # xreplace, not subs: subs simplifies nested Mods wrongly on the way
        # (Mod(2*x*Mod(x, y + 1), x + 1) at x=6, y=7 gives 5, not 2)
        expected = expr.xreplace({_X: sympy.Integer(x), _Y: sympy.Integer(y), _Z: sympy.Integer(z)})
        assert eval(code, {}, {"x": x, "y": y, "z": z}) == int(expected), triton_expr(expr, {})
