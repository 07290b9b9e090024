"""lowerc reports user mistakes as one line `lowerc: error: ...` with exit code 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from coda.compiler.lowerc import main
from coda.passes import PASSES

IR = """func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = graph.pointwise "exp"(%x) : (tensor<4xf32>) -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}
"""

MODEL = """import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x)


count = 3
"""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # messages name files as the user typed them
    (tmp_path / "ok.mlir").write_text(IR)
    (tmp_path / "net.py").write_text(MODEL)
    (tmp_path / "syntax.py").write_text("import torch\ndef f(:\n")
    (tmp_path / "raises.py").write_text('raise RuntimeError("boom\\nsecond line")\n')
    return tmp_path


CASES = {
    "unknown pass": (
        ["ok.mlir", "-p", "canonicalize,no-such-pass"],
        f"unknown pass 'no-such-pass' (coda's passes: {', '.join(PASSES)})",
    ),
    "unknown pass option": (
        ["ok.mlir", "-p", "canonicalize{fast=true}"],
        "pass 'canonicalize' has no option 'fast' (it takes none)",
    ),
    "malformed pipeline": (
        ["ok.mlir", "-p", "canonicalize{"],
        "bad pass pipeline 'canonicalize{' at column 14: Expected argument name here",
    ),
    "unknown command-line option": (
        ["ok.mlir", "--fast"],
        "unrecognized arguments: --fast",
    ),
    "unknown stage": (
        ["ok.mlir", "--emit", "asm"],
        "argument --emit: invalid choice: 'asm' (choose from 'fx', 'graph', 'epilogue', "
        "'kernel', 'triton', 'summary', 'dot', 'resources', 'ptx', 'amdgcn')",
    ),
    "missing input file": (["missing.mlir"], "input file 'missing.mlir' does not exist"),
    "unparsable shape": (
        ["--model", "mlp", "--input-shape", "4xa", "--emit", "graph"],
        "argument --input-shape: '4xa' is not a shape like 4x16",
    ),
    "empty dimension": (
        ["--model", "mlp", "--input-shape", "4x", "--emit", "graph"],
        "argument --input-shape: '4x' is not a shape like 4x16",
    ),
    "zero dimension": (
        ["--model", "mlp", "--input-shape", "0x32", "--emit", "graph"],
        "argument --input-shape: '0x32' is not a shape like 4x16",
    ),
    "missing model attribute": (
        ["--model", "net.py:Nett", "--input-shape", "4x16", "--emit", "graph"],
        "'net.py' has no attribute 'Nett'",
    ),
    "model attribute that is no model": (
        ["--model", "net.py:count", "--input-shape", "4x16", "--emit", "graph"],
        "'net.py:count' is a int, not a module or a factory of one",
    ),
    "shape the model rejects": (
        ["--model", "net.py:Net", "--input-shape", "4x8", "--emit", "graph"],
        "model 'net.py:Net' fails on inputs of shape 4x8: RuntimeError: mat1 and mat2 shapes "
        "cannot be multiplied (4x8 and 16x4)",
    ),
    "model file with a syntax error": (
        ["--model", "syntax.py:Net", "--input-shape", "4x16", "--emit", "graph"],
        "cannot load 'syntax.py': SyntaxError: invalid syntax (syntax.py, line 2)",
    ),
    "model file that raises": (
        ["--model", "raises.py:Net", "--input-shape", "4x16", "--emit", "graph"],
        "cannot load 'raises.py': RuntimeError: boom",
    ),
    "model without shapes": (
        ["--model", "net.py:Net", "--emit", "graph"],
        "model 'net.py:Net' needs --input-shape (e.g. --input-shape 4x16)",
    ),
    "unknown precision policy": (
        ["--model", "mlp", "--precision", "fp9", "--emit", "epilogue"],
        "precision policy must be one of none, w4a16, w3a16, nvfp4, mxfp8-act, mxfp4-act, "
        "mxfp8, fp8-rowwise, fp8-tensorwise, got 'fp9'",
    ),
    "unknown quantize-operands recipe": (
        ["ok.mlir", "-p", "quantize-operands{recipe=fp9}"],
        "recipe must be one of fp8-rowwise, fp8-tensorwise, mxfp8, got fp9",
    ),
    "weight-only policy on a training capture": (
        ["--model", "mlp", "--precision", "w4a16", "--emit", "kernel"],
        "--precision w4a16 is an inference policy: add --inference",
    ),
    "unknown dtype": (
        ["--model", "mlp", "--dtype", "fp8", "--emit", "graph"],
        "unknown dtype 'fp8' (use one of fp32, bf16, fp16)",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_user_mistake_is_one_line_and_exit_1(
    case: str, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, message = CASES[case]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert err == f"lowerc: error: {message}\n"
    assert out == ""


def test_good_model_file_still_compiles(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "net.py:Net", "--input-shape", "4x16", "--emit", "kernel"]) == 0
    out, err = capsys.readouterr()
    assert "kernel.gemm" in out and err == ""
