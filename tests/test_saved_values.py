"""What the partition saves: the residual stream, not the projection added into it;
constant tables, not what they are computed from."""

from __future__ import annotations

import torch

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
