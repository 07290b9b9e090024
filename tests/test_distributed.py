"""Training under `backend="coda"` with DistributedDataParallel and FSDP2 (`fully_shard`):
two processes on localhost over gloo; losses and gradients match a single-process eager
run on the whole batch."""

from __future__ import annotations

import copy
import json
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as torch_mp
import torch.nn.functional as F
from torch import nn

WORLD = 2
STEPS = 2


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 24), nn.Linear(24, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _wrap(mode: str, model: nn.Module) -> nn.Module:
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (WORLD,))
    fully_shard(model.fc1, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _full(grad: torch.Tensor) -> torch.Tensor:
    # FSDP2 gradients are sharded DTensors: gather them to compare with eager
    return grad.full_tensor() if hasattr(grad, "full_tensor") else grad


def _train(mode: str, rank: int) -> dict[str, object]:
    """Two SGD steps, coda on this rank's half of the batch against eager on all of it."""
    from coda.runtime import record_launches

    torch.manual_seed(0)
    x, y = torch.randn(8, 12), torch.randn(8, 6)
    eager = MLP()
    model = copy.deepcopy(eager)
    compiled = torch.compile(_wrap(mode, model), backend="coda")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    eager_opt = torch.optim.SGD(eager.parameters(), lr=0.1)
    shard = slice(rank * 4, rank * 4 + 4)
    loss_errors, grad_errors, kernels = [], [], set()
    for _ in range(STEPS):
        opt.zero_grad()
        eager_opt.zero_grad()
        with record_launches() as launches:
            loss = F.mse_loss(compiled(x[shard]), y[shard])
            loss.backward()
        kernels |= {(r.graph, r.kind) for r in launches}
        eager_loss = F.mse_loss(eager(x), y)
        eager_loss.backward()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)  # equal halves: the mean of the halves' means
        loss_errors.append((mean_loss / WORLD - eager_loss).abs().item())
        grad_errors.append(
            max(
                (_full(p.grad) - e.grad).abs().max().item()
                for p, e in zip(model.parameters(), eager.parameters(), strict=True)
            )
        )
        opt.step()
        eager_opt.step()
    return {
        "loss_errors": loss_errors,
        "grad_errors": grad_errors,
        "kernels": sorted(map(list, kernels)),
    }


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        results = {mode: _train(mode, rank) for mode in ("ddp", "fsdp2")}
        # both ranks done before either tears its connections down: a rank still
        # finishing its side of the last collective would see the peer's sockets close
        # (gloo then aborts the process from its I/O thread)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(results))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_results: dict[int, dict[str, dict[str, object]]] = {}


def _run_once(tmp_dir: Path) -> dict[int, dict[str, dict[str, object]]]:
    """Both modes in one pair of processes (start-up dominates: torch import, compile)."""
    if not _results:
        # CODA_STRICT=1 and CODA_CACHE_DIR (tests/conftest.py) reach the children through
        # the environment: a graph coda cannot compile fails the run instead of going eager
        ctx = torch_mp.spawn(_worker, args=(_free_port(), str(tmp_dir)), nprocs=WORLD, join=False)
        deadline = time.monotonic() + 240
        try:
            while not ctx.join(timeout=5):
                assert time.monotonic() < deadline, "distributed workers hung"
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                    p.join()
        for rank in range(WORLD):
            _results[rank] = json.loads((tmp_dir / f"rank{rank}.json").read_text())
    return _results


def _check(mode: str, tmp_path: Path) -> None:
    results = _run_once(tmp_path)
    for rank in range(WORLD):
        got = results[rank][mode]
        assert len(got["loss_errors"]) == STEPS
        assert max(got["loss_errors"]) < 1e-5, got
        assert max(got["grad_errors"]) < 1e-5, got
        # coda's own GEMM kernels ran in the forward and in the backward on every rank
        assert ["forward", "gemm"] in got["kernels"], got
        assert ["backward", "gemm"] in got["kernels"], got


def test_ddp_matches_single_process_eager(tmp_path: Path) -> None:
    _check("ddp", tmp_path)


def test_fsdp2_matches_single_process_eager(tmp_path: Path) -> None:
    _check("fsdp2", tmp_path)
