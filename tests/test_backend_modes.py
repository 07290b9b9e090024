"""The backend outside the happy path: inference graphs, shape changes, eager fallback."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coda.runtime import record_launches


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


def test_inference_graph_is_compiled() -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = TwoLayer()
    x = torch.randn(8, 16)
    compiled = torch.compile(model, backend="coda")
    with torch.no_grad(), record_launches() as log:
        got = compiled(x)
    torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-5)
    assert [(r.graph, r.kernel) for r in log] == [
        ("inference", "gemm0_bias_silu"),
        ("inference", "gemm1_bias"),
    ]


def test_shape_change_runs_eagerly_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = TwoLayer()
    compiled = torch.compile(model, backend="coda", options={"strict": False})
    with caplog.at_level(logging.WARNING, logger="coda"), torch.no_grad():
        for batch in (8, 5, 3):
            x = torch.randn(batch, 16)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("coda: inference graph runs eagerly: dynamic shapes are not supported")
        for m in messages
    ), messages


def test_strict_mode_raises_on_dynamic_shapes() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(TwoLayer(), backend="coda", options={"strict": True}, dynamic=True)
    with pytest.raises(Exception, match="dynamic shapes"), torch.no_grad():
        compiled(torch.randn(8, 16))
