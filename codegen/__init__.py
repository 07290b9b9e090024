"""Triton emission: each kernel op becomes one Python module with a `launch` function."""

from __future__ import annotations

from coda.codegen.attention import generate_attention
from coda.codegen.common import CodegenError
from coda.codegen.gemm import generate_gemm
from coda.codegen.loop import generate_loop
from coda.codegen.targets import Target
from coda.codegen.tile_config import AttentionTile, GemmTile
from coda.dialects.kernel import AttentionKernelOp, GemmKernelOp, LoopKernelOp


def generate_kernel_source(
    kernel: GemmKernelOp | LoopKernelOp | AttentionKernelOp,
    target: Target | None = None,
    gemm_tile: GemmTile | AttentionTile | None = None,
) -> str:
    """Triton source for one kernel op, tiled for `target` (None: Triton's interpreter);
    `gemm_tile` forces the tile of a GEMM kernel (tests of the budget diagnostics) or of
    an attention kernel (the ahead-of-time compile tries several).

    The module defines a `@triton.jit` kernel named after `kernel.kernel_name` and
    `launch(*inputs, *outputs) -> grid`: inputs are torch tensors in the op's operand order
    (any strides), outputs preallocated tensors in its result order.
    """
    if isinstance(kernel, GemmKernelOp):
        assert not isinstance(gemm_tile, AttentionTile)
        return generate_gemm(kernel, target, gemm_tile)
    if isinstance(kernel, AttentionKernelOp):
        assert not isinstance(gemm_tile, GemmTile)
        return generate_attention(kernel, target, gemm_tile)
    if isinstance(kernel, LoopKernelOp):
        return generate_loop(kernel, target)
    raise CodegenError(f"no Triton generator for '{kernel.name}'")


__all__ = ["CodegenError", "generate_kernel_source"]
