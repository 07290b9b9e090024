"""Translation validation: the IR means what the FX graph means, at every stage.

Each captured aten graph (forward and backward of the built-in models) is imported
and evaluated with the dialects' reference semantics (torch) after each stage of the
pipeline, and compared with running the FX graph itself on the same inputs. This
checks the importer and every pass without codegen in the loop.
"""

from __future__ import annotations

import pytest
import torch

from coda.compiler.capture import capture
from coda.compiler.fx_import import import_graph
from coda.compiler.models import BUILTIN_MODELS
from coda.compiler.pipeline import STAGES, lower
from coda.compiler.reference import run_block


def _random(node: torch.fx.Node, gen: torch.Generator) -> torch.Tensor:
    val = node.meta["val"]
    return torch.randn(val.shape, dtype=val.dtype, generator=gen)


def _realistic_inputs(graphs: list[tuple[str, torch.fx.GraphModule]]) -> list[list]:
    """Random forward inputs; the backward gets the forward's saved tensors (random
    saved statistics such as 1/rms would make the backward's numerics meaningless)."""
    gen = torch.Generator().manual_seed(1)
    (_, fw), (_, bw) = graphs
    fw_inputs = [_random(n, gen) for n in fw.graph.find_nodes(op="placeholder")]
    fw_outputs = fw(*fw_inputs)
    bw_nodes = list(bw.graph.find_nodes(op="placeholder"))
    tangents = [n for n in bw_nodes if n.name.startswith("tangents")]
    saved = list(fw_outputs[len(fw_outputs) - (len(bw_nodes) - len(tangents)) :])
    return [fw_inputs, saved + [_random(n, gen) for n in tangents]]


@pytest.mark.parametrize("model", sorted(BUILTIN_MODELS))
@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_matches_fx_graph(model: str, stage: str) -> None:
    captured = capture(BUILTIN_MODELS[model], training=True)
    assert [kind for kind, _ in captured.graphs] == ["forward", "backward"]
    for (kind, gm), inputs in zip(captured.graphs, _realistic_inputs(captured.graphs), strict=True):
        expected = gm(*inputs)
        imported = import_graph(gm, kind)
        lower(imported.module, stage)
        returned = run_block(imported.func.body.block, inputs, torch.device("cpu"))
        got = [None if slot is None else returned[slot] for slot in imported.output_slots]
        assert len(got) == len(expected)
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            if e is None:
                assert g is None
                continue
            if not e.is_floating_point():  # a saved mask or index: exactly equal
                assert torch.equal(g, e), f"{kind} output {i}"
                continue
            # float32 sums in another order: tolerance relative to the output's scale
            atol = 1e-5 * (1.0 + e.abs().max().item())
            torch.testing.assert_close(g, e, rtol=1e-4, atol=atol, msg=f"{kind} output {i}")
