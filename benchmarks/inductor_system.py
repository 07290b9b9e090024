"""Inductor (default and max-autotune with Triton GEMM templates) generating Triton,
run under Triton's interpreter on this CPU-only machine.

Two patches make that possible (see shared/notes/triton-cpu.md): Inductor hashes the
Triton backend of a GPU driver (there is none: a constant does), and its CPU backend must
be "triton". Bytes come from `torch._inductor.metrics.num_bytes_accessed` (filled only
with the `inductor_metrics` logger on; it includes extern GEMM/attention calls); launches
are the Triton launches (counted at `CachingAutotuner.run`) plus the aten ops the
generated wrapper calls (extern GEMMs, fallbacks), counted like eager's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from benchmarks.eager import EagerRecorder
from benchmarks.interp import fast_cpu_benchmarker
from benchmarks.measure import Measurement
from benchmarks.roofline import kernel_time
from benchmarks.timing import CompiledFn, compile_repeatedly
from benchmarks.workloads import Workload, run_step

MODES: dict[str, dict[str, Any]] = {
    "inductor": {},
    "inductor-max-autotune": {
        "max_autotune": True,
        "max_autotune_gemm_backends": "TRITON",
        "benchmark_epilogue_fusion": False,
    },
}


def _patch_triton_hash() -> None:
    import torch.utils._triton as triton_utils

    triton_utils.triton_hash_with_backend = lambda: "CODA-BENCH-INTERPRETER"


def _enable_metrics() -> None:
    torch._logging.set_logs(inductor_metrics=True)
    # the metrics logger prints every graph's per-node table: keep it out of the output
    logging.getLogger("torch._inductor.compile_fx").setLevel(logging.WARNING)


@contextmanager
def _count_triton_launches() -> Iterator[list[str]]:
    from torch._inductor.runtime import triton_heuristics

    original = triton_heuristics.CachingAutotuner.run
    launches: list[str] = []

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        launches.append(getattr(self.fn, "__name__", "triton"))
        return original(self, *args, **kwargs)

    triton_heuristics.CachingAutotuner.run = run  # type: ignore[method-assign]
    try:
        yield launches
    finally:
        triton_heuristics.CachingAutotuner.run = original  # type: ignore[method-assign]


@contextmanager
def _count_aten_in_compiled_graphs() -> Iterator[EagerRecorder]:
    """Record aten ops only while Inductor's compiled graphs run: a dispatch mode around
    the whole torch.compile'd call would make Dynamo run the model eagerly instead."""
    from torch._inductor.output_code import CompiledFxGraph

    original = CompiledFxGraph.__call__
    recorder = EagerRecorder()

    def call(self: Any, inputs: Any) -> Any:
        with recorder:
            return original(self, inputs)

    CompiledFxGraph.__call__ = call  # type: ignore[method-assign]
    try:
        yield recorder
    finally:
        CompiledFxGraph.__call__ = original  # type: ignore[method-assign]


def measure_inductor(workload: Workload, system: str, repeats: int) -> Measurement:
    from torch._inductor import config, metrics

    _patch_triton_hash()
    _enable_metrics()
    undo = fast_cpu_benchmarker()
    nbytes: list[int] = []

    def compile_model(model: torch.nn.Module) -> CompiledFn:
        return torch.compile(model, backend="inductor")

    try:
        with config.patch(cpu_backend="triton", force_disable_caches=True, **MODES[system]):
            compiled = compile_repeatedly(
                workload, compile_model, repeats, before_each=lambda: metrics.reset()
            )
            nbytes.append(metrics.num_bytes_accessed)
            with (
                _count_triton_launches() as triton_launches,
                _count_aten_in_compiled_graphs() as aten_ops,
            ):
                run_step(compiled.fn, compiled.model, compiled.x, compiled.grad)
    finally:
        undo()
    # Triton GEMM templates hide their FLOPs from the dispatcher: use the model's, as
    # eager counts them (the same arithmetic, whichever kernel does it).
    flops = workload_flops(workload)
    launches = len(triton_launches) + len(aten_ops.records)
    return Measurement(
        system=system,
        workload=workload.key,
        launches=launches,
        bytes=nbytes[-1],
        flops=flops,
        modeled_s=kernel_time(flops, nbytes[-1]),
        compile_s=compiled.compile_s,
        extra={"triton_launches": len(triton_launches), "aten_launches": len(aten_ops.records)},
    )


def workload_flops(workload: Workload) -> int:
    """The model's FLOPs as eager PyTorch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    model, x, grad = workload.build()
    with FlopCounterMode(display=False) as counter:
        run_step(model, model, x, grad)
    return int(counter.get_total_flops())
