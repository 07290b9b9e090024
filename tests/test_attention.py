"""Attention kernels against `torch.nn.functional.scaled_dot_product_attention`.

The sweep builds `graph.attention` / `graph.attention_backward` directly (no Dynamo per
example: the interpreter is the cost), lowers them through the pipeline and runs the
generated kernels. The reference is SDPA in float64 (forward, and autograd for dq, dk,
dv). Tolerances: float32 inputs 2e-5 absolute + relative (the kernels compute in
float32; online softmax reorders the sums); bfloat16 inputs 2e-2 (one bf16 rounding of
each stored value, about 2^-8 relative, on outputs of order one).
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from xdsl.dialects.builtin import Float32Type, ModuleOp, TensorType
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Block, Region

from coda.compiler.pipeline import lower
from coda.compiler.program import build_program
from coda.dialects import graph
from coda.dialects.dtypes import element_type_of
from coda.runtime import record_launches

TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


def _type(shape: tuple[int, ...], dtype: torch.dtype) -> TensorType:
    return TensorType(element_type_of(dtype), list(shape))


def _run(args: list[torch.Tensor], build: object, name: str) -> list[torch.Tensor]:
    """Lower a one-op function (`build(block) -> results`) and run its kernels."""
    block = Block(arg_types=[_type(tuple(a.shape), a.dtype) for a in args])
    results = build(block)  # type: ignore[operator]
    block.add_op(ReturnOp(*results))
    func = FuncOp(name, ([a.type for a in block.args], [r.type for r in results]), Region(block))
    module = ModuleOp([func])
    lower(module, "kernel")
    kernels = [op.name for op in func.body.block.ops if op.name.startswith("kernel.")]
    assert kernels == ["kernel.attention"], kernels
    program = build_program(func, list(range(len(results))), name, torch.device("cpu"))
    return program(list(args))


def _attention(q, k, v, mask, scale, causal):  # type: ignore[no-untyped-def]
    def build(block: Block) -> list:
        b, h, s, _ = q.shape
        mask_value = block.args[3] if mask is not None else None
        op = graph.AttentionOp(
            *block.args[:3],
            mask_value,
            scale,
            causal,
            _type(tuple(q.shape[:3]) + (v.shape[3],), q.dtype),
            TensorType(Float32Type(), [b, h, s]),
        )
        block.add_op(op)
        return list(op.results)

    args = [q, k, v] + ([mask] if mask is not None else [])
    return _run(args, build, "forward")


def _attention_backward(dout, q, k, v, out, lse, mask, scale, causal):  # type: ignore[no-untyped-def]
    def build(block: Block) -> list:
        mask_value = block.args[6] if mask is not None else None
        op = graph.AttentionBackwardOp(*block.args[:6], mask_value, scale, causal)
        block.add_op(op)
        return list(op.results)

    args = [dout, q, k, v, out, lse] + ([mask] if mask is not None else [])
    return _run(args, build, "backward")


def _reference(q, k, v, mask, scale, causal, dout):  # type: ignore[no-untyped-def]
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    group = q.shape[1] // k.shape[1]
    kr, vr = k64.repeat_interleave(group, 1), v64.repeat_interleave(group, 1)
    scores = q64 @ kr.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores + mask.double()
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(scores, -1)
    out = torch.softmax(scores, -1) @ vr
    out.backward(dout.double())
    return out.detach(), lse.detach(), q64.grad, k64.grad, v64.grad


@st.composite
def _cases(draw: st.DrawFn) -> dict:
    causal = draw(st.booleans())
    s = draw(st.integers(1, 40))
    return dict(
        batch=draw(st.integers(1, 2)),
        kv_heads=draw(st.integers(1, 2)),
        group=draw(st.sampled_from([1, 2, 3])),
        s=s,
        # causal attention is top-left aligned: any key length is valid
        skv=draw(st.integers(1, 40)),
        head_dim=draw(st.sampled_from([8, 32, 64, 128])),
        causal=causal,
        mask=draw(st.sampled_from([None, "broadcast", "full"])),
        scale=draw(st.sampled_from([None, 0.3])),
        dtype=draw(st.sampled_from([torch.float32, torch.float32, torch.bfloat16])),
    )


@settings(max_examples=20, deadline=None)
@given(case=_cases())
def test_forward_and_backward_match_sdpa(case: dict) -> None:
    torch.manual_seed(0)
    dtype = case["dtype"]
    b, hkv, g, s, skv, d = (case[k] for k in ("batch", "kv_heads", "group", "s", "skv", "head_dim"))
    q = torch.randn(b, hkv * g, s, d).to(dtype)
    k, v = (torch.randn(b, hkv, skv, d).to(dtype) for _ in range(2))
    mask = None
    if case["mask"] == "broadcast":
        mask = torch.randn(s, skv).to(dtype).expand(b, hkv * g, s, skv)
    elif case["mask"] == "full":
        mask = torch.randn(b, hkv * g, s, skv).to(dtype)
    scale = case["scale"] or 1 / math.sqrt(d)
    dout = torch.randn(b, hkv * g, s, d).to(dtype)
    out_ref, lse_ref, dq_ref, dk_ref, dv_ref = _reference(
        q, k, v, mask, scale, case["causal"], dout
    )
    tol = TOLERANCE[dtype]
    out, lse = _attention(q, k, v, mask, scale, case["causal"])
    torch.testing.assert_close(out.double(), out_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(lse.double(), lse_ref, atol=tol, rtol=tol)
    # the backward reads the forward's saved out and lse, as AOTAutograd wires them
    dq, dk, dv = _attention_backward(dout, q, k, v, out, lse, mask, scale, case["causal"])
    for got, want in ((dq, dq_ref), (dk, dk_ref), (dv, dv_ref)):
        # gradients sum over S rows: scale the tolerance with the row count
        torch.testing.assert_close(got.double(), want, atol=tol * 4, rtol=tol * 4)


def compiled_matches_eager(
    module: nn.Module, tensors: list[torch.Tensor], *constants: torch.Tensor, **options: object
) -> list:
    """Run `module(*tensors, *constants)` with the loss sum(out^2) eagerly and compiled by
    coda (`options` passed on); the output must match to 2e-5 and the gradients of
    `tensors` to 1e-4. Returns the compiled step's launch records."""
    torch._dynamo.reset()
    expected = module(*tensors, *constants)
    expected.square().sum().backward()
    grads = [t.grad.clone() for t in tensors]
    inputs = [t.detach().clone().requires_grad_() for t in tensors]
    compiled = torch.compile(module, backend="coda", options=options or None)
    with record_launches() as launches:
        got = compiled(*inputs, *constants)
        got.square().sum().backward()
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=2e-5)
    for t, g in zip(inputs, grads, strict=True):
        torch.testing.assert_close(t.grad, g, atol=1e-4, rtol=1e-4)
    return launches


