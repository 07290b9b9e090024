"""The benchmark figures are right: coda's byte counts against the interpreter and a hand
calculation, eager's recorder, the compulsory minimum and the report's hook."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from benchmarks.crosscheck import TOLERANCE, compare
from benchmarks.eager import EagerRecorder
from benchmarks.interp import count_interpreted_bytes
from benchmarks.measure import Measurement
from benchmarks.minimum import compulsory_bytes
from benchmarks.plan import capture_graphs, plan
from benchmarks.readme import END, START, update_readme
from benchmarks.report import EXTRA_COLUMNS, headline_table, main_table
from coda.runtime import record_launches

# Linear(K -> N) + bias + tanh-GELU on an [M, K] input, float32 (4 bytes an element).
M, K, N = 32, 48, 64
A_BYTES = M * K * 4  # 6144: the input, read once
W_BYTES = N * K * 4  # 12288: the weight, read once
BIAS_BYTES = N * 4  # 256: the bias, a row vector broadcast over M, read once
OUT_BYTES = M * N * 4  # 8192: the activated output, written once
# The pre-activation never reaches memory: bias and GELU run in the GEMM's epilogue.
HAND_READ, HAND_WRITTEN = A_BYTES + W_BYTES + BIAS_BYTES, OUT_BYTES  # 18688, 8192


def _linear_gelu() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(K, N), nn.GELU(approximate="tanh"))


def test_gemm_epilogue_kernel_bytes_match_the_hand_calculation() -> None:
    fn = torch.compile(_linear_gelu(), backend="coda", options={"strict": True})
    x = torch.randn(M, K)
    with torch.no_grad():
        fn(x)
        with record_launches() as records, count_interpreted_bytes() as measured:
            fn(x)
    (launch,) = records  # one GEMM-epilogue kernel, nothing else
    assert launch.kind == "gemm"
    assert (launch.bytes_read, launch.bytes_written) == (HAND_READ, HAND_WRITTEN)
    # the interpreted kernel touched exactly those bytes
    (interpreted,) = measured
    assert (interpreted.loaded, interpreted.stored) == (HAND_READ, HAND_WRITTEN)
    # and the kernel plan, read without running, says the same
    (planned,) = plan(capture_graphs(_linear_gelu, (M, K), training=False))
    assert (planned.bytes_read, planned.bytes_written) == (HAND_READ, HAND_WRITTEN)
    assert planned.flops == 2 * M * N * K


def test_logged_bytes_agree_with_interpreter_measured_bytes() -> None:
    """Every compiled kernel of a Llama block's forward+backward at small shapes: the
    launch log's bytes against the distinct addresses the interpreted kernel loaded and
    stored (see benchmarks/crosscheck.py for the tolerated difference and why)."""
    kernels = compare("llama-block", training=True)
    assert len(kernels) == 13  # the whole block ran: 5 kernels forward, 8 backward
    logged = sum(k.logged for k in kernels)
    measured = sum(k.measured for k in kernels)
    assert measured > 0
    assert abs(logged - measured) <= TOLERANCE * measured
    for k in kernels:
        assert abs(k.logged - k.measured) <= TOLERANCE * k.measured, k


def test_eager_recorder_counts_each_op_once_and_skips_views() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    with EagerRecorder() as recorder:
        c = (a @ b).t()  # mm launches; the transpose is a view
        torch.relu_(c)  # in place: its input and output are the same 128 bytes
    assert [r.op for r in recorder.records] == ["aten.mm.default", "aten.relu_.default"]
    assert recorder.records[0].nbytes == (8 * 16 + 16 * 4 + 8 * 4) * 4
    assert recorder.records[0].flops == 2 * 8 * 16 * 4
    assert recorder.records[1].nbytes == 8 * 4 * 4


def test_compulsory_minimum_of_a_linear_layer() -> None:
    def model() -> nn.Module:
        return nn.Linear(K, N)

    inference = compulsory_bytes(capture_graphs(model, (M, K), training=False, device="meta"))
    assert inference == A_BYTES + W_BYTES + BIAS_BYTES + OUT_BYTES
    # training adds the output gradient and the input, weight and bias gradients; the
    # forward saves only its input, which is already counted
    training = compulsory_bytes(capture_graphs(model, (M, K), training=True, device="meta"))
    assert training == 2 * (A_BYTES + W_BYTES + BIAS_BYTES + OUT_BYTES)


def _m(system: str, launches: int | None, nbytes: int, compile_s: list[float]) -> Measurement:
    return Measurement(system, "llama-block/train", launches, nbytes, compile_s=compile_s)


def test_report_ratios_and_extra_column_hook() -> None:
    results = [
        _m("eager", 100, 80_000_000, []),
        _m("inductor", 40, 50_000_000, [2.0, 1.0, 1.5]),
        _m("coda", 20, 25_000_000, [1.0, 0.5, 0.5]),
        _m("minimum", None, 20_000_000, []),
    ]
    headline = headline_table(results)
    # coda / Inductor: bytes 0.5x, launches 0.5x, median compile 0.5 / 1.5, cold 1.0 / 2.0
    assert "| Inductor | 0.50x | 0.50x | 0.33x | 0.50x |" in headline
    EXTRA_COLUMNS.append(lambda key, systems: {"sm_90a": "7/7"})
    try:
        table = main_table(results)
    finally:
        EXTRA_COLUMNS.pop()
    (coda_row,) = [line for line in table.splitlines() if "| coda |" in line]
    assert coda_row.endswith("| 7/7 |")
    assert "| 1.25x |" in coda_row  # x minimum


def test_readme_tables_are_replaced_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Benchmarks\n{START}\nold table\n{END}\n\n## Next\n")
    assert update_readme(readme, "| new | table |\n")
    assert (
        readme.read_text() == f"# x\n\n## Benchmarks\n{START}\n| new | table |\n{END}\n\n## Next\n"
    )
    unmarked = tmp_path / "OTHER.md"
    unmarked.write_text("no markers\n")
    assert not update_readme(unmarked, "| t |")
    assert unmarked.read_text() == "no markers\n"


def test_gpu_target_columns_sit_on_codas_row() -> None:
    from benchmarks.gpu_targets import attach

    results = [_m("eager", 100, 80_000_000, []), _m("coda", 20, 25_000_000, [1.0])]
    attach(results, {"llama-block/train": {"cuda:sm_90a": "52/52", "hip:gfx942": "51/52"}})
    table = main_table(results).splitlines()
    assert table[0].endswith("| cuda:sm_90a clean (bf16) | hip:gfx942 clean (bf16) |")
    (coda_row,) = [line for line in table if "| coda |" in line]
    (eager_row,) = [line for line in table if "| eager |" in line]
    assert coda_row.endswith("| 52/52 | 51/52 |")
    assert eager_row.endswith("|  |  |")


def test_attention_bytes_grow_linearly_with_the_sequence() -> None:
    """The attention kernels of the reference Llama block move O(S * d) bytes per head:
    8x the sequence is 8x the bytes (materialized scores would be 64x). FLOPs follow
    torch's counter convention: 4 * B * H * S^2 * d forward, twice that backward."""
    from benchmarks.attention_scaling import SEQUENCE_LENGTHS, attention_rows
    from benchmarks.workloads import BATCH, HEADS, HIDDEN

    rows = {(r["seq"], r["graph"]): r for r in attention_rows()}
    short, long = SEQUENCE_LENGTHS
    assert sorted(rows) == [(s, g) for s in (short, long) for g in ("backward", "forward")]
    for graph in ("forward", "backward"):
        growth = rows[(long, graph)]["bytes"] / rows[(short, graph)]["bytes"]
        assert abs(growth - long / short) < 0.01 * long / short, (graph, growth)
    head_dim = HIDDEN // HEADS
    # forward: q, k, v, out (fp32) and lse once each, and the rotary cos and sin tables
    # (one [S, D] table each, read in place across batch and heads)
    tensors = BATCH * HEADS * short * (4 * head_dim + 1) * 4
    assert rows[(short, "forward")]["bytes"] == tensors + 2 * short * head_dim * 4
    assert rows[(short, "forward")]["flops"] == 4 * BATCH * HEADS * short**2 * head_dim
    assert rows[(short, "backward")]["flops"] == 8 * BATCH * HEADS * short**2 * head_dim
