"""Operand prologues (fuse-prologues): elementwise work on a GEMM operand, computed on the
tiles the mainloop loads, run under Triton's interpreter against torch."""

from __future__ import annotations

from pathlib import Path

import torch
from codegen_support import load, parse_kernel

from coda.codegen import generate_kernel_source

TILE = "!epilogue.tile<f32>"


def _layernorm_linear(m: int, n: int, k: int) -> str:
    """y = ((x - mean) * rstd * w + b) @ W: a LayerNorm computed on the lhs tiles."""
    x, col, vec = f"tensor<{m}x{k}xf32>", f"tensor<{m}x1xf32>", f"tensor<{k}xf32>"
    wt, y = f"tensor<{k}x{n}xf32>", f"tensor<{m}x{n}xf32>"
    return f"""
%y = kernel.gemm "layernorm_linear" (%x, %mean, %rstd, %w, %b, %wt)
    : ({x}, {col}, {col}, {vec}, {vec}, {wt}) -> ({y}) {{
^bb0(%xa: {x}, %ma: {col}, %ra: {col}, %wa: {vec}, %ba: {vec}, %wta: {wt}):
  %me = graph.view "expand" %ma : {col} -> {x}
  %re = graph.view "expand" %ra : {col} -> {x}
  %we = graph.view "expand" %wa : {vec} -> {x}
  %be = graph.view "expand" %ba : {vec} -> {x}
  %c = graph.pointwise "sub"(%xa, %me) : ({x}, {x}) -> {x}
  %d = graph.pointwise "mul"(%c, %re) : ({x}, {x}) -> {x}
  %e = graph.pointwise "mul"(%d, %we) : ({x}, {x}) -> {x}
  %h = graph.pointwise "add"(%e, %be) : ({x}, {x}) -> {x}
  %o = epilogue.gemm %h, %wta : ({x}, {wt}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %o : {y}
}}"""


def test_layernorm_on_the_lhs_tiles(tmp_path: Path) -> None:
    m, n, k = 20, 24, 40  # ragged against the 32 x 32 x 16 tiles
    args = {"x": f"tensor<{m}x{k}xf32>", "mean": f"tensor<{m}x1xf32>"}
    args |= {"rstd": f"tensor<{m}x1xf32>", "w": f"tensor<{k}xf32>", "b": f"tensor<{k}xf32>"}
    args |= {"wt": f"tensor<{k}x{n}xf32>"}
    source = generate_kernel_source(parse_kernel(args, _layernorm_linear(m, n, k)))
    # the chain runs on the loaded tiles, each op under its IR line
    assert '# %c = graph.pointwise "sub"(%xa, %me)' in source
    assert '# %h = graph.pointwise "add"(%e, %be)' in source
    x = torch.randn(m, k)
    mean, rstd = x.mean(1, keepdim=True), torch.rsqrt(x.var(1, keepdim=True) + 1e-5)
    w, b, wt = torch.randn(k), torch.randn(k), torch.randn(n, k).t()
    y = torch.empty(m, n)
    load(source, tmp_path).launch(x, mean, rstd, w, b, wt, y)
    expected = ((x - mean) * rstd * w + b) @ wt
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


def test_elements_past_k_stay_out_of_the_dot(tmp_path: Path) -> None:
    """x / s past K is 0 / 0 (both loads masked to zero): NaN, which the rhs's zeros
    would not cancel (NaN * 0 = NaN). The prologue's tile is zeroed past K."""
    m, n, k = 8, 8, 20  # the last k step runs past K = 20
    x, vec, wt, y = (
        f"tensor<{m}x{k}xf32>",
        f"tensor<{k}xf32>",
        f"tensor<{k}x{n}xf32>",
        f"tensor<{m}x{n}xf32>",
    )
    kernel = parse_kernel(
        {"x": x, "s": vec, "wt": wt},
        f"""
%y = kernel.gemm "scaled_down" (%x, %s, %wt) : ({x}, {vec}, {wt}) -> ({y}) {{
^bb0(%xa: {x}, %sa: {vec}, %wta: {wt}):
  %se = graph.view "expand" %sa : {vec} -> {x}
  %h = graph.pointwise "div"(%xa, %se) : ({x}, {x}) -> {x}
  %o = epilogue.gemm %h, %wta : ({x}, {wt}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %o : {y}
}}""",
    )
    a, scale = torch.randn(m, k), torch.rand(k) + 0.5
    wmat, out = torch.randn(k, n), torch.empty(m, n)
    source = generate_kernel_source(kernel)
    assert "BLOCK_K = 16" in source or "BLOCK_K = 32" in source  # so K = 20 is ragged
    load(source, tmp_path).launch(a, scale, wmat, out)
    torch.testing.assert_close(out, (a / scale) @ wmat, rtol=1e-4, atol=1e-4)


