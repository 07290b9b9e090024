"""The markdown report: tables of bytes, launches, compile time and modeled H100 time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks import gpu_targets
from benchmarks.measure import Measurement
from benchmarks.roofline import ASSUMPTIONS
from benchmarks.workloads import TITLES

SYSTEMS = ("eager", "inductor", "inductor-max-autotune", "coda", "minimum")
SYSTEM_TITLES = {
    "eager": "eager",
    "inductor": "Inductor",
    "inductor-max-autotune": "Inductor max-autotune",
    "coda": "coda",
    "minimum": "compulsory minimum",
}

#: More per-workload columns: how many of coda's kernels compile cleanly ahead of time
#: for sm_90a / sm_100a / gfx942 / gfx950 (gpu_targets). Each function gets a workload
#: key and its measurements and returns {column title: cell}; register with
#: `EXTRA_COLUMNS.append(fn)`. Columns appear on coda's row of the main table.
ExtraColumns = Callable[[str, dict[str, Measurement]], dict[str, str]]
EXTRA_COLUMNS: list[ExtraColumns] = [gpu_targets.columns]

HEADLINE = "llama-block/train"


def title(key: str) -> str:
    model, _, mode = key.partition("/")
    name = TITLES.get(model, model)
    return f"{name} {'fwd+bwd' if mode == 'train' else 'fwd'}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{a / b:.2f}x"


def _seconds(m: Measurement) -> str:
    if not m.compile_s:
        return ""
    return f"{m.compile_median_s:.2f} ({m.compile_cold_s:.2f})"


def workload_order(results: list[Measurement]) -> list[str]:
    """Workload keys smallest model first, forward before forward+backward."""
    keys = list(dict.fromkeys(m.workload for m in results))
    models = list(TITLES)
    return sorted(
        keys,
        key=lambda k: (
            models.index(k.split("/")[0]) if k.split("/")[0] in models else len(models),
            k.endswith("/train"),
        ),
    )


def _by_workload(results: list[Measurement]) -> dict[str, dict[str, Measurement]]:
    grouped: dict[str, dict[str, Measurement]] = {k: {} for k in workload_order(results)}
    for m in results:
        grouped[m.workload][m.system] = m
    return grouped


def main_table(results: list[Measurement]) -> str:
    grouped = _by_workload(results)
    extra: dict[str, dict[str, str]] = {}
    for key, systems in grouped.items():
        for fn in EXTRA_COLUMNS:
            extra.setdefault(key, {}).update(fn(key, systems))
    extra_titles = list(dict.fromkeys(t for cells in extra.values() for t in cells))
    head = [
        "workload",
        "system",
        "launches",
        "MB moved",
        "x eager",
        "x Inductor",
        "x minimum",
        "compile s, median (cold)",
        "modeled H100 us",
        *extra_titles,
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, systems in grouped.items():
        eager, inductor, minimum = (systems.get(s) for s in ("eager", "inductor", "minimum"))
        for name in SYSTEMS:
            m = systems.get(name)
            if m is None:
                continue
            system_title = SYSTEM_TITLES[name]
            if m.extra.get("eager_graphs"):
                system_title += " (a graph ran eagerly!)"
            cells = [
                title(key),
                system_title,
                "" if m.launches is None else str(m.launches),
                _mb(m.bytes),
                _ratio(m.bytes, eager.bytes if eager else None),
                _ratio(m.bytes, inductor.bytes if inductor else None),
                _ratio(m.bytes, minimum.bytes if minimum else None),
                _seconds(m),
                "" if m.modeled_s is None else f"{m.modeled_s * 1e6:.1f}",
            ]
            cells += [extra.get(key, {}).get(t, "") if name == "coda" else "" for t in extra_titles]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline_table(results: list[Measurement]) -> str:
    """coda against each Inductor mode on the Llama block, forward+backward (issue 4)."""
    systems = _by_workload(results).get(HEADLINE, {})
    coda = systems.get("coda")
    if coda is None:
        return "(no Llama block fwd+bwd measurement)"
    lines = [
        "| coda / ... | bytes | launches | compile time (median) | cold compile |",
        "|---|---|---|---|---|",
    ]
    for name in ("inductor", "inductor-max-autotune", "eager", "minimum"):
        other = systems.get(name)
        if other is None:
            continue
        lines.append(
            f"| {SYSTEM_TITLES[name]} | {_ratio(coda.bytes, other.bytes)} | "
            f"{_ratio(coda.launches, other.launches)} | "
            f"{_ratio(coda.compile_median_s, other.compile_median_s)} | "
            f"{_ratio(coda.compile_cold_s, other.compile_cold_s)} |"
        )
    minimum = systems.get("minimum")
    inductor = systems.get("inductor")
    goals = [
        f"launches {coda.launches} (goal <= 20)",
        f"bytes {_ratio(coda.bytes, minimum.bytes if minimum else None)} of the minimum"
        " (goal <= 1.25x)",
        f"cold compile {_ratio(coda.compile_cold_s, inductor.compile_cold_s if inductor else None)}"
        " of Inductor's (goal <= 0.5x)",
    ]
    return "\n".join(lines) + "\n\nIssue-4 goals: " + "; ".join(goals) + "."


def crosscheck_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model (small shapes, fwd+bwd) | kernels | logged bytes | interpreter-measured bytes "
        "| difference |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['kernels']} | {row['logged']} | {row['measured']} | "
            f"{row['relative_difference'] * 100:+.2f}% |"
        )
    return "\n".join(lines)


def markdown(
    results: list[Measurement],
    real: list[Measurement],
    crosscheck: list[dict[str, Any]],
    meta: dict[str, Any],
    attention: list[dict[str, Any]] = (),  # type: ignore[assignment]
    varying: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> str:
    from benchmarks.attention_scaling import attention_table
    from benchmarks.varying_sizes import varying_sizes_table

    parts = [
        "# coda benchmarks",
        "",
        f"Generated by `{meta['command']}` in {meta['wall_s']:.0f} s on {meta['machine']}.",
        "",
        "## Llama block, forward+backward: coda relative to the others",
        "",
        headline_table(results),
        "",
        "## Reference shapes (batch 2, seq 128, hidden 256, 4 heads of 64, fp32)",
        "",
        main_table(results),
        "",
        "## Real shapes from the kernel plan (Llama-3-1B-like block, 8192 tokens, bf16)",
        "",
        main_table(real),
        "",
        "## Attention against sequence length (Llama block, kernel plan, fp32, batch 2, "
        "4 heads of 64)",
        "",
        "coda's attention kernels move O(S * d) bytes per head: 8x the sequence, 8x the "
        "bytes; the S x S scores they never store would grow 64x.",
        "",
        attention_table(list(attention)) if attention else "(not measured in this run)",
        "",
        "## Varying sequence lengths (Llama block fwd+bwd, batch 2, hidden 256, fp32)",
        "",
        "Compile time of each new length's first step (that step minus a second one, kernel "
        "bodies skipped), Dynamo compilations of the frame and Triton modules built, in one "
        "process per system.",
        "",
        varying_sizes_table(list(varying)) if varying else "(not measured in this run)",
        "",
        "## Cross-check: coda's logged bytes against the interpreted kernels' loads and stores",
        "",
        crosscheck_table(crosscheck),
        "",
        "## How these figures are made",
        "",
        *[f"- {line}" for line in NOTES],
        f"- {ASSUMPTIONS}",
    ]
    if meta.get("cuda"):
        parts += ["", "## Measured on CUDA", "", meta["cuda"]]
    return "\n".join(parts) + "\n"


NOTES = (
    "Bytes are global-memory traffic: per kernel, the unique bytes of every buffer it reads "
    "and writes (a broadcast reads its elements once). MB = 10^6 bytes.",
    "eager: every aten op that is not a view or an allocation is one launch moving its "
    "inputs' and outputs' bytes (a TorchDispatchMode recorder).",
    "Inductor: Triton backend under TRITON_INTERPRET (Inductor's CPU backend set to Triton), "
    "bytes from torch._inductor.metrics.num_bytes_accessed, launches = Triton launches + "
    "aten calls of the generated wrapper (extern GEMMs, fallbacks). max-autotune uses Triton "
    "GEMM templates with fused epilogues; its autotuning times each candidate once, and those "
    "timings carry no information here.",
    "coda: the runtime's launch log (torch fallbacks included); FLOPs from the kernel plan.",
    "At the reference shapes the kernels' bodies are skipped (bytes and launches do not depend "
    "on values; interpreting them would take minutes per block). The cross-check runs them.",
    "Compile time: first step minus a steady-state step, from a fresh Dynamo state and empty "
    "caches, repeated in the same process (coda and Inductor default; max-autotune compiles "
    "once, its autotuning being meaningless under the interpreter); the cold figure is the "
    "first compile of the process. Wall-clock seconds with two jobs sharing two cores: on a "
    "busy machine they vary between runs, the bytes and launches do not.",
    "compulsory minimum: parameters, inputs, outputs, output gradient, parameter/input "
    "gradients and the saved activations (min-cut partition) once each.",
)
