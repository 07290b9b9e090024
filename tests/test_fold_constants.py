"""Compile-time folding of input-independent subgraphs (RoPE tables, causal masks)."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from coda.compiler.fold_constants import fold_constants
from coda.runtime import record_launches


class RotaryMasked(nn.Module):
    """A rotary-style table and a causal mask built inside forward on every call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, d = x.shape[-2:]
        inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        angles = torch.outer(torch.arange(s, dtype=torch.float32), inv_freq)
        table = torch.cat((angles, angles), dim=-1).cos()
        mask = torch.full((s, s), float("-inf")).triu(1)
        return torch.softmax(x @ x.transpose(-1, -2) + mask, dim=-1) @ (x * table)


def test_tables_and_masks_are_folded_into_inputs(caplog) -> None:
    torch._dynamo.reset()
    x = torch.randn(2, 8, 16)
    model = RotaryMasked()
    with caplog.at_level(logging.WARNING, logger="coda"), record_launches() as launches:
        got = torch.compile(model, backend="coda")(x)
    torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-5)
    # arange, pow, cat, triu have no lowering rules: folded, none runs at all
    assert not [r.kernel for r in launches if r.kind == "fallback"]
    assert not [r.getMessage() for r in caplog.records if "falls back" in r.getMessage()]


def test_folding_keeps_splats_and_random_ops() -> None:
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        table = torch.arange(4, dtype=torch.float32).exp()  # folded
        zeros = torch.zeros(4)  # a splat: graph.constant is free, not folded
        noise = torch.rand(4)  # random: never folded
        return (x + table + zeros + noise,)

    gm = make_fx(fn)(torch.randn(4))
    folded = fold_constants(gm, torch.device("cpu"))
    targets = [str(n.target) for n in folded.gm.graph.nodes if n.op == "call_function"]
    assert "aten.exp.default" not in targets and "aten.arange.start_step" not in targets
    assert "aten.zeros.default" in targets and "aten.rand.default" in targets
    placeholders = [n.name for n in folded.gm.graph.nodes if n.op == "placeholder"]
    assert placeholders[1:] == ["folded_0_exp"]
    torch.testing.assert_close(folded.constants[0], torch.arange(4.0).exp())


class LiftedConstant(nn.Module):
    """`torch.tensor(...)` in forward: Dynamo lifts it into a `get_attr` constant."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * torch.tensor([1.0, -2.0, 0.5, 3.0])


def test_lifted_tensor_constants_become_inputs() -> None:
    from training_check import check_training_step

    torch.manual_seed(0)
    run = check_training_step(LiftedConstant(), torch.randn(3, 4))  # strict: must compile
    assert [r.kind for r in run.launches if r.graph == "forward"] == ["gemm"]


def test_broadcast_comparisons_stay_in_the_graph() -> None:
    """A one-hot mask `iota == target` of constants is [tokens, vocab]: folding it would
    make a buffer of what the kernel reading it computes for free. Its inputs fold."""

    def fn(logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        target = (torch.arange(6) * 7) % 5
        onehot = torch.arange(5).view(1, 5) == target.view(6, 1)
        small = torch.arange(5) == 3  # no bigger than its inputs: folded
        return (torch.where(onehot, logits, 0.0) + small,)

    gm = make_fx(fn)(torch.randn(6, 5))
    folded = fold_constants(gm, torch.device("cpu"))
    targets = [str(n.target) for n in folded.gm.graph.nodes if n.op == "call_function"]
    assert targets.count("aten.eq.Tensor") == 1 and "aten.eq.Scalar" not in targets
    shapes = sorted(tuple(c.shape) for c in folded.constants)
    assert shapes == [(1, 5), (5,), (6, 1)], shapes
    logits = torch.randn(6, 5)
    torch.testing.assert_close(folded.gm(logits, *folded.constants)[0], fn(logits)[0])
