"""What the partition saves: the residual stream, not the projection added into it;
constant tables, not what they are computed from; a gated MLP's product, not its
projections, where recomputing them moves fewer bytes."""

from __future__ import annotations

import torch
from training_check import check_training_step

from coda.compiler.capture import capture
from coda.compiler.models import LlamaBlock, ModelSpec


def _recomputed_residuals(backward: torch.fx.GraphModule, saved: set[str]) -> list[str]:
    """Adds in the backward of the block input and a saved GEMM output."""
    found = []
    for node in backward.graph.nodes:
        names = {a.name for a in node.all_input_nodes}
        if node.target == torch.ops.aten.add.Tensor and "primals_1" in names and names & saved:
            found.append(node.name)
    return found


def test_llama_block_saves_the_residual_stream_not_the_o_projection() -> None:
    """h = x + o_proj(attention) feeds the second RMSNorm, whose backward needs h. The
    forward saves h (which its epilogue stores anyway); min-cut alone saved the o_proj
    GEMM output and the backward recomputed h in a kernel of its own."""
    captured = capture(ModelSpec(lambda: LlamaBlock(64, 4, 2, 192), ((2, 16, 64),)))
    graphs = dict(captured.graphs)
    (output,) = [n for n in graphs["forward"].graph.nodes if n.op == "output"]
    saved = {a.name: a for a in output.args[0][1:] if isinstance(a, torch.fx.Node)}
    gemms = {name for name, n in saved.items() if n.target == torch.ops.aten.mm.default}
    residuals = [n for n in saved.values() if n.target == torch.ops.aten.add.Tensor]
    assert any({a.name for a in n.all_input_nodes} & {"primals_1"} for n in residuals), saved
    assert not _recomputed_residuals(graphs["backward"], gemms)


def test_rotary_tables_are_saved_not_recomputed_in_the_backward() -> None:
    """cos and sin of the rotary angles are constants both graphs fold: the forward
    returns them (no kernel), the backward reads them instead of computing them again
    from a saved angle table."""
    captured = capture(ModelSpec(lambda: LlamaBlock(64, 4, 2, 192), ((2, 16, 64),)))
    backward = dict(captured.graphs)["backward"]
    trig = [
        n.name
        for n in backward.graph.nodes
        if n.target in (torch.ops.aten.sin.default, torch.ops.aten.cos.default)
    ]
    assert not trig, trig


class _SwiGLU(torch.nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate = torch.nn.Linear(hidden, intermediate, bias=False)
        self.up = torch.nn.Linear(hidden, intermediate, bias=False)
        self.down = torch.nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x))


def _saved(model: torch.nn.Module, shape: tuple[int, ...]) -> dict[str, torch.fx.Node]:
    captured = capture(ModelSpec(lambda: model, (shape,)))
    (output,) = [n for n in dict(captured.graphs)["forward"].graph.nodes if n.op == "output"]
    return {a.name: a for a in output.args[0][1:] if isinstance(a, torch.fx.Node)}


def test_gated_mlp_projections_are_recomputed_when_that_moves_fewer_bytes() -> None:
    """128 tokens, 64 -> 192: recomputing gate and up in the backward reads x and the two
    weights (128*64 + 2*64*192 = 32768 elements) instead of writing and reading both
    [128, 192] pre-activations (4*128*192 = 98304). The forward saves silu(gate) * up
    (the down projection's weight gradient reads it) but neither projection."""
    saved = _saved(_SwiGLU(64, 192), (128, 64))
    gemms = [n for n in saved.values() if n.target == torch.ops.aten.mm.default]
    assert not gemms, saved
    assert any(n.target == torch.ops.aten.mul.Tensor for n in saved.values()), saved


def test_gated_mlp_projections_are_saved_for_few_tokens() -> None:
    """16 tokens: recomputing would read 16*64 + 2*64*192 = 25600 elements for the 12288
    it saves moving, so min-cut keeps both projections."""
    saved = _saved(_SwiGLU(64, 192), (16, 64))
    gemms = [n for n in saved.values() if n.target == torch.ops.aten.mm.default]
    assert len(gemms) == 2, saved


def test_recomputed_gated_mlp_matches_eager_in_one_backward_gemm() -> None:
    """The recomputed projections are accumulators of the backward's first GEMM (dy @
    Wd^T), whose epilogue runs the silu backward: no kernel of the backward writes a
    gate or up pre-activation, and the gradients match eager."""
    torch.manual_seed(0)
    run = check_training_step(_SwiGLU(64, 192), torch.randn(128, 64))
    backward = [r for r in run.launches if r.graph == "backward"]
    silu_backward = [r for r in backward if "silu_backward" in r.kernel]
    assert len(silu_backward) == 1, [r.kernel for r in backward]
    # it reads x, dy and the three weights, no saved [128, 192] pre-activation
    pre_activation = 128 * 192 * 4
    assert all(a.nbytes != pre_activation for a in silu_backward[0].reads), silu_backward[0]
    assert len(silu_backward[0].reads) == 5, silu_backward[0]


def test_normalized_activations_are_recomputed_not_saved() -> None:
    """Both RMSNorm outputs of a Llama block feed only GEMMs: the forward saves x, the
    residual stream and the two rstd vectors, never the [B, S, D] normalized values,
    and no forward loop kernel writes anything of that size (fuse-prologues computes hn
    on the GEMMs' operand tiles)."""
    from coda.compiler.pipeline import lower
    from coda.compiler.report import kernels_of
    from coda.dialects import kernel

    captured = capture(ModelSpec(lambda: LlamaBlock(64, 4, 2, 192), ((2, 16, 64),)))
    (output,) = [n for n in dict(captured.graphs)["forward"].graph.nodes if n.op == "output"]
    saved = [a for a in output.args[0][1:] if isinstance(a, torch.fx.Node)]
    normalized = [
        a.name
        for a in saved
        if a.target == torch.ops.aten.mul.Tensor
        and any(i.target == torch.ops.aten.rsqrt.default for i in a.all_input_nodes)
    ]
    assert not normalized, normalized
    module = lower(captured.to_module())
    forward = next(f for f in module.ops if f.sym_name.data == "forward")
    loops = [k for k in kernels_of(forward) if isinstance(k, kernel.LoopKernelOp)]
    # the first norm's statistics of the block input (the second's are finished in the
    # o-projection's epilogue, which holds whole rows)
    assert len(loops) == 1
    for loop in loops:  # the statistics only: one rstd per token
        assert [tuple(r.type.get_shape()) for r in loop.results] == [(2, 16, 1)], loop.kernel_name
