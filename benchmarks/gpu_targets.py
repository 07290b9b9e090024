"""Per-GPU-target columns (issue 9): how many of a workload's kernels compile cleanly
ahead of time for each target, on this CPU-only machine.

The plan is the workload's own (reference shapes), built in bf16 as GPUs run it. Each
kernel is compiled with Triton for `cuda:sm_90a`, `cuda:sm_100a`, `hip:gfx942` and
`hip:gfx950`; clean means no register spills, shared memory within the target's
budget and a tensor-core mainloop where the operand types allow one
(`coda.codegen.aot`). A cell reads "clean/total".
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.measure import Measurement
from benchmarks.workloads import MODELS, WORKLOADS

#: the key of the job that computes the columns, and the Measurement.extra entry
JOB_PREFIX = "targets:"
EXTRA_KEY = "clean_kernels_by_target"


def measure_targets(workload_key: str) -> dict[str, str]:
    """Target name -> "clean/total" for one workload."""
    from coda.codegen.aot import compile_kernels
    from coda.codegen.targets import TARGETS
    from coda.compiler.capture import capture
    from coda.compiler.models import ModelSpec
    from coda.compiler.pipeline import lower

    (workload,) = [w for w in WORKLOADS if w.key == workload_key]
    spec = ModelSpec(MODELS[workload.model], (workload.input_shape,), dtype=torch.bfloat16)
    plan = lower(capture(spec, training=workload.training).to_module(), "kernel")
    cells = {}
    for target in TARGETS:
        resources = [k.resources for k in compile_kernels(plan, target)]
        cells[target] = f"{sum(r.clean for r in resources)}/{len(resources)}"
    return cells


def attach(results: list[Measurement], targets: dict[str, dict[str, str]]) -> None:
    """Put each workload's cells on its coda measurement, where the table finds them."""
    for m in results:
        if m.system == "coda" and m.workload in targets:
            m.extra[EXTRA_KEY] = targets[m.workload]


def columns(key: str, systems: dict[str, Measurement]) -> dict[str, Any]:
    """The report's extra columns: one per target, on coda's row."""
    coda = systems.get("coda")
    cells = coda.extra.get(EXTRA_KEY, {}) if coda is not None else {}
    return {f"{target} clean (bf16)": cell for target, cell in cells.items()}
