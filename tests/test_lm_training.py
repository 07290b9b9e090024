"""A 2-layer Llama-style language model (LM head + cross-entropy) trains 20 steps with
coda exactly as with eager from the same seed: the compiled forward and backward are
reused every step, and the optimizer sees the same gradients."""

from __future__ import annotations

import copy

import torch

from coda.compiler.models import LlamaLM


def test_llama_lm_trains_20_steps_like_eager() -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = LlamaLM(d=32, heads=4, kv_heads=2, ffn=64, layers=2, vocab=64)
    reference = copy.deepcopy(model)
    x = torch.randn(2, 8, 32)
    compiled = torch.compile(model, backend="coda")
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.2) for m in (reference, model)]
    losses: list[tuple[float, float]] = []
    for _ in range(20):
        for fn, optimizer in zip((reference, compiled), optimizers, strict=True):
            optimizer.zero_grad()
            loss = fn(x)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    eager, coda = losses[0::2], losses[1::2]
    assert eager[-1] < 0.7 * eager[0]  # it does learn
    for step, (e, c) in enumerate(zip(eager, coda, strict=True)):
        assert abs(c - e) <= 1e-4 * abs(e), (step, e, c)
