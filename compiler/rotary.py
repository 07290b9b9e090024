"""Rotary position embeddings as one op, `coda::rotary`: a rewrite of the joint graph.

Models write RoPE as `x * cos + rotate_half(x) * sin` with
`rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2])` (Hugging Face's Llama, the
built-in LlamaBlock), and autograd's backward of it as
`g * cos + cat(z[..., D/2:], -z[..., :D/2])` with `z = g * sin` (or, where
rotate_half slices x, the concat as two slice_backwards added to g * cos). Both are one linear map
per position, R and its transpose R^T. This rewrite replaces each with

    coda::rotary(x, cos, sin, transpose=False)   # R x
    coda::rotary(g, cos, sin, transpose=True)    # R^T g

and marks the forward ones must-recompute, so the partition saves q and k before the
rotation (which their projection writes anyway) and never q' and k'. The importer
lowers the op to `graph.rotary`; `fuse-rotary` then moves it into the attention
kernels that read q' and k' (forward) and write dq' and dk' (backward), so neither the
rotated tensors nor their gradients are ever stored; what stays outside attention is
expanded back into slices, a concat and pointwise ops.

`tests/test_rotary.py` checks the op against Hugging Face's apply_rotary_pos_emb, the
transpose identity <R x, g> = <x, R^T g> in float64, and the rewrite on real graphs.
"""

from __future__ import annotations

import logging
import operator
from typing import Any

import torch
import torch.fx as fx
from torch.utils.checkpoint import CheckpointPolicy

from coda.compiler.fuse_cross_entropy import is_call
from coda.compiler.saved_values import backward_nodes

log = logging.getLogger("coda.compiler")
aten = torch.ops.aten


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rotate_half_transposed(z: torch.Tensor) -> torch.Tensor:
    """The transpose of rotate_half: its backward."""
    half = z.shape[-1] // 2
    return torch.cat([z[..., half:], -z[..., :half]], dim=-1)


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, transpose: bool = False
) -> torch.Tensor:
    """R x (or R^T x): what `coda::rotary` and `graph.rotary` compute."""
    if transpose:
        return x * cos + rotate_half_transposed(x * sin)
    return x * cos + rotate_half(x) * sin


@torch.library.custom_op("coda::rotary", mutates_args=())
def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, transpose: bool) -> torch.Tensor:
    return apply_rotary(x, cos, sin, transpose)


@rotary.register_fake
def _(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, transpose: bool) -> torch.Tensor:
    return apply_rotary(x, cos, sin, transpose)


# -- matching the decomposed forms ---------------------------------------------------------


def _last_dim(node: fx.Node, dim: Any) -> bool:
    return isinstance(dim, int) and dim in (-1, node.meta["val"].dim() - 1)


def _half(node: Any) -> tuple[fx.Node, int] | None:
    """(x, 0) when `node` is the first half of x's last dim, (x, 1) the second half:
    `x[..., :D/2]` / `x[..., D/2:]` as a slice or an item of a split."""
    if is_call(node, operator.getitem) and is_call(node.args[0], aten.split.Tensor):
        split, index = node.args
        x, size = split.args[0], split.args[1]
        dim = split.args[2] if len(split.args) > 2 else 0
        d = x.meta["val"].shape[-1]
        if _last_dim(x, dim) and 2 * size == d and index in (0, 1):
            return x, index
        return None
    if is_call(node, aten.slice.Tensor) and len(node.args) >= 4:
        x, dim, start, end = node.args[:4]
        step = node.args[4] if len(node.args) > 4 else 1
        d = x.meta["val"].shape[-1]
        if not (_last_dim(x, dim) and step == 1 and d % 2 == 0):
            return None
        if start == 0 and end == d // 2:
            return x, 0
        if start == d // 2 and end >= d:
            return x, 1
    return None


def _halves(cat: Any, negated: int) -> fx.Node | None:
    """x when `cat` is cat([-x_hi, x_lo]) (negated=0) or cat([z_hi, -z_lo]) (negated=1)
    along the last dim, else None."""
    if not (is_call(cat, aten.cat.default) and len(cat.args[0]) == 2):
        return None
    dim = cat.args[1] if len(cat.args) > 1 else 0
    if not _last_dim(cat, dim):
        return None
    first, second = cat.args[0]
    parts = [first, second]
    neg = parts[negated]
    if not is_call(neg, aten.neg.default):
        return None
    parts[negated] = neg.args[0]
    hi, lo = _half(parts[0]), _half(parts[1])
    if hi is None or lo is None or hi[0] is not lo[0] or (hi[1], lo[1]) != (1, 0):
        return None
    return hi[0]


