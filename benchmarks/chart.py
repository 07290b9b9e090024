"""The PNG chart: bytes moved and launches per workload and system."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.measure import Measurement  # noqa: E402
from benchmarks.report import SYSTEM_TITLES, SYSTEMS, title, workload_order  # noqa: E402


def write_chart(results: list[Measurement], path: Path) -> None:
    workloads = workload_order(results)
    by_key = {(m.workload, m.system): m for m in results}
    fig, (ax_bytes, ax_launches) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    width = 0.8 / len(SYSTEMS)
    for i, system in enumerate(SYSTEMS):
        xs = [w + (i - len(SYSTEMS) / 2 + 0.5) * width for w in range(len(workloads))]
        mb = [by_key[(w, system)].bytes / 1e6 if (w, system) in by_key else 0 for w in workloads]
        launches = [
            (by_key[(w, system)].launches or 0) if (w, system) in by_key else 0 for w in workloads
        ]
        ax_bytes.bar(xs, mb, width, label=SYSTEM_TITLES[system])
        if system != "minimum":
            ax_launches.bar(xs, launches, width, label=SYSTEM_TITLES[system])
    ax_bytes.set_ylabel("MB moved")
    ax_bytes.legend(ncols=len(SYSTEMS), fontsize=8)
    ax_bytes.set_title("Global-memory traffic and kernel launches (reference shapes, fp32)")
    ax_launches.set_ylabel("kernel launches")
    ax_launches.set_xticks(range(len(workloads)), [title(w) for w in workloads], rotation=15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
