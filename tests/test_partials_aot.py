"""Partial-reduction kernels on real GPUs (compiled on this CPU-only machine): the LM
head's side output `[tokens, ceil(vocab / 32)]` and a norm backward's column partials
`[ceil(tokens / 32), hidden]` were fixed at planning time, and every tile any target may
choose covers a whole number of 32-column (32-row) partials."""

from __future__ import annotations

import functools

import pytest
import torch
from xdsl.dialects.builtin import ModuleOp

from coda.codegen.aot import compile_plan
from coda.codegen.targets import TARGETS, parse_target
from coda.codegen.tile_config import gemm_tiles, partial_columns
from coda.compiler.aot_report import _plan
from coda.compiler.capture import capture
from coda.compiler.models import LlamaLM, ModelSpec
from coda.compiler.pipeline import lower
from coda.dialects import kernel
from coda.dialects.epilogue import PARTIAL_COLUMNS, PARTIAL_ROWS, GemmOp, ReduceOp


def _with_partials(model: str, kind: str, axis: str) -> list[kernel.GemmKernelOp]:
    return _kernels_with_partials(_plan(model, torch.float32, True), kind, axis)


def _kernels_with_partials(plan: ModuleOp, kind: str, axis: str) -> list[kernel.GemmKernelOp]:
    return [
        op
        for op in plan.walk()
        if isinstance(op, kernel.GemmKernelOp)
        and any(
            isinstance(o, ReduceOp) and o.kind.data == kind and o.axis.data == axis
            for o in op.walk()
        )
    ]


@functools.cache
def _lm_head() -> kernel.GemmKernelOp:
    # a vocabulary wider than a program's rows (epilogue.FULL_ROW_MAX): partials
    spec = ModelSpec(lambda: LlamaLM(layers=1, vocab=1024), ((2, 16, 64),))
    plan = lower(capture(spec).to_module(), "kernel")
    (found,) = _kernels_with_partials(plan, "logsumexp", "columns")
    return found


@functools.cache
def _norm_backward() -> kernel.GemmKernelOp:
    # the MLP's input gradient, with RMSNorm's row sum and weight-gradient partials
    return _with_partials("llama-block", "sum", "rows")[0]


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


@pytest.mark.parametrize("target", list(TARGETS))
def test_column_partials_compile_clean_on_every_target(target: str) -> None:
    norm_backward = _norm_backward()
    # the input gradient reads dg and du on chip: the last of the chain's two GEMMs
    *producer, gemm = [op for op in norm_backward.body.block.ops if isinstance(op, GemmOp)]
    assert len(producer) == 1
    assert partial_columns(gemm, "rows") == PARTIAL_ROWS
    tiles = gemm_tiles(parse_target(target), gemm, whole_rows=True)
    assert tiles and all(t.block_m % PARTIAL_ROWS == 0 for t in tiles)
    (resources,) = compile_plan([norm_backward], target)
    assert resources.clean, resources.diagnostics
    assert resources.spill_bytes == 0
