"""Scaled GEMMs on real GPUs, compiled ahead of time on this CPU-only machine: the
kernels quantize-operands produces run their mainloop on the tensor cores' low-precision
MMAs (the interpreter, which runs every other test, takes the float32 branch)."""

from __future__ import annotations

import functools
import re

import pytest
import torch
from xdsl.dialects.builtin import ModuleOp

from coda.codegen.aot import compile_kernels
from coda.compiler.capture import capture
from coda.compiler.models import load_model
from coda.compiler.precision_policy import PrecisionPolicy, lower_with_policy
from coda.dialects import kernel, lowp


@functools.cache
def _first_gemm(recipe: str) -> kernel.GemmKernelOp:
    """The MLP's first Linear (x [32, 32] @ W1ᵀ + bias, GELU) under `recipe`."""
    spec = load_model("mlp", ((32, 32),), torch.float32)
    module: ModuleOp = capture(spec, training=False).to_module()
    lower_with_policy(module, PrecisionPolicy(recipe))
    op = next(op for op in module.walk() if isinstance(op, kernel.GemmKernelOp))
    quantized = [o for o in op.body.block.ops if isinstance(o, lowp.QuantizeOp)]
    assert len(quantized) == 2  # x and W1 are both scaled operands
    return op


def _mma(assembly: str) -> set[str]:
    return set(re.findall(r"(?:wgmma\.mma_async|tcgen05\.mma)[^\s,;]*", assembly))


@pytest.mark.parametrize("recipe", ["fp8-rowwise", "fp8-tensorwise"])
def test_fp8_scaled_gemm_runs_on_fp8_wgmma_on_sm90a(recipe: str) -> None:
    (compiled,) = compile_kernels([_first_gemm(recipe)], "cuda:sm_90a")
    assert compiled.resources.clean, compiled.resources.diagnostics
    assert compiled.resources.spill_bytes == 0 and compiled.resources.tensor_cores
    # e4m3 x e4m3 -> f32 warpgroup MMAs, and no other MMA (the f32 branch is compiled out)
    mma = _mma(compiled.assembly)
    assert mma and all(m.endswith(".f32.e4m3.e4m3") for m in mma), mma
    # the row scales reach the accumulator after the mainloop, not per k step
    assert "acc = acc * a_scale" in compiled.source


def test_mx_scaled_gemm_runs_on_block_scaled_tcgen05_on_sm100a() -> None:
    (compiled,) = compile_kernels([_first_gemm("mxfp8")], "cuda:sm_100a")
    assert compiled.resources.clean, compiled.resources.diagnostics
    assert "tl.dot_scaled(" in compiled.source
    assert _mma(compiled.assembly) == {
        "tcgen05.mma.cta_group::1.kind::mxf8f6f4.block_scale.block32"
    }
