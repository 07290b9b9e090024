"""Attention's bytes against the sequence length, from coda's kernel plan (not run).

The reference Llama block (hidden 256, 4 heads of 64, float32, batch 2) is captured on
the meta device at two sequence lengths; the attention kernels' bytes (the launch
log's rule: q, k, v, out, lse, and dout, dq, dk, dv in the backward, once each, and
the [S, D] rotary tables the kernels rotate q and k with) grow
8x when S grows 8x: O(S * d) per head. Materialized scores, what matmul + softmax +
matmul stores and reads back, would be S^2 floats per head and grow 64x.
"""

from __future__ import annotations

from typing import Any

from benchmarks.plan import capture_graphs, plan
from benchmarks.workloads import BATCH, HEADS, HIDDEN, MODELS

SEQUENCE_LENGTHS = (128, 1024)


def attention_rows() -> list[dict[str, Any]]:
    """One row per sequence length and attention kernel (forward, backward)."""
    rows = []
    for seq in SEQUENCE_LENGTHS:
        captured = capture_graphs(
            MODELS["llama-block"], (BATCH, seq, HIDDEN), training=True, device="meta"
        )
        for kernel in plan(captured):
            if kernel.kind != "attention":
                continue
            rows.append(
                {
                    "seq": seq,
                    "graph": kernel.graph,
                    "kernel": kernel.name,
                    "bytes": kernel.nbytes,
                    "bytes_per_head": kernel.nbytes // (BATCH * HEADS),
                    "flops": kernel.flops,
                    # one float32 score matrix per head, had the scores been stored
                    "scores_bytes_per_head": seq * seq * 4,
                }
            )
    return rows


def attention_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| seq | graph | kernel | MB moved | bytes per head | x seq 128 | "
        "S x S fp32 scores per head (not stored) | GFLOP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first = {r["graph"]: r["bytes"] for r in rows if r["seq"] == SEQUENCE_LENGTHS[0]}
    for r in rows:
        growth = r["bytes"] / first[r["graph"]] if r["graph"] in first else float("nan")
        lines.append(
            f"| {r['seq']} | {r['graph']} | {r['kernel']} | {r['bytes'] / 1e6:.2f} | "
            f"{r['bytes_per_head']} | {growth:.1f}x | {r['scores_bytes_per_head']} | "
            f"{r['flops'] / 1e9:.2f} |"
        )
    return "\n".join(lines)
