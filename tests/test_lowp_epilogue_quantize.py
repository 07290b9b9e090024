"""Quantize in the producing GEMM's epilogue (`lowp.store_quantized`): the codes and
scales a kernel stores are the torch quantizer's bits for the f32 tile it computed, for
MX (floor and rceil, e4m3, e5m2 and packed e2m1) and 1x32 float32-scaled FP8 blocks; edge tiles
(N not a multiple of BLOCK_N) keep their padding out of the block amax."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coda.codegen import generate_kernel_source
from coda.runtime import quantize as Q
from coda.runtime import triton_interpret
from tests.codegen_support import load, parse_kernel

TILE = "!epilogue.tile<f32>"


def kernel_ir(fmt: str, scale: str, n: int, code_bytes: int) -> str:
    x, w, y = "tensor<48x64xf32>", f"tensor<64x{n}xf32>", f"tensor<48x{n}xf32>"
    codes, scales = f"tensor<48x{code_bytes}xui8>", f"tensor<48x{n // 32}x{scale}>"
    out = f"{y}, {codes}, {scales}"
    return f"""
%y, %c, %s = kernel.gemm "quantized_out" (%x, %w) : ({x}, {w}) -> ({out}) {{
^bb0(%xa: {x}, %wa: {w}):
  %o, %oc, %os = epilogue.gemm %xa, %wa : ({x}, {w}) -> ({out}) {{
  ^tile(%acc: {TILE}):
    %0 = epilogue.map "silu"(%acc) : ({TILE}) -> {TILE}
    epilogue.store %0 : {TILE} -> result 0
    lowp.store_quantized %0 : {TILE} -> results(1, 2) as {fmt}
  }}
  kernel.yield %o, %oc, %os : {out}
}}"""


CASES = {
    "mx-e4m3-floor": ("f8E4M3FN", "mx<32, floor>", "f8E8M0FNU", "ui8"),
    "mx-e4m3-rceil": ("f8E4M3FN", "mx<32, rceil>", "f8E8M0FNU", "ui8"),
    "mx-e5m2-floor": ("f8E5M2", "mx<32, floor>", "f8E8M0FNU", "ui8"),
    "block-1x32-e4m3": ("f8E4M3FN", "block<1x32>", "f32", "f32"),
    "mx-e2m1-floor": ("f4E2M1FN", "mx<32, floor>", "f8E8M0FNU", "ui8"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("n", [96, 160])
def test_epilogue_quantize_matches_torch(case: str, n: int, tmp_path: Path) -> None:
    elem, gran, scale_type, scale_storage = CASES[case]
    fmt = f"!lowp.scaled<tensor<48x{n}x{elem}>, {gran}, {scale_type}>"
    kernel = parse_kernel(
        {"x": "tensor<48x64xf32>", "w": f"tensor<64x{n}xf32>"},
        kernel_ir(fmt, scale_storage, n, n // 2 if elem == "f4E2M1FN" else n),
    )
    source = generate_kernel_source(kernel)
    g = torch.Generator().manual_seed(n)
    x = torch.randn(48, 64, generator=g) * torch.exp2(torch.randint(-6, 6, (48, 1), generator=g))
    w = torch.randn(64, n, generator=g)
    y = torch.empty(48, n)
    fp4 = elem == "f4E2M1FN"
    codes = torch.empty(48, n // 2 if fp4 else n, dtype=torch.uint8)
    dtype = torch.uint8 if scale_storage == "ui8" else torch.float32
    scales = torch.empty(48, n // 32, dtype=dtype)
    with triton_interpret(True):
        load(source, tmp_path).launch(x, w, y, codes, scales)
    element = {"f8E4M3FN": Q.E4M3FN, "f8E5M2": Q.E5M2, "f4E2M1FN": Q.E2M1}[elem]
    if gran.startswith("mx"):
        want = Q.quantize_mx(y, element, "rceil" if "rceil" in gran else "floor")
    else:
        want = Q.quantize_fp8(y, element, (1, 32))
    # fp4: two codes a byte, as coda.runtime.quantize.pack_bits packs them
    assert torch.equal(codes, Q.pack_bits(want.codes, 4) if fp4 else want.codes)
    assert torch.equal(scales, want.scale)
