"""Ops coda does not compile run through torch: correct results, one logged reason."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from coda.runtime import record_launches


class CumsumModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(torch.relu(self.fc(x)), dim=1) * 0.5


def test_unsupported_op_falls_back_and_matches_eager(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = CumsumModel()
    x = torch.randn(8, 16, requires_grad=True)
    expected = model(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    x2 = x.detach().clone().requires_grad_()
    compiled = torch.compile(model, backend="coda")
    with caplog.at_level(logging.WARNING, logger="coda"), record_launches() as log:
        got = compiled(x2)
        got.sum().backward()

    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-5)

    reasons = [r.getMessage() for r in caplog.records if "cumsum" in r.getMessage()]
    # logged once, although cumsum appears in the forward and the backward graph
    assert reasons == ["coda: aten.cumsum.default falls back to torch: no lowering rule"]
    fallbacks = [r.kernel for r in log if r.kind == "fallback"]
    assert "torch1_cumsum" in fallbacks
    # the linear layer still ran as a generated GEMM with bias + ReLU in its epilogue
    assert log[0].kind == "gemm" and log[0].kernel == "gemm0_bias_relu"


def test_unknown_option_is_an_error() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(nn.Linear(4, 4), backend="coda", options={"fast": True})
    with pytest.raises(Exception, match="unknown coda options: fast"):
        compiled(torch.randn(2, 4))


def test_float64_runs_in_torch(caplog: pytest.LogCaptureFixture) -> None:
    """Kernels compute in float32, so float64 work stays in torch, exactly."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = nn.Linear(8, 4).double()
    x = torch.randn(3, 8, dtype=torch.float64)
    compiled = torch.compile(model, backend="coda")
    with caplog.at_level(logging.WARNING, logger="coda"), torch.no_grad():
        with record_launches() as log:
            got = compiled(x)
    torch.testing.assert_close(got, model(x), rtol=0, atol=0)
    assert log and {r.kind for r in log} == {"fallback"}
    assert any(
        r.getMessage().endswith(
            "falls back to torch: float64 runs in torch (kernels compute in float32)"
        )
        for r in caplog.records
    )


def test_opaque_keywords_decode_one_by_one() -> None:
    """An opaque call's keywords are decoded keyword by keyword: `dtype=float64` alone is
    the keyword dict {'dtype': ...}, not the encoding of a dtype (the float64 scalar a
    `dynamic=True` graph lifts a Python float into runs as such a call)."""
    from xdsl.dialects.builtin import TensorType, f64

    from coda.compiler.reference import opaque_callable
    from coda.dialects import graph

    op = graph.OpaqueOp(
        "aten.scalar_tensor.default",
        [],
        "{'args': [1.5], 'kwargs': {'dtype': {'dtype': 'float64'}}}",
        [TensorType(f64, [])],
    )
    value = opaque_callable(op)()
    assert value.dtype == torch.float64 and value.item() == 1.5
