"""Block sizes, warps and pipeline stages of generated kernels, per target and dtype.

The interpreter gets small tiles (it is slow and correctness does not depend on them).
A GPU target gets the tile its tensor cores want: 128 rows for Hopper's warpgroup MMA
(wgmma) and Blackwell's tcgen05, MFMA-friendly tiles on AMD. The numbers are chosen so
that every kernel fits the target's budgets (`coda.codegen.targets`); the ahead-of-time
compile (`coda.codegen.aot`) checks that they do, kernel by kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from xdsl.dialects.builtin import BFloat16Type, Float16Type

from coda.codegen.targets import Target
from coda.dialects.epilogue import GemmOp, ReduceOp, StoreOp, TileType


@dataclass(frozen=True)
class GemmTile:
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int

    def describe(self) -> str:
        return (
            f"BLOCK {self.block_m}x{self.block_n}x{self.block_k}, {self.num_warps} warps, "
            f"{self.num_stages} stages"
        )


@dataclass(frozen=True)
class LoopTile:
    """Loop kernels: elements per program (pointwise) or per [BLOCK_X, BLOCK_R] block."""

    block: int
    num_warps: int


# Small enough for Triton's interpreter, and still valid tl.dot tiles on GPUs.
INTERPRETER_GEMM = GemmTile(32, 32, 16, num_warps=4, num_stages=3)
INTERPRETER_LOOP = LoopTile(1024, num_warps=4)

# 16-bit operands (bf16/f16). Hopper: two warpgroups share the 128x128 accumulator, so a
# thread holds 64 of its floats and the epilogue keeps room for its own live tiles (4
# warps would hold 128 and spill with a bias+SiLU epilogue already). Blackwell keeps the
# accumulator in tensor memory; 8 warps halve what the epilogue loads into registers.
# AMD: 2 stages of 128x64 + 64x128 bf16 fill MI300X's 64 KiB LDS exactly, so its tile is
# 128x128x32; MI350's 160 KiB LDS takes K=64.
_GEMM_16BIT: dict[str, GemmTile] = {
    "cuda:sm_90a": GemmTile(128, 128, 64, num_warps=8, num_stages=3),
    "cuda:sm_100a": GemmTile(128, 128, 64, num_warps=8, num_stages=3),
    "hip:gfx942": GemmTile(128, 128, 32, num_warps=8, num_stages=2),
    "hip:gfx950": GemmTile(128, 128, 64, num_warps=8, num_stages=2),
}

# float32 operands (TF32 or IEEE dots): twice the bytes per element, so half the K.
_GEMM_32BIT: dict[str, GemmTile] = {
    name: replace(tile, block_k=tile.block_k // 2) for name, tile in _GEMM_16BIT.items()
}

# Tile-shaped values an epilogue may keep live at once before the tile is narrowed:
# each one costs BLOCK_M*BLOCK_N/threads registers per thread (32 at 128x128, 8 warps).
_MAX_LIVE_TILES = 4

_LOOPS: dict[str, LoopTile] = {
    # 8 warps are 256 threads, 4 elements each per live block: a multi-pass reduction
    # (LayerNorm backward, softmax) keeps several blocks live without spilling
    "cuda:sm_90a": LoopTile(1024, num_warps=8),
    "cuda:sm_100a": LoopTile(1024, num_warps=8),
    # wave64: 4 waves are 256 lanes, 4 elements each
    "hip:gfx942": LoopTile(1024, num_warps=4),
    "hip:gfx950": LoopTile(1024, num_warps=4),
}


def live_tiles(gemm: GemmOp) -> int:
    """Tile-shaped values the epilogue holds: the accumulator, full-tile inputs and the
    values it stores (aux outputs stay live until their store)."""
    accumulators = len(gemm.accumulators)
    args = gemm.body.block.args[accumulators:]
    inputs = sum(isinstance(a.type, TileType) for a in args)
    stored = {op.value for op in gemm.body.block.ops if isinstance(op, StoreOp)}
    return accumulators + inputs + len(stored)


def sixteen_bit_operands(gemm: GemmOp) -> bool:
    """Every mainloop operand bf16, or every one f16: tl.dot takes them as they are."""
    types = {type(v.type.element_type) for v in gemm.products}
    return len(types) == 1 and issubclass(types.pop(), BFloat16Type | Float16Type)


def partial_columns(gemm: GemmOp, axis: str = "columns") -> int:
    """Columns (axis="rows": rows) per partial of the epilogue's partial reductions (1: it
    has none). Their side outputs' shapes were fixed at planning time, so BLOCK_N
    (BLOCK_M) must be a multiple."""
    ops = gemm.body.block.ops
    widths = [op.group_size for op in ops if isinstance(op, ReduceOp) and op.axis.data == axis]
    return max(widths, default=1)


def fits_partials(tile: GemmTile, gemm: GemmOp, whole_rows: bool = False) -> bool:
    whole_rows = whole_rows or gemm.holds_full_rows
    return (
        tile.block_n % partial_columns(gemm) == 0
        and tile.block_m % partial_columns(gemm, "rows") == 0
        and (not whole_rows or tile.block_n >= gemm.out_shape[-1])
    )


def _whole_rows(tile: GemmTile, gemm: GemmOp, gpu: bool, whole_rows: bool) -> GemmTile:
    """`tile` widened to hold whole output rows when the epilogue reduces them
    (epilogue.row_reduce; N is at most FULL_ROW_MAX) or `whole_rows` asks for them (a
    chain's second GEMM): BLOCK_N the power of two at or above N. On a GPU a 256-wide
    accumulator takes 64 rows, not 128, to stay in the registers the 128 x 128 tile
    used; so does a chain, whose program also holds the first GEMM's accumulators."""
    if not (whole_rows or gemm.holds_full_rows):
        return tile
    width = max(16, 1 << (gemm.out_shape[-1] - 1).bit_length())
    # a chain's program also holds the first GEMM's accumulators: 64 rows as well
    wide = width > 128 or whole_rows
    rows = min(tile.block_m, 64) if gpu and wide else tile.block_m
    return replace(tile, block_m=rows, block_n=max(tile.block_n, width))


def _mx_in_mainloop(gemm: GemmOp) -> bool:
    """Does `gemm` read an operand as dequantize(quantize(x)) with MX scales?"""
    from coda.codegen.quantize_operand import quantized_source

    for value in gemm.products:
        found = quantized_source(value)
        if found is not None and found[1].result.type.granularity.data == "mx":
            return True
    return False


def gemm_tile(target: Target | None, gemm: GemmOp, whole_rows: bool = False) -> GemmTile:
    """The tile for `gemm` on `target` (None: the interpreter); `whole_rows`: each
    program holds entire rows of the output (the second GEMM of a chain, whose BLOCK_K
    is also the first GEMM's BLOCK_N)."""
    if target is None:
        # an operand MX-quantized as it is loaded needs whole 32-element blocks per tile
        tile = replace(INTERPRETER_GEMM, block_k=32) if _mx_in_mainloop(gemm) else INTERPRETER_GEMM
        return _whole_rows(tile, gemm, gpu=False, whole_rows=whole_rows)
    tile = (_GEMM_16BIT if sixteen_bit_operands(gemm) else _GEMM_32BIT)[target.name]
    if live_tiles(gemm) > _MAX_LIVE_TILES:
        # many live tiles (several aux outputs, residuals): halve the columns so each
        # costs half the registers
        tile = replace(tile, block_n=tile.block_n // 2)
    return _whole_rows(tile, gemm, gpu=True, whole_rows=whole_rows)


def gemm_tiles(target: Target, gemm: GemmOp, whole_rows: bool = False) -> list[GemmTile]:
    """Tiles to try for `gemm` on `target`, best first. Register allocation is not
    monotone in the tile (ptxas may spill a 128x64 tile where 128x128 fits), so the
    ahead-of-time compile takes the first that compiles clean: `gemm_tile`'s choice,
    then the full and narrowed table tiles, then fewer warps and a 64x64 tile."""
    first = gemm_tile(target, gemm, whole_rows)
    full = replace(first, block_n=max(first.block_n, 128))
    narrow = replace(full, block_n=full.block_n // 2)
    small = replace(full, block_m=64, block_n=64, num_warps=4)
    # whole rows (epilogue.row_reduce, a chain): a shallower pipeline or half the K per
    # stage (a 256-wide rhs tile fills shared memory), no pipelining at all (a norm
    # backward chained to the gate/up recompute needs every register for its
    # accumulators), then fewer rows per program
    half_k = max(16, first.block_k // 2)
    rows = [
        replace(first, num_stages=2),
        replace(first, block_k=half_k, num_stages=2),
        replace(first, block_k=half_k, num_stages=1),
        *(replace(first, block_m=m, num_warps=w) for m, w in ((32, 8), (16, 8), (16, 4))),
    ]
    tiles: list[GemmTile] = []
    for tile in (first, full, narrow, replace(narrow, num_warps=4), small, *rows):
        if tile not in tiles and fits_partials(tile, gemm, whole_rows):
            tiles.append(tile)
    return tiles


def loop_tile(target: Target | None) -> LoopTile:
    return INTERPRETER_LOOP if target is None else _LOOPS[target.name]


@dataclass(frozen=True)
class AttentionTile:
    """Attention kernels: BLOCK_M query rows and BLOCK_N key rows per step; the head dim
    is one whole tile (padded to a power of two, at least 16 for tl.dot)."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    def describe(self) -> str:
        return (
            f"BLOCK {self.block_m}x{self.block_n}, {self.num_warps} warps, {self.num_stages} stages"
        )


INTERPRETER_ATTENTION = AttentionTile(32, 32, num_warps=4, num_stages=1)

# Forward: 128 query rows feed Hopper's and Blackwell's 128-row MMAs (two warpgroups on
# Hopper); the backward keeps five [64, D] tiles and two accumulators live, so it takes
# 64 x 64 with one warpgroup. AMD: 64-row tiles keep MI300X's 64 KiB LDS for k and v.
# Blackwell's backward takes 64 x 64 with two warpgroups: with 128 query rows the
# pipelined loop over them spills for any sequence longer than one block (ptxas: 180+
# bytes at head dim 64; it only fitted where S == BLOCK_M proved the loop runs once),
# and 4 warps spill too; 8 warps on 64 x 64 take about 200 registers.
_ATTENTION: dict[str, tuple[AttentionTile, AttentionTile]] = {
    "cuda:sm_90a": (AttentionTile(128, 64, 8, 2), AttentionTile(64, 64, 4, 2)),
    "cuda:sm_100a": (AttentionTile(128, 64, 8, 2), AttentionTile(64, 64, 8, 2)),
    "hip:gfx942": (AttentionTile(64, 64, 4, 1), AttentionTile(64, 64, 4, 1)),
    "hip:gfx950": (AttentionTile(64, 64, 4, 1), AttentionTile(64, 64, 4, 1)),
}


def attention_tiles(target: Target | None, backward: bool) -> list[AttentionTile]:
    """Tiles to try for an attention kernel on `target` (None: the interpreter), best
    first; the ahead-of-time compile takes the first that compiles clean."""
    if target is None:
        return [INTERPRETER_ATTENTION]
    first = _ATTENTION[target.name][int(backward)]
    tiles = [
        first,
        replace(first, block_m=64, block_n=64, num_warps=4),
        AttentionTile(64, 32, 4, 1),
        # the GQA backward at heads of 64 on gfx950 (64 x 32 spills 4 bytes there)
        AttentionTile(32, 32, 4, 1),
    ]
    return list(dict.fromkeys(tiles))
