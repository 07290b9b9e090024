"""Views reach GEMMs in place: transposed weights, strided slices, head splits.

The runtime's allocation log proves that no buffer is made for a view, and the launch
log that no copy kernel or torch fallback runs for one.
"""

from __future__ import annotations

import torch
from torch import nn
from training_check import check_training_step

from coda.runtime import record_allocations, record_launches


class StridedInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x[:, ::2]))  # every other column: a stride-2 view


def test_strided_slice_and_transposed_weight_are_read_in_place() -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = StridedInput()
    x = torch.randn(12, 32)
    compiled = torch.compile(model, backend="coda")
    with torch.no_grad(), record_launches() as launches, record_allocations() as allocations:
        got = compiled(x)
    torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-5)
    assert [(r.kind, r.kernel) for r in launches] == [("gemm", "gemm0_bias_relu")]
    # read: the 12x16 slice (unique bytes), the 24x16 weight through its transpose, the bias
    assert launches[0].bytes_read == 4 * (12 * 16 + 24 * 16 + 24)
    assert [a.shape for a in allocations] == [(12, 24)]  # only the output


class HeadSplitScores(nn.Module):
    """[B, S, H*D] -> [B, H, S, D] and q @ k^T: batch dims B and H are strided apart."""

    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q = self.q(x).view(b, s, self.heads, d // self.heads).transpose(1, 2)
        k = self.k(x).view(b, s, self.heads, d // self.heads).transpose(1, 2)
        return q @ k.transpose(-1, -2)


def test_head_split_is_stored_head_major_and_feeds_the_score_gemm_without_a_copy() -> None:
    torch.manual_seed(0)
    run = check_training_step(HeadSplitScores(), torch.randn(2, 8, 32))
    launches, allocations = run.launches, run.allocations
    assert not [r for r in launches if r.kind == "fallback"]
    # every buffer is a kernel output: torch makes no hidden copy of a view
    kernel_outputs = {w.name for r in launches for w in r.writes}
    assert {a.buffer for a in allocations} <= kernel_outputs
    # The q and k projections share x: one kernel (merged horizontally) computes both and
    # stores them head-major ([B,H,S,D], k transposed: the layouts their users read), so
    # the score GEMM reads them contiguously and the [B*H, S, D] matrices the backward
    # needs are plain views: no copy kernel anywhere.
    forward = [r.kernel for r in launches if r.graph == "forward"]
    assert forward == ["gemm0_bias", "gemm1"], forward
    assert not [r.kernel for r in launches if "copy" in r.kernel or r.kind == "copy"]
    assert [a.shape for a in allocations if a.graph == "forward"][:2] == [(2, 4, 8, 8)] * 2


def test_a_reshape_that_copies_says_so(caplog) -> None:
    """A reshape that strides cannot express still runs (torch copies) and is logged."""
    import logging

    from xdsl.dialects.builtin import TensorType, f32
    from xdsl.ir import Block

    from coda.compiler.reference import view_callable
    from coda.dialects import graph

    block = Block(arg_types=[TensorType(f32, [4, 6])])
    op = graph.ViewOp("reshape", block.args[0], TensorType(f32, [24]))
    x = torch.randn(6, 4).t()  # [4, 6], not contiguous: flattening it must copy
    with caplog.at_level(logging.WARNING, logger="coda"):
        out = view_callable(op)(x)
    torch.testing.assert_close(out, x.reshape(24))
    assert [r.getMessage() for r in caplog.records] == [
        "coda: reshape of (4, 6) (strides (1, 4)) to (24,) is not a view; it copies"
    ]


class HeadMergeProjection(nn.Module):
    """Attention's epilogue shape: [B,H,S,Dh] -> transpose -> [B,S,H*Dh] -> Linear, plus
    the residual. The merge is not a torch view of the [B,H,S,Dh] buffer."""

    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.o = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        heads = self.q(x).view(b, s, self.heads, d // self.heads).transpose(1, 2)
        a = torch.sigmoid(heads) * heads  # stands in for attention: [B, H, S, Dh]
        return x + self.o(a.transpose(1, 2).reshape(b, s, d))


def test_head_merge_and_residual_feed_the_projection_in_place(caplog) -> None:
    import logging

    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="coda"):
        run = check_training_step(HeadMergeProjection(), torch.randn(2, 8, 32))
    launches, allocations = run.launches, run.allocations
    assert not [r.getMessage() for r in caplog.records if "not a view" in r.getMessage()]
    assert not [r for r in launches if r.kind == "fallback"]
    kernel_outputs = {w.name for r in launches for w in r.writes}
    assert {a.buffer for a in allocations} <= kernel_outputs
    # The projection reads the [B,H,S,Dh] buffer through its layout, and the residual
    # add on the [B,S,D] view of its [B*S,D] output runs in its epilogue. Backward
    # recomputes the merged view instead of saving it, and reads it in place too (the
    # weight-gradient GEMM and the bias-gradient sum): no copy kernel anywhere.
    forward = [r.kernel for r in launches if r.graph == "forward"]
    assert forward == ["gemm0_bias", "loop1_sigmoid_mul", "gemm2_bias_residual"]
    assert not [r.kernel for r in launches if "copy" in r.kernel or r.kind == "copy"]
