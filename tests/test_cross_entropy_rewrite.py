"""compiler/fuse_cross_entropy.py: the rewritten joint graph computes the same loss and
gradients as the original (float64), and the partition saves no [tokens, vocab] tensor."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch._functorch.aot_autograd import aot_function, make_boxed_func
from torch._functorch.partitioners import min_cut_rematerialization_partition

from coda.compiler.backend import DECOMPOSITIONS
from coda.compiler.fuse_cross_entropy import fuse_cross_entropy

TOKENS, DIM, VOCAB = 6, 5, 7


def _joint_of(fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> fx.GraphModule:
    """The joint forward+backward graph AOTAutograd builds for `fn(*args)`."""
    captured: list[fx.GraphModule] = []

    def partition(joint: fx.GraphModule, joint_inputs: Any, **kwargs: Any) -> Any:
        captured.append(copy.deepcopy(joint))
        return min_cut_rematerialization_partition(joint, joint_inputs, **kwargs)

    compiled = aot_function(
        fn,
        fw_compiler=lambda gm, _: make_boxed_func(gm),
        decompositions=DECOMPOSITIONS,
        partition_fn=partition,
    )
    compiled(*args).backward()
    return captured[0]


def _inputs(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(TOKENS, DIM, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(VOCAB, DIM, generator=gen, dtype=torch.float64, requires_grad=True)
    return h, w, target


@pytest.mark.parametrize(
    ("reduction", "ignore_index", "target"),
    [
        ("mean", -100, [0, 6, 3, 3, 1, 5]),
        ("mean", -100, [0, -100, 3, -100, 1, 5]),  # ignored tokens leave the mean
        ("sum", 3, [0, 6, 3, 3, 1, 5]),  # a class index as ignore_index
    ],
)
def test_rewritten_joint_graph_equals_the_original(
    reduction: str, ignore_index: int, target: list[int]
) -> None:
    def loss_fn(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(h @ w.t(), t, reduction=reduction, ignore_index=ignore_index)

    h, w, t = _inputs(torch.tensor(target))
    joint = _joint_of(loss_fn, h, w, t)
    rewritten = copy.deepcopy(joint)
    assert fuse_cross_entropy(rewritten) == 1
    targets = {n.target for n in rewritten.graph.nodes}
    assert torch.ops.aten.nll_loss_forward.default not in targets
    assert torch.ops.aten.nll_loss_backward.default not in targets
    primals = [h.detach(), w.detach(), t]
    tangents = [torch.tensor(0.7, dtype=torch.float64)]
    # (forward outputs, gradients of the primals): the loss, then dh, dw, None for t
    (expected_loss,), expected_grads = joint(primals, tangents)
    (loss, *_saved), (dh, dw, dt) = rewritten(primals, tangents)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close([dh, dw], list(expected_grads[:2]), rtol=1e-12, atol=1e-12)
    assert dt is None and expected_grads[2] is None
    # and both are the real loss and gradients
    h.grad = w.grad = None  # building the joint graph ran a backward already
    eager = loss_fn(h, w, t)
    (eager * 0.7).backward()
    torch.testing.assert_close(loss, eager.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close([dh, dw], [h.grad, w.grad], rtol=1e-12, atol=1e-12)


def test_partition_saves_no_tokens_by_vocab_tensor() -> None:
    def loss_fn(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(h @ w.t(), t)

    h, w, t = _inputs(torch.tensor([0, 6, 3, 3, 1, 5]))
    joint = _joint_of(loss_fn, h, w, t)
    fuse_cross_entropy(joint)
    primals = [n for n in joint.graph.nodes if n.op == "placeholder"]
    fw, _bw = min_cut_rematerialization_partition(joint, primals, num_fwd_outputs=1)
    (output,) = [n for n in fw.graph.nodes if n.op == "output"]
    saved = [(n.name, tuple(n.meta["val"].shape)) for n in output.args[0][1:]]
    assert (TOKENS, VOCAB) not in [s for _, s in saved], saved


def test_class_weights_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    def loss_fn(
        h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        return F.cross_entropy(h @ w.t(), t, weight=weight)

    weight = torch.rand(VOCAB, dtype=torch.float64)
    joint = _joint_of(loss_fn, *_inputs(torch.tensor([0, 6, 3, 3, 1, 5])), weight)
    with caplog.at_level("INFO", logger="coda.compiler"):
        assert fuse_cross_entropy(joint) == 0
    assert "cross-entropy kept as is: class weights" in caplog.text


def test_bf16_log_probabilities_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    """Eager rounds bf16 log-probabilities before the loss; the rewrite would not."""

    def loss_fn(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(h @ w.t(), t)

    h, w, t = _inputs(torch.tensor([0, 6, 3, 3, 1, 5]))
    h16 = h.detach().bfloat16().requires_grad_()
    w16 = w.detach().bfloat16().requires_grad_()
    joint = _joint_of(loss_fn, h16, w16, t)
    with caplog.at_level("INFO", logger="coda.compiler"):
        assert fuse_cross_entropy(joint) == 0
    assert "log-probabilities rounded to torch.bfloat16" in caplog.text
