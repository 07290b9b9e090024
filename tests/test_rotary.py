"""Rotary position embeddings: the `coda::rotary` op, the joint-graph rewrite that
produces it, and the attention kernels that apply it on chip.

The kernels' reference is autograd through `apply_rotary` and attention in float64:
forward out and lse, and the gradients of q and k *before* the rotation. Tolerances as
tests/test_attention.py: float32 2e-5 (8e-5 on gradients), bfloat16 2e-2 (8e-2).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_attention import _run, _type, compiled_matches_eager
from torch import nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
from xdsl.dialects.builtin import Float32Type, TensorType
from xdsl.ir import Block

from coda.compiler.capture import capture
from coda.compiler.models import LlamaBlock, ModelSpec
from coda.compiler.rotary import apply_rotary
from coda.dialects import graph
from coda.runtime import record_launches

TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


def _tables(batch: int, seq: int, dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Llama's tables, [B, 1, S, D]: each frequency twice (cat([freqs, freqs]))."""
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]
    angles = torch.cat([angles, angles], -1)
    # a different offset per batch row: the kernels must read each row's own table
    angles = angles[None] + torch.arange(batch, dtype=torch.float64)[:, None, None]
    return tuple(t[:, None].to(dtype) for t in (angles.cos(), angles.sin()))


def test_rotary_is_hugging_face_rope_and_its_transpose_is_the_backward() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 9, 16, dtype=torch.float64), torch.randn(2, 2, 9, 16).double()
    cos, sin = _tables(2, 9, 16, torch.float64)
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos[:, 0], sin[:, 0])
    torch.testing.assert_close(apply_rotary(q, cos, sin), q_hf, rtol=0, atol=1e-15)
    torch.testing.assert_close(torch.ops.coda.rotary(k, cos, sin, False), k_hf, rtol=0, atol=1e-15)
    # R^T is the adjoint of R: <R x, g> = <x, R^T g>, for any tables (not only Llama's)
    x, g = torch.randn(3, 5, 8).double(), torch.randn(3, 5, 8).double()
    c, s = torch.randn(5, 8).double(), torch.randn(5, 8).double()
    lhs = (apply_rotary(x, c, s) * g).sum()
    rhs = (x * apply_rotary(g, c, s, transpose=True)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-13, atol=1e-13)
    # and it is what autograd computes for R
    x.requires_grad_()
    apply_rotary(x, c, s).backward(g)
    torch.testing.assert_close(x.grad, apply_rotary(g, c, s, transpose=True), rtol=0, atol=1e-14)


def _saved_and_rotaries(model: nn.Module, shape: tuple[int, ...]) -> tuple[list, dict]:
    captured = capture(ModelSpec(lambda: model, (shape,)))
    graphs = dict(captured.graphs)
    (output,) = [n for n in graphs["forward"].graph.nodes if n.op == "output"]
    saved = [a for a in output.args[0][1:] if isinstance(a, torch.fx.Node)]
    rotaries = {
        kind: [n for n in gm.graph.nodes if n.target == torch.ops.coda.rotary.default]
        for kind, gm in graphs.items()
    }
    return saved, rotaries


def test_joint_graph_rewrite_saves_q_and_k_before_the_rotation() -> None:
    """The Llama block's q and k rotations become coda::rotary in both graphs (R forward,
    R^T backward; the backward also recomputes R), and the forward saves no rotated
    tensor: the partition keeps q and k from before the rotation."""
    saved, rotaries = _saved_and_rotaries(LlamaBlock(64, 4, 2, 192), (2, 16, 64))
    assert [n.args[3] for n in rotaries["forward"]] == [False, False]
    assert sorted(n.args[3] for n in rotaries["backward"]) == [False, False, True, True]
    assert not [n for n in saved if n.target == torch.ops.coda.rotary.default], saved


def test_rotation_the_kernels_cannot_take_is_saved_not_recomputed() -> None:
    """Heads of 8 are narrower than the attention kernels rotate on chip: the rotation
    stays a loop kernel, and recomputing it would be a second one in the backward, so
    the forward saves the rotated q and k as before."""
    saved, rotaries = _saved_and_rotaries(LlamaBlock(32, 4, 2, 96), (2, 16, 32))
    assert len([n for n in saved if n.target == torch.ops.coda.rotary.default]) == 2, saved
    assert [n.args[3] for n in rotaries["backward"]] == [True, True]


def _attention(q, k, v, cos, sin, scale, causal):  # type: ignore[no-untyped-def]
    def build(block: Block) -> list:
        b, h, s, _ = q.shape
        op = graph.AttentionOp(
            *block.args[:3],
            None,
            scale,
            causal,
            _type(tuple(q.shape), q.dtype),
            TensorType(Float32Type(), [b, h, s]),
            rotary=(block.args[3], block.args[4]),
        )
        block.add_op(op)
        return list(op.results)

    return _run([q, k, v, cos, sin], build, "forward")


