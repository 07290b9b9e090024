"""Runs the lit + FileCheck suite in tests/filecheck, one pytest test per .mlir file.

lit runs once for the whole directory (it parallelises); each file's verdict and
output then become one pytest test, so CI's pytest summary counts them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SUITE = Path(__file__).parent / "filecheck"
FILES = sorted(
    p.relative_to(SUITE).as_posix() for p in SUITE.rglob("*.mlir") if "Output" not in p.parts
)


@pytest.fixture(scope="session")
def lit_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bool, str]]:
    lit = shutil.which("lit") or str(Path(sys.executable).with_name("lit"))
    report = tmp_path_factory.mktemp("lit") / "results.xml"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(
        [lit, "-q", "--xunit-xml-output", str(report), str(SUITE)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    results: dict[str, tuple[bool, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        # classname is "coda.<dir>", name the file: rebuild "<dir>/<file>"
        directory = case.get("classname", "").removeprefix("coda").lstrip(".").replace(".", "/")
        name = f"{directory}/{case.get('name')}" if directory else str(case.get("name"))
        results[name] = (failure is None, "" if failure is None else failure.text or "")
    return results


@pytest.mark.parametrize("path", FILES)
def test_filecheck(path: str, lit_results: dict[str, tuple[bool, str]]) -> None:
    assert path in lit_results, f"lit did not run {path}"
    passed, output = lit_results[path]
    assert passed, output