def test_weight_gradient_of_a_normalized_operand_on_the_rhs(tmp_path: Path) -> None:
    """dW = dy^T @ (x * rstd * w): the recomputed normalized activation is the rhs, with
    rstd constant along K (tokens) and w along N."""
    t, d, o = 24, 16, 20
    dyt, x, col, vec = (
        f"tensor<{o}x{t}xf32>",
        f"tensor<{t}x{d}xf32>",
        f"tensor<{t}x1xf32>",
        (f"tensor<{d}xf32>"),
    )
    y = f"tensor<{o}x{d}xf32>"
    kernel = parse_kernel(
        {"dy": f"tensor<{t}x{o}xf32>", "x": x, "rstd": col, "w": vec},
        f"""
%dw = kernel.gemm "norm_weight_gradient" (%dy, %x, %rstd, %w)
    : (tensor<{t}x{o}xf32>, {x}, {col}, {vec}) -> ({y}) {{
^bb0(%dya: tensor<{t}x{o}xf32>, %xa: {x}, %ra: {col}, %wa: {vec}):
  %dyt = graph.view "permute" %dya perm array<i64: 1, 0> : tensor<{t}x{o}xf32> -> {dyt}
  %re = graph.view "expand" %ra : {col} -> {x}
  %we = graph.view "expand" %wa : {vec} -> {x}
  %n = graph.pointwise "mul"(%xa, %re) : ({x}, {x}) -> {x}
  %h = graph.pointwise "mul"(%we, %n) : ({x}, {x}) -> {x}
  %g = epilogue.gemm %dyt, %h : ({dyt}, {x}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %g : {y}
}}""",
    )
    dy, xs = torch.randn(t, o), torch.randn(t, d)
    rstd, w, out = torch.rand(t, 1) + 0.5, torch.randn(d), torch.empty(o, d)
    load(generate_kernel_source(kernel), tmp_path).launch(dy, xs, rstd, w, out)
    torch.testing.assert_close(out, dy.t() @ (xs * rstd * w), rtol=1e-4, atol=1e-4)


def test_bf16_operand_is_rounded_as_a_stored_one_would_be(tmp_path: Path) -> None:
    m, n, k = 16, 16, 32
    x, col, w, y = (
        f"tensor<{m}x{k}xbf16>",
        f"tensor<{m}x1xbf16>",
        f"tensor<{k}x{n}xbf16>",
        f"tensor<{m}x{n}xf32>",
    )
    kernel = parse_kernel(
        {"x": x, "r": col, "w": w},
        f"""
%y = kernel.gemm "bf16_scaled" (%x, %r, %w) : ({x}, {col}, {w}) -> ({y}) {{
^bb0(%xa: {x}, %ra: {col}, %wa: {w}):
  %re = graph.view "expand" %ra : {col} -> {x}
  %h = graph.pointwise "mul"(%xa, %re) : ({x}, {x}) -> {x}
  %o = epilogue.gemm %h, %wa : ({x}, {w}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %o : {y}
}}""",
    )
    a = torch.randn(m, k, dtype=torch.bfloat16)
    r = torch.rand(m, 1, dtype=torch.bfloat16) + 0.5
    wmat, out = torch.randn(k, n, dtype=torch.bfloat16), torch.empty(m, n)
    load(generate_kernel_source(kernel), tmp_path).launch(a, r, wmat, out)
    # eager's bf16 product, rounded to nearest even, then an exact float32 GEMM
    expected = (a * r).float() @ wmat.float()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
