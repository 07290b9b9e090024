"""Hugging Face `transformers` models from tiny random configs (no downloads) compile
with backend="coda" and match eager in loss and every gradient.

Their graphs carry what the built-in blocks do not: lifted tensor constants
(`get_attr`), embeddings, padding masks, the library's own loss. Ops coda has no rule
for run through torch; the graphs themselves must compile (tests run strict)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from coda.runtime import record_launches


def _llama() -> nn.Module:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(config)


def _gpt2() -> nn.Module:
    config = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    config.eos_token_id = config.bos_token_id = 0
    return GPT2LMHeadModel(config)


@pytest.mark.parametrize("factory", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_hf_causal_lm_loss_and_gradients_match_eager(factory) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = factory().eval()  # eval: no dropout, so both runs are deterministic
    compiled_model = copy.deepcopy(model)
    ids = torch.randint(0, 64, (2, 8))
    expected = model(input_ids=ids, labels=ids).loss
    expected.backward()
    compiled = torch.compile(compiled_model, backend="coda")
    with record_launches() as launches:
        got = compiled(input_ids=ids, labels=ids).loss
        got.backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    named = zip(model.named_parameters(), compiled_model.parameters(), strict=True)
    for (name, p), q in named:
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    gemms = {r.graph for r in launches if r.kind == "gemm"}
    assert gemms == {"forward", "backward"}, "the projections ran as coda GEMM kernels"
