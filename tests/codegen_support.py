"""Helpers shared by the codegen tests: parse a kernel op, load generated source."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from xdsl.parser import Parser

from coda.dialects import make_context
from coda.dialects.kernel import KernelOp
from coda.runtime import KernelCache


def parse_kernel(args: dict[str, str], body: str) -> KernelOp:
    """The one kernel op in `body`, parsed inside a func taking `args` ({name: type})."""
    params = ", ".join(f"%{name}: {ty}" for name, ty in args.items())
    module = Parser(make_context(), f"func.func @f({params}) {{\n{body}\nfunc.return\n}}")
    parsed = module.parse_module()
    parsed.verify()
    return next(op for op in parsed.walk() if isinstance(op, KernelOp))


def load(source: str, tmp_path: Path, *, interpret: bool = True) -> ModuleType:
    """Import generated source exactly as coda's runtime does (interpreter on CPU)."""
    compile(source, "<generated>", "exec")
    return KernelCache(tmp_path).load(source, interpret=interpret)
