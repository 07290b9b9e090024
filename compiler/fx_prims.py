"""Lowering rules for the prims that aten decompositions leave behind, splits and cat.

`native_layer_norm`'s decomposition (`var_mean`) reaches the importer as
`prims.var`, `prims.sum`, `prims.broadcast_in_dim` and `prims.div`; `torch.split` /
`Tensor.chunk` (q/k/v from one projection) as `aten.split`, and `torch.cat` (RoPE's
rotate-half) as `aten.cat`. All of them are graph ops or views: a split is a slice view
per piece, so no data moves; a concat is computed where it is read.

Registered into `fx_import.LOWERINGS` when `fx_import` is imported.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from xdsl.dialects.builtin import TensorType
from xdsl.ir import SSAValue

from coda.compiler.fx_import import (
    LOWERINGS,
    MULTI_RESULT_LOWERINGS,
    Decline,
    Importer,
    Rule,
    UnsupportedGraph,
    _meta,
    _require_float,
    tensor_type,
)
from coda.dialects import graph
from coda.dialects.graph_dims import canonical, symbolic_shape, symbolic_type

prims = torch.ops.prims
aten = torch.ops.aten


def _dims(dims: Any, rank: int) -> list[int]:
    if dims is None:
        return list(range(rank))
    return sorted({d % rank for d in ([dims] if isinstance(dims, int) else dims)})


def _check_output_dtype(node: fx.Node) -> None:
    if node.kwargs.get("output_dtype") is not None or (
        len(node.args) > 3 and node.args[3] is not None
    ):
        raise Decline("reduction with an output dtype")


def _prims_sum(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    _require_float(out)
    _check_output_dtype(node)
    source = imp.value(node.args[0])
    dims = _dims(node.args[1], len(symbolic_shape(source)))
    if not dims:
        return source
    return imp.emit(graph.ReduceOp("sum", source, dims, False, out))


def _prims_var(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    """var(x, dims, correction) = sum((x - mean(x))^2) / (n - correction): two passes, as
    torch computes it (a one-pass E[x^2] - E[x]^2 loses precision)."""
    _require_float(out)
    _check_output_dtype(node)
    source = imp.value(node.args[0])
    shape = symbolic_shape(source)
    dims = _dims(node.args[1], len(shape))
    correction = node.args[2] if len(node.args) > 2 else node.kwargs.get("correction", 0)
    count = 1
    for d in dims:
        count *= shape[d]
    symbolic = not isinstance(count, int)
    # a symbolic size is at least 2 (Dynamo specializes 0 and 1): n - 1 is positive
    if symbolic and correction not in (0, 1):
        raise Decline(f"variance of {count} elements with correction {correction!r}")
    if not symbolic and (not isinstance(correction, int | float) or count - correction <= 0):
        raise Decline(f"variance of {count} elements with correction {correction!r}")
    elem = out.element_type
    kept = symbolic_type(elem, [1 if d in dims else n for d, n in enumerate(shape)])
    full = symbolic_type(elem, list(shape))
    mean = imp.emit(graph.ReduceOp("mean", source, dims, True, kept))
    centered = imp.emit(graph.PointwiseOp("sub", [source, mean], full))
    squares = imp.emit(graph.PointwiseOp("square", [centered], full))
    total = imp.emit(graph.ReduceOp("sum", squares, dims, False, out))
    if symbolic:
        divisor = imp.emit(graph.SizeOp(canonical(count - correction), TensorType(elem, [])))
        return imp.emit(graph.PointwiseOp("div", [total, divisor], out))
    scale = imp.value(1.0 / (count - correction), out)
    return imp.emit(graph.PointwiseOp("mul", [total, scale], out))


def _prims_div(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    # prims.div truncates integers; on floats it is true division
    _require_float(out)
    return imp.pointwise("div", node.args[:2], out)


def _broadcast_in_dim(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    """Put the source's dims at `broadcast_dimensions` of `shape` (size 1 elsewhere: a
    reshape), then expand to `shape`."""
    source = imp.value(node.args[0])
    shape, positions = list(node.args[1]), list(node.args[2])
    src_shape = symbolic_shape(source)
    placed = [1] * len(shape)
    for size, position in zip(src_shape, positions, strict=True):
        placed[position] = size
    value = source
    if tuple(placed) != src_shape:
        value = imp.emit(graph.ViewOp("reshape", value, symbolic_type(out.element_type, placed)))
    if tuple(placed) != symbolic_shape(out):
        value = imp.emit(graph.ViewOp("expand", value, out))
    return value


def _split(imp: Importer, node: fx.Node) -> list[SSAValue]:
    """split(x, sizes, dim): one slice view per piece."""
    source = imp.value(node.args[0])
    shape = symbolic_shape(source)
    dim = (node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)) % len(shape)
    pieces, start = [], 0
    for val in _meta(node):
        ty = tensor_type(val)
        size = ty.get_shape()[dim]
        if size == shape[dim]:
            pieces.append(source)
        elif not isinstance(start, int):
            raise UnsupportedGraph("split along a symbolic dim")
        else:
            pieces.append(imp.emit(graph.ViewOp("slice", source, ty, slice=(dim, start, 1))))
        start += size
    return pieces


def _cat(imp: Importer, node: fx.Node, out: TensorType) -> SSAValue:
    """cat(tensors, dim): graph.concat of the non-empty pieces, cast to the result type
    (torch.cat promotes mixed dtypes)."""
    rank = len(out.get_shape())
    dim = (node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)) % max(rank, 1)
    pieces = []
    for arg in node.args[0]:
        value = imp.value(arg)
        shape = symbolic_shape(value)
        if len(shape) == 1 and shape[0] == 0 and rank != 1:
            continue  # torch.cat skips legacy empty 1-D tensors
        if value.type.element_type != out.element_type:
            cast = symbolic_type(out.element_type, list(shape))
            value = imp.emit(graph.PointwiseOp("cast", [value], cast))
        pieces.append(value)
    if len(pieces) == 1:
        return pieces[0]
    return imp.emit(graph.ConcatOp(pieces, dim, out))


PRIM_LOWERINGS: dict[Any, Rule] = {
    aten.cat: _cat,
    prims.sum: _prims_sum,
    prims.var: _prims_var,
    prims.div: _prims_div,
    prims.broadcast_in_dim: _broadcast_in_dim,
}

LOWERINGS.update(PRIM_LOWERINGS)
MULTI_RESULT_LOWERINGS.update({aten.split: _split, aten.split_with_sizes: _split})
