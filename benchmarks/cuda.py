"""Wall-clock times on a CUDA GPU, when there is one (never required)."""

from __future__ import annotations

import torch

from benchmarks.workloads import Workload, run_step

BACKENDS = {
    "coda": {"backend": "coda"},
    "inductor": {"backend": "inductor"},
    "inductor-max-autotune": {"backend": "inductor", "mode": "max-autotune"},
}


def _time_ms(workload: Workload, compile_kwargs: dict[str, str], iters: int = 20) -> float:
    torch._dynamo.reset()
    model, x, grad = workload.build()
    model = model.cuda()
    x = x.detach().cuda().requires_grad_(workload.training)
    grad = None if grad is None else grad.cuda()
    fn = torch.compile(model, **compile_kwargs)
    for _ in range(3):  # compile and warm up
        run_step(fn, model, x, grad)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        run_step(fn, model, x, grad)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def cuda_table(workloads: tuple[Workload, ...]) -> str | None:
    """A markdown table of ms per step, or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    lines = [
        f"GPU: {torch.cuda.get_device_name()}. ms per step (mean of 20 after 3 warm-up steps).",
        "",
        "| workload | " + " | ".join(BACKENDS) + " |",
        "|---|" + "---|" * len(BACKENDS),
    ]
    for workload in workloads:
        cells = []
        for kwargs in BACKENDS.values():
            try:
                cells.append(f"{_time_ms(workload, kwargs):.3f}")
            except Exception as err:  # one failing backend must not hide the others
                cells.append(f"failed: {type(err).__name__}")
        lines.append(f"| {workload.title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
