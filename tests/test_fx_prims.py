"""Lowering rules for prims (LayerNorm's var_mean decomposition) and aten.split."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
from torch import nn
from training_check import check_training_step

from coda.compiler.fx_import import import_graph
from coda.compiler.reference import run_block

prims = torch.ops.prims


def _traced(fn, *example: torch.Tensor) -> fx.GraphModule:
    """An FX graph of prims/aten calls with shape metadata, as AOTAutograd makes them."""
    from torch.fx.experimental.proxy_tensor import make_fx

    return make_fx(fn)(*example)


@pytest.mark.parametrize("correction", [0, 1])
def test_var_lowers_to_two_pass_graph_ops(correction: int) -> None:
    x = torch.randn(3, 5, 7) * 3 + 2
    gm = _traced(lambda t: (prims.var(t, [0, 2], correction=correction),), x)
    imported = import_graph(gm)
    assert not imported.fallback_reasons
    (got,) = run_block(imported.func.body.block, [x], torch.device("cpu"))
    expected = torch.var(x.double(), dim=(0, 2), correction=correction).float()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_broadcast_in_dim_and_split_are_views() -> None:
    x = torch.randn(4, 6)

    def fn(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = prims.broadcast_in_dim(t.sum(1), [4, 3, 6], [0])
        first, second = torch.split(t, [2, 4], dim=1)
        return b, first, second

    imported = import_graph(_traced(fn, x))
    assert not imported.fallback_reasons
    text = str(imported.func)
    assert 'graph.view "slice" %t slice array<i64: 1, 0, 1>' in text, text
    assert 'graph.view "slice" %t slice array<i64: 1, 2, 1>' in text
    assert 'graph.view "expand"' in text
    got = run_block(imported.func.body.block, [x], torch.device("cpu"))
    for g, e in zip(got, fn(x), strict=True):
        torch.testing.assert_close(g, e)


class NormSplit(nn.Module):
    """LayerNorm, a fused projection split in three (q, k, v style), recombined."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.norm, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.proj(self.norm(x)).split(x.shape[-1], dim=-1)
        return torch.relu(q) * k + v


def test_layer_norm_and_split_compile_without_fallbacks() -> None:
    torch.manual_seed(0)
    run = check_training_step(NormSplit(), torch.randn(2, 5, 16))
    forward = [r for r in run.launches if r.graph == "forward"]
    assert forward and not [r.kernel for r in forward if r.kind == "fallback"]


def test_cat_lowers_to_concat_with_promotion() -> None:
    """torch.cat promotes mixed dtypes (a cast per piece) and skips legacy empty 1-D
    pieces; the result matches torch's."""
    a, b, empty = torch.randn(2, 3), torch.randn(2, 4).half(), torch.empty(0)

    def fn(x: torch.Tensor, y: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.cat([x, y, e, x[:, :1]], dim=-1),)

    imported = import_graph(_traced(fn, a, b, empty))
    assert not imported.fallback_reasons
    text = str(imported.func)
    assert "graph.concat" in text and 'graph.pointwise "cast"' in text, text
    (got,) = run_block(imported.func.body.block, [a, b, empty], torch.device("cpu"))
    assert torch.equal(got, fn(a, b, empty)[0])


class RotaryHalf(nn.Module):
    """Rotate-half RoPE on a projection: cat(-x2, x1), as Llama writes it."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.proj = nn.Linear(d, d, bias=False)
        self.register_buffer("cos", torch.randn(d))
        self.register_buffer("sin", torch.randn(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        x1, x2 = h.chunk(2, dim=-1)
        return h * self.cos + torch.cat((-x2, x1), dim=-1) * self.sin


def test_rotate_half_is_one_loop_kernel_forward_and_backward() -> None:
    torch.manual_seed(0)
    run = check_training_step(RotaryHalf(), torch.randn(2, 5, 16))
    assert not [r.kernel for r in run.launches if r.kind == "fallback"]
    forward = [r.kernel for r in run.launches if r.graph == "forward"]
    # the projection GEMM, then cos/sin/rotate-half/add in one loop kernel
    assert len(forward) == 2 and "concat" in forward[1], forward
