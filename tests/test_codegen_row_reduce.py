"""Whole-row statistics in a GEMM epilogue (epilogue.row_reduce): the program holds entire
rows (BLOCK_N >= N), so a norm's statistic and what uses it finish on chip; run under
Triton's interpreter against torch, and compiled for GPUs on this CPU-only machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from codegen_support import load, parse_kernel

from coda.codegen import generate_kernel_source
from coda.codegen.aot import compile_plan
from coda.codegen.targets import TARGETS, parse_target
from coda.codegen.tile_config import gemm_tile, gemm_tiles
from coda.dialects.epilogue import GemmOp

TILE, COL = "!epilogue.tile<f32>", "!epilogue.col<f32>"
SCALAR = "!epilogue.scalar<f32>"


def _residual_rmsnorm(m: int, n: int, k: int):
    """h = a @ W + r, rstd = rsqrt(mean(h^2) + eps), y = h * rstd, max |h| and the
    logsumexp of h per row."""
    a, w, t, c = (
        f"tensor<{m}x{k}xf32>",
        f"tensor<{k}x{n}xf32>",
        f"tensor<{m}x{n}xf32>",
        f"tensor<{m}x1xf32>",
    )
    return parse_kernel(
        {"a": a, "w": w, "r": t},
        f"""
%h, %rstd, %y, %amax, %lse = kernel.gemm "residual_rmsnorm" (%a, %w, %r)
    : ({a}, {w}, {t}) -> ({t}, {c}, {t}, {c}, {c}) {{
^bb0(%aa: {a}, %wa: {w}, %ra: {t}):
  %o:5 = epilogue.gemm %aa, %wa inputs(%ra) : ({a}, {w}, {t}) -> ({t}, {c}, {t}, {c}, {c}) {{
  ^tile(%acc: {TILE}, %res: {TILE}):
    %h = epilogue.accumulate %acc, %res : ({TILE}, {TILE}) -> {TILE}
    %ss = epilogue.row_reduce "sumsq" %h : {TILE} -> {COL}
    %n = epilogue.constant {float(n)} : f32 -> {SCALAR}
    %eps = epilogue.constant 1.0e-06 : f32 -> {SCALAR}
    %ms = epilogue.map "div"(%ss, %n) : ({COL}, {SCALAR}) -> {COL}
    %v = epilogue.map "add"(%ms, %eps) : ({COL}, {SCALAR}) -> {COL}
    %rstd = epilogue.map "rsqrt"(%v) : ({COL}) -> {COL}
    %y = epilogue.scale %h, %rstd : ({TILE}, {COL}) -> {TILE}
    %habs = epilogue.map "abs"(%h) : ({TILE}) -> {TILE}
    %amax = epilogue.row_reduce "max" %habs : {TILE} -> {COL}
    epilogue.store %h : {TILE} -> result 0
    epilogue.store %rstd : {COL} -> result 1
    epilogue.store %y : {TILE} -> result 2
    %lse = epilogue.row_reduce "logsumexp" %h : {TILE} -> {COL}
    epilogue.store %amax : {COL} -> result 3
    epilogue.store %lse : {COL} -> result 4
  }}
  kernel.yield %o#0, %o#1, %o#2, %o#3, %o#4 : {t}, {c}, {t}, {c}, {c}
}}""",
    )


@pytest.mark.parametrize(("m", "n"), [(40, 48), (8, 256)])
def test_whole_row_statistics_match_torch(tmp_path: Path, m: int, n: int) -> None:
    """48 columns: a 64-wide tile whose last 16 columns must not count; 256: the widest
    rows a program holds. 40 rows: a ragged second row tile."""
    k = 24
    source = generate_kernel_source(_residual_rmsnorm(m, n, k))
    width = max(16, 1 << (n - 1).bit_length())
    assert f"BLOCK_N = {width}" in source  # whole rows, one program across
    a, w, r = torch.randn(m, k), torch.randn(k, n), torch.randn(m, n)
    h, y = torch.empty(m, n), torch.empty(m, n)
    rstd, amax, lse = (torch.full((m, 1), float("nan")) for _ in range(3))
    grid = load(source, tmp_path).launch(a, w, r, h, rstd, y, amax, lse)
    assert grid[1] == 1
    expected_h = a @ w + r
    expected_rstd = torch.rsqrt(expected_h.pow(2).mean(1, keepdim=True) + 1e-6)
    torch.testing.assert_close(h, expected_h, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(rstd, expected_rstd, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y, expected_h * expected_rstd, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(amax, expected_h.abs().amax(1, keepdim=True), rtol=1e-5, atol=0)
    torch.testing.assert_close(lse, expected_h.logsumexp(1, keepdim=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", list(TARGETS))
def test_whole_rows_of_256_compile_clean_on_every_target(target: str) -> None:
    kernel = _residual_rmsnorm(128, 256, 256)
    gemm = next(op for op in kernel.body.block.ops if isinstance(op, GemmOp))
    first = gemm_tile(parse_target(target), gemm)
    assert first.block_n == 256 and first.block_m <= 64
    assert all(t.block_n >= 256 for t in gemm_tiles(parse_target(target), gemm))
    (resources,) = compile_plan([kernel], target)
    assert resources.clean, resources.diagnostics
    assert resources.spill_bytes == 0
