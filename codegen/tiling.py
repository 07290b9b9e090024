"""Which output elements a GEMM program owns, derived from the layout algebra.

The output's (padded) row range is divided by the tile: `logical_divide(Mp:1, BM:1)` is
`(BM, Mp/BM):(1, BM)`, mode 0 walking the rows of one tile and mode 1 the tiles. A
program evaluates it at (lane, pid_m) for its row offsets; columns likewise. The batch
dims, enumerated row-major by grid axis 2, are the coordinate of `pid_b` in the batch
shape. The generated code prints these expressions (`triton_expr`), so what the kernel
indexes is what the algebra says, not a second hand-written formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

import sympy

from coda.codegen.addressing import triton_expr
from coda.dialects.layout_algebra import Layout, idx2crd, logical_divide


def _symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, nonnegative=True)


def tile_divide(extent: int, block: int) -> Layout:
    """(lane, tile) -> index along one output dim: the dim, padded to whole tiles,
    divided by the tile. Masks (`index < extent`) drop the padding."""
    tiles = -(-extent // block)
    return logical_divide(Layout(max(tiles, 1) * block, 1), Layout(block, 1))


@dataclass(frozen=True)
class TileIndex:
    """One output dim's offsets in a program: `{name} = {expr}`."""

    name: str
    expr: str
    layout: Layout


def tile_offsets(name: str, extent: int, block: int, pid: str, block_name: str) -> TileIndex:
    """`offs_m = BLOCK_M * pid_m + tl.arange(0, BLOCK_M)` from `tile_divide`. The tile
    size stays the kernel's constexpr `block_name` in the printed code. One tile
    covering the dim prints the same expression (its pid is 0), so that the code does
    not depend on the extent: one kernel serves every size of a dynamic dim."""
    layout = tile_divide(extent, block)
    lane, tile, size = _symbol("lane"), _symbol("tile"), _symbol(block_name)
    # with one tile the tile mode has extent 1 and drops out of the expression: the
    # layout of two tiles gives the general form, valid for any number of them
    general = layout if layout.shape[1] > 1 else tile_divide(block + 1, block)
    expr = sympy.sympify(general(lane, tile))
    # tiles are contiguous runs (what the masks assume): the layout is linear in
    # (lane, tile), so tile 0 and tile 1 fix it
    for t in range(2):
        if sympy.expand(expr.xreplace({tile: sympy.Integer(t)}) - (lane + block * t)) != 0:
            raise AssertionError(f"tile {t} of {layout} is not rows {t} * {block} + lane")
    # the stride of the tile mode is the block size: print it as the constexpr
    expr = expr.xreplace({tile: tile * size / block}).expand()
    names = {lane: f"tl.arange(0, {block_name})", tile: pid, size: block_name}
    return TileIndex(name, triton_expr(expr, names), layout)


def batch_indices(dims: Sequence[str], sizes: Sequence[str], pid: str) -> list[tuple[str, str]]:
    """Row-major coordinate of `pid` over the batch dims: [(dim name, expression)].
    `sizes[d]` names dim d's size; dim 0's is never needed (it takes the remainder)."""
    if not dims:
        return []
    flat = _symbol(pid)
    inner = [_symbol(s) for s in sizes[1:]]
    # colexicographic over the reversed shape is row-major over the dims
    crd = list(reversed(idx2crd(flat, tuple(reversed(inner))))) if inner else []
    outer = flat // prod(inner) if inner else flat
    exprs = [outer, *crd]
    names = {flat: pid} | {s: s.name for s in inner}
    return [(d, triton_expr(e, names)) for d, e in zip(dims, exprs, strict=True)]
