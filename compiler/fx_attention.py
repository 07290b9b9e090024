"""Lowering rules for scaled dot-product attention: torch's CPU flash-attention ops (what
`F.scaled_dot_product_attention` reaches AOTAutograd as, forward and backward) become
`graph.attention` / `graph.attention_backward`.

The forward's logsumexp is one of its results, so AOTAutograd's partition saves it for
the backward, which recomputes the probabilities from it. What the kernels do not
handle (dropout, a boolean or non-broadcasting mask, float64, very wide heads) declines
and runs through torch with the reason logged.

`coda::rotary` (rotary position embeddings, see `coda.compiler.rotary`) becomes
`graph.rotary`, which fuse-rotary moves into these kernels.

Registered into `fx_import.MULTI_RESULT_LOWERINGS` / `LOWERINGS` when `fx_import` is
imported.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx as fx
from xdsl.dialects.builtin import TensorType
from xdsl.ir import SSAValue

from coda.compiler import rotary  # noqa: F401 (registers torch.ops.coda.rotary)
from coda.compiler.fx_import import (
    LOWERINGS,
    MULTI_RESULT_LOWERINGS,
    Decline,
    Importer,
    _meta,
    tensor_type,
)
from coda.dialects import graph

aten = torch.ops.aten

#: widest head the kernels keep on chip (one [BLOCK, D] tile of q, k, v and the output)
MAX_HEAD_DIM = 256
_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _check_common(node: fx.Node, tensors: list[Any], dropout_p: Any) -> None:
    if dropout_p:
        raise Decline(f"dropout (p={dropout_p}) runs in torch")
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1 or not dtypes <= set(_FLOATS):
        raise Decline(f"attention on {sorted(str(d) for d in dtypes)} runs in torch")
    head_dim = tensors[0].shape[-1]
    if head_dim > MAX_HEAD_DIM:
        raise Decline(f"head dim {head_dim} is above {MAX_HEAD_DIM}")
    if any(t.dim() != 4 for t in tensors):
        raise Decline("attention on tensors that are not [batch, heads, seq, head_dim]")
    if set(node.kwargs) - {"attn_mask", "scale"}:
        raise Decline(f"keyword arguments {sorted(node.kwargs)}")


def _mask(imp: Importer, node: fx.Node, q: Any, k: Any) -> SSAValue | None:
    """The additive mask as a view of the full score shape [B, Hq, S, Skv] (a broadcast
    mask is read in place with stride 0 on its broadcast dims)."""
    mask = node.kwargs.get("attn_mask")
    if mask is None:
        return None
    meta = _meta(mask)
    if meta.dtype == torch.bool:
        raise Decline("a boolean attn_mask runs in torch")
    if meta.dtype != q.dtype:
        raise Decline(f"an attn_mask of {meta.dtype} with {q.dtype} attention runs in torch")
    scores = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    shape = tuple(meta.shape)
    if not all(isinstance(d, int) for d in (*scores, *shape)):
        raise Decline("an attn_mask with symbolic sizes runs in torch")
    if len(shape) > 4 or torch.broadcast_shapes(shape, scores) != scores:
        raise Decline(f"attn_mask of shape {list(shape)} does not broadcast to {list(scores)}")
    value = imp.value(mask)
    elem = value.type.element_type
    padded = (1,) * (4 - len(shape)) + shape
    if padded != shape:
        value = imp.emit(graph.ViewOp("reshape", value, TensorType(elem, list(padded))))
    if padded != scores:
        value = imp.emit(graph.ViewOp("expand", value, TensorType(elem, list(scores))))
    return value


def _scale(node: fx.Node, head_dim: int) -> float:
    scale = node.kwargs.get("scale")
    return 1.0 / math.sqrt(head_dim) if scale is None else float(scale)


def _flash_forward(imp: Importer, node: fx.Node) -> list[SSAValue]:
    """_scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, *,
    attn_mask, scale) -> (out, logsumexp)."""
    q, k, v = node.args[:3]
    dropout_p = node.args[3] if len(node.args) > 3 else 0.0
    causal = bool(node.args[4]) if len(node.args) > 4 else False
    metas = [_meta(x) for x in (q, k, v)]
    _check_common(node, metas, dropout_p)
    out, lse = _meta(node)
    mask = _mask(imp, node, metas[0], metas[1])
    op = graph.AttentionOp(
        imp.value(q),
        imp.value(k),
        imp.value(v),
        mask,
        _scale(node, metas[0].shape[-1]),
        causal,
        tensor_type(out),
        tensor_type(lse),
    )
    imp.block.add_op(op)
    return list(op.results)


def _flash_backward(imp: Importer, node: fx.Node) -> list[SSAValue]:
    """_scaled_dot_product_flash_attention_for_cpu_backward(grad_out, q, k, v, out,
    logsumexp, dropout_p, is_causal, *, attn_mask, scale) -> (dq, dk, dv)."""
    grad_out, q, k, v, out, lse = node.args[:6]
    dropout_p = node.args[6] if len(node.args) > 6 else 0.0
    causal = bool(node.args[7]) if len(node.args) > 7 else False
    metas = [_meta(x) for x in (q, k, v)]
    _check_common(node, [*metas, _meta(grad_out), _meta(out)], dropout_p)
    mask = _mask(imp, node, metas[0], metas[1])
    values = [imp.value(x) for x in (grad_out, q, k, v, out, lse)]
    op = graph.AttentionBackwardOp(*values, mask, _scale(node, metas[0].shape[-1]), causal)
    expected = [tensor_type(t) for t in _meta(node)]
    if [r.type for r in op.results] != expected:
        raise Decline("gradients of another type than q, k and v")
    imp.block.add_op(op)
    return list(op.results)


def _rotary(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    """coda::rotary(x, cos, sin, transpose) -> graph.rotary."""
    x, cos, sin, transpose = node.args
    op = graph.RotaryOp(imp.value(x), imp.value(cos), imp.value(sin), bool(transpose))
    if op.result.type != out:
        raise Decline(f"rotary of {op.result.type} into {out}")
    return imp.emit(op)


LOWERINGS[torch.ops.coda.rotary] = _rotary

MULTI_RESULT_LOWERINGS.update(
    {
        aten._scaled_dot_product_flash_attention_for_cpu: _flash_forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_backward,
    }
)
