"""Compile cost of varying sequence lengths: coda against Inductor, one process each.

The Llama block (reference batch and width) trains at five sequence lengths in turn,
as a run with variable-length batches would. For each length: the compile time of its
first step (that step minus a second step of the same length, so running kernels is not
counted), then totals: Dynamo compilations of the frame and Triton modules built.
Inductor compiles the symbolic graph once and reuses it; coda traces and imports it
once and plans each new length (compiler/symbolic_graph.py) with size-generic kernels.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.interp import fast_cpu_benchmarker, skip_kernel_bodies
from benchmarks.timing import step_seconds
from benchmarks.workloads import BATCH, HIDDEN, MODELS

#: the reference length first (Dynamo compiles it static), then four more
LENGTHS = (128, 96, 112, 80, 120)
MODEL = "llama-block"


def _lengths(backend: Any, modules_built: Any) -> dict[str, Any]:
    calls = {"frames": 0}

    def counting(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        calls["frames"] += 1
        return backend(gm, example_inputs)

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = MODELS[MODEL]()
    fn = torch.compile(model, backend=counting)
    built = modules_built()
    seconds = []
    for seq in LENGTHS:
        x = torch.randn(BATCH, seq, HIDDEN, requires_grad=True)
        with torch.no_grad():
            grad = torch.randn_like(model(x))
        first = step_seconds(fn, model, x, grad)
        steady = step_seconds(fn, model, x, grad)
        seconds.append(round(max(first - steady, 0.0), 3))
    return {
        "lengths": list(LENGTHS),
        "compile_s": seconds,
        "total_s": round(sum(seconds), 3),
        "dynamo_compiles": calls["frames"],
        "triton_modules": modules_built() - built,
    }


def _coda() -> dict[str, Any]:
    from coda.compiler.backend import coda_backend
    from coda.runtime.kernel_cache import default_cache

    cache = default_cache()
    return _lengths(
        lambda gm, inputs: coda_backend(gm, inputs, options={"strict": False}),
        lambda: cache.imports,
    )


def _inductor() -> dict[str, Any]:
    from torch._inductor import config, metrics
    from torch._inductor.compile_fx import compile_fx

    from benchmarks.inductor_system import _patch_triton_hash

    _patch_triton_hash()
    undo = fast_cpu_benchmarker()
    try:
        with config.patch(cpu_backend="triton", force_disable_caches=True):
            return _lengths(compile_fx, lambda: metrics.generated_kernel_count)
    finally:
        undo()


def varying_sizes_rows() -> list[dict[str, Any]]:
    with skip_kernel_bodies():
        return [{"system": "coda", **_coda()}, {"system": "inductor", **_inductor()}]


def varying_sizes_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lengths = rows[0]["lengths"]
    head = "| system | " + " | ".join(f"S={s}" for s in lengths)
    head += " | total s | Dynamo compiles | Triton modules |"
    lines = [head, "|---" * (len(lengths) + 4) + "|"]
    for row in rows:
        cells = " | ".join(f"{t:.2f}" for t in row["compile_s"])
        lines.append(
            f"| {row['system']} | {cells} | {row['total_s']:.2f} | {row['dynamo_compiles']} "
            f"| {row['triton_modules']} |"
        )
    return "\n".join(lines)
