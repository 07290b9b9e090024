"""bind-sizes: give a graph with symbolic sizes the sizes of one call.

A graph imported with symbolic sizes (dialects/graph_dims.py) says how every dim
depends on the sizes `s0`, `s1`, ...; planning needs numbers (tiles, row groups, what
the backward recomputes). This pass substitutes them into every tensor type:

    bind-sizes{sizes="s0=12"}:  tensor<?x32xf32, #graph.dims<"2*s0">>  ->  tensor<24x32xf32>

Without `sizes`, each function binds the sizes it was traced at (`graph.size_hints`,
recorded by the importer). The functions must verify afterwards: a size that makes a
dim negative, or leaves a symbol unbound, is an error naming the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, FunctionType, IntegerAttr, ModuleOp
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter
from xdsl.utils.exceptions import DiagnosticException

from coda.dialects.graph import ConstantOp, SizeOp
from coda.dialects.graph_dims import SymbolicSizeError, bind_dim, bind_type, is_symbolic

#: the function attribute holding the sizes a graph was traced at
SIZE_HINTS = "graph.size_hints"


def parse_sizes(text: str) -> dict[str, int]:
    """`s0=12,s1=4` -> {"s0": 12, "s1": 4}."""
    sizes: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip().isidentifier() or not value.strip().isdigit():
            raise SymbolicSizeError(f"bind-sizes: '{item}' is not NAME=INTEGER")
        sizes[name.strip()] = int(value)
    return sizes


def size_hints(func: FuncOp) -> dict[str, int]:
    hints = func.attributes.get(SIZE_HINTS)
    if not isinstance(hints, DictionaryAttr):
        return {}
    return {
        name: value.value.data
        for name, value in hints.data.items()
        if isinstance(value, IntegerAttr)
    }


def set_size_hints(func: FuncOp, sizes: Mapping[str, int]) -> None:
    func.attributes[SIZE_HINTS] = DictionaryAttr(
        {name: IntegerAttr(value, 64) for name, value in sorted(sizes.items())}
    )


def _rebind(value: SSAValue, sizes: Mapping[str, int]) -> None:
    if not is_symbolic(value):
        return
    try:
        new_type: Attribute = bind_type(value.type, sizes)
    except SymbolicSizeError as err:
        name = f"%{value.name_hint}" if value.name_hint else "a value"
        raise DiagnosticException(f"bind-sizes: {name}: {err}") from None
    Rewriter.replace_value_with_new_type(value, new_type)


def bind_sizes(func: FuncOp, sizes: Mapping[str, int]) -> None:
    """Make `func` static with `sizes` (every symbol its types mention)."""
    for op in list(func.walk()):
        if isinstance(op, SizeOp):
            try:
                value = bind_dim(op.dim, sizes, op.size.data)
            except SymbolicSizeError as err:
                raise DiagnosticException(f"bind-sizes: graph.size: {err}") from None
            constant = ConstantOp(value, bind_type(op.result.type, sizes))
            Rewriter.replace_op(op, constant)
            constant.result.name_hint = op.result.name_hint
    for op in func.walk():
        for region in op.regions:
            for block in region.blocks:
                for arg in block.args:
                    _rebind(arg, sizes)
        if op is not func:
            for result in op.results:
                _rebind(result, sizes)
    func.function_type = FunctionType.from_lists(
        [arg.type for arg in func.body.block.args],
        [bind_type(t, sizes) for t in func.function_type.outputs.data],
    )
    func.attributes.pop(SIZE_HINTS, None)


@dataclass(frozen=True)
class BindSizes(ModulePass):
    name = "bind-sizes"

    #: NAME=INTEGER pairs, comma separated; empty: each function's traced sizes
    sizes: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        try:
            given = parse_sizes(self.sizes)
        except SymbolicSizeError as err:
            raise DiagnosticException(str(err)) from None
        funcs = [f for f in op.walk() if isinstance(f, FuncOp) and _symbolic(f)]
        for func in funcs:
            bind_sizes(func, {**size_hints(func), **given})
        if funcs:
            op.verify()


def symbolic_value(root: Operation) -> SSAValue | None:
    """The first value under `root` (an op result or block argument) whose type has
    symbolic sizes, or None."""
    for op in root.walk():
        values = [*op.results, *(a for r in op.regions for b in r.blocks for a in b.args)]
        found = next((v for v in values if is_symbolic(v)), None)
        if found is not None:
            return found
    return None


def _symbolic(func: FuncOp) -> bool:
    """Whether `func` has a size to bind (a static one is left as it is)."""
    return (
        SIZE_HINTS in func.attributes
        or any(isinstance(op, SizeOp) for op in func.walk())
        or symbolic_value(func) is not None
    )
