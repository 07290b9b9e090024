"""The backend outside the happy path: inference graphs, shape changes, eager fallback."""

from __future__ import annotations

import logging
import re

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
    # fc2 multiplies silu(fc1(x)) on chip, in fc1's kernel (chain-gemms)
    assert [(r.graph, r.kernel) for r in log] == [("inference", "gemm0_bias_silu_chain_bias")]


def test_shape_change_is_compiled_per_size(caplog: pytest.LogCaptureFixture) -> None:
    """Dynamo's second graph has symbolic sizes; coda imports it once and plans it for
    each concrete size (compiler/symbolic_graph.py), so no size runs eagerly."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = TwoLayer()
    compiled = torch.compile(model, backend="coda")
    with caplog.at_level(logging.INFO, logger="coda"), torch.no_grad():
        for batch in (8, 5, 3):
            x = torch.randn(batch, 16)
            with record_launches() as log:
                got = compiled(x)
            torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-5)
            assert [r.kernel for r in log] == ["gemm0_bias_silu_chain_bias"]
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "eagerly" in m], messages
    specialized = [re.sub(r"for s\d+=", "for s=", m) for m in messages if "specialized" in m]
    assert specialized == [  # Dynamo numbers its size symbols: s77 or whichever
        "coda: inference graph with symbolic sizes specialized for s=5 (1 of at most 32)",
        "coda: inference graph with symbolic sizes specialized for s=3 (2 of at most 32)",
    ]
