"""A modeled H100 time: per kernel, max(FLOPs / peak, bytes / bandwidth), summed.

Assumptions (printed with every table, see `ASSUMPTIONS`):
- H100 SXM: 3.35 TB/s HBM3; dense tensor-core peak 989 TFLOP/s for bf16/fp16 and
  495 TFLOP/s for fp32 (run as TF32); every byte a kernel moves goes to HBM once.
- No launch overhead, no tail effects, no overlap between kernels: a lower bound per
  kernel, summed.
"""

from __future__ import annotations

import torch

HBM_BYTES_PER_S = 3.35e12
PEAK_FLOPS = {torch.bfloat16: 989e12, torch.float16: 989e12, torch.float32: 494.5e12}

ASSUMPTIONS = (
    "Modeled H100 time: sum over kernels of max(FLOPs / peak, bytes / 3.35 TB/s), "
    "peak 989 TFLOP/s (bf16) or 495 TFLOP/s (fp32 as TF32); no launch overhead or "
    "overlap. eager and coda: per kernel; Inductor: whole graph (its metrics give no "
    "per-kernel split, so its figure is a lower bound); minimum: whole graph."
)


def kernel_time(flops: float, nbytes: float, dtype: torch.dtype = torch.float32) -> float:
    return max(flops / PEAK_FLOPS.get(dtype, PEAK_FLOPS[torch.float32]), nbytes / HBM_BYTES_PER_S)


def total_time(kernels: list[tuple[float, float]], dtype: torch.dtype = torch.float32) -> float:
    """Sum of `kernel_time` over (flops, bytes) pairs."""
    return sum(kernel_time(f, b, dtype) for f, b in kernels)
