"""coda's kernel plan, read without running it: per kernel the bytes it moves and its FLOPs.

The same byte rule as `lowerc --emit summary` and the runtime's launch log: every
operand's unique bytes (the part a slice view reads), every result's bytes. This is how
the real-shape figures are computed: the model is captured on the meta device, so a
Llama-3-1B-sized block costs no memory and no arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from xdsl.dialects.builtin import TensorType
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute

from coda.compiler.capture import CapturedGraphs, capture
from coda.compiler.models import ModelSpec
from coda.compiler.pipeline import lower
from coda.compiler.reference import run_block
from coda.dialects import epilogue, graph, kernel
from coda.dialects.dtypes import torch_dtype_of
from coda.dialects.view_layout import read_elements


@dataclass(frozen=True)
class PlannedKernel:
    graph: str  # "forward" | "backward" | "inference"
    name: str
    kind: str  # "gemm" | "loop" | "attention" | "fallback"
    bytes_read: int
    bytes_written: int
    flops: int

    @property
    def nbytes(self) -> int:
        return self.bytes_read + self.bytes_written


def _shape(ty: Attribute) -> tuple[int, ...]:
    assert isinstance(ty, TensorType)
    return tuple(ty.get_shape())


def _element_bytes(ty: Attribute) -> int:
    assert isinstance(ty, TensorType)
    width = getattr(ty.element_type, "bitwidth", 32)
    return max(width, 8) // 8


def _bytes(ty: Attribute, elements: int | None = None) -> int:
    return (math.prod(_shape(ty)) if elements is None else elements) * _element_bytes(ty)


def _gemm_flops(op: kernel.KernelOp) -> int:
    flops = 0
    for inner in op.body.block.ops:
        if isinstance(inner, epilogue.GemmOp):
            for lhs, _ in inner.product_pairs:
                flops += 2 * math.prod(inner.out_shape) * _shape(lhs.type)[-1]
    return flops


def _attention_flops(op: kernel.AttentionKernelOp) -> int:
    """torch's FLOP-counter convention for attention (its own counter does not know the
    CPU flash ops): forward q @ k^T and p @ v, 4 * B * Hq * S * Skv * D; backward the
    four products dO @ v^T, p^T @ dO, dS @ k and dS^T @ q, twice that (the scores the
    kernel recomputes are not counted, as torch does not count them)."""
    flops = 0
    for inner in op.body.block.ops:
        if isinstance(inner, graph.AttentionOp | graph.AttentionBackwardOp):
            b, hq, s, d = _shape(inner.query.type)
            skv = _shape(inner.key.type)[2]
            products = 4 if isinstance(inner, graph.AttentionBackwardOp) else 2
            flops += products * 2 * b * hq * s * skv * d
    return flops


def _fallback_flops(op: kernel.FallbackKernelOp) -> int:
    """Run the torch ops of the fallback on meta tensors under torch's FLOP counter."""
    args = []
    for arg in op.body.block.args:
        assert isinstance(arg.type, TensorType)
        args.append(
            torch.empty(
                _shape(arg.type), dtype=torch_dtype_of(arg.type.element_type), device="meta"
            )
        )
    with FlopCounterMode(display=False) as counter:
        run_block(op.body.block, args, torch.device("meta"))
    return int(counter.get_total_flops())


def planned_kernels(func: FuncOp) -> list[PlannedKernel]:
    kernels = []
    for op in func.body.block.ops:
        if not isinstance(op, kernel.KernelOp):
            continue
        read = sum(_bytes(v.type, n) for v, n in zip(op.inputs, read_elements(op), strict=True))
        written = sum(_bytes(t) for t in op.result_types)
        if isinstance(op, kernel.GemmKernelOp):
            flops = _gemm_flops(op)
        elif isinstance(op, kernel.AttentionKernelOp):
            flops = _attention_flops(op)
        elif isinstance(op, kernel.FallbackKernelOp):
            flops = _fallback_flops(op)
        else:
            flops = 0  # loop kernels: memory-bound elementwise/reduction work
        kernels.append(
            PlannedKernel(func.sym_name.data, op.kernel_name, op.KIND, read, written, flops)
        )
    return kernels


@contextmanager
def default_device_and_dtype(device: str, dtype: torch.dtype) -> Iterator[None]:
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old_dtype)


@contextmanager
def cpu_attention_dispatch() -> Iterator[None]:
    """On meta tensors `scaled_dot_product_attention` takes its math path (S x S scores,
    softmax); on CPU tensors it takes flash attention, which coda compiles to its own
    kernels. Meta captures stand for CPU runs, so here they call the CPU flash op as a
    CPU run does (no dropout, no boolean mask: the cases the CPU flash path takes)."""
    original = F.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
             enable_gqa=False):  # type: ignore[no-untyped-def]  # fmt: skip
        if dropout_p or (attn_mask is not None and attn_mask.dtype == torch.bool):
            return original(q, k, v, attn_mask, dropout_p, is_causal, scale=scale,
                            enable_gqa=enable_gqa)  # fmt: skip
        out, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, is_causal, attn_mask=attn_mask, scale=scale
        )
        return out

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def capture_graphs(
    factory: Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    *,
    training: bool,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> CapturedGraphs:
    """The aten graphs coda would compile (on `device`: "meta" runs no arithmetic, but an
    op without a meta autograd kernel, such as nll_loss, loses its backward there)."""
    # the spec's dtype, not just the default: capture casts the model to it
    spec = ModelSpec(factory, (input_shape,), dtype=dtype)
    with default_device_and_dtype(device, dtype):
        if device != "meta":
            return capture(spec, training=training)
        with cpu_attention_dispatch():
            return capture(spec, training=training)


def plan(captured: CapturedGraphs) -> list[PlannedKernel]:
    """Lower the captured graphs to the kernel dialect and list the kernels."""
    module = captured.to_module()
    lower(module, "kernel")
    return [k for func in module.ops if isinstance(func, FuncOp) for k in planned_kernels(func)]
