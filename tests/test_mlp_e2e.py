"""End to end: an MLP trained through `torch.compile(backend="coda")` matches eager.

The backend is looked up by name through the `torch_dynamo_backends` entry point,
exactly as a user would get it (this file never imports coda's backend).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coda.runtime import LaunchRecord, record_launches

RTOL, ATOL = 1e-4, 1e-5


class MLP(nn.Module):
    """Linear+bias layers with GELU, SiLU, ReLU and a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(24, 48)
        self.fc2 = nn.Linear(48, 48)
        self.fc3 = nn.Linear(48, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x))
        h = h + F.silu(self.fc2(h))
        return self.fc3(torch.relu(h))


def _run(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    out = model(x)
    F.mse_loss(out, target).backward()
    return out


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, list[LaunchRecord]]:
    torch.manual_seed(0)
    torch._dynamo.reset()
    eager = MLP()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, backend="coda")
    x = torch.randn(12, 24)
    target = torch.randn(12, 20)
    x_eager, x_coda = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = _run(eager, x_eager, target)
    with record_launches() as log:
        got = _run(compiled, x_coda, target)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
    return eager, compiled_model, x_eager, x_coda, log


def test_parameter_gradients_match_eager(trained) -> None:
    eager, compiled_model, x_eager, x_coda, _ = trained
    for (name, p_eager), (_, p_coda) in zip(
        eager.named_parameters(), compiled_model.named_parameters(), strict=True
    ):
        assert p_coda.grad is not None, name
        torch.testing.assert_close(p_coda.grad, p_eager.grad, rtol=RTOL, atol=ATOL, msg=name)
    torch.testing.assert_close(x_coda.grad, x_eager.grad, rtol=RTOL, atol=ATOL)


def test_forward_is_two_gemm_epilogue_kernels(trained) -> None:
    log: list[LaunchRecord] = trained[-1]
    forward = [r for r in log if r.graph == "forward"]
    assert [r.kind for r in forward] == ["gemm", "gemm"]
    # fc3 (20 wide: one tile holds its rows) multiplies relu(h) as fc2's epilogue
    # computes it (chain-gemms): fc2's pre-activation and relu(h) are stored for the
    # backward, and read by no forward kernel
    assert [r.kernel for r in forward] == [
        "gemm0_bias_gelu",
        "gemm1_bias_silu_residual_relu_chain_bias",
    ]
    assert forward[1].bytes_written == 4 * (2 * 12 * 48 + 12 * 20)


def test_backward_has_no_pointwise_kernel_after_a_gemm(trained) -> None:
    log: list[LaunchRecord] = trained[-1]
    backward = [r for r in log if r.graph == "backward"]
    gemms = [r.kernel for r in backward if r.kind == "gemm"]
    loops = [r.kernel for r in backward if r.kind == "loop"]
    # dgrad GEMMs carry the activation gradients and the residual in their epilogues
    assert any("threshold_backward" in k and "silu_backward" in k for k in gemms), gemms
    assert any("residual" in k and "gelu_backward" in k for k in gemms), gemms
    # a dgrad and a wgrad per layer, all GEMMs; x's gradient (24 wide) multiplies the
    # gradient of fc1's output as the kernel that computes it has it (chain-gemms)
    assert len(gemms) == 5, gemms
    assert any(k.startswith("gemm4_residual_gelu_backward") and "chain" in k for k in gemms)
    # what is left outside GEMMs: the MSE loss gradient and the bias-gradient reductions
    assert all(k.split("_", 1)[1] in ("sum",) or "sub" in k for k in loops), loops
    assert not [r for r in backward if r.kind == "fallback"]


def test_launch_log_counts_bytes(trained) -> None:
    log: list[LaunchRecord] = trained[-1]
    first = log[0]
    # x [12, 24], fc1.weight^T [24, 48] (a transposed view of the parameter), bias [48]
    assert first.bytes_read == 4 * (12 * 24 + 48 * 24 + 48)
    # pre-activation (saved for backward) and gelu output, [12, 48] each
    assert first.bytes_written == 2 * 4 * 12 * 48
