"""The LM head's partial-reduction kernel on real GPUs (compiled on this CPU-only
machine): its side output `[tokens, ceil(vocab / 32)]` was fixed at planning time, and
every tile any target may choose covers a whole number of 32-column partials."""

from __future__ import annotations

import functools

import pytest
import torch

from coda.codegen.aot import compile_plan
from coda.codegen.targets import TARGETS, parse_target
from coda.codegen.tile_config import gemm_tiles, partial_columns
from coda.compiler.aot_report import _plan
from coda.dialects import kernel
from coda.dialects.epilogue import PARTIAL_COLUMNS, GemmOp, ReduceOp


@functools.cache
def _lm_head() -> kernel.GemmKernelOp:
    plan = _plan("llama-lm", torch.float32, True)
    (found,) = [
        op
        for op in plan.walk()
        if isinstance(op, kernel.GemmKernelOp) and any(isinstance(o, ReduceOp) for o in op.walk())
    ]
    return found


@pytest.mark.parametrize("target", list(TARGETS))
def test_lm_head_partials_compile_clean_on_every_target(target: str) -> None:
    lm_head = _lm_head()
    gemm = next(op for op in lm_head.body.block.ops if isinstance(op, GemmOp))
    tokens, vocab = gemm.out_shape
    # logsumexp and target-logit partials only: no [tokens, vocab] result
    assert [tuple(r.type.get_shape()) for r in lm_head.results] == [
        (tokens, -(-vocab // PARTIAL_COLUMNS))
    ] * 2
    assert partial_columns(gemm) == PARTIAL_COLUMNS
    tiles = gemm_tiles(parse_target(target), gemm)
    assert tiles and all(t.block_n % PARTIAL_COLUMNS == 0 for t in tiles)
    (resources,) = compile_plan([lm_head], target)
    assert resources.clean, resources.diagnostics
    assert resources.spill_bytes == 0 and resources.global_stores > 0
