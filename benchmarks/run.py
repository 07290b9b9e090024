"""Reproduce every benchmark figure: `python -m benchmarks.run [--quick] [--out DIR]`.

Each workload runs in its own process (`benchmarks.job`), `--jobs` at a time; the
results are gathered into `results.md` (the tables), `results.json` (every figure) and
`bytes_launches.png` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.gpu_targets import JOB_PREFIX, attach
from benchmarks.measure import Measurement
from benchmarks.workloads import WORKLOADS

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results"
#: the slowest jobs first, so that the pool finishes evenly
ORDER = (
    "llama-lm/train",
    "targets:llama-lm/train",
    "llama-block/train",
    "targets:llama-block/train",
    "gpt2-block/train",
    "targets:gpt2-block/train",
    "llama-lm/infer",
    "targets:llama-lm/infer",
    "llama-block/infer",
    "targets:llama-block/infer",
    "gpt2-block/infer",
    "targets:gpt2-block/infer",
    "crosscheck",
    "varying",
    "real",
    "attention",
)
QUICK = (
    "llama-block/train",
    "targets:llama-block/train",
    "gpt2-block/infer",
    "crosscheck",
    "real",
    "attention",
)


def _run_job(key: str, tmp: Path, repeats: int) -> tuple[str, Any, str]:
    out = tmp / (key.replace("/", "_") + ".json")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.job", key, str(out), "--repeats", str(repeats)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - start
    print(f"  {key}: {'ok' if proc.returncode == 0 else 'FAILED'} in {took:.0f} s", flush=True)
    if proc.returncode != 0:
        return key, None, proc.stderr[-3000:]
    return key, json.loads(out.read_text()), ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer workloads, one compile each")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, help="compiles per system (default 3, quick 1)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    keys = [k for k in ORDER if not args.quick or k in QUICK]
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    print(f"{command}: {len(keys)} jobs, {args.jobs} at a time", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="coda-bench-") as tmp:
        with ThreadPoolExecutor(args.jobs) as pool:
            done = list(pool.map(lambda k: _run_job(k, Path(tmp), repeats), keys))
    results, real, crosscheck, attention, varying, failures = [], [], [], [], [], {}
    targets: dict[str, dict[str, str]] = {}
    for key, data, err in done:
        if data is None:
            failures[key] = err
        elif key.startswith(JOB_PREFIX):
            targets[key.removeprefix(JOB_PREFIX)] = data
        elif key == "crosscheck":
            crosscheck = data
        elif key == "attention":
            attention = data
        elif key == "varying":
            varying = data
        elif key == "real":
            real = [Measurement.from_json(d) for d in data]
        else:
            results += [Measurement.from_json(d) for d in data]
    attach(results, targets)
    from benchmarks.cuda import cuda_table

    cuda = cuda_table(tuple(w for w in WORKLOADS if w.key in keys))
    meta = {
        "command": command,
        "wall_s": time.perf_counter() - start,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.jobs} jobs in parallel",
        "cuda": cuda,
    }
    write_results(args.out, results, real, crosscheck, meta, failures, attention, varying)
    if not args.quick and args.out.resolve() == DEFAULT_OUT and not failures:
        _update_readme(results, meta, attention, varying)
    print((args.out / "results.md").read_text())
    for key, err in failures.items():
        print(f"job {key} failed:\n{err}", file=sys.stderr)
    return 1 if failures else 0


def _update_readme(
    results: list[Measurement],
    meta: dict[str, Any],
    attention: list[dict[str, Any]],
    varying: list[dict[str, Any]],
) -> None:
    from benchmarks.attention_scaling import attention_table
    from benchmarks.readme import update_readme
    from benchmarks.report import headline_table, main_table

    tables = (
        f"Latest full run ({meta['wall_s']:.0f} s, {meta['machine']}); "
        "reference shapes: batch 2, seq 128, hidden 256, 4 heads of 64, fp32. "
        "MB = 10^6 bytes; compile time in seconds, median of 3 (cold).\n\n"
        "Llama block forward+backward, coda relative to:\n\n"
        f"{headline_table(results)}\n\n{main_table(results)}\n"
    )
    if attention:
        tables += (
            "\nAttention kernels of the Llama block at two sequence lengths (kernel plan): "
            "bytes grow with S, not S^2.\n\n"
            f"{attention_table(attention)}\n"
        )
    if varying:
        from benchmarks.varying_sizes import varying_sizes_table

        tables += (
            "\nFive sequence lengths in turn (Llama block fwd+bwd): compile time of each "
            "new length's first step, in seconds.\n\n"
            f"{varying_sizes_table(varying)}\n"
        )
    update_readme(REPO / "README.md", tables)


def write_results(
    out: Path,
    results: list[Measurement],
    real: list[Measurement],
    crosscheck: list[dict[str, Any]],
    meta: dict[str, Any],
    failures: dict[str, str],
    attention: list[dict[str, Any]] | None = None,
    varying: list[dict[str, Any]] | None = None,
) -> None:
    from benchmarks.chart import write_chart
    from benchmarks.report import markdown

    out.mkdir(parents=True, exist_ok=True)
    text = markdown(results, real, crosscheck, meta, attention or [], varying or [])
    if failures:
        text += "\n## Failed jobs\n\n" + "\n".join(f"- {k}" for k in failures) + "\n"
    (out / "results.md").write_text(text)
    everything = {
        "meta": meta,
        "results": [m.to_json() for m in results],
        "real_shapes": [m.to_json() for m in real],
        "crosscheck": crosscheck,
        "attention_scaling": attention or [],
        "varying_sizes": varying or [],
        "failed_jobs": sorted(failures),
    }
    (out / "results.json").write_text(json.dumps(everything, indent=1) + "\n")
    if results:
        write_chart(results, out / "bytes_launches.png")


if __name__ == "__main__":
    sys.exit(main())
