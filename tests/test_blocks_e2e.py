"""The built-in Transformer blocks compile end to end and match eager, forward and
backward. Much of their work still falls back to torch (see the CODA-block issue);
what is compiled must be exact."""

from __future__ import annotations

import copy

import pytest
import torch

from coda.compiler.models import BUILTIN_MODELS
from coda.runtime import record_launches


@pytest.mark.parametrize("name", ["gpt2-block", "llama-block"])
def test_block_forward_and_backward_match_eager(name: str) -> None:
    spec = BUILTIN_MODELS[name]
    torch.manual_seed(0)
    torch._dynamo.reset()
    eager = spec.factory()
    compiled_model = copy.deepcopy(eager)
    x = torch.randn(*spec.input_shapes[0])
    x_eager, x_coda = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = eager(x_eager)
    expected.square().sum().backward()

    compiled = torch.compile(compiled_model, backend="coda")
    with record_launches() as log:
        got = compiled(x_coda)
        got.square().sum().backward()

    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_coda.grad, x_eager.grad, rtol=1e-4, atol=1e-4)
    for (pname, p), q in zip(eager.named_parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-4, msg=pname)
    kinds = {r.kind for r in log}
    assert {"gemm", "loop"} <= kinds, kinds
    assert {r.graph for r in log} == {"forward", "backward"}
