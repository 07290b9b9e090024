"""LM head + cross-entropy under coda with targets as a real input (ignored tokens
included): loss and gradients match eager, and the forward's buffer log shows the LM
head's GEMM writing partials only, never a [tokens, vocab] tensor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coda.runtime import record_allocations, record_launches

TOKENS, DIM, VOCAB = 12, 16, 80


class Head(nn.Module):
    def __init__(self, reduction: str) -> None:
        super().__init__()
        self.proj = nn.Linear(DIM, DIM)
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        self.reduction = reduction

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.head(torch.relu(self.proj(x)))
        return F.cross_entropy(logits, target, reduction=self.reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_eager_without_a_logits_buffer(reduction: str) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Head(reduction)
    compiled_model = Head(reduction)
    compiled_model.load_state_dict(model.state_dict())
    x = torch.randn(TOKENS, DIM)
    target = torch.randint(0, VOCAB, (TOKENS,))
    target[[2, 7]] = -100  # ignored: no loss, no gradient, not in the mean's count
    expected = model(x, target)
    expected.backward()
    compiled = torch.compile(compiled_model, backend="coda", options={"strict": True})
    with record_allocations() as allocations, record_launches() as launches:
        got = compiled(x, target)
        got.backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for p, q in zip(model.parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)
    forward = [a for a in allocations if a.graph == "forward"]
    assert forward and all(a.shape != (TOKENS, VOCAB) for a in forward), forward
    partials = [a.shape for a in forward if a.shape == (TOKENS, -(-VOCAB // 32))]
    assert len(partials) == 2  # the logsumexp and target-logit partials
    assert not [r.kernel for r in launches if r.kind == "fallback"]


def test_evaluation_loss_under_no_grad_writes_no_logits() -> None:
    """Inference graphs get the rewrite too (no partitioner sees them)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Head("mean")
    x, target = torch.randn(TOKENS, DIM), torch.randint(0, VOCAB, (TOKENS,))
    compiled = torch.compile(model, backend="coda", options={"strict": True})
    with torch.no_grad(), record_allocations() as allocations:
        got = compiled(x, target)
    torch.testing.assert_close(got, model(x, target), rtol=1e-5, atol=1e-6)
    assert {a.graph for a in allocations} == {"inference"}
    assert all(a.shape != (TOKENS, VOCAB) for a in allocations), allocations
