"""KernelCache: content addressing, reuse, interpreter decoration, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import triton
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

from coda.runtime import KernelCache, default_cache, source_hash
from coda.runtime import kernel_cache as kernel_cache_module

KERNEL_SOURCE = """
import triton
import triton.language as tl


@triton.jit
def copy_kernel(src, dst, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst + offs, tl.load(src + offs, mask=offs < n), mask=offs < n)
"""


def _py_files(root: Path) -> list[Path]:
    return sorted(root.glob("*.py"))


def _knob_state() -> tuple[bool, str | None]:
    return triton.knobs.runtime.interpret, os.environ.get("TRITON_INTERPRET")


def test_one_file_per_distinct_source_and_reuse(tmp_path: Path) -> None:
    cache = KernelCache(tmp_path)
    first = cache.load("VALUE = 1\n", interpret=False)
    again = cache.load("VALUE = 1\n", interpret=False)
    other = cache.load("VALUE = 2\n", interpret=False)

    assert again is first
    assert (first.VALUE, other.VALUE) == (1, 2)
    expected = {tmp_path / f"{source_hash(s)}.py" for s in ("VALUE = 1\n", "VALUE = 2\n")}
    assert set(_py_files(tmp_path)) == expected
    assert len(source_hash("x")) == 24
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_new_cache_instance_reuses_the_file(tmp_path: Path) -> None:
    KernelCache(tmp_path).load("VALUE = 1\n", interpret=False)
    path = _py_files(tmp_path)[0]
    mtime = path.stat().st_mtime_ns
    module = KernelCache(tmp_path).load("VALUE = 1\n", interpret=False)
    assert module.VALUE == 1
    assert path.stat().st_mtime_ns == mtime


def test_corrupted_file_is_rewritten(tmp_path: Path) -> None:
    cache = KernelCache(tmp_path)
    path = cache.path_for("VALUE = 3\n")
    tmp_path.mkdir(exist_ok=True)
    path.write_text("VALUE = ")  # as if truncated by a crash
    assert cache.load("VALUE = 3\n", interpret=False).VALUE == 3
    assert path.read_text() == "VALUE = 3\n"


def test_interpret_flag_selects_kernel_class_and_restores_knob(tmp_path: Path) -> None:
    cache = KernelCache(tmp_path)
    before = _knob_state()
    interp = cache.load(KERNEL_SOURCE, interpret=True)
    native = cache.load(KERNEL_SOURCE, interpret=False)

    assert isinstance(interp.copy_kernel, InterpretedFunction)
    assert isinstance(native.copy_kernel, JITFunction)
    assert interp is not native
    assert cache.load(KERNEL_SOURCE, interpret=True) is interp
    assert len(_py_files(tmp_path)) == 1
    assert _knob_state() == before


def test_failing_module_restores_knob_and_is_not_memoized(tmp_path: Path) -> None:
    cache = KernelCache(tmp_path)
    before = _knob_state()
    modules_before = set(sys.modules)
    with pytest.raises(ZeroDivisionError):
        cache.load("import triton\nassert triton.knobs.runtime.interpret\n1 / 0\n", interpret=True)
    assert _knob_state() == before
    assert set(sys.modules) == modules_before
    with pytest.raises(ZeroDivisionError):
        cache.load("import triton\nassert triton.knobs.runtime.interpret\n1 / 0\n", interpret=True)


def test_default_cache_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODA_CACHE_DIR", str(tmp_path / "a"))
    a = default_cache()
    assert a.root == tmp_path / "a"
    assert default_cache() is a
    monkeypatch.setenv("CODA_CACHE_DIR", str(tmp_path / "b"))
    assert default_cache().root == tmp_path / "b"
    monkeypatch.delenv("CODA_CACHE_DIR")
    assert KernelCache().root == Path.home() / ".cache" / "coda" / "kernels"


# The child loads kernel_cache.py by path rather than importing coda.runtime, which would
# import torch and cost ~2 s per process; the module needs only triton and the stdlib.
_CHILD = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("kc", sys.argv[1])
kc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kc)
root, ready, go, n = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
ready.touch()
deadline = time.monotonic() + 20
while not go.exists():
    assert time.monotonic() < deadline, "parent never said go"
    time.sleep(0.001)
for i in range(n):
    # VALUE last: a reader of a partly written file would miss it.
    src = "# padding to widen the write window\\n" * 4000 + f"VALUE = {i}\\n"
    assert kc.KernelCache(root).load(src, interpret=False).VALUE == i
"""


def test_concurrent_processes_load_same_sources(tmp_path: Path) -> None:
    root, n_sources, n_procs = tmp_path / "cache", 20, 3
    go = tmp_path / "go"
    readies = [tmp_path / f"ready{i}" for i in range(n_procs)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                kernel_cache_module.__file__,
                str(root),
                str(ready),
                str(go),
                str(n_sources),
            ],
            stderr=subprocess.PIPE,
        )
        for ready in readies
    ]
    try:
        deadline = time.monotonic() + 20
        while not all(r.exists() for r in readies):
            assert all(p.poll() is None for p in procs), "a child died before starting"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=30)
            assert p.returncode == 0, err.decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    padding = "# padding to widen the write window\n" * 4000
    assert {f.read_text() for f in _py_files(root)} == {
        padding + f"VALUE = {i}\n" for i in range(n_sources)
    }
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]
