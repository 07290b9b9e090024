"""One benchmark job (a workload, the real shapes or the cross-check), run in its own
process so that jobs can run in parallel and no compiler state leaks between them.

    python -m benchmarks.job KEY OUT.json [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def _isolate_caches() -> None:
    # Cold compiles: kernel caches of earlier runs must not help either compiler.
    root = tempfile.mkdtemp(prefix="coda-bench-")
    os.environ["CODA_CACHE_DIR"] = os.path.join(root, "coda")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(root, "inductor")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(root, "triton")
    os.environ["CODA_AOT_CACHE_DIR"] = os.path.join(root, "aot")
    # Inductor's Triton kernels must be interpreter functions from their first import.
    os.environ["TRITON_INTERPRET"] = "1"


def run_workload(key: str, repeats: int) -> list[dict[str, Any]]:
    from benchmarks.coda_system import measure_coda
    from benchmarks.eager import measure_eager
    from benchmarks.inductor_system import MODES, measure_inductor
    from benchmarks.interp import skip_kernel_bodies
    from benchmarks.minimum import measure_minimum
    from benchmarks.workloads import WORKLOADS

    (workload,) = [w for w in WORKLOADS if w.key == key]
    results = [measure_eager(workload), measure_minimum(workload)]
    with skip_kernel_bodies():
        results.append(measure_coda(workload, repeats))
        for system in MODES:
            # max-autotune's compile is dominated by autotuning, whose timings mean nothing
            # under the interpreter: one (cold) compile keeps the run inside its budget
            times = repeats if system == "inductor" else 1
            results.append(measure_inductor(workload, system, times))
    return [m.to_json() for m in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.job")
    parser.add_argument(
        "key",
        help="a workload key (llama-block/train, ...), 'targets:<workload key>', 'real', "
        "'attention', 'varying' or 'crosscheck'",
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    _isolate_caches()
    if args.key == "real":
        from benchmarks.real_shapes import measure_real_shapes

        data = [m.to_json() for m in measure_real_shapes()]
    elif args.key.startswith("targets:"):
        from benchmarks.gpu_targets import measure_targets

        data = measure_targets(args.key.removeprefix("targets:"))
    elif args.key == "varying":
        from benchmarks.varying_sizes import varying_sizes_rows

        data = varying_sizes_rows()
    elif args.key == "attention":
        from benchmarks.attention_scaling import attention_rows

        data = attention_rows()
    elif args.key == "crosscheck":
        from benchmarks.crosscheck import crosscheck_all

        data = crosscheck_all()
    else:
        data = run_workload(args.key, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
