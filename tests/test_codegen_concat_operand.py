"""GEMM operands concatenated along their output dim (concat-projections): each piece is
loaded where the tile's columns (rows) fall in its range; run under Triton's interpreter
against torch, with pieces that a tile straddles."""

from __future__ import annotations

from pathlib import Path

import torch
from codegen_support import load, parse_kernel

from coda.codegen import generate_kernel_source

TILE = "!epilogue.tile<f32>"


def test_rhs_pieces_of_different_widths(tmp_path: Path) -> None:
    """h @ [Wq | Wk | Wv] with widths 40, 24, 24: the 32-wide column tiles straddle the
    pieces' edges, and the weights are nn.Linear's [N, K], read transposed."""
    m, k, widths = 20, 24, (40, 24, 24)
    n = sum(widths)
    h, y = f"tensor<{m}x{k}xf32>", f"tensor<{m}x{n}xf32>"
    ws = [f"tensor<{w}x{k}xf32>" for w in widths]
    wts = [f"tensor<{k}x{w}xf32>" for w in widths]
    kernel = parse_kernel(
        {"h": h, "wq": ws[0], "wk": ws[1], "wv": ws[2]},
        f"""
%y = kernel.gemm "qkv" (%h, %wq, %wk, %wv) : ({h}, {ws[0]}, {ws[1]}, {ws[2]}) -> ({y}) {{
^bb0(%ha: {h}, %qa: {ws[0]}, %ka: {ws[1]}, %va: {ws[2]}):
  %qt = graph.view "permute" %qa perm array<i64: 1, 0> : {ws[0]} -> {wts[0]}
  %kt = graph.view "permute" %ka perm array<i64: 1, 0> : {ws[1]} -> {wts[1]}
  %vt = graph.view "permute" %va perm array<i64: 1, 0> : {ws[2]} -> {wts[2]}
  %w = graph.concat %qt, %kt, %vt dim 1 : ({wts[0]}, {wts[1]}, {wts[2]}) -> tensor<{k}x{n}xf32>
  %o = epilogue.gemm %ha, %w : ({h}, tensor<{k}x{n}xf32>) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %o : {y}
}}""",
    )
    source = generate_kernel_source(kernel)
    assert "concatenation of 3 pieces" in source
    x = torch.randn(m, k)
    weights = [torch.randn(w, k) for w in widths]
    out = torch.empty(m, n)
    load(source, tmp_path).launch(x, *weights, out)
    torch.testing.assert_close(out, x @ torch.cat(weights).t(), rtol=1e-4, atol=1e-4)


def test_lhs_pieces_stacked_along_m(tmp_path: Path) -> None:
    """[dq | dk]^T @ h: the weight gradients of two projections in one GEMM, the lhs
    pieces (transposed gradients) stacked along M, 40 and 24 rows."""
    t, d, rows = 16, 24, (40, 24)
    h = f"tensor<{t}x{d}xf32>"
    gs = [f"tensor<{t}x{r}xf32>" for r in rows]
    gts = [f"tensor<{r}x{t}xf32>" for r in rows]
    y = f"tensor<{sum(rows)}x{d}xf32>"
    kernel = parse_kernel(
        {"dq": gs[0], "dk": gs[1], "h": h},
        f"""
%y = kernel.gemm "dw" (%dq, %dk, %h) : ({gs[0]}, {gs[1]}, {h}) -> ({y}) {{
^bb0(%qa: {gs[0]}, %ka: {gs[1]}, %ha: {h}):
  %qt = graph.view "permute" %qa perm array<i64: 1, 0> : {gs[0]} -> {gts[0]}
  %kt = graph.view "permute" %ka perm array<i64: 1, 0> : {gs[1]} -> {gts[1]}
  %g = graph.concat %qt, %kt dim 0 : ({gts[0]}, {gts[1]}) -> tensor<{sum(rows)}x{t}xf32>
  %o = epilogue.gemm %g, %ha : (tensor<{sum(rows)}x{t}xf32>, {h}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %o : {y}
}}""",
    )
    dq, dk, x = torch.randn(t, rows[0]), torch.randn(t, rows[1]), torch.randn(t, d)
    out = torch.empty(sum(rows), d)
    load(generate_kernel_source(kernel), tmp_path).launch(dq, dk, x, out)
    torch.testing.assert_close(out, torch.cat([dq, dk], 1).t() @ x, rtol=1e-4, atol=1e-4)
