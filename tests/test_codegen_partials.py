"""epilogue.reduce -> Triton: per-(row, 32-column group) partial reductions of the GEMM
tile, written as a small side output, against torch (interpreter) and compiled for a
GPU with a wider BLOCK_N than the interpreter's (several partials per program)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from codegen_support import load, parse_kernel
from test_codegen_gemm import compile_for_sm90

from coda.codegen import generate_kernel_source
from coda.codegen.gemm import generate_gemm
from coda.codegen.tile_config import GemmTile
from coda.compiler.reference import partial_reduce
from coda.dialects.kernel import KernelOp

TILE = "!epilogue.tile<f32>"
COL = "!epilogue.col<f32>"


def _partials_kernel(m: int, n: int, k: int) -> KernelOp:
    """acc = x @ w; z = acc * s (a row scale); the four partials of z, and no [M, N]
    output at all."""
    x, w, s = f"tensor<{m}x{k}xf32>", f"tensor<{k}x{n}xf32>", f"tensor<{m}x1xf32>"
    p = f"tensor<{m}x{-(-n // 32)}xf32>"
    return parse_kernel(
        {"x": x, "w": w, "s": s},
        f"""
%a, %b, %c, %d = kernel.gemm "partials" (%x, %w, %s) : ({x}, {w}, {s}) -> ({p}, {p}, {p}, {p}) {{
^bb0(%xa: {x}, %wa: {w}, %sa: {s}):
  %0, %1, %2, %3 = epilogue.gemm %xa, %wa inputs(%sa) : ({x}, {w}, {s}) -> ({p}, {p}, {p}, {p}) {{
  ^tile(%acc: {TILE}, %scale: {COL}):
    %z = epilogue.scale %acc, %scale : ({TILE}, {COL}) -> {TILE}
    epilogue.reduce "sum" %z : {TILE} -> result 0 columns 32
    epilogue.reduce "max" %z : {TILE} -> result 1 columns 32
    epilogue.reduce "sumsq" %z : {TILE} -> result 2 columns 32
    epilogue.reduce "logsumexp" %z : {TILE} -> result 3 columns 32
  }}
  kernel.yield %0, %1, %2, %3 : {p}, {p}, {p}, {p}
}}""",
    )


@pytest.mark.parametrize(("m", "n"), [(20, 72), (40, 64)])  # ragged and exact
def test_partial_reductions_match_torch(tmp_path: Path, m: int, n: int) -> None:
    k = 24
    mod = load(generate_kernel_source(_partials_kernel(m, n, k)), tmp_path)
    x, w, s = torch.randn(m, k), torch.randn(k, n), torch.rand(m, 1) + 0.5
    groups = -(-n // 32)
    outs = [torch.full((m, groups), float("nan")) for _ in range(4)]
    mod.launch(x, w, s, *outs)
    z = (x @ w) * s
    for kind, got in zip(("sum", "max", "sumsq", "logsumexp"), outs, strict=True):
        torch.testing.assert_close(got, partial_reduce(kind, z, 32), rtol=1e-4, atol=1e-4)
    # the finalize: partials combine to the full row reduction
    torch.testing.assert_close(outs[0].sum(-1), z.sum(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outs[1].amax(-1), z.amax(-1))
    torch.testing.assert_close(outs[2].sum(-1), z.square().sum(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outs[3].logsumexp(-1), z.logsumexp(-1), rtol=1e-5, atol=1e-5)


def test_wide_tiles_write_several_partials_per_program(tmp_path: Path) -> None:
    """BLOCK_N 128 (a GPU's) writes four 32-column partials per program; the side
    output's shape does not depend on the tile. Checked in the interpreter, then
    compiled for sm_90a."""
    m, n, k = 8, 200, 16
    tile = GemmTile(16, 128, 16, num_warps=4, num_stages=2)
    source = generate_gemm(_partials_kernel(m, n, k), tile=tile)
    mod = load(source, tmp_path)
    x, w, s = torch.randn(m, k), torch.randn(k, n), torch.ones(m, 1)
    outs = [torch.empty(m, 7) for _ in range(4)]
    assert mod.launch(x, w, s, *outs) == (1, 2)
    z = x @ w
    torch.testing.assert_close(outs[3], partial_reduce("logsumexp", z, 32), rtol=1e-4, atol=1e-4)
    gpu = load(source, tmp_path / "gpu", interpret=False)
    names = ("xa_ptr", "wa_ptr", "sa_ptr", "out0_ptr", "out1_ptr", "out2_ptr", "out3_ptr")
    ptx = compile_for_sm90(
        gpu.partials,
        dict.fromkeys(names, "*fp32"),
        {"INPUT_PRECISION": "tf32", "BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32},
    )
    assert "mma" in ptx


def test_batched_gemm_partials(tmp_path: Path) -> None:
    """Batch dims: each batch's programs write their own rows of the partials."""
    b, m, n, k = 3, 10, 40, 8
    x, w = f"tensor<{b}x{m}x{k}xf32>", f"tensor<{b}x{k}x{n}xf32>"
    p = f"tensor<{b}x{m}x2xf32>"
    kernel = parse_kernel(
        {"x": x, "w": w},
        f"""
%s = kernel.gemm "batched_partials" (%x, %w) : ({x}, {w}) -> ({p}) {{
^bb0(%xa: {x}, %wa: {w}):
  %0 = epilogue.gemm %xa, %wa : ({x}, {w}) -> ({p}) {{
  ^tile(%acc: {TILE}):
    epilogue.reduce "max" %acc : {TILE} -> result 0 columns 32
  }}
  kernel.yield %0 : {p}
}}""",
    )
    mod = load(generate_kernel_source(kernel), tmp_path)
    xs, ws, out = torch.randn(b, m, k), torch.randn(b, k, n), torch.empty(b, m, 2)
    mod.launch(xs, ws, out)
    torch.testing.assert_close(out, partial_reduce("max", xs @ ws, 32), rtol=1e-4, atol=1e-4)


def _column_partials_kernel(m: int, n: int, k: int) -> KernelOp:
    """acc = x @ w stored, plus the column sums and max of acc * s over groups of 32
    rows (a bias or norm-weight gradient's partials)."""
    x, w, s = f"tensor<{m}x{k}xf32>", f"tensor<{k}x{n}xf32>", f"tensor<{m}x1xf32>"
    o, p = f"tensor<{m}x{n}xf32>", f"tensor<{-(-m // 32)}x{n}xf32>"
    return parse_kernel(
        {"x": x, "w": w, "s": s},
        f"""
%o, %a, %b = kernel.gemm "column_partials" (%x, %w, %s) : ({x}, {w}, {s}) -> ({o}, {p}, {p}) {{
^bb0(%xa: {x}, %wa: {w}, %sa: {s}):
  %0, %1, %2 = epilogue.gemm %xa, %wa inputs(%sa) : ({x}, {w}, {s}) -> ({o}, {p}, {p}) {{
  ^tile(%acc: {TILE}, %scale: {COL}):
    %z = epilogue.scale %acc, %scale : ({TILE}, {COL}) -> {TILE}
    epilogue.store %acc : {TILE} -> result 0
    epilogue.reduce "sum" %z : {TILE} -> result 1 rows 32
    epilogue.reduce "max" %z : {TILE} -> result 2 rows 32
  }}
  kernel.yield %0, %1, %2 : {o}, {p}, {p}
}}""",
    )


@pytest.mark.parametrize(
    ("m", "n", "tile"),
    [
        (72, 40, None),  # ragged rows and columns, the interpreter's 32x32 tile
        (200, 24, GemmTile(128, 16, 16, num_warps=4, num_stages=2)),  # 4 partials/program
    ],
)
def test_column_partials_match_torch(tmp_path: Path, m: int, n: int, tile: GemmTile) -> None:
    k = 12
    kernel = _column_partials_kernel(m, n, k)
    source = generate_gemm(kernel, tile=tile) if tile else generate_kernel_source(kernel)
    mod = load(source, tmp_path)
    x, w, s = torch.randn(m, k), torch.randn(k, n), torch.rand(m, 1) + 0.5
    groups = -(-m // 32)
    out = torch.empty(m, n)
    sums, maxes = torch.full((groups, n), float("nan")), torch.full((groups, n), float("nan"))
    mod.launch(x, w, s, out, sums, maxes)
    z = (x @ w) * s
    torch.testing.assert_close(out, x @ w, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sums, partial_reduce("sum", z, 32, "rows"), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maxes, partial_reduce("max", z, 32, "rows"))
    # the finalize: partials combine to the column reduction
    torch.testing.assert_close(sums.sum(0), z.sum(0), rtol=1e-4, atol=1e-4)
    if tile is not None:  # the transposed tile's reshapes are as valid on a GPU
        gpu = load(source, tmp_path / "gpu", interpret=False)
        names = ("xa_ptr", "wa_ptr", "sa_ptr", "out0_ptr", "out1_ptr", "out2_ptr")
        ptx = compile_for_sm90(
            gpu.column_partials,
            dict.fromkeys(names, "*fp32"),
            {"INPUT_PRECISION": "tf32", "BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32},
        )
        assert "mma" in ptx


def _transposed_partials_kernel(m: int, n: int, k: int) -> KernelOp:
    """The column sums (groups of 32 rows) and row maxima (groups of 32 columns) of
    x @ w, each a kernel result only through a transpose: stored through its layout."""
    x, w = f"tensor<{m}x{k}xf32>", f"tensor<{k}x{n}xf32>"
    rows, cols = -(-m // 32), -(-n // 32)
    p, pt = f"tensor<{rows}x{n}xf32>", f"tensor<{n}x{rows}xf32>"
    q, qt = f"tensor<{m}x{cols}xf32>", f"tensor<{cols}x{m}xf32>"
    return parse_kernel(
        {"x": x, "w": w},
        f"""
%a, %b = kernel.gemm "transposed_partials" (%x, %w) : ({x}, {w}) -> ({pt}, {qt}) {{
^bb0(%xa: {x}, %wa: {w}):
  %0, %1 = epilogue.gemm %xa, %wa : ({x}, {w}) -> ({p}, {q}) {{
  ^tile(%acc: {TILE}):
    epilogue.reduce "sum" %acc : {TILE} -> result 0 rows 32
    epilogue.reduce "max" %acc : {TILE} -> result 1 columns 32
  }}
  %2 = graph.view "permute" %0 perm array<i64: 1, 0> : {p} -> {pt}
  %3 = graph.view "permute" %1 perm array<i64: 1, 0> : {q} -> {qt}
  kernel.yield %2, %3 : {pt}, {qt}
}}""",
    )


@pytest.mark.parametrize(("m", "n"), [(72, 40), (3, 3)])  # several partials; one each way
def test_partials_stored_through_a_transpose(tmp_path: Path, m: int, n: int) -> None:
    """A column sum read as a row (a fuzzed backward's `sum` of a transposed product):
    the partials reach their buffer through the view's layout, not its own strides."""
    k = 8
    source = generate_kernel_source(_transposed_partials_kernel(m, n, k))
    assert "# stored through layout" in source
    mod = load(source, tmp_path)
    x, w = torch.randn(m, k), torch.randn(k, n)
    sums = torch.full((n, -(-m // 32)), float("nan"))
    maxes = torch.full((-(-n // 32), m), float("nan"))
    mod.launch(x, w, sums, maxes)
    z = x @ w
    torch.testing.assert_close(sums, partial_reduce("sum", z, 32, "rows").T, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maxes, partial_reduce("max", z, 32).T)
