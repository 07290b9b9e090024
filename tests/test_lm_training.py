"""A 2-layer Llama-style language model (LM head + cross-entropy) trains 20 steps with
coda exactly as with eager from the same seed: the compiled forward and backward are
reused every step, and the optimizer sees the same gradients. The forward never
allocates or writes a [tokens, vocab] buffer: the LM-head GEMM's epilogue writes
partial logsumexps and gathered target logits only (runtime buffer log)."""

from __future__ import annotations

import copy

import torch

from coda.compiler.models import LlamaLM
from coda.runtime import record_allocations, record_launches

TOKENS, VOCAB = 16, 96  # no other activation of the model has 16 x 96 elements


def test_llama_lm_trains_20_steps_like_eager() -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = LlamaLM(d=32, heads=4, kv_heads=2, ffn=64, layers=2, vocab=VOCAB)
    reference = copy.deepcopy(model)
    x = torch.randn(2, TOKENS // 2, 32)
    compiled = torch.compile(model, backend="coda", options={"strict": True})
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.2) for m in (reference, model)]
    losses: list[tuple[float, float]] = []
    for step in range(20):
        for fn, optimizer in zip((reference, compiled), optimizers, strict=True):
            optimizer.zero_grad()
            with record_allocations() as allocations, record_launches() as launches:
                loss = fn(x)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if step == 0 and fn is compiled:
                forward = [a for a in allocations if a.graph == "forward"]
                assert forward, "the forward ran no compiled kernels"
                shapes = [a.shape for a in forward]
                assert all(torch.Size(s).numel() != TOKENS * VOCAB for s in shapes), shapes
                writes = [w for r in launches if r.graph == "forward" for w in r.writes]
                assert all(w.nbytes != TOKENS * VOCAB * 4 for w in writes), writes
                assert not [r for r in launches if r.kind == "fallback"]
    eager, coda = losses[0::2], losses[1::2]
    assert eager[-1] < 0.7 * eager[0]  # it does learn
    for step, (e, c) in enumerate(zip(eager, coda, strict=True)):
        assert abs(c - e) <= 1e-4 * abs(e), (step, e, c)
