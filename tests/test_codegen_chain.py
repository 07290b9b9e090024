"""Chained GEMMs (chain-gemms): the second GEMM's mainloop computes each lhs tile with
the first GEMM's program; run under Triton's interpreter against torch, at sizes no
tile divides, and compiled ahead of time for the GPU targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from codegen_support import load, parse_kernel

from coda.codegen import generate_kernel_source
from coda.codegen.aot import compile_plan
from coda.codegen.targets import TARGETS

TILE = "!epilogue.tile<f32>"
ROW = "!epilogue.row<f32>"


def _mlp(m: int, k: int, n1: int, n2: int, store_h: bool, dtype: str = "f32"):
    """y = gelu(x @ w1 + b1) @ w2 + r, h = gelu(...) also stored when `store_h`."""

    def t(*shape: int) -> str:
        return f"tensor<{'x'.join(map(str, shape))}x{dtype}>"

    x, w1, b1, w2, y, h = t(m, k), t(k, n1), t(n1), t(n1, n2), t(m, n2), t(m, n1)
    tile = f"!epilogue.tile<{dtype}>"
    results = f"{h}, {y}" if store_h else y
    yielded = f"%h, %y : {h}, {y}" if store_h else f"%y : {y}"
    operands = f"({x}, {w1}, {b1}, {w2}, {y})"
    return parse_kernel(
        {"x": x, "w1": w1, "b1": b1, "w2": w2, "r": y},
        f"""
%0:{2 if store_h else 1} = kernel.gemm "mlp" (%x, %w1, %b1, %w2, %r) : {operands} -> ({results}) {{
^bb0(%xa: {x}, %w1a: {w1}, %b1a: {b1}, %w2a: {w2}, %ra: {y}):
  %h = epilogue.gemm %xa, %w1a inputs(%b1a) : ({x}, {w1}, {b1}) -> ({h}) {{
  ^tile(%acc: {TILE}, %b: !epilogue.row<{dtype}>):
    %z = epilogue.map "add"(%acc, %b) : ({TILE}, !epilogue.row<{dtype}>) -> {TILE}
    %g = epilogue.map "gelu"(%z) : ({TILE}) -> {TILE}
    %gc = epilogue.map "cast"(%g) : ({TILE}) -> {tile}
    epilogue.store %gc : {tile} -> result 0
  }}
  %y = epilogue.gemm %h, %w2a inputs(%ra) : ({h}, {w2}, {y}) -> ({y}) {{
  ^tile(%acc: {TILE}, %res: {tile}):
    %s = epilogue.accumulate %acc, %res : ({TILE}, {tile}) -> {TILE}
    %sc = epilogue.map "cast"(%s) : ({TILE}) -> {tile}
    epilogue.store %sc : {tile} -> result 0
  }}
  kernel.yield {yielded}
}}""",
    )


@pytest.mark.parametrize("store_h", [True, False])
def test_mlp_chain_matches_torch(tmp_path: Path, store_h: bool) -> None:
    """50 rows (a ragged second row tile), 100 hidden columns (the last lhs tile is
    partly past N1: gelu(b1) there must not reach the dot), 20 outputs."""
    m, k, n1, n2 = 50, 24, 100, 20
    source = generate_kernel_source(_mlp(m, k, n1, n2, store_h))
    assert "_mlp_producer(pid_m, k // BLOCK_K" in source
    x, w1, b1 = torch.randn(m, k), torch.randn(k, n1), torch.randn(n1)
    w2, r = torch.randn(n1, n2), torch.randn(m, n2)
    h, y = torch.full((m, n1), float("nan")), torch.full((m, n2), float("nan"))
    grid = load(source, tmp_path).launch(x, w1, b1, w2, r, *((h, y) if store_h else (y,)))
    assert grid[1] == 1  # each program holds whole rows of y
    expected_h = F.gelu(x @ w1 + b1)
    torch.testing.assert_close(y, expected_h @ w2 + r, rtol=1e-4, atol=1e-4)
    if store_h:
        torch.testing.assert_close(h, expected_h, rtol=1e-5, atol=1e-5)


def test_bf16_chain_reads_h_as_stored(tmp_path: Path) -> None:
    """bf16: the second GEMM multiplies h rounded to bf16 (to nearest even), exactly what
    it would have read back from memory."""
    m, k, n1, n2 = 40, 32, 64, 16
    source = generate_kernel_source(_mlp(m, k, n1, n2, store_h=True, dtype="bf16"))
    g = torch.Generator().manual_seed(0)
    x, w1, b1, w2, r = (
        torch.randn(*s, generator=g).bfloat16() for s in ((m, k), (k, n1), (n1,), (n1, n2), (m, n2))
    )
    h, y = torch.empty(m, n1, dtype=torch.bfloat16), torch.empty(m, n2, dtype=torch.bfloat16)
    load(source, tmp_path).launch(x, w1, b1, w2, r, h, y)
    expected_h = F.gelu(x.float() @ w1.float() + b1.float()).bfloat16()
    torch.testing.assert_close(h, expected_h, rtol=1e-2, atol=1e-2)
    expected_y = (h.float() @ w2.float() + r.float()).bfloat16()
    torch.testing.assert_close(y, expected_y, rtol=1e-2, atol=1e-2)


def test_two_products_of_one_producer(tmp_path: Path) -> None:
    """dx = dg @ Wg^T + du @ Wu^T from one gate/up recompute: one call returns both
    tiles; dg is stored, du is not."""
    m, k, n1, n2 = 36, 16, 48, 16
    x, w, da = f"tensor<{m}x{k}xf32>", f"tensor<{k}x{n1}xf32>", f"tensor<{m}x{n1}xf32>"
    wt, a, y = f"tensor<{n1}x{k}xf32>", f"tensor<{m}x{n1}xf32>", f"tensor<{m}x{n2}xf32>"
    operands, gate_up = f"({x}, {w}, {w}, {da}, {wt}, {wt})", f"({x}, {w}, {x}, {w}, {da})"
    kernel = parse_kernel(
        {"x": x, "wg": w, "wu": w, "da": da, "wgt": wt, "wut": wt},
        f"""
