"""Any exception inside coda's compilation of a graph runs that graph eagerly with a
one-line warning; strict mode (`options={"strict": True}`, CODA_STRICT=1) raises."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import coda.compiler.backend as backend
from coda.runtime import executor


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom\nsecond line of a long message")


def _train_step(strict: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(coda, eager) output and gradients of one training step."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model, x = Net(), torch.randn(3, 8)
    compiled = torch.compile(model, backend="coda", options={"strict": strict})
    results = []
    for fn in (compiled, model):
        model.zero_grad()
        out = fn(x)
        out.square().sum().backward()
        results.append([out.detach(), *(p.grad.clone() for p in model.parameters())])
    return results[0], results[1]


# Where a failure is injected, and the one warning line it must give.
FAILURES: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], list[str]]] = {
    "pass pipeline": (
        lambda mp: mp.setattr(backend, "lower_with_policy", _boom),
        [
            "coda: forward graph runs eagerly after an internal error: RuntimeError: boom",
            "coda: backward graph runs eagerly after an internal error: RuntimeError: boom",
        ],
    ),
    "joint-graph rewrite before partitioning": (
        lambda mp: mp.setattr(backend, "prefer_saving", _boom),
        ["coda: graph runs eagerly after an internal error: RuntimeError: boom"],
    ),
    "kernel import at the first run": (
        lambda mp: mp.setattr(executor.Program, "_launcher", _boom),
        [
            "coda: forward graph runs eagerly after its first compiled run failed: "
            "RuntimeError: boom",
            "coda: backward graph runs eagerly after its first compiled run failed: "
            "RuntimeError: boom",
        ],
    ),
}


@pytest.mark.parametrize("where", FAILURES, ids=list(FAILURES))
def test_internal_error_falls_back_to_eager_with_one_line(
    where: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    inject, expected = FAILURES[where]
    inject(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="coda"):
        got, want = _train_step(strict=False)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("coda")] == expected


@pytest.mark.parametrize("where", FAILURES, ids=list(FAILURES))
def test_strict_raises(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    FAILURES[where][0](monkeypatch)
    with pytest.raises(Exception, match="boom"):
        _train_step(strict=True)


def test_strict_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODA_STRICT", "1")
    assert backend.CodaOptions.from_user(None).strict
    monkeypatch.setenv("CODA_STRICT", "0")
    assert not backend.CodaOptions.from_user(None).strict
    assert backend.CodaOptions.from_user({"strict": True}).strict


def test_eager_fallback_runs_inputs_with_their_traced_strides() -> None:
    """A backward that falls back to eager gets its saved activations from coda's forward,
    contiguous, where the trace saw eager's layout (here a transposed tensor) and may
    `view` them as such: the fallback restrides them first."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from coda.compiler.dynamic import eager_graph

    traced = make_fx(lambda t: (t.permute(1, 0).view(10),), tracing_mode="fake")(
        torch.randn(2, 5).t()
    )
    contiguous = torch.arange(10.0).view(5, 2)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        traced(contiguous)
    (out,) = eager_graph(traced)([contiguous])
    torch.testing.assert_close(out, contiguous.permute(1, 0).reshape(10))
