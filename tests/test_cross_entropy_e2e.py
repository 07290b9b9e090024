"""LM head + cross-entropy under coda with targets as a real input (ignored tokens
included): loss and gradients match eager, and the forward's buffer log shows the LM
head's GEMM writing per-row values only, never a [tokens, vocab] tensor: the whole
logsumexp and target logit when a program holds whole rows of the logits (vocab up to
epilogue.FULL_ROW_MAX), partials of them and a finalize beyond."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coda.runtime import record_allocations, record_launches

TOKENS, DIM, VOCAB = 12, 16, 80


class Head(nn.Module):
    def __init__(self, reduction: str, vocab: int = VOCAB) -> None:
        super().__init__()
        self.proj = nn.Linear(DIM, DIM)
        self.head = nn.Linear(DIM, vocab, bias=False)
        self.reduction = reduction

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.head(torch.relu(self.proj(x)))
        return F.cross_entropy(logits, target, reduction=self.reduction)


def _assert_matches(got: torch.Tensor, want: torch.Tensor, model: Head, compiled: Head) -> None:
    """The loss and every parameter gradient of the compiled copy match eager's."""
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for p, q in zip(model.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("reduction", "vocab", "per_row"),
    [("mean", VOCAB, (TOKENS, 1)), ("sum", VOCAB, (TOKENS, 1)), ("mean", 300, (TOKENS, 10))],
)
def test_cross_entropy_matches_eager_without_a_logits_buffer(
    reduction: str, vocab: int, per_row: tuple[int, int]
) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Head(reduction, vocab)
    compiled_model = Head(reduction, vocab)
    compiled_model.load_state_dict(model.state_dict())
    x = torch.randn(TOKENS, DIM)
    target = torch.randint(0, vocab, (TOKENS,))
    target[[2, 7]] = -100  # ignored: no loss, no gradient, not in the mean's count
    expected = model(x, target)
    expected.backward()
    compiled = torch.compile(compiled_model, backend="coda", options={"strict": True})
    with record_allocations() as allocations, record_launches() as launches:
        got = compiled(x, target)
        got.backward()
    _assert_matches(got, expected, model, compiled_model)
    forward = [a for a in allocations if a.graph == "forward"]
    assert forward and all(a.shape != (TOKENS, vocab) for a in forward), forward
    # the logsumexp and the target logit: whole (80 <= 256) or 300 / 32 -> 10 partials
    assert len([a for a in forward if a.shape == per_row]) == 2, forward
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


def test_a_varying_token_count_keeps_the_rewrite(caplog: pytest.LogCaptureFixture) -> None:
    """Under varying sizes the token count is a symbol: the rewrite still applies (the
    symbolic forward has no [tokens, vocab] buffer either) and every length matches
    eager."""
    import logging

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Head("mean")
    compiled_model = Head("mean")
    compiled_model.load_state_dict(model.state_dict())
    compiled = torch.compile(compiled_model, backend="coda", options={"strict": True})
    with caplog.at_level(logging.INFO, logger="coda"):
        for tokens in (TOKENS, 9, 14):
            x, target = torch.randn(tokens, DIM), torch.randint(0, VOCAB, (tokens,))
            torch._dynamo.mark_dynamic(x, 0)
            torch._dynamo.mark_dynamic(target, 0)
            model.zero_grad()
            compiled_model.zero_grad()
            expected = model(x, target)
            expected.backward()
            with record_allocations() as allocations:
                got = compiled(x, target)
                got.backward()
            _assert_matches(got, expected, model, compiled_model)
            forward = [a for a in allocations if a.graph == "forward"]
            assert forward and all(a.shape != (tokens, VOCAB) for a in forward), forward
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "cross-entropy kept as is" in m], messages
    assert any("graph with symbolic sizes specialized for" in m for m in messages), messages
