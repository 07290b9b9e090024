"""coda: launches and bytes from the runtime's launch log, FLOPs from the kernel plan."""

from __future__ import annotations

import logging

import torch

from benchmarks.measure import Measurement
from benchmarks.plan import capture_graphs, plan
from benchmarks.roofline import kernel_time
from benchmarks.timing import CompiledFn, compile_repeatedly
from benchmarks.workloads import MODELS, Workload, run_step
from coda.runtime import LaunchRecord, record_launches


def _compile(model: torch.nn.Module) -> CompiledFn:
    # not strict: a graph coda cannot compile runs eagerly, as a user would see it
    return torch.compile(model, backend="coda", options={"strict": False})


def launch_records(workload: Workload, repeats: int) -> tuple[list[LaunchRecord], list[float]]:
    """Compile `repeats` times, then log one steady-state step."""
    compiled = compile_repeatedly(workload, _compile, repeats)
    with record_launches() as records:
        run_step(compiled.fn, compiled.model, compiled.x, compiled.grad)
    return records, compiled.compile_s


class _EagerGraphs(logging.Handler):
    """Collects the backend's "graph runs eagerly" warnings: such a graph launches
    nothing of coda's, and the figures must say so rather than look good."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "runs eagerly" in message:
            self.messages.append(message)


def measure_coda(workload: Workload, repeats: int) -> Measurement:
    handler = _EagerGraphs()
    logger = logging.getLogger("coda.compiler")
    logger.addHandler(handler)
    try:
        records, compile_s = launch_records(workload, repeats)
    finally:
        logger.removeHandler(handler)
    # The plan gives each kernel's FLOPs by name (the launch log has none).
    kernels = plan(
        capture_graphs(MODELS[workload.model], workload.input_shape, training=workload.training)
    )
    flops = {(k.graph, k.name): k.flops for k in kernels}
    per_launch = [
        (flops.get((r.graph, r.kernel), 0), r.bytes_read + r.bytes_written) for r in records
    ]
    kinds: dict[str, int] = {}
    for r in records:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    return Measurement(
        system="coda",
        workload=workload.key,
        launches=len(records),
        bytes=sum(b for _, b in per_launch),
        flops=sum(f for f, _ in per_launch),
        modeled_s=sum(kernel_time(f, b) for f, b in per_launch),
        compile_s=compile_s,
        extra={"launch_kinds": kinds, "eager_graphs": sorted(set(handler.messages))},
    )
