"""Weight-only inference policies (w4a16, w3a16, nvfp4) end to end, and the mainloop
dequantize they compile to.

The reference is the same model with each Linear weight replaced by its quantized-then-
dequantized value (coda.runtime.quantize, itself checked against independent oracles in
test_lowp_quantize): a compiled model must match it to float32 rounding, while it must
differ from the full-precision model by the quantization error.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from xdsl.parser import Parser

from coda.codegen import generate_kernel_source
from coda.compiler import precision_policy as P
from coda.compiler.models import LlamaBlock
from coda.dialects import make_context
from coda.dialects.kernel import GemmKernelOp
from coda.passes import PASSES
from coda.runtime import quantize as Q
from coda.runtime import triton_interpret
from tests.codegen_support import load


def dequantized_copy(model: torch.nn.Module, policy: str) -> torch.nn.Module:
    ref = type(model)()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        for mod in ref.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(P.dequantized_weight(mod.weight, policy))
    return ref


#: packed bytes per weight element (codes + scales) of each policy: int4 + an f32 per 32,
#: int3 + an f32 per 32, e2m1 + an E4M3 byte per 16 (+ 4 bytes per tensor)
BYTES_PER_ELEMENT = {"w4a16": 4 / 8 + 4 / 32, "w3a16": 3 / 8 + 4 / 32, "nvfp4": 4 / 8 + 1 / 16}


@pytest.mark.parametrize("policy", ["w4a16", "w3a16", "nvfp4"])
def test_llama_block_matches_dequantized_reference(policy: str) -> None:
    torch._dynamo.reset()  # a fresh compile per policy (no recompile with dynamic shapes)
    torch.manual_seed(0)
    model = LlamaBlock()
    ref = dequantized_copy(model, policy)
    x = torch.randn(2, 16, 64)
    before = len(P.PACKED_WEIGHTS)
    with torch.no_grad():
        compiled = torch.compile(
            model, backend="coda", options={"strict": True, "precision": policy}
        )
        y = compiled(x)
        want, full = ref(x), model(x)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    # the policy really quantized: the full-precision model is farther away
    assert (y - full).abs().max() > 100 * (y - want).abs().max()
    # every projection packed once, at its bit width
    (report,) = P.PACKED_WEIGHTS[before:]
    assert len(report.weights) == 7  # q, k, v, o, gate, up, down
    elements = sum(p.numel() for p in model.parameters() if p.dim() == 2)
    extra = 4 * len(report.weights) if policy == "nvfp4" else 0  # tensor scales
    assert report.packed_bytes == elements * BYTES_PER_ELEMENT[policy] + extra
    assert report.original_bytes == elements * 4
    assert report.packed_bytes < report.original_bytes / 5


def test_exclude_keeps_a_layer_in_full_precision() -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = LlamaBlock()
    x = torch.randn(1, 8, 64)
    before = len(P.PACKED_WEIGHTS)
    options = {"strict": True, "precision": {"policy": "w4a16", "exclude": ["down"]}}
    with torch.no_grad():
        y = torch.compile(model, backend="coda", options=options)(x)
    (report,) = P.PACKED_WEIGHTS[before:]
    assert len(report.weights) == 6
    assert not any("down" in w.name for w in report.weights)
    ref = dequantized_copy(model, "w4a16")
    with torch.no_grad():
        ref.down.weight.copy_(model.down.weight)
        torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)


def test_unknown_policy_is_an_error() -> None:
    with pytest.raises(
        ValueError, match="precision policy must be one of none, w4a16, w3a16, nvfp4"
    ):
        P.PrecisionPolicy.from_user("w5a7")


LINEAR = """
func.func @linear(%x: tensor<24x64xf32>, %w: tensor<40x64xf32> {lowp.weight}, %b: tensor<40xf32>)
    -> tensor<24x40xf32> {
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<40x64xf32> -> tensor<64x40xf32>
  %0 = graph.matmul %x, %wt : (tensor<24x64xf32>, tensor<64x40xf32>) -> tensor<24x40xf32>
  %1 = graph.pointwise "add"(%0, %b) : (tensor<24x40xf32>, tensor<40xf32>) -> tensor<24x40xf32>
  func.return %1 : tensor<24x40xf32>
}
"""


@pytest.mark.parametrize("policy", ["w4a16", "w3a16", "nvfp4"])
def test_mainloop_dequantize_kernel(policy: str, tmp_path: Path) -> None:
    """One GEMM kernel, shapes that are not multiples of the tile (24x40): the packed
    codes are read at their bit width, masked at the edges, dequantized per tile."""
    module = Parser(make_context(), LINEAR).parse_module()
    ctx = make_context()
    for name in ("fuse-epilogues", "split-blocks"):
        PASSES[name]()().apply(ctx, module)
    PASSES["precision"]()(policy=policy).apply(ctx, module)
    module.verify()
    (kernel,) = [op for op in module.walk() if isinstance(op, GemmKernelOp)]
    source = generate_kernel_source(kernel)
    assert "_lowp_unpack(" in source
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(24, 64, generator=g), torch.randn(40, 64, generator=g), torch.randn(40)
    func = next(iter(module.ops))
    parts = P.pack_arguments(func, {1: w}, {1: "w"}, policy)
    out = torch.empty(24, 40)
    with triton_interpret(True):
        load(source, tmp_path).launch(x, b, *parts, out)
    want = x @ P.dequantized_weight(w, policy).T + b
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_packed_codes_are_stored_at_their_width() -> None:
    w = torch.randn(8, 64)
    scaled_types = {
        attrs.data["lowp.part"].data: attrs.data["lowp.format"]
        for attrs in _precision_func("w3a16").arg_attrs.data
        if "lowp.part" in attrs.data
    }
    codes, scale = P.pack_weight(w, scaled_types["codes"])
    assert codes.dtype == torch.uint8 and codes.shape == (8, 24)  # 64 * 3 / 8 bytes
    q = Q.quantize_int(w, Q.IntFormat(3, True), 32)
    assert torch.equal(Q.unpack_bits(codes, 3, 64), q.codes)
    assert torch.equal(scale, q.scale)


def _precision_func(policy: str):  # noqa: ANN202 - a FuncOp
    module = Parser(
        make_context(), LINEAR.replace("40x64", "8x64").replace("40", "8")
    ).parse_module()
    ctx = make_context()
    for name in ("fuse-epilogues", "split-blocks"):
        PASSES[name]()().apply(ctx, module)
    PASSES["precision"]()(policy=policy).apply(ctx, module)
    return next(iter(module.ops))


def test_bf16_block_is_as_accurate_as_eager_bf16() -> None:
    """A bf16 model: each dequantized tile is rounded to bf16 (to nearest even, on
    every backend) as the bf16 reference's weights are; against the float32 run of the
    same dequantized weights, coda is as accurate as eager bf16."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = LlamaBlock().to(torch.bfloat16)
    ref = dequantized_copy(model.float(), "w4a16").to(torch.bfloat16)
    model = model.to(torch.bfloat16)
    exact = copy.deepcopy(ref).float()  # the bf16-rounded dequantized weights, in f32
    x = torch.randn(2, 16, 64, dtype=torch.bfloat16)
    options = {"strict": True, "precision": "w4a16"}
    with torch.no_grad():
        y = torch.compile(model, backend="coda", options=options)(x).float()
        eager, want = ref(x).float(), exact(x.float())
    assert (y - want).abs().max() <= 2 * (eager - want).abs().max()
