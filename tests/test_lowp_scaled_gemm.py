"""One scaled GEMM kernel (quantize-operands on a plain x @ Wᵀ kernel) against torchao's
quantizers: both branches of the generated mainloop, the interpreter's (dequantized
tiles, float32 dot) and the GPUs' (fp8 codes to tl.dot with the scales applied to the
accumulator afterwards; tl.dot_scaled for MX), the latter run here by forcing its
constexpr under the interpreter, whose fp8 dots of on-grid values are exact."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from codegen_support import load, parse_kernel

from coda.codegen import generate_kernel_source
from coda.dialects import kernel, lowp
from coda.passes.quantize_operands import quantize_operands_in

logging.getLogger("torchao").setLevel(logging.ERROR)
from torchao.float8.config import ScalingGranularity  # noqa: E402
from torchao.float8.float8_utils import tensor_to_scale, to_fp8_saturated  # noqa: E402
from torchao.prototype.mx_formats.config import ScaleCalculationMode  # noqa: E402
from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx  # noqa: E402

E4M3 = torch.float8_e4m3fn
M, N, K = 32, 48, 64  # N: one full and one partial 32-column tile

A, B, BT, Y = (f"tensor<{r}x{c}xf32>" for r, c in ((M, K), (N, K), (K, N), (M, N)))
KERNEL = f"""
%y = kernel.gemm "scaled" (%x, %w) : ({A}, {B}) -> ({Y}) {{
^bb0(%a: {A}, %b: {B}):
  %bt = graph.view "permute" %b perm array<i64: 1, 0> : {B} -> {BT}
  %0 = epilogue.gemm %a, %bt : ({A}, {BT}) -> ({Y}) {{
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }}
  kernel.yield %0 : {Y}
}}
"""


def round_trip(x: torch.Tensor, recipe: str) -> torch.Tensor:
    """torchao's quantize-dequantize along the last dim."""
    if recipe == "mxfp8":
        scale, data = to_mx(x, E4M3, 32, ScaleCalculationMode.FLOOR)
        return to_dtype(data, scale, E4M3, 32, torch.float32)
    granularity = ScalingGranularity.AXISWISE if recipe == "fp8-rowwise" else None
    scale = (
        tensor_to_scale(x, E4M3, scaling_granularity=granularity, axiswise_dim=-1)
        if granularity
        else tensor_to_scale(x, E4M3)
    )
    return to_fp8_saturated(x * scale, E4M3).float() / scale


@pytest.mark.parametrize("recipe", ["fp8-rowwise", "fp8-tensorwise", "mxfp8"])
def test_scaled_gemm_kernel_matches_torchao(recipe: str, tmp_path: Path) -> None:
    op = parse_kernel({"x": A, "w": B}, KERNEL)
    assert isinstance(op, kernel.GemmKernelOp)
    assert quantize_operands_in(op, recipe) == 2
    op.verify()
    assert sum(isinstance(o, lowp.QuantizeOp) for o in op.body.block.ops) == 2
    source = generate_kernel_source(op)
    assert "NATIVE_LOWP" in source
    torch.manual_seed(0)
    # rows of very different magnitudes: per-row scales matter
    x = torch.randn(M, K) * torch.logspace(-3, 3, M)[:, None]
    w = torch.randn(N, K)
    expected = round_trip(x, recipe) @ round_trip(w, recipe).T
    for native in (False, True):
        text = source
        if native:
            text, count = re.subn(r"NATIVE_LOWP=[^\n]*,", "NATIVE_LOWP=True,", source)
            assert count == 1
        out = torch.empty(M, N)
        load(text, tmp_path / str(native)).launch(x, w, out)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max())
