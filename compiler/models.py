"""Built-in example models for `lowerc --model NAME` and the tests.

Small, self-contained PyTorch modules (no downloads): an MLP, a GPT-2-style block,
a Llama-style block and a small Llama LM (blocks, LM head and cross-entropy).
Each entry gives the module factory and example input shapes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Three Linear layers with GELU, SiLU and ReLU and one residual add."""

    def __init__(self, d_in: int = 32, d_hidden: int = 64, d_out: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_hidden)
        self.fc3 = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x))
        h = h + F.silu(self.fc2(h))
        return self.fc3(torch.relu(h))


class GPT2Block(nn.Module):
    """Pre-LayerNorm block: causal attention, tanh-GELU MLP, biases, residuals."""

    def __init__(self, d: int = 64, heads: int = 4, ffn: int = 256):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    """RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU MLP, residuals."""

    def __init__(self, d: int = 64, heads: int = 4, kv_heads: int = 2, ffn: int = 192):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, d // heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        # separate q, k and v projections, as Hugging Face's Llama has them: coda merges
        # the ones of one width into one kernel (q, k, v; or k and v under GQA)
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(d, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate, self.up = nn.Linear(d, ffn, bias=False), nn.Linear(d, ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)

    def rope(self, x: torch.Tensor) -> torch.Tensor:
        s, hd = x.shape[-2], x.shape[-1]
        inv_freq = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(s, dtype=torch.float32), inv_freq)
        emb = torch.cat((angles, angles), dim=-1)
        # tables in fp32 for accuracy, applied in x's dtype (bf16 models stay bf16)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        return x * cos + _rotate_half(x) * sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.rope(q), self.rope(k)
        # grouped-query attention as Hugging Face's Llama runs it: one SDPA call, the
        # key/value heads shared by groups of query heads (no repeat_interleave copy)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, s, d))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class LlamaLM(nn.Module):
    """Llama blocks, a final RMSNorm, an LM head and the mean cross-entropy loss.

    The input is the token embeddings ([B, S, d] floats), not token ids: the embedding
    lookup is a gather outside the GEMM-epilogue story, and float inputs keep the model
    usable wherever a ModelSpec's input shapes are (random floats). The targets are a
    fixed function of the position, so the graph has no integer input either.
    """

    def __init__(
        self,
        d: int = 64,
        heads: int = 4,
        kv_heads: int = 2,
        ffn: int = 192,
        layers: int = 2,
        vocab: int = 256,
    ):
        super().__init__()
        self.vocab = vocab
        self.blocks = nn.ModuleList(LlamaBlock(d, heads, kv_heads, ffn) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x)).flatten(0, 1)
        # 7919 is prime: targets spread over the vocabulary without any randomness
        targets = (torch.arange(logits.shape[0]) * 7919) % self.vocab
        return F.cross_entropy(logits, targets)


@dataclass(frozen=True)
class ModelSpec:
    factory: Callable[[], nn.Module]
    input_shapes: tuple[tuple[int, ...], ...]
    #: parameters and inputs are created in this dtype (bf16: what GPUs will run)
    dtype: torch.dtype = torch.float32


#: `lowerc --dtype` spellings
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


BUILTIN_MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(MLP, ((8, 32),)),
    "gpt2-block": ModelSpec(GPT2Block, ((2, 16, 64),)),
    "llama-block": ModelSpec(LlamaBlock, ((2, 16, 64),)),
    "llama-lm": ModelSpec(LlamaLM, ((2, 16, 64),)),
}


def load_model(
    name: str,
    input_shapes: tuple[tuple[int, ...], ...] | None,
    dtype: torch.dtype = torch.float32,
) -> ModelSpec:
    """A built-in model by name, or `path.py:attr` (a module instance or a factory)."""
    if name in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[name]
        return ModelSpec(spec.factory, input_shapes or spec.input_shapes, dtype)
    path, sep, attr = name.rpartition(":")
    if not sep or not path.endswith(".py"):
        known = ", ".join(BUILTIN_MODELS)
        raise ValueError(f"unknown model '{name}': use one of {known} or path.py:attr")
    if not Path(path).is_file():
        raise ValueError(f"model file '{path}' does not exist")
    if not input_shapes:
        raise ValueError(f"model '{name}' needs --input-shape (e.g. --input-shape 4x16)")
    module_spec = importlib.util.spec_from_file_location("coda_user_model", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # the user's file: one line, not a traceback into it
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"cannot load '{path}': {type(err).__name__}: {first}") from None
    if not hasattr(module, attr):
        raise ValueError(f"'{path}' has no attribute '{attr}'")
    target = getattr(module, attr)
    if not callable(target):
        raise ValueError(
            f"'{path}:{attr}' is a {type(target).__name__}, not a module or a factory of one"
        )
    factory = (lambda: target) if isinstance(target, nn.Module) else target
    return ModelSpec(factory, input_shapes, dtype)