def _mul_of(node: Any, x: fx.Node) -> fx.Node | None:
    """t when `node` is x * t (either order)."""
    if not is_call(node, aten.mul.Tensor):
        return None
    a, b = node.args
    if a is x and isinstance(b, fx.Node):
        return b
    if b is x and isinstance(a, fx.Node):
        return a
    return None


def _forward(add: fx.Node) -> tuple[fx.Node, fx.Node, fx.Node] | None:
    """(x, cos, sin) when `add` is x * cos + rotate_half(x) * sin."""
    for first, second in (add.args, add.args[::-1]):
        if not (is_call(second, aten.mul.Tensor) and isinstance(first, fx.Node)):
            continue
        for cat, sin in (second.args, second.args[::-1]):
            x = _halves(cat, negated=0)
            if x is None or not isinstance(sin, fx.Node):
                continue
            cos = _mul_of(first, x)
            if cos is not None:
                return x, cos, sin
    return None


def _backward(add: fx.Node) -> tuple[fx.Node, fx.Node, fx.Node] | None:
    """(g, cos, sin) when `add` is g * cos + rotate_half^T(g * sin)."""
    for first, second in (add.args, add.args[::-1]):
        z = _halves(second, negated=1)
        if z is None or not is_call(z, aten.mul.Tensor) or not isinstance(first, fx.Node):
            continue
        for g, sin in (z.args, z.args[::-1]):
            if not (isinstance(g, fx.Node) and isinstance(sin, fx.Node)):
                continue
            cos = _mul_of(first, g)
            if cos is not None:
                return g, cos, sin
    return None


def _add_terms(node: fx.Node) -> list[Any]:
    """The terms of a tree of adds (inner adds read only by the tree)."""
    terms = []
    for arg in node.args:
        inner = is_call(arg, aten.add.Tensor) and len(arg.users) == 1 and len(arg.args) == 2
        terms += _add_terms(arg) if inner else [arg]
    return terms


