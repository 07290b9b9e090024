"""coda's IR: the graph, epilogue, kernel, layout and lowp dialects and the pointwise registry."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.func import Func

from coda.dialects.epilogue import Epilogue
from coda.dialects.graph import Graph
from coda.dialects.kernel import Kernel
from coda.dialects.layout import Layout
from coda.dialects.lowp import Lowp

CODA_DIALECTS = (Graph, Epilogue, Kernel, Layout, Lowp)


def make_context() -> Context:
    """A context that knows builtin, func and every coda dialect."""
    ctx = Context()
    for dialect in (Builtin, Func, *CODA_DIALECTS):
        ctx.load_dialect(dialect)
    return ctx


__all__ = ["CODA_DIALECTS", "Epilogue", "Graph", "Kernel", "Layout", "Lowp", "make_context"]
