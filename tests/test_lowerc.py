"""The lowerc command line: stages of a built-in model, errors and exit codes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

LOWERC = [sys.executable, "-m", "coda.compiler.lowerc"]


def lowerc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOWERC, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def mlp_stages() -> dict[str, str]:
    import contextlib
    import io

    from coda.compiler.lowerc import main  # in-process: one torch import for all stages

    stages = {}
    for stage in ("fx", "graph", "epilogue", "kernel", "triton", "summary", "dot"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["--model", "mlp", "--emit", stage]) == 0
        stages[stage] = out.getvalue()
    return stages


def test_dot_stage_has_a_cluster_per_launch(mlp_stages: dict[str, str]) -> None:
    text = mlp_stages["dot"]
    assert text.count("digraph ") == 2  # forward and backward
    launches = re.findall(r"(\d+) launches", mlp_stages["summary"])
    assert text.count("subgraph cluster_") == sum(map(int, launches)) == 2 + 6
    for name in re.findall(r"^  ((?:gemm|loop|torch)\d+\w*) ", mlp_stages["summary"], re.M):
        assert f'label="{name} (' in text


def test_summary_reports_the_epilogue_share(mlp_stages: dict[str, str]) -> None:
    # the MLP's biases, activations and residual add all run in GEMM epilogues
    assert "memory-bound ops inside GEMM epilogues: " in mlp_stages["summary"]
    inside, total = re.search(r"epilogues: (\d+) of (\d+)", mlp_stages["summary"]).groups()
    assert int(total) > 0 and int(inside) / int(total) >= 0.5


def test_fx_stage_shows_aten_graphs(mlp_stages: dict[str, str]) -> None:
    text = mlp_stages["fx"]
    assert "# ===== forward =====" in text and "# ===== backward =====" in text
    assert "torch.ops.aten.addmm.default" in text


def test_graph_stage(mlp_stages: dict[str, str]) -> None:
    text = mlp_stages["graph"]
    assert "func.func @forward" in text and "func.func @backward" in text
    assert text.count("graph.matmul") == 3 + 6
    assert "epilogue." not in text


def test_epilogue_stage(mlp_stages: dict[str, str]) -> None:
    text = mlp_stages["epilogue"]
    assert "graph.matmul" not in text
    assert text.count("epilogue.gemm") == 9
    assert 'epilogue.map "gelu"' in text and "epilogue.accumulate" in text


def test_kernel_stage(mlp_stages: dict[str, str]) -> None:
    text = mlp_stages["kernel"]
    assert 'kernel.gemm "gemm0_bias_gelu"' in text
    assert 'kernel.gemm "gemm1_bias_silu_residual_relu_chain_bias"' in text
    assert "graph.pointwise" not in text.split("func.func @backward")[0]


def test_triton_stage(mlp_stages: dict[str, str]) -> None:
    text = mlp_stages["triton"]
    assert "# ===== @forward: gemm0_bias_gelu (gemm) =====" in text
    assert "@triton.jit" in text and "def launch(" in text
    assert "tl.dot(" in text


def test_summary_stage(mlp_stages: dict[str, str]) -> None:
    text = mlp_stages["summary"]
    assert "2 launches (2 gemm, 0 torch fallback)" in text
    assert "gemm1_bias_silu_residual_relu_chain_bias" in text


def test_pass_on_a_file(tmp_path: Path) -> None:
    ir = tmp_path / "in.mlir"
    ir.write_text(
        "func.func @f(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>) -> tensor<4x8xf32> {\n"
        "  %0 = graph.matmul %x, %w : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>\n"
        '  %1 = graph.pointwise "relu"(%0) : (tensor<4x8xf32>) -> tensor<4x8xf32>\n'
        "  func.return %1 : tensor<4x8xf32>\n}\n"
    )
    result = lowerc(str(ir), "-p", "fuse-epilogues")
    assert result.returncode == 0, result.stderr
    assert 'epilogue.map "relu"(%acc)' in result.stdout


def test_malformed_ir_exit_code_and_location(tmp_path: Path) -> None:
    ir = tmp_path / "bad.mlir"
    ir.write_text('func.func @f(%x: tensor<4xf32>) {\n  %0 = graph.pointwise "exp"(%x\n}\n')
    result = lowerc(str(ir))
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{ir}:3:1: error: ")
    assert "Traceback" not in result.stderr


def test_unknown_model_is_a_clean_error() -> None:
    result = lowerc("--model", "nope", "--emit", "graph")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "lowerc: error: unknown model 'nope': use one of mlp, gpt2-block, llama-block, llama-lm "
        "or path.py:attr"
    )
