"""Import an FX aten graph (from AOTAutograd) into the `graph` dialect.

Lowering rules are data: `LOWERINGS` maps an aten overload packet to a small
function that emits graph ops. An aten op without a rule, or one a rule declines
(float64, integer arithmetic, unsupported arguments), becomes `graph.opaque` and
runs through torch; its one-line reason is logged once per target.

Symbolic sizes (a graph Dynamo traced with SymInts) become `?` dims whose sympy
expressions are in the types (dialects/graph_dims.py): size inputs and arithmetic on
sizes live in the types, a size used as a value is a `graph.size`, and sizes the graph
returns are recorded in `ImportedGraph.size_outputs`.

A graph coda cannot represent at all (non-tensor values flowing between ops, a size
where an opaque op needs a literal) raises `UnsupportedGraph`; the backend then plans
a symbolic graph per size from static traces, and runs a static one eagerly.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float32Type,
    ModuleOp,
    TensorType,
    f32,
)
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from coda.dialects import graph
from coda.dialects.dtypes import element_type_of, torch_dtype_of
from coda.dialects.graph_dims import (
    Dim,
    SymbolicSizeError,
    canonical,
    is_symbolic,
    symbolic_shape,
    symbolic_type,
)
from coda.passes.bind_sizes import set_size_hints

log = logging.getLogger("coda.compiler")
aten = torch.ops.aten


class UnsupportedGraph(Exception):
    """The graph as a whole cannot be compiled; the message says why."""


class Decline(Exception):
    """A lowering rule cannot handle this node; it becomes graph.opaque."""


#: element types the generated kernels compute in (float32 math, converted at stores)
KERNEL_FLOATS = (Float32Type, Float16Type, BFloat16Type)


def element_type(dtype: torch.dtype) -> Attribute:
    elem = element_type_of(dtype)
    if elem is None:
        raise UnsupportedGraph(f"dtype {dtype} has no IR element type")
    return elem


def size_dim(size: int | torch.SymInt | torch.SymFloat) -> Dim:
    """A dim of a traced tensor: an int, or the expression of a symbolic size (also of
    one converted to float, `sym_float(s0)`, to divide by)."""
    if isinstance(size, int):
        return size
    if not isinstance(size, torch.SymInt | torch.SymFloat):
        raise UnsupportedGraph(f"size {size!r} is neither an int nor a symbolic size")
    expr = size.node.expr
    if isinstance(size, torch.SymFloat):
        if type(expr).__name__ != "ToFloat":
            raise UnsupportedGraph(f"symbolic float {size} is not a size")
        expr = expr.args[0]
    try:
        return canonical(expr)
    except SymbolicSizeError as err:
        raise UnsupportedGraph(f"symbolic size {size}: {err}") from None


def tensor_type(value: torch.Tensor) -> TensorType:
    return symbolic_type(element_type(value.dtype), [size_dim(s) for s in value.shape])


def _size_hints(val: torch.SymInt | torch.Tensor) -> dict[str, int]:
    """The traced value of each size symbol in a placeholder's type."""
    sizes = [val] if isinstance(val, torch.SymInt) else [*val.shape]
    hints: dict[str, int] = {}
    for size in sizes:
        if isinstance(size, torch.SymInt):
            env = size.node.shape_env
            for symbol in size.node.expr.free_symbols:
                hint = env.backed_var_to_val.get(symbol)
                if hint is not None:
                    hints[str(symbol)] = int(hint)
    return hints


def _meta(node: fx.Node) -> Any:
    if "val" not in node.meta:
        raise UnsupportedGraph(f"node {node.name} has no shape information")
    return node.meta["val"]


@dataclass
class ImportedGraph:
    """A function in the graph dialect plus what the IR does not say.

    `output_slots[i]` is the index into the func's returned values of the graph's
    i-th output, or None where the graph returns None (a missing gradient) or a size
    (`size_outputs[i]`: a forward returns the sizes its backward takes).
    """

    module: ModuleOp
    func: FuncOp
    output_slots: list[int | None]
    fallback_reasons: dict[str, str] = field(default_factory=dict)
    size_outputs: dict[int, Dim] = field(default_factory=dict)


_logged_reasons: set[str] = set()


