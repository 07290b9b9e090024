"""The same model compiles to byte-identical IR and Triton source in fresh processes,
whatever Python's hash seed (set iteration order) is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coda.compiler.capture import capture
from coda.compiler.models import load_model
from coda.compiler.pipeline import lower
from coda.compiler.report import triton_listing
from coda.runtime import default_cache


def compiled_texts() -> dict[str, str | list[str]]:
    """IR at every stage and the Triton listing of a Llama block (attention, RMSNorm,
    RoPE, merged q/k/v and gate/up GEMMs), forward and backward, and the names of the
    kernel modules torch.compile wrote (content-addressed: the same names mean the same
    sources byte for byte)."""
    spec = load_model("llama-block", ((1, 8, 64),))
    texts: dict[str, str | list[str]] = {}
    module = capture(spec).to_module()
    for stage in ("graph", "epilogue", "kernel"):
        lower(module, stage)
        texts[stage] = str(module)
    texts["triton"] = triton_listing(module)
    torch.manual_seed(0)
    x = torch.randn(*spec.input_shapes[0], requires_grad=True)
    torch._dynamo.reset()
    torch.compile(spec.factory(), backend="coda")(x).sum().backward()
    texts["cache"] = sorted(p.name for p in default_cache().root.glob("*.py"))
    return texts


_CHILD = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_determinism import compiled_texts
json.dump(compiled_texts(), sys.stdout)
"""


def test_same_ir_and_triton_across_processes_and_hash_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fresh process with another hash seed than this one (random unless pinned)
    ours = os.environ.get("PYTHONHASHSEED")
    seed = str(int(ours) + 1) if ours and ours.isdigit() else "4242"
    env = dict(os.environ, PYTHONHASHSEED=seed, CODA_CACHE_DIR=str(tmp_path / "child"))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        monkeypatch.setenv("CODA_CACHE_DIR", str(tmp_path / "parent"))
        here = compiled_texts()
        out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err.decode()
    there = json.loads(out)
    assert set(here) == {"graph", "epilogue", "kernel", "triton", "cache"}
    assert "kernel.attention" in here["kernel"] and "@triton.jit" in here["triton"]
    assert len(here["cache"]) >= 10
    for stage, text in here.items():
        assert text == there[stage], f"{stage} differs between processes"