def _placed_half(node: Any) -> tuple[fx.Node, int] | None:
    """(v, start) for slice_backward(v, sizes, last dim, start, start + D/2, 1): v placed
    at columns [start, start + D/2) of zeros (autograd's backward of a slice)."""
    if not is_call(node, aten.slice_backward.default):
        return None
    grad, sizes, dim, start, end, step = node.args[:6]
    d = sizes[-1]
    if not all(type(v) is int for v in (d, start, end)):
        return None  # a symbolic head dim or bound (a head dim is a weight's: static)
    if not (_last_dim(node, dim) and step == 1 and d % 2 == 0 and start in (0, d // 2)):
        return None
    if min(end, d) - start != d // 2 or not isinstance(grad, fx.Node):
        return None
    return grad, start


def _transposed_halves(first: Any, second: Any) -> fx.Node | None:
    """z when the two terms are rotate_half^T(z) = cat(z_hi, -z_lo) written as
    slice_backward(z_hi, at 0) + slice_backward(-z_lo, at D/2), in either order."""
    placed = [_placed_half(first), _placed_half(second)]
    if None in placed:
        return None
    by_start = {start: value for value, start in placed}  # type: ignore[misc]
    if set(by_start) != {0, first.args[1][-1] // 2}:
        return None
    hi, neg = by_start[0], by_start[first.args[1][-1] // 2]
    if not is_call(neg, aten.neg.default):
        return None
    hi_half, lo_half = _half(hi), _half(neg.args[0])
    if hi_half is None or lo_half is None or hi_half[0] is not lo_half[0]:
        return None
    return hi_half[0] if (hi_half[1], lo_half[1]) == (1, 0) else None


def _backward_of_slices(add: fx.Node) -> tuple[fx.Node, fx.Node, fx.Node] | None:
    """(g, cos, sin) for g * cos + rotate_half^T(g * sin) with the transpose in autograd's
    slice_backward form (Hugging Face's rotate_half slices x): three added terms."""
    terms = _add_terms(add)
    if len(terms) != 3:
        return None
    for i, scaled in enumerate(terms):
        rest = [t for j, t in enumerate(terms) if j != i]
        z = _transposed_halves(*rest)
        if z is None or not is_call(z, aten.mul.Tensor):
            continue
        for g, sin in (z.args, z.args[::-1]):
            if isinstance(g, fx.Node) and isinstance(sin, fx.Node):
                cos = _mul_of(scaled, g)
                if cos is not None:
                    return g, cos, sin
    return None


def _drop_empty_concats(graph: fx.Graph) -> None:
    """cat([empty, x]) -> x: Hugging Face's Llama concatenates k and v to an empty KV
    cache even in training, which would hide k's rotation from attention."""
    for node in list(graph.nodes):
        if not is_call(node, aten.cat.default):
            continue
        inputs = [a for a in node.args[0] if a.meta["val"].numel() != 0]
        val = node.meta.get("val")
        if len(inputs) == 1 and inputs[0].meta["val"].shape == getattr(val, "shape", None):
            if inputs[0].meta["val"].dtype == val.dtype:
                node.replace_all_uses_with(inputs[0])
                graph.erase_node(node)


def _same_result(node: fx.Node, x: fx.Node, cos: fx.Node, sin: fx.Node) -> bool:
    """The op computes what `node` did: same shape and dtype (no broadcast beyond x, no
    type promotion by the tables)."""
    val, x_val = node.meta.get("val"), x.meta.get("val")
    if not (isinstance(val, torch.Tensor) and isinstance(x_val, torch.Tensor)):
        return False
    tables = [cos.meta.get("val"), sin.meta.get("val")]
    if not all(isinstance(t, torch.Tensor) and t.dtype == x_val.dtype for t in tables):
        return False
    return val.shape == x_val.shape and val.dtype == x_val.dtype


#: the attention ops whose kernels rotate q and k (see coda.compiler.fx_attention)
_ATTENTION = (
    aten._scaled_dot_product_flash_attention_for_cpu.default,
    aten._scaled_dot_product_flash_attention_for_cpu_backward.default,
)


def _attention_reads(rotation: fx.Node) -> bool:
    """Only a rotation attention reads, with a head dim its kernels rotate on chip (a
    power of two >= 16, as fuse-rotary requires), is recomputed rather than saved:
    elsewhere a recomputation would be a loop kernel of its own in the backward."""
    d = rotation.meta["val"].shape[-1]
    return (
        d >= 16 and d & (d - 1) == 0 and all(is_call(user, *_ATTENTION) for user in rotation.users)
    )


def _replace(
    graph: fx.Graph, node: fx.Node, args: tuple[fx.Node, fx.Node, fx.Node], transpose: bool
) -> fx.Node:
    with graph.inserting_before(node):
        new = graph.call_function(torch.ops.coda.rotary.default, (*args, transpose))
    new.meta = {**node.meta, "val": node.meta["val"]}
    new.meta.pop("recompute", None)
    node.replace_all_uses_with(new)
    return new


def fuse_rotary(gm: fx.GraphModule) -> int:
    """Rewrite every RoPE (forward and backward form) of `gm` into `coda::rotary`, in
    place; forward ones of a joint graph are marked must-recompute. Returns how many
    were rewritten. The decomposed nodes left without users are removed."""
    backward = backward_nodes(gm.graph)
    _drop_empty_concats(gm.graph)
    rewritten = 0
    for node in list(gm.graph.nodes):
        if not is_call(node, aten.add.Tensor) or len(node.args) != 2:
            continue
        found, transpose = _forward(node), False
        if found is None:
            found, transpose = _backward(node) or _backward_of_slices(node), True
        if found is None or not _same_result(node, *found):
            continue
        new = _replace(gm.graph, node, found, transpose)
        if not transpose and node not in backward and backward and _attention_reads(new):
            new.meta["recompute"] = CheckpointPolicy.MUST_RECOMPUTE
        rewritten += 1
    if rewritten:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
        log.debug("coda: %d rotary embeddings rewritten to coda::rotary", rewritten)
    return rewritten


__all__ = ["apply_rotary", "fuse_rotary", "rotary"]