def _log_fallback_once(target: str, reason: str) -> None:
    if target not in _logged_reasons:
        _logged_reasons.add(target)
        log.warning("coda: %s falls back to torch: %s", target, reason)


class Importer:
    """Walks one FX graph and builds the func body."""

    def __init__(self, gm: fx.GraphModule, name: str):
        self.gm = gm
        self.name = name
        self.block = Block()
        self.values: dict[fx.Node, SSAValue | list[SSAValue]] = {}
        self.fallback_reasons: dict[str, str] = {}
        #: size symbol -> its value in the trace (graph.size_hints of a symbolic graph)
        self.size_hints: dict[str, int] = {}

    # -- emission helpers used by the rules ---------------------------------------------
    def emit(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def value(self, arg: Any, like: TensorType | None = None) -> SSAValue:
        """The SSA value of an FX argument; Python scalars become 0-d constants."""
        if isinstance(arg, fx.Node):
            found = self.values.get(arg)
            if found is None and isinstance(arg.meta.get("val"), torch.SymInt | torch.SymFloat):
                elem = like.element_type if like is not None else f32
                elem = elem if isinstance(elem, KERNEL_FLOATS) else f32
                return self.emit(graph.SizeOp(size_dim(arg.meta["val"]), TensorType(elem, [])))
            if found is None:
                users = ", ".join(u.name for u in arg.users)
                raise UnsupportedGraph(f"{arg.name} is a size used as a tensor value ({users})")
            if isinstance(found, list):
                raise Decline(f"{arg.name} is a tuple, not a tensor")
            return found
        if isinstance(arg, bool | int | float):
            elem = like.element_type if like is not None else f32
            if isinstance(arg, float) and not isinstance(elem, KERNEL_FLOATS):
                elem = f32
            return self.emit(graph.ConstantOp(arg, TensorType(elem, [])))
        raise Decline(f"argument {arg!r} is neither a tensor nor a number")

    def pointwise(self, fn: str, args: Sequence[Any], out: TensorType) -> SSAValue:
        return self.emit(graph.PointwiseOp(fn, [self.value(a, out) for a in args], out))

    # -- the walk -----------------------------------------------------------------------
    def run(self) -> ImportedGraph:
        arg_types: list[Attribute] = []
        output_node: fx.Node | None = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                val = _meta(node)
                if isinstance(val, torch.SymInt):
                    # a size input: its value is in the types of the tensors (graph_dims)
                    self.size_hints.update(_size_hints(val))
                    continue
                if not isinstance(val, torch.Tensor):
                    raise UnsupportedGraph(f"input {node.name} is {type(val).__name__}")
                ty = tensor_type(val)
                self.size_hints.update(_size_hints(val))
                arg_types.append(ty)
                self.values[node] = self.block.insert_arg(ty, len(self.block.args))
                self.block.args[-1].name_hint = node.name
            elif node.op == "call_function":
                self.import_call(node)
            elif node.op == "output":
                output_node = node
            else:
                raise UnsupportedGraph(f"FX node kind {node.op} ({node.name})")
        assert output_node is not None
        returned: list[SSAValue] = []
        slots: list[int | None] = []
        sizes: dict[int, Dim] = {}
        for out in fx.node.map_arg(output_node.args[0], lambda n: n):
            if out is None:
                slots.append(None)
                continue
            if type(out) is int:  # a size the backward takes, known once sizes are bound
                sizes[len(slots)] = out
                slots.append(None)
                continue
            if not isinstance(out, fx.Node):
                raise UnsupportedGraph(f"graph output {out!r} is not a tensor")
            if isinstance(out.meta.get("val"), torch.SymInt):
                sizes[len(slots)] = size_dim(out.meta["val"])
                slots.append(None)
                continue
            slots.append(len(returned))
            returned.append(self.value(out))
        self.block.add_op(ReturnOp(*returned))
        func = FuncOp(self.name, (arg_types, [v.type for v in returned]), Region(self.block))
        if any(is_symbolic(t) for t in (*arg_types, *(v.type for v in returned))):
            set_size_hints(func, self.size_hints)
        module = ModuleOp([func])
        return ImportedGraph(module, func, slots, self.fallback_reasons, sizes)

    def import_call(self, node: fx.Node) -> None:
        if node.target is operator.getitem:
            source, index = node.args
            found = self.values[source]
            if not isinstance(found, list):
                raise UnsupportedGraph(f"getitem on non-tuple {source}")
            self.values[node] = found[index]
            return
        val = _meta(node)
        if isinstance(val, torch.SymInt | torch.SymFloat | torch.SymBool):
            return  # arithmetic on sizes: its results are in the types (graph_dims)
        packet = getattr(node.target, "_overloadpacket", None)
        if isinstance(val, tuple | list) and packet in MULTI_RESULT_LOWERINGS:
            try:
                self.values[node] = MULTI_RESULT_LOWERINGS[packet](self, node)
                return
            except Decline as declined:
                self.values[node] = self.opaque(node, val, str(declined))
                return
        rule = LOWERINGS.get(packet) if packet is not None else None
        reason = "no lowering rule" if rule is None else ""
        if rule is not None:
            try:
                _check_kernel_dtypes(node, val)
                self.values[node] = rule(self, node, tensor_type(val))
                return
            except Decline as declined:
                reason = str(declined)
        self.values[node] = self.opaque(node, val, reason)

    def opaque(self, node: fx.Node, val: Any, reason: str) -> SSAValue | list[SSAValue]:
        target = str(node.target)
        operands: list[fx.Node] = []
        call = {
            "args": _encode(node.args, operands),
            "kwargs": _encode(dict(node.kwargs), operands),
        }
        if isinstance(val, torch.Tensor):
            result_types: list[Attribute] = [tensor_type(val)]
        elif isinstance(val, tuple | list) and all(isinstance(v, torch.Tensor) for v in val):
            result_types = [tensor_type(v) for v in val]
        else:
            raise UnsupportedGraph(f"{target} returns {type(val).__name__}")
        inputs = [self.value(n) for n in operands]
        op = graph.OpaqueOp(target, inputs, repr(call), result_types, reason)
        self.block.add_op(op)
        self.fallback_reasons[target] = reason
        _log_fallback_once(target, reason)
        if isinstance(val, torch.Tensor):
            return op.results[0]
        return list(op.results)


def _check_kernel_dtypes(node: fx.Node, val: Any) -> None:
    """Kernels compute in float32: a node touching float64 stays in torch."""
    vals = [val, *(arg.meta.get("val") for arg in node.all_input_nodes)]
    if any(isinstance(v, torch.Tensor) and v.dtype == torch.float64 for v in vals):
        raise Decline("float64 runs in torch (kernels compute in float32)")


def _encode(value: Any, operands: list[fx.Node]) -> Any:
    """A Python-literal form of FX arguments; tensors become operand references."""
    if isinstance(value, fx.Node):
        if isinstance(value.meta.get("val"), torch.SymInt):
            raise UnsupportedGraph(f"an opaque op takes the symbolic size {value.name}")
        operands.append(value)
        return {"operand": len(operands) - 1}
    if isinstance(value, list | tuple):
        return [_encode(v, operands) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v, operands) for k, v in value.items()}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, torch.layout | torch.memory_format):
        return {"torch": str(value).removeprefix("torch.")}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise UnsupportedGraph(f"cannot encode argument {value!r} of an opaque op")


