"""The measured workloads: which model, at which shapes, forward-only or forward+backward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from coda.compiler.models import GPT2Block, LlamaBlock, LlamaLM

# The reference shapes of issue 4: batch 2, seq 128, hidden 256, 4 heads of 64 (no GQA),
# Llama FFN 768 (SwiGLU), GPT-2 MLP 1024 (tanh-GELU), float32.
BATCH, SEQ, HIDDEN, HEADS = 2, 128, 256, 4
LM_VOCAB = 1024

MODELS: dict[str, Callable[[], nn.Module]] = {
    "gpt2-block": lambda: GPT2Block(HIDDEN, HEADS, 4 * HIDDEN),
    "llama-block": lambda: LlamaBlock(HIDDEN, HEADS, HEADS, 3 * HIDDEN),
    "llama-lm": lambda: LlamaLM(HIDDEN, HEADS, HEADS, 3 * HIDDEN, layers=2, vocab=LM_VOCAB),
}

TITLES = {
    "gpt2-block": "GPT-2 block",
    "llama-block": "Llama block",
    "llama-lm": "Llama LM (2 layers)",
    "llama-1b-block": "Llama-3-1B-like block",
}


@dataclass(frozen=True)
class Workload:
    model: str
    training: bool
    input_shape: tuple[int, ...] = (BATCH, SEQ, HIDDEN)

    @property
    def key(self) -> str:
        return f"{self.model}/{'train' if self.training else 'infer'}"

    @property
    def title(self) -> str:
        return f"{TITLES[self.model]} {'fwd+bwd' if self.training else 'fwd'}"

    def build(self, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None]:
        """The model, its input and (training) the output gradient, the same every call."""
        torch.manual_seed(seed)
        model = MODELS[self.model]()
        x = torch.randn(self.input_shape, requires_grad=self.training)
        if not self.training:
            return model, x, None
        with torch.no_grad():
            grad = torch.randn_like(model(x))
        return model, x, grad


WORKLOADS: tuple[Workload, ...] = tuple(Workload(m, t) for m in MODELS for t in (False, True))


def run_step(
    fn: Callable[[torch.Tensor], torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    grad: torch.Tensor | None,
) -> torch.Tensor:
    """One forward (and backward with a fixed output gradient) through `fn`.

    Gradients are reset first so that no run accumulates into the previous one's (an
    accumulation would add one launch per parameter that no training step needs)."""
    if grad is None:
        with torch.no_grad():
            return fn(x)
    x.grad = None
    model.zero_grad(set_to_none=True)
    y = fn(x)
    y.backward(grad)
    return y
