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


def track_bf16(
    model: nn.Module,
    options: dict[str, object],
    x: torch.Tensor,
    target: torch.Tensor,
    tolerance: float,
    steps: int = 20,
) -> list[float]:
    """Train `model` compiled with coda `options` and a copy of it under bf16 autocast
    in eager, both with SGD on the MSE to `target`, for `steps` steps: at every step
    the losses must agree within `tolerance` (relative to the bf16 loss). Returns coda's
    losses."""
    import torch.nn.functional as F

    ref = copy.deepcopy(model)
    compiled = torch.compile(model, backend="coda", options=options)
    opt, opt_ref = (torch.optim.SGD(m.parameters(), lr=0.05) for m in (model, ref))
    losses: list[float] = []
    for step in range(steps):
        loss = F.mse_loss(compiled(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ref(x)
        loss_ref = F.mse_loss(out.float(), target)
        opt_ref.zero_grad()
        loss_ref.backward()
        opt_ref.step()
        gap = abs(loss.item() - loss_ref.item())
        assert gap < tolerance * loss_ref.item(), (step, loss.item(), loss_ref.item())
        losses.append(loss.item())
    return losses
