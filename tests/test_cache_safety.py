"""Kernel cache safety end to end: racing processes on a cold cache, a truncated entry
rebuilt, a private cache directory, and user strings that never reach generated code."""

from __future__ import annotations

import ast
import hashlib
import logging
import multiprocessing as mp
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coda.runtime import KernelCache, source_hash
from coda.runtime import kernel_cache as kernel_cache_module
from coda.runtime.kernel_cache import CacheDirError


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 20), nn.Linear(20, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _eager_and_coda(model: nn.Module, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Output and gradients (input first, then parameters) of eager and coda runs."""
    results = {}
    for name, fn in (("eager", model), ("coda", torch.compile(model, backend="coda"))):
        model.zero_grad()
        xi = x.detach().clone().requires_grad_()
        out = fn(xi)
        out.square().sum().backward()
        grads = [xi.grad] + [p.grad for p in model.parameters()]
        results[name] = [out.detach(), *(g.clone() for g in grads)]
    return results


def _assert_matches(results: dict[str, list[torch.Tensor]]) -> None:
    for got, want in zip(results["coda"], results["eager"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _entries_hash_to_their_names(root: Path) -> list[Path]:
    files = sorted(root.glob("*.py"))
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()[:24]
        assert f.stem == digest, f"{f.name} does not hash to its name"
    return files


def _race_child(root: str, barrier: Any, results: Any, rank: int) -> None:
    # Set before coda is imported: the default cache root is read from the environment.
    os.environ["CODA_CACHE_DIR"] = root
    os.environ["CODA_STRICT"] = "1"
    try:
        torch.manual_seed(0)
        model, x = TinyMLP(), torch.randn(5, 12)
        barrier.wait(timeout=60)  # all four compile (and write kernels) at the same time
        _assert_matches(_eager_and_coda(model, x))
        results.put((rank, "ok"))
    except BaseException as err:  # reported to the parent, which fails the test
        results.put((rank, f"{type(err).__name__}: {err}"))


def test_four_processes_race_on_a_cold_cache(tmp_path: Path) -> None:
    root = tmp_path / "cold" / "kernels"
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_race_child, args=(str(root), barrier, results, rank))
        for rank in range(4)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = dict(results.get(timeout=180) for _ in procs)
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    assert outcomes == {rank: "ok" for rank in range(4)}
    assert [p.exitcode for p in procs] == [0] * 4
    # every entry whole (forward and backward kernels of the MLP), no temporary left over
    assert len(_entries_hash_to_their_names(root)) >= 4
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".py")) == []
    # the directories coda created are private to the user
    for directory in (root, root.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_truncated_entries_are_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CODA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(kernel_cache_module, "_default_caches", {})
    torch.manual_seed(0)
    model, x = TinyMLP(), torch.randn(3, 12)
    torch._dynamo.reset()
    first = _eager_and_coda(model, x)
    _assert_matches(first)
    files = _entries_hash_to_their_names(tmp_path)
    for f in files:  # as if a crash cut every write short
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])

    # a new process would start with an empty in-memory cache and the same directory
    monkeypatch.setattr(kernel_cache_module, "_default_caches", {})
    torch._dynamo.reset()
    with caplog.at_level(logging.WARNING, logger="coda"):
        second = _eager_and_coda(model, x)
    _assert_matches(second)
    assert _entries_hash_to_their_names(tmp_path) == files
    rebuilt = sorted(r.getMessage() for r in caplog.records if "corrupt" in r.getMessage())
    expected = [f"coda: kernel cache entry {f.name} was corrupt; rebuilt" for f in files]
    assert rebuilt == sorted(expected)


def test_cache_directory_is_private(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    KernelCache(root).load("VALUE = 1\n", interpret=False)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.parent.stat().st_mode) == 0o700
    assert (root / f"{source_hash('VALUE = 1' + chr(10))}.py").is_file()


def test_cache_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(CacheDirError) as err:
        KernelCache(shared).load("VALUE = 1\n", interpret=False)
    assert str(err.value) == (
        f"coda kernel cache {shared} is writable by group or others (mode 777); "
        "use a private directory (chmod 700) or set CODA_CACHE_DIR"
    )
    assert list(shared.iterdir()) == []


#: A parameter and a submodule named to break out of a string, a comment or a docstring
#: if any generated source spliced them in unsanitized.
EVIL_PARAM = 'x"); import os; getattr(os, "system")("touch PWNED"); #'
EVIL_MODULE = 'lin\n"""\nimport os\ngetattr(os, "system")("touch PWNED")\n#'


class Injection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_parameter(EVIL_PARAM, nn.Parameter(torch.randn(10, 7)))
        self.add_module(EVIL_MODULE, nn.Linear(10, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(x @ getattr(self, EVIL_PARAM).t())
        return getattr(self, EVIL_MODULE)(hidden)


def test_code_injection_names_give_harmless_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kernel_cache_module, "_default_caches", {})
    monkeypatch.chdir(tmp_path)  # where `touch PWNED` would land
    torch.manual_seed(0)
    torch._dynamo.reset()
    _assert_matches(_eager_and_coda(Injection(), torch.randn(4, 7)))

    files = _entries_hash_to_their_names(tmp_path / "cache")
    assert len(files) >= 2  # the forward and backward GEMMs at least
    for f in files:
        source = f.read_text()
        ast.parse(source)  # valid Python
        # no trace of the user's strings: names are mangled identifiers (or not used)
        assert "PWNED" not in source and "system" not in source and "import os" not in source
    assert not (tmp_path / "PWNED").exists()
