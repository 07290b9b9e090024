"""Compile time of a torch.compile backend: the first step minus a steady-state step."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.workloads import Workload, run_step

CompiledFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Compiled:
    fn: CompiledFn
    model: nn.Module
    x: torch.Tensor
    grad: torch.Tensor | None
    compile_s: list[float]


def step_seconds(
    fn: CompiledFn, model: nn.Module, x: torch.Tensor, grad: torch.Tensor | None
) -> float:
    start = time.perf_counter()
    run_step(fn, model, x, grad)
    return time.perf_counter() - start


def compile_repeatedly(
    workload: Workload,
    compile_model: Callable[[nn.Module], CompiledFn],
    repeats: int,
    before_each: Callable[[], None] = lambda: None,
) -> Compiled:
    """Compile the workload `repeats` times from scratch (Dynamo reset, fresh model).

    A compile time is the first step (Dynamo, AOTAutograd, the backend's compile of the
    forward and, lazily, of the backward, kernel loading) minus the next step's time, so
    running the kernels is not counted. The first repeat is the cold compile.
    """
    times: list[float] = []
    compiled: Compiled | None = None
    for _ in range(repeats):
        torch._dynamo.reset()
        before_each()
        model, x, grad = workload.build()
        fn = compile_model(model)
        first = step_seconds(fn, model, x, grad)
        steady = step_seconds(fn, model, x, grad)
        times.append(max(first - steady, 0.0))
        compiled = Compiled(fn, model, x, grad, times)
    assert compiled is not None
    return compiled
