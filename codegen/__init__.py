"""Triton emission: each kernel op becomes one Python module with a `launch` function."""

from __future__ import annotations

from coda.codegen.common import CodegenError
from coda.codegen.gemm import generate_gemm
from coda.codegen.loop import generate_loop
from coda.dialects.kernel import GemmKernelOp, LoopKernelOp


def generate_kernel_source(kernel: GemmKernelOp | LoopKernelOp) -> str:
    """Triton source for one kernel op.

    The module defines a `@triton.jit` kernel named after `kernel.kernel_name` and
    `launch(*inputs, *outputs) -> grid`: inputs are torch tensors in the op's operand order
    (any strides), outputs preallocated tensors in its result order.
    """
    if isinstance(kernel, GemmKernelOp):
        return generate_gemm(kernel)
    if isinstance(kernel, LoopKernelOp):
        return generate_loop(kernel)
    raise CodegenError(f"no Triton generator for '{kernel.name}'")


__all__ = ["CodegenError", "generate_kernel_source"]
