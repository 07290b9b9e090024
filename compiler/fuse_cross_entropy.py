"""Cross-entropy without a saved `[tokens, vocab]` tensor: a rewrite of the joint graph.

AOTAutograd hands the partitioner the joint forward+backward graph. There, an LM
head's cross-entropy is `logits -> log_softmax (decomposed: amax, sub, exp, sum, log,
sub) -> nll_loss_forward`, and the backward reads the saved log-probabilities
`[T, V]`. This rewrite replaces it with the form the GEMM epilogues compute:

    forward   lse    = logsumexp(logits, 1)                          [T, 1]
              picked = sum(where(iota_V == target, logits, 0), 1)   [T, 1]  (the gather)
              w      = where(target != ignore_index, 1, 0)           [T]
              loss   = sum((lse - picked) * w) / sum(w)   (mean; `sum`: no division)
    backward  logits' = the same GEMM again (marked must-recompute)
              dlogits = (exp(logits' - lse) - where(iota_V == target, 1, 0)) * (g * w / sum(w))

so the partition saves the GEMM's operands, `lse` and the targets, never `[T, V]`.
The gather is a masked row sum: exact (one term is the logit, the others are zeros),
and an ignored target (-100) matches no column, so no clamping is needed.

Variants that do not fit (class weights, `reduction="none"`, logits not from a GEMM)
are left alone with a logged reason. `tests/test_cross_entropy_rewrite.py` checks in
float64 that the rewritten joint graph computes the same loss and gradients.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch._guards import detect_fake_mode
from torch.utils.checkpoint import CheckpointPolicy

log = logging.getLogger("coda.compiler")
aten = torch.ops.aten

#: nll_loss's `reduction` argument
_MEAN, _SUM = 1, 2


@dataclass
class _CrossEntropy:
    """The nodes of one matched cross-entropy."""

    logits: fx.Node  # [T, V]
    target: fx.Node  # [T] integer
    nll: fx.Node  # nll_loss_forward
    reduction: int
    ignore_index: int
    dlogits: fx.Node | None  # the log_softmax backward's result, if there is a backward
    nll_backward: fx.Node | None


def is_call(node: Any, *targets: Any) -> bool:
    """`node` calls one of `targets` (fx pattern matching, shared with the rotary rewrite)."""
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target in targets


def _log_softmax_input(logp: fx.Node) -> fx.Node | None:
    """x when `logp` is the decomposed log_softmax(x, 1) of a 2-D x, else None:
    sub(shifted, log(sum(exp(shifted), [1], True))), shifted = sub(x, amax(x, [1], True))."""
    if not is_call(logp, aten.sub.Tensor):
        return None
    shifted, log_sum = logp.args
    if not (is_call(shifted, aten.sub.Tensor) and is_call(log_sum, aten.log.default)):
        return None
    x, amax = shifted.args
    total = log_sum.args[0]
    if not (
        is_call(amax, aten.amax.default)
        and amax.args[0] is x
        and is_call(total, aten.sum.dim_IntList)
    ):
        return None
    exp = total.args[0]
    if not (is_call(exp, aten.exp.default) and exp.args[0] is shifted):
        return None
    rank = x.meta["val"].dim()
    if (
        rank != 2
        or [d % rank for d in amax.args[1]] != [1]
        or [d % rank for d in total.args[1]] != [1]
    ):
        return None
    return x


def _dlogits(nll_backward: fx.Node, logp: fx.Node) -> fx.Node | None:
    """The decomposed log_softmax backward of `nll_backward`'s gradient:
    sub(g, mul(exp(logp), sum(g, [1], True))), possibly through detach nodes."""
    for user in nll_backward.users:
        if not (is_call(user, aten.sub.Tensor) and user.args[0] is nll_backward):
            continue
        mul = user.args[1]
        if not is_call(mul, aten.mul.Tensor):
            continue
        exp, total = mul.args
        if not (is_call(exp, aten.exp.default) and is_call(total, aten.sum.dim_IntList)):
            continue
        source = exp.args[0]
        while is_call(source, aten.detach.default):
            source = source.args[0]
        if source is logp and total.args[0] is nll_backward:
            return user
    return None


def _why_not(node: fx.Node) -> tuple[_CrossEntropy | None, str]:
    """Match the cross-entropy ending in nll_loss_forward `node`, or say why not."""
    logp, target, weight, reduction, ignore_index = node.args
    if weight is not None:
        return None, "class weights"
    if reduction not in (_MEAN, _SUM):
        return None, "reduction='none'"
    if is_call(logp, aten._to_copy.default):
        # bf16/f16 log-probabilities: eager rounds them before the loss, the rewrite
        # would not, so the two would differ by that rounding
        return None, f"log-probabilities rounded to {logp.meta['val'].dtype}"
    logits = _log_softmax_input(logp)
    if logits is None:
        return None, "its input is not a log_softmax over dim 1 of a [tokens, classes] tensor"
    if not isinstance(logits.meta["val"].shape[1], int):
        return None, "a symbolic number of classes"  # the one-hot's arange would need it
    backwards = [u for u in logp.users if is_call(u, aten.nll_loss_backward.default)]
    dlogits = None
    if backwards:
        if len(backwards) != 1 or backwards[0].args[3] is not None:
            return None, "an unexpected nll_loss_backward"
        dlogits = _dlogits(backwards[0], logp)
        if dlogits is None:
            return None, "its log_softmax backward is not the decomposed form"
    outside = [u for u in logp.users if u is not node and u not in backwards]
    if any(not is_call(u, aten.detach.default, aten.sub.Tensor, aten.exp.default) for u in outside):
        return None, "the log-probabilities have other users"
    ce = _CrossEntropy(
        logits, target, node, reduction, ignore_index, dlogits, backwards[0] if backwards else None
    )
    return ce, ""


class _Builder:
    """Inserts aten calls with their FakeTensor `val` metadata (the partitioner and the
    importer read it)."""

    def __init__(self, graph: fx.Graph, fake_mode: Any) -> None:
        self.graph = graph
        self.fake_mode = fake_mode

    def __call__(self, op: Callable[..., Any], *args: Any, **kwargs: Any) -> fx.Node:
        node = self.graph.call_function(op, args, kwargs)
        vals = fx.node.map_arg((args, kwargs), lambda n: n.meta["val"])
        with self.fake_mode:
            node.meta["val"] = op(*vals[0], **vals[1])
        return node


def _rewrite(gm: fx.GraphModule, ce: _CrossEntropy, fake_mode: Any) -> None:
    graph = gm.graph
    build = _Builder(graph, fake_mode)
    # the token count may be a size symbol: views spell it -1, never as a graph constant
    vocab = ce.logits.meta["val"].shape[1]
    device, dtype = ce.logits.meta["val"].device, ce.logits.meta["val"].dtype
    with graph.inserting_before(ce.nll):
        # 0/1 in the logits' dtype (where.Scalar would give the default dtype)
        one = build(aten.scalar_tensor.default, 1.0, dtype=dtype, device=device)
        zero = build(aten.scalar_tensor.default, 0.0, dtype=dtype, device=device)
        lse = build(aten.logsumexp.default, ce.logits, [1], True)
        iota = build(aten.arange.default, vocab, dtype=torch.int64, device=device)
        row = build(aten.view.default, iota, [1, vocab])
        col = build(aten.view.default, ce.target, [-1, 1])
        onehot = build(aten.eq.Tensor, row, col)
        masked = build(aten.where.ScalarOther, onehot, ce.logits, 0.0)
        picked = build(aten.sum.dim_IntList, masked, [1], True)
        nll = build(aten.sub.Tensor, lse, picked)
        valid = build(aten.ne.Scalar, ce.target, ce.ignore_index)
        weight = build(aten.where.self, valid, one, zero)
        per_token = build(aten.mul.Tensor, build(aten.view.default, nll, [-1]), weight)
        total = build(aten.sum.default, per_token)
        count = build(aten.sum.default, weight)
        loss = build(aten.div.Tensor, total, count) if ce.reduction == _MEAN else total
    for user in list(ce.nll.users):
        assert user.target is operator.getitem
        user.replace_all_uses_with(loss if user.args[1] == 0 else count)
    if ce.dlogits is not None:
        assert ce.nll_backward is not None
        grad = ce.nll_backward.args[0]
        with graph.inserting_before(ce.dlogits):
            scale = build(aten.mul.Tensor, weight, grad)
            if ce.reduction == _MEAN:
                scale = build(aten.div.Tensor, scale, count)
            probs = build(aten.exp.default, build(aten.sub.Tensor, ce.logits, lse))
            onehot_f = build(aten.where.self, onehot, one, zero)
            diff = build(aten.sub.Tensor, probs, onehot_f)
            dlogits = build(aten.mul.Tensor, diff, build(aten.view.default, scale, [-1, 1]))
        ce.dlogits.replace_all_uses_with(dlogits)
        _recompute_in_backward(ce.logits, onehot, ce.target)
    graph.eliminate_dead_code()


#: GEMMs whose output the backward recomputes rather than saves
_GEMMS = (aten.mm.default, aten.addmm.default, aten.bmm.default)


def _recompute_in_backward(logits: fx.Node, onehot: fx.Node, target: fx.Node) -> None:
    """Tag the GEMM computing `logits` (and the views after it) and the one-hot mask
    must-recompute: min-cut then runs them again in the backward instead of saving a
    [T, V] tensor. The tags go on the forward nodes themselves: a copy would be merged
    back into them by the partitioner's CSE."""
    chain = [logits]
    while is_call(chain[-1], aten.view.default, aten._unsafe_view.default, aten.reshape.default):
        chain.append(chain[-1].args[0])
    # Logits that are a graph input (the LM head ran in another graph) are saved
    # anyway; logits the model also returns are written by the forward anyway, and a
    # forward output cannot be recomputed-only.
    returned = any(user.op == "output" for node in chain for user in node.users)
    if is_call(chain[-1], *_GEMMS) and not returned:
        for node in chain:
            node.meta["recompute"] = CheckpointPolicy.MUST_RECOMPUTE
    # eq(view(arange), view(target)): the mask, the iota and the target's view, not
    # the target itself (what it is computed from is the forward's business)
    stack = [onehot]
    while stack:
        node = stack.pop()
        if node is not target and is_call(
            node, aten.eq.Tensor, aten.view.default, aten.arange.default
        ):
            node.meta["recompute"] = CheckpointPolicy.MUST_RECOMPUTE
            stack += [a for a in node.args if isinstance(a, fx.Node)]


def fuse_cross_entropy(gm: fx.GraphModule) -> int:
    """Rewrite every matching cross-entropy of the joint graph `gm` in place; returns how
    many were rewritten. Unmatched ones are logged with the reason."""
    nodes = [n for n in gm.graph.nodes if is_call(n, aten.nll_loss_forward.default)]
    if not nodes:
        return 0
    fake_mode = detect_fake_mode([n.meta.get("val") for n in gm.graph.nodes])
    if fake_mode is None:
        log.info("coda: cross-entropy kept as is: the joint graph has no fake tensors")
        return 0
    rewritten = 0
    for node in nodes:
        ce, reason = _why_not(node)
        if ce is None:
            log.info("coda: cross-entropy kept as is: %s", reason)
            continue
        _rewrite(gm, ce, fake_mode)
        rewritten += 1
    gm.graph.lint()
    gm.recompile()
    return rewritten