%dg, %dx = kernel.gemm "swiglu_dx" (%x, %wg, %wu, %da, %wgt, %wut) : {operands} -> ({a}, {y}) {{
^bb0(%xa: {x}, %wga: {w}, %wua: {w}, %daa: {da}, %wgta: {wt}, %wuta: {wt}):
  %du, %dg1 = epilogue.gemm %xa, %wga | %xa, %wua inputs(%daa) : {gate_up} -> ({a}, {a}) {{
  ^tile(%g: {TILE}, %u: {TILE}, %d: {TILE}):
    %0 = epilogue.map "mul"(%d, %g) : ({TILE}, {TILE}) -> {TILE}
    %1 = epilogue.map "mul"(%d, %u) : ({TILE}, {TILE}) -> {TILE}
    epilogue.store %0 : {TILE} -> result 0
    epilogue.store %1 : {TILE} -> result 1
  }}
  %dx1 = epilogue.gemm %dg1, %wgta + %du, %wuta : ({a}, {wt}, {a}, {wt}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %dg1, %dx1 : {a}, {y}
}}""",
    )
    source = generate_kernel_source(kernel)
    x_, wg, wu, d = torch.randn(m, k), torch.randn(k, n1), torch.randn(k, n1), torch.randn(m, n1)
    wgt, wut = torch.randn(n1, k), torch.randn(n1, k)
    dg, dx = torch.empty(m, n1), torch.empty(m, n2)
    load(source, tmp_path).launch(x_, wg, wu, d, wgt, wut, dg, dx)
    g, u = x_ @ wg, x_ @ wu
    torch.testing.assert_close(dg, d * u, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx, (d * u) @ wgt + (d * g) @ wut, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", list(TARGETS))
def test_chain_compiles_on_every_target(target: str) -> None:
    """A Llama-sized MLP (768 hidden, 256 out, bf16): the producer inlines into the
    mainloop, both GEMMs run on tensor cores, and nothing spills."""
    (resources,) = compile_plan([_mlp(256, 256, 768, 256, store_h=True, dtype="bf16")], target)
    assert resources.clean, resources.diagnostics
    assert resources.tensor_cores and resources.spill_bytes == 0
