"""Ahead-of-time reports of a plan for a GPU target: `lowerc --target T --emit resources`
(the per-kernel table), `--emit ptx|amdgcn`, and the clean-kernel counts benchmarks show."""

from __future__ import annotations

import functools

import torch
from xdsl.dialects.builtin import ModuleOp

from coda.codegen.aot import AotKernel, compile_kernels
from coda.codegen.resources import KernelResources
from coda.codegen.targets import Target, parse_target

_HEADER = (
    f"  {'kernel':<40} {'kind':<5} {'regs':>5} {'spill B':>8} {'shared B':>9} {'stack B':>8}"
    f"  {'tensor cores':<16} {'loads':>5} {'stores':>6}  config"
)


def _tensor_cores(r: KernelResources, target: Target) -> str:
    if r.tensor_cores is None:
        return "-"
    return target.tensor_core_pattern if r.tensor_cores else "NO"


def resources_table(resources: list[KernelResources], target: Target) -> str:
    """One table per graph of the plan, then a line per diagnostic."""
    lines = [
        f"# {target.name} ({target.gpu}): budgets {target.registers} registers per thread, "
        f"{target.shared_memory} bytes shared memory"
    ]
    for graph in dict.fromkeys(r.graph for r in resources):
        rows = [r for r in resources if r.graph == graph]
        lines += ["", f"@{graph}", _HEADER, "  " + "-" * (len(_HEADER) + 28)]
        for r in rows:
            lines.append(
                f"  {r.kernel:<40} {r.kind:<5} {r.registers:>5} {r.spill_bytes:>8} "
                f"{r.shared_memory:>9} {r.stack_bytes:>8}  {_tensor_cores(r, target):<16} "
                f"{r.global_loads:>5} {r.global_stores:>6}  {r.config}"
            )
        clean = sum(r.clean for r in rows)
        lines.append(f"  {len(rows)} kernels, {clean} clean")
    lines += [d for r in resources for d in r.diagnostics]
    return "\n".join(lines) + "\n"


def assembly_listing(kernels: list[AotKernel], target: Target) -> str:
    """The PTX or amdgcn of every kernel, kernel by kernel."""
    parts = []
    for k in kernels:
        r = k.resources
        header = f"// ===== @{r.graph}: {r.kernel} ({r.kind}) for {target.name}, {r.config} ====="
        parts.append(f"{header}\n{k.assembly.rstrip()}\n")
    return "\n".join(parts)


@functools.lru_cache(maxsize=16)
def _plan(model: str, dtype: torch.dtype, training: bool) -> ModuleOp:
    from coda.compiler.capture import capture
    from coda.compiler.models import load_model
    from coda.compiler.pipeline import lower

    module = capture(load_model(model, None, dtype), training=training).to_module()
    return lower(module, "kernel")


def model_resources(
    model: str, target: str, dtype: torch.dtype = torch.bfloat16, *, training: bool = True
) -> list[KernelResources]:
    """Every kernel of a built-in model's plan compiled for `target`."""
    kernels = compile_kernels(_plan(model, dtype, training), parse_target(target))
    return [k.resources for k in kernels]


def clean_kernel_count(
    model: str, target: str, dtype: torch.dtype = torch.bfloat16, *, training: bool = True
) -> tuple[int, int]:
    """(kernels that compile cleanly for `target`, all kernels) of a built-in model: the
    per-target column of the benchmark table."""
    resources = model_resources(model, target, dtype, training=training)
    return sum(r.clean for r in resources), len(resources)


def clean_kernel_columns(
    model: str, dtype: torch.dtype = torch.bfloat16, *, training: bool = True
) -> dict[str, str]:
    """Target -> "clean/total" for every target: one benchmark-table cell per target."""
    from coda.codegen.targets import TARGETS

    cells = {}
    for target in TARGETS:
        clean, total = clean_kernel_count(model, target, dtype, training=training)
        cells[target] = f"{clean}/{total}"
    return cells
