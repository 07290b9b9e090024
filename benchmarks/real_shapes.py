"""Real shapes, computed from coda's kernel plan without running anything.

A Llama-3-1B-like block (d=2048, SwiGLU FFN 8192, 32 query heads / 8 KV heads of 64,
one sequence of 8192 tokens, bf16) is captured on the meta device: shapes and dtypes
propagate, no memory is allocated and no arithmetic runs. coda's figures are its kernel
plan's (the bytes rule of the launch log), eager's a dispatch-mode count on meta tensors,
the minimum from the captured graphs. Inductor needs a real device to generate code for,
so it has no column here. Only the block: on meta tensors the LM's nll_loss has no
autograd kernel, so its backward could not be captured there.
"""

from __future__ import annotations

import torch

from benchmarks.eager import EagerRecorder
from benchmarks.measure import Measurement
from benchmarks.minimum import compulsory_bytes
from benchmarks.plan import (
    capture_graphs,
    cpu_attention_dispatch,
    default_device_and_dtype,
    plan,
)
from benchmarks.roofline import kernel_time
from coda.compiler.models import LlamaBlock

DTYPE = torch.bfloat16
SHAPE = (1, 8192, 2048)
KEY = "llama-1b-block"


def factory() -> torch.nn.Module:
    return LlamaBlock(2048, 32, 8, 8192)


def _eager(training: bool, key: str) -> Measurement:
    with default_device_and_dtype("meta", DTYPE):
        model = factory()
        x = torch.randn(SHAPE, requires_grad=training)
        grad = torch.randn(SHAPE) if training else None
        # inside the device context: the RoPE tables and mask the model builds are meta too;
        # attention dispatches as on a CPU (flash attention), as coda's capture does
        with (
            cpu_attention_dispatch(),
            EagerRecorder() as recorder,
            torch.set_grad_enabled(training),
        ):
            y = model(x)
            if grad is not None:
                y.backward(grad)
    return _from_kernels("eager", key, recorder.records)


def _from_kernels(system: str, key: str, kernels: list, **extra: str) -> Measurement:
    """Launches, bytes, FLOPs and modeled time of kernels (anything with `nbytes` and
    `flops`: eager's op records, coda's planned kernels)."""
    return Measurement(
        system=system,
        workload=key,
        launches=len(kernels),
        bytes=sum(k.nbytes for k in kernels),
        flops=sum(k.flops for k in kernels),
        modeled_s=sum(kernel_time(k.flops, k.nbytes, DTYPE) for k in kernels),
        extra=dict(extra),
    )


def measure_real_shapes() -> list[Measurement]:
    results = []
    for training in (False, True):
        key = f"{KEY}/{'train' if training else 'infer'}"
        eager = _eager(training, key)
        captured = capture_graphs(factory, SHAPE, training=training, device="meta", dtype=DTYPE)
        minimum = compulsory_bytes(captured)
        kernels = plan(captured)
        results += [
            eager,
            _from_kernels("coda", key, kernels, source="kernel plan (not run)"),
            Measurement(
                system="minimum",
                workload=key,
                launches=None,
                bytes=minimum,
                flops=eager.flops,
                modeled_s=kernel_time(eager.flops, minimum, DTYPE),
            ),
        ]
    return results
