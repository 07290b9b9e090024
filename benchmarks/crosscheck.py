"""Cross-check coda's byte figures against what the interpreted kernels really touch.

At small shapes the kernels run under Triton's interpreter with every masked load and
store recorded by address (`interp.count_interpreted_bytes`). The launch log's figure
for a kernel is the unique bytes of each buffer it is given (the part a slice view
reads) plus each buffer it writes. The two agree when a kernel touches every element of
its operands, which coda's kernels do: masked-off lanes of partial tiles are not loads.
Torch fallbacks are not interpreted and are left out on both sides.

Tolerated difference (`TOLERANCE`): the log counts a buffer fully even where a kernel
reads only part of it through a layout the static rule cannot see; this would show as
logged > measured. Cache effects are not modeled on either side: an element loaded by
many tiles counts once in both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from benchmarks.interp import count_interpreted_bytes
from benchmarks.workloads import run_step
from coda.compiler.models import BUILTIN_MODELS
from coda.runtime import record_launches

#: relative difference allowed between logged and interpreter-measured totals
TOLERANCE = 0.02


@dataclass(frozen=True)
class KernelBytes:
    kernel: str
    logged_read: int
    logged_written: int
    loaded: int
    stored: int

    @property
    def logged(self) -> int:
        return self.logged_read + self.logged_written

    @property
    def measured(self) -> int:
        return self.loaded + self.stored


def compare(model_name: str, training: bool) -> list[KernelBytes]:
    """Run one step of a built-in model at its small shapes, kernels interpreted."""
    spec = BUILTIN_MODELS[model_name]
    torch.manual_seed(0)
    model = spec.factory()
    x = torch.randn(spec.input_shapes[0], requires_grad=training)
    grad = torch.randn_like(model(x)) if training else None
    torch._dynamo.reset()
    fn = torch.compile(model, backend="coda", options={"strict": False})
    run_step(fn, model, x, grad)  # compile first: only the steady-state step is compared
    with record_launches() as records, count_interpreted_bytes() as measured:
        run_step(fn, model, x, grad)
    kernels = [r for r in records if r.kind in ("gemm", "loop", "attention")]
    if len(kernels) != len(measured):
        raise AssertionError(f"{len(kernels)} kernel launches logged, {len(measured)} interpreted")
    return [
        KernelBytes(r.kernel, r.bytes_read, r.bytes_written, m.loaded, m.stored)
        for r, m in zip(kernels, measured, strict=True)
    ]


def crosscheck_all() -> list[dict[str, Any]]:
    """The cross-check for the blocks, forward+backward, as JSON rows."""
    rows = []
    for name in ("gpt2-block", "llama-block"):
        kernels = compare(name, training=True)
        logged = sum(k.logged for k in kernels)
        measured = sum(k.measured for k in kernels)
        rows.append(
            {
                "model": name,
                "kernels": len(kernels),
                "logged": logged,
                "measured": measured,
                "relative_difference": (logged - measured) / measured,
                "differing_kernels": [asdict(k) for k in kernels if k.logged != k.measured],
            }
        )
    return rows
