"""MX activations between two GEMMs, fused end to end: the first GEMM's epilogue
quantizes its output tile (lowp.store_quantized: codes + E8M0 scales, no f32 copy
written), the second GEMM dequantizes each tile in its mainloop (fuse-dequantize).
The default pipeline does both; the program runs under the interpreter and matches
the torch quantizer's MX round trip."""

from __future__ import annotations

import pytest
import torch
from xdsl.parser import Parser

from coda.compiler.pipeline import lower
from coda.compiler.program import build_program
from coda.dialects import lowp, make_context
from coda.dialects.kernel import GemmKernelOp
from coda.runtime import quantize as Q

MLP = """
func.func @mlp(%x: tensor<32x64xf32>, %w1: tensor<64x128xf32>, %w2: tensor<128x48xf32>)
    -> tensor<32x48xf32> {{
  %h = graph.matmul %x, %w1 : (tensor<32x64xf32>, tensor<64x128xf32>) -> tensor<32x128xf32>
  %a = graph.pointwise "relu"(%h) : (tensor<32x128xf32>) -> tensor<32x128xf32>
  %q = lowp.quantize %a : tensor<32x128xf32> -> {fmt}
  %d = lowp.dequantize %q : {fmt} -> tensor<32x128xf32>
  %y = graph.matmul %d, %w2 : (tensor<32x128xf32>, tensor<128x48xf32>) -> tensor<32x48xf32>
  func.return %y : tensor<32x48xf32>
}}
"""


@pytest.mark.parametrize(
    ("elem", "rule"), [("f8E4M3FN", "floor"), ("f8E5M2", "rceil"), ("f4E2M1FN", "floor")]
)
def test_mx_between_gemms(elem: str, rule: str) -> None:
    fmt = f"!lowp.scaled<tensor<32x128x{elem}>, mx<32, {rule}>, f8E8M0FNU>"
    module = Parser(make_context(), MLP.format(fmt=fmt)).parse_module()
    lower(module, "kernel")
    kernels = [op for op in module.walk() if isinstance(op, GemmKernelOp)]
    assert len(kernels) == 2
    # the producer stores only codes and scales; the consumer reads them, not f32
    producer, consumer = kernels
    code_bytes = 64 if elem == "f4E2M1FN" else 128  # fp4: two codes a byte
    assert [str(t) for t in producer.result_types] == [
        f"tensor<32x{code_bytes}xui8>",
        "tensor<32x4xui8>",
    ]
    assert any(isinstance(op, lowp.StoreQuantizedOp) for op in producer.walk())
    assert any(isinstance(op, lowp.DequantizeOp) for op in consumer.walk())
    func = next(iter(module.ops))
    program = build_program(func, [0], "inference", torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    # small integers and eighths: the first GEMM is exact in any summation order, so
    # its tile has exactly torch's values and the codes must be the same bits
    x = torch.randint(-4, 5, (32, 64), generator=g).float()
    w1 = torch.randint(-4, 5, (64, 128), generator=g).float() / 8
    w2 = torch.randn(128, 48, generator=g)
    (y,) = program([x, w1, w2])
    element = {"f8E4M3FN": Q.E4M3FN, "f8E5M2": Q.E5M2, "f4E2M1FN": Q.E2M1}[elem]
    a = torch.relu(x @ w1)
    dequantized = Q.dequantize_mx(Q.quantize_mx(a, element, rule), element)
    # the round trip is lossy, far beyond the float32 summation-order tolerance below
    assert ((a - dequantized) @ w2).abs().max() > 0.1
    torch.testing.assert_close(y, dequantized @ w2, rtol=1e-4, atol=1e-4)
