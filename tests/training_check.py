"""One training step under coda against the same step in eager PyTorch."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from coda.runtime import AllocationRecord, LaunchRecord, record_allocations, record_launches


@dataclass
class TrainingRun:
    launches: list[LaunchRecord]
    allocations: list[AllocationRecord]


def check_training_step(model: nn.Module, x: torch.Tensor, rtol: float = 1e-4) -> TrainingRun:
    """Run `loss = model(x).square().sum()` forward and backward with a compiled copy of
    `model` and with `model` itself; the output, the input gradient and every parameter
    gradient must match. Returns what the compiled step launched and allocated."""
    torch._dynamo.reset()
    compiled_model = copy.deepcopy(model)
    x_eager, x_coda = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = model(x_eager)
    expected.square().sum().backward()
    compiled = torch.compile(compiled_model, backend="coda")
    with record_launches() as launches, record_allocations() as allocations:
        got = compiled(x_coda)
        got.square().sum().backward()
    torch.testing.assert_close(got, expected, rtol=rtol, atol=rtol / 10)
    torch.testing.assert_close(x_coda.grad, x_eager.grad, rtol=rtol, atol=rtol)
    named = zip(model.named_parameters(), compiled_model.parameters(), strict=True)
    for (name, p), q in named:
        torch.testing.assert_close(q.grad, p.grad, rtol=rtol, atol=rtol, msg=name)
    return TrainingRun(launches, allocations)