def import_graph(gm: fx.GraphModule, name: str = "forward") -> ImportedGraph:
    """Import `gm` as `func.func @name` inside a fresh module."""
    return Importer(gm, name).run()


# -- lowering rules ----------------------------------------------------------------------
Rule = Callable[[Importer, fx.Node, TensorType], SSAValue | list[SSAValue]]


def _require_float(out: TensorType) -> None:
    if not isinstance(out.element_type, KERNEL_FLOATS):
        raise Decline(f"{out.element_type} arithmetic runs in torch")


def _elementwise(fn: str, *, float_only: bool = True) -> Rule:
    def rule(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
        if float_only:
            _require_float(out)
        if node.kwargs:
            raise Decline(f"keyword arguments {sorted(node.kwargs)}")
        return imp.pointwise(fn, node.args, out)

    return rule


def _compare(fn: str) -> Rule:
    def rule(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
        a, b = node.args
        like = TensorType(f32, [])
        if isinstance(a, fx.Node):
            like = tensor_type(_meta(a))
        return imp.emit(graph.PointwiseOp(fn, [imp.value(a, like), imp.value(b, like)], out))

    return rule


def _add_sub(fn: str) -> Rule:
    def rule(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
        _require_float(out)
        a, b = node.args
        alpha = node.kwargs.get("alpha", 1)
        if set(node.kwargs) - {"alpha"}:
            raise Decline(f"keyword arguments {sorted(node.kwargs)}")
        rhs = imp.value(b, out)
        if alpha != 1:
            scaled = symbolic_type(out.element_type, symbolic_shape(rhs))
            rhs = imp.pointwise("mul", [rhs, alpha], scaled)
        return imp.emit(graph.PointwiseOp(fn, [imp.value(a, out), rhs], out))

    return rule


def _rsub(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    """rsub(a, b, alpha) = b - alpha * a."""
    _require_float(out)
    a, b = node.args[:2]
    alpha = node.kwargs.get("alpha", 1)
    lhs = imp.value(a, out)
    if alpha != 1:
        lhs = imp.pointwise(
            "mul", [lhs, alpha], symbolic_type(out.element_type, symbolic_shape(lhs))
        )
    return imp.emit(graph.PointwiseOp("sub", [imp.value(b, out), lhs], out))


def _clone(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    # a copy keeps clone's promise of a fresh buffer; canonicalize drops it when unobservable
    return imp.pointwise("copy", node.args[:1], out)


def _div(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    if node.kwargs.get("rounding_mode") is not None:
        raise Decline("rounding division")
    _require_float(out)
    return imp.pointwise("div", node.args[:2], out)


def _matmul(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    _require_float(out)
    a, b = (imp.value(x) for x in node.args[:2])
    return imp.emit(graph.MatmulOp(a, b, out))


def _addmm(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    _require_float(out)
    bias, a, b = node.args[:3]
    beta, alpha = node.kwargs.get("beta", 1), node.kwargs.get("alpha", 1)
    product = imp.emit(graph.MatmulOp(imp.value(a), imp.value(b), out))
    if alpha != 1:
        product = imp.pointwise("mul", [product, alpha], out)
    bias_value = imp.value(bias, out)
    if beta != 1:
        bias_ty = symbolic_type(out.element_type, symbolic_shape(bias_value))
        bias_value = imp.pointwise("mul", [bias_value, beta], bias_ty)
    return imp.emit(graph.PointwiseOp("add", [product, bias_value], out))


def _reshape(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    return imp.emit(graph.ViewOp("reshape", imp.value(node.args[0]), out))


def _expand(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    source = imp.value(node.args[0])
    if len(symbolic_shape(source)) == len(out.get_shape()):
        return imp.emit(graph.ViewOp("expand", source, out))
    # expand may add leading dims: reshape to the full rank first
    shape = (1,) * (len(out.get_shape()) - len(symbolic_shape(source)))
    padded = symbolic_type(out.element_type, [*shape, *symbolic_shape(source)])
    source = imp.emit(graph.ViewOp("reshape", source, padded))
    return imp.emit(graph.ViewOp("expand", source, out))


def _slice(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    """aten.slice(x, dim, start, end, step): a strided view, no copy."""
    source = imp.value(node.args[0])
    shape = symbolic_shape(source)
    dim = (node.args[1] if len(node.args) > 1 else 0) % len(shape)
    start = node.args[2] if len(node.args) > 2 and node.args[2] is not None else 0
    step = node.args[4] if len(node.args) > 4 else 1
    if not all(isinstance(v, int) for v in (start, step)) or not isinstance(shape[dim], int):
        raise Decline("slice with symbolic bounds")
    start = min(start + shape[dim], shape[dim]) if start < 0 else min(start, shape[dim])
    if tuple(out.get_shape()) == shape:
        return source
    return imp.emit(graph.ViewOp("slice", source, out, slice=(dim, start, step)))


def _slice_backward(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    """aten.slice_backward(g, input_sizes, dim, start, end, step): g placed at
    [start:end] of zeros, a concat of zeros, g and zeros (step 1 only)."""
    grad, sizes, dim, start, end, step = node.args[:6]
    shape = tuple(out.get_shape())
    if step != 1 or not all(isinstance(v, int) for v in (dim, start, end)):
        raise Decline("slice_backward with a step or symbolic bounds")
    dim %= len(shape)
    if not isinstance(shape[dim], int):
        raise Decline("slice_backward along a symbolic dim")
    start = min(start + shape[dim], shape[dim]) if start < 0 else min(start, shape[dim])
    value = imp.value(grad)
    width = symbolic_shape(value)[dim]
    pieces = []
    for size in (start, shape[dim] - start - width):
        if size:
            piece = list(shape)
            piece[dim] = size
            pieces.append(imp.emit(graph.ConstantOp(0, symbolic_type(out.element_type, piece))))
        else:
            pieces.append(None)
    inputs = [p for p in (pieces[0], value, pieces[1]) if p is not None]
    if len(inputs) == 1:
        return value
    return imp.emit(graph.ConcatOp(inputs, dim, out))


def _permute_rule(perm_of: Callable[[fx.Node, int], list[int]]) -> Rule:
    def rule(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
        source = imp.value(node.args[0])
        rank = len(symbolic_shape(source))
        perm = perm_of(node, rank)
        if perm == list(range(rank)):
            return source
        return imp.emit(graph.ViewOp("permute", source, out, perm))

    return rule


def _transpose_perm(node: fx.Node, rank: int) -> list[int]:
    if node.target in (aten.t.default,):
        return [1, 0] if rank == 2 else list(range(rank))
    d0, d1 = (d % rank for d in node.args[1:3])
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return perm


def _permute_perm(node: fx.Node, rank: int) -> list[int]:
    return [d % rank for d in node.args[1]]


def _identity(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    return imp.value(node.args[0])


def _cast(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    source = _meta(node.args[0])
    allowed = {"dtype", "device", "layout", "memory_format"}
    if set(node.kwargs) - allowed or node.kwargs.get("device", source.device) != source.device:
        raise Decline("only dtype conversions are compiled")
    if not isinstance(out.element_type, KERNEL_FLOATS) or source.dtype not in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ):
        raise Decline(f"conversion {source.dtype} -> {out.element_type} runs in torch")
    fn = "copy" if source.dtype == torch_dtype_of(out.element_type) else "cast"
    return imp.pointwise(fn, [node.args[0]], out)


def _convert_element_type(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    source = _meta(node.args[0])
    if not isinstance(out.element_type, KERNEL_FLOATS) or not source.is_floating_point():
        raise Decline(f"conversion {source.dtype} -> {out.element_type} runs in torch")
    return imp.pointwise("cast", [node.args[0]], out)


def _gelu(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    _require_float(out)
    fn = "gelu_tanh" if node.kwargs.get("approximate", "none") == "tanh" else "gelu"
    return imp.pointwise(fn, node.args[:1], out)


def _gelu_backward(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    _require_float(out)
    tanh = node.kwargs.get("approximate", "none") == "tanh"
    return imp.pointwise("gelu_tanh_backward" if tanh else "gelu_backward", node.args[:2], out)


def _pow(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    _require_float(out)
    base, exponent = node.args
    if exponent == 2:
        return imp.pointwise("square", [base], out)
    if exponent == 0.5:
        return imp.pointwise("sqrt", [base], out)
    if exponent == -0.5:
        return imp.pointwise("rsqrt", [base], out)
    if exponent == 1:
        return imp.value(base)
    if exponent == 3:
        return imp.pointwise("cube", [base], out)
    # exp(b * log(a)) would be wrong for negative bases: leave other exponents to torch
    raise Decline(f"pow with exponent {exponent!r}")


def _reduction(kind: str) -> Rule:
    def rule(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
        _require_float(out)
        source = imp.value(node.args[0])
        rank = len(symbolic_shape(source))
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if set(node.kwargs) - {"dim", "keepdim"}:
            raise Decline(f"keyword arguments {sorted(node.kwargs)}")
        if dims is None or dims == []:
            dims = list(range(rank))
        if isinstance(dims, int):
            dims = [dims]
        if rank == 0:
            return source
        if source.type.element_type != out.element_type:
            raise Decline("reduction with a dtype change")
        dims = sorted({d % rank for d in dims})
        return imp.emit(graph.ReduceOp(kind, source, dims, bool(keepdim), out))

    return rule


def _full(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    value = node.args[1]
    if not isinstance(value, bool | int | float):
        raise Decline(f"fill value {value!r}")
    return imp.emit(graph.ConstantOp(value, out))


def _constant(fill: float) -> Rule:
    def rule(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
        return imp.emit(graph.ConstantOp(fill, out))

    return rule


def _scalar_tensor(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    return imp.emit(graph.ConstantOp(node.args[0], out))


def _full_like(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    return imp.emit(graph.ConstantOp(node.args[1], out))


def _threshold_backward(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    _require_float(out)
    return imp.pointwise("threshold_backward", node.args[:3], out)


LOWERINGS: dict[Any, Rule] = {
    aten.mm: _matmul,
    aten.bmm: _matmul,
    aten.addmm: _addmm,
    aten.view: _reshape,
    aten._unsafe_view: _reshape,
    aten.reshape: _reshape,
    aten.squeeze: _reshape,
    aten.unsqueeze: _reshape,
    aten.flatten: _reshape,
    aten.expand: _expand,
    aten.slice: _slice,
    aten.slice_backward: _slice_backward,
    aten.t: _permute_rule(_transpose_perm),
    aten.transpose: _permute_rule(_transpose_perm),
    aten.permute: _permute_rule(_permute_perm),
    aten.detach: _identity,
    aten.alias: _identity,
    aten.clone: _clone,
    aten._to_copy: _cast,
    torch.ops.prims.convert_element_type: _convert_element_type,
    aten.add: _add_sub("add"),
    aten.sub: _add_sub("sub"),
    aten.rsub: _rsub,
    aten.mul: _elementwise("mul"),
    aten.div: _div,
    aten.neg: _elementwise("neg"),
    aten.abs: _elementwise("abs"),
    aten.reciprocal: _elementwise("reciprocal"),
    aten.exp: _elementwise("exp"),
    aten.log: _elementwise("log"),
    aten.sqrt: _elementwise("sqrt"),
    aten.rsqrt: _elementwise("rsqrt"),
    aten.sin: _elementwise("sin"),
    aten.cos: _elementwise("cos"),
    aten.erf: _elementwise("erf"),
    aten.sigmoid: _elementwise("sigmoid"),
    aten.tanh: _elementwise("tanh"),
    aten.relu: _elementwise("relu"),
    aten.silu: _elementwise("silu"),
    aten.gelu: _gelu,
    aten.gelu_backward: _gelu_backward,
    aten.silu_backward: _elementwise("silu_backward"),
    aten.sigmoid_backward: _elementwise("sigmoid_backward"),
    aten.tanh_backward: _elementwise("tanh_backward"),
    aten.threshold_backward: _threshold_backward,
    aten.maximum: _elementwise("maximum"),
    aten.minimum: _elementwise("minimum"),
    aten.pow: _pow,
    aten.where: _elementwise("where"),
    aten.eq: _compare("eq"),
    aten.ne: _compare("ne"),
    aten.lt: _compare("lt"),
    aten.le: _compare("le"),
    aten.gt: _compare("gt"),
    aten.ge: _compare("ge"),
    aten.sum: _reduction("sum"),
    aten.mean: _reduction("mean"),
    aten.amax: _reduction("amax"),
    aten.amin: _reduction("amin"),
    aten.logsumexp: _reduction("logsumexp"),
    aten.full: _full,
    aten.full_like: _full_like,
    aten.zeros: _constant(0.0),
    aten.zeros_like: _constant(0.0),
    aten.ones: _constant(1.0),
    aten.ones_like: _constant(1.0),
    aten.scalar_tensor: _scalar_tensor,
}

#: rules for ops with several results: (importer, node) -> one value per result
MULTI_RESULT_LOWERINGS: dict[Any, Callable[[Importer, fx.Node], list[SSAValue]]] = {}

# prims, multi-result and attention rules live in their own modules, which register them
from coda.compiler import fx_attention, fx_prims  # noqa: E402, F401