class _GQA(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def test_sdpa_compiles_to_one_kernel_each_way_and_matches_eager() -> None:
    """F.scaled_dot_product_attention through torch.compile: one attention launch forward
    and one backward, nothing else (no copies of q, k, v or the repeated k/v heads)."""
    torch.manual_seed(0)
    q = torch.randn(1, 4, 19, 32, requires_grad=True)
    k, v = (torch.randn(1, 2, 19, 32, requires_grad=True) for _ in range(2))
    launches = compiled_matches_eager(_GQA(), [q, k, v])
    attention = [(r.graph, r.kind) for r in launches if r.kind == "attention"]
    assert attention == [("forward", "attention"), ("backward", "attention")]
    assert not [r for r in launches if r.kind in ("copy", "fallback")]


class _Masked(nn.Module):
    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)


def test_broadcast_additive_mask_is_read_in_place() -> None:
    """A [S, Skv] float mask (no gradient: torch's flash path takes it) reaches the kernels
    as a broadcast view: no expanded copy of it, one launch each way."""
    torch.manual_seed(0)
    q = torch.randn(2, 2, 9, 16, requires_grad=True)
    k, v = (torch.randn(2, 2, 13, 16, requires_grad=True) for _ in range(2))
    launches = compiled_matches_eager(_Masked(), [q, k, v], torch.randn(9, 13))
    assert [r.kind for r in launches] == ["attention", "attention"]
    forward = launches[0]
    # the mask is read once, [9, 13] floats, not the [2, 2, 9, 13] it broadcasts to
    assert any(a.nbytes == 9 * 13 * 4 for a in forward.reads), forward.reads


class _Float64(nn.Module):
    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, q, q, is_causal=True)


def test_unsupported_attention_falls_back_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch._dynamo.reset()
    q = torch.randn(1, 2, 5, 16, dtype=torch.float64)
    compiled = torch.compile(_Float64(), backend="coda")
    with caplog.at_level(logging.WARNING, logger="coda"), record_launches() as launches:
        got = compiled(q)
    torch.testing.assert_close(got, _Float64()(q))
    assert [r.kind for r in launches] == ["fallback"]
    assert (
        "coda: aten._scaled_dot_product_flash_attention_for_cpu.default falls back to torch: "
        "attention on ['torch.float64'] runs in torch" in caplog.text
    )


def test_gpu_sources_reduce_with_module_local_combine_functions() -> None:
    """The interpreter's source reduces with triton.language's combine functions (its
    numpy fast path); a GPU target's with module-local ones, which a GPU compile accepts
    even in a process that imported triton with TRITON_INTERPRET=1 (the benchmark jobs)."""
    from coda.codegen import generate_kernel_source
    from coda.codegen.targets import parse_target
    from coda.dialects import kernel

    q = torch.randn(1, 2, 8, 16)
    block = Block(arg_types=[_type(tuple(q.shape), q.dtype)] * 3)
    op = graph.AttentionOp(
        *block.args, None, 0.25, True, block.args[0].type, TensorType(Float32Type(), [1, 2, 8])
    )
    block.add_op(op)
    block.add_op(ReturnOp(*op.results))
    func = FuncOp("f", ([a.type for a in block.args], [r.type for r in op.results]), Region(block))
    lower(ModuleOp([func]), "kernel")
    (attention,) = [o for o in func.body.block.ops if isinstance(o, kernel.AttentionKernelOp)]
    interpreted = generate_kernel_source(attention)
    compiled = generate_kernel_source(attention, parse_target("cuda:sm_90a"))
    assert "tl.reduce(s, 1, tl.standard._elementwise_max)" in interpreted
    assert "tl.reduce(s, 1, _max)" in compiled and "tl.standard" not in compiled
    assert "def _max(a, b):" in compiled