def _attention_backward(dout, q, k, v, out, lse, cos, sin, scale, causal):  # type: ignore[no-untyped-def]
    def build(block: Block) -> list:
        rotary = (block.args[6], block.args[7])
        op = graph.AttentionBackwardOp(*block.args[:6], None, scale, causal, rotary=rotary)
        block.add_op(op)
        return list(op.results)

    return _run([dout, q, k, v, out, lse, cos, sin], build, "backward")


def _reference(q, k, v, cos, sin, scale, causal, dout):  # type: ignore[no-untyped-def]
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    c, s = cos.double(), sin.double()
    group = q.shape[1] // k.shape[1]
    qr, kr = apply_rotary(q64, c, s), apply_rotary(k64, c, s)
    out = F.scaled_dot_product_attention(
        qr,
        kr.repeat_interleave(group, 1),
        v64.repeat_interleave(group, 1),
        is_causal=causal,
        scale=scale,
    )
    scores = qr @ kr.repeat_interleave(group, 1).transpose(-1, -2) * scale
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    out.backward(dout.double())
    return out.detach(), torch.logsumexp(scores, -1).detach(), q64.grad, k64.grad, v64.grad


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "seq", "head_dim", "causal", "dtype"),
    [
        (2, 4, 2, 40, 16, True, torch.float32),  # GQA, seq not a multiple of the tile
        (1, 2, 2, 7, 32, False, torch.float32),
        (1, 2, 1, 33, 64, True, torch.bfloat16),
    ],
)
def test_rotary_attention_kernels_match_float64(
    batch: int,
    heads: int,
    kv_heads: int,
    seq: int,
    head_dim: int,
    causal: bool,
    dtype: torch.dtype,
) -> None:
    torch.manual_seed(0)
    q = torch.randn(batch, heads, seq, head_dim).to(dtype)
    k, v = (torch.randn(batch, kv_heads, seq, head_dim).to(dtype) for _ in range(2))
    cos, sin = _tables(batch, seq, head_dim, dtype)
    dout = torch.randn(batch, heads, seq, head_dim).to(dtype)
    scale = 1 / math.sqrt(head_dim)
    out_ref, lse_ref, dq_ref, dk_ref, dv_ref = _reference(q, k, v, cos, sin, scale, causal, dout)
    tol = TOLERANCE[dtype]
    out, lse = _attention(q, k, v, cos, sin, scale, causal)
    torch.testing.assert_close(out.double(), out_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(lse.double(), lse_ref, atol=tol, rtol=tol)
    dq, dk, dv = _attention_backward(dout, q, k, v, out, lse, cos, sin, scale, causal)
    for got, want in ((dq, dq_ref), (dk, dk_ref), (dv, dv_ref)):
        torch.testing.assert_close(got.double(), want, atol=tol * 4, rtol=tol * 4)


def test_llama_block_rotates_q_and_k_inside_attention() -> None:
    """Through torch.compile: no loop kernel touches q or k between the projections and
    attention, either way; the block matches eager (tests/test_blocks_e2e.py checks
    every gradient)."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = LlamaBlock(64, 4, 2, 192)
    x = torch.randn(2, 16, 64)
    expected = model(x)
    compiled = torch.compile(model, backend="coda")
    with record_launches() as launches:
        got = compiled(x.clone().requires_grad_())
        got.square().sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    loops = [r.kernel for r in launches if r.kind == "loop"]
    assert not [name for name in loops if "concat" in name], loops
    kinds = [(r.graph, r.kind) for r in launches if r.kind == "attention"]
    assert kinds == [("forward", "attention"), ("backward", "attention")]


class _SlicedRope(nn.Module):
    """Hugging Face's form: rotate_half slices x (its backward is two slice_backwards),
    the tables are [1, 1, S, D], and k passes through an empty KV-cache concat."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        seq, dim = q.shape[2], q.shape[3]
        cos, sin = _tables(1, seq, dim, q.dtype)  # [1, 1, S, D]

        def rotate_half(x: torch.Tensor) -> torch.Tensor:
            return torch.cat((-x[..., dim // 2 :], x[..., : dim // 2]), dim=-1)

        q = q * cos + rotate_half(q) * sin
        k = torch.cat(
            [k.new_zeros(k.shape[0], k.shape[1], 0, dim), k * cos + rotate_half(k) * sin], -2
        )
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def test_sliced_rotate_half_fuses_into_attention_and_matches_eager() -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 4, 12, 16, requires_grad=True)
    k, v = (torch.randn(2, 2, 12, 16, requires_grad=True) for _ in range(2))
    launches = compiled_matches_eager(_SlicedRope(), [q, k, v], strict=True)
    # one attention kernel each way, nothing falls back, and no loop kernel rotates
    # q or k (the only ones left compute the tables)
    kernels = [(r.graph, r.kind, r.kernel) for r in launches if r.kind != "gemm"]
    attention = [(graph, kind) for graph, kind, _ in kernels if kind == "attention"]
    assert attention == [("forward", "attention"), ("backward", "attention")], kernels
    assert not [k for k in kernels if "concat" in k[2] or k[1] == "fallback"], kernels
