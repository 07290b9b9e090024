"""The built-in Transformer blocks compile end to end and match eager, forward and
backward. Much of their work still falls back to torch (see the CODA-block issue);
what is compiled must be exact."""

from __future__ import annotations

import pytest
import torch
from training_check import check_training_step

from coda.compiler.models import BUILTIN_MODELS


@pytest.mark.parametrize("name", ["gpt2-block", "llama-block"])
def test_block_forward_and_backward_match_eager(name: str) -> None:
    spec = BUILTIN_MODELS[name]
    torch.manual_seed(0)
    run = check_training_step(spec.factory(), torch.randn(*spec.input_shapes[0]))
    kinds = {r.kind for r in run.launches}
    assert {"gemm", "loop"} <= kinds, kinds
    assert {r.graph for r in run.launches} == {"forward", "backward"}
