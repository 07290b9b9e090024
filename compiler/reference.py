"""Reference semantics of the graph dialect, with torch.

The runtime uses this for what it does not compile (views, constants, fallbacks);
tests use it to run IR before and after a pass on the same inputs and compare.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from xdsl.dialects.builtin import TensorType
from xdsl.dialects.func import ReturnOp
from xdsl.ir import Block, Operation, SSAValue

from coda.compiler.rotary import apply_rotary
from coda.dialects import epilogue, graph, kernel
from coda.dialects.dtypes import torch_dtype_of
from coda.dialects.pointwise_fns import POINTWISE_FNS

aten = torch.ops.aten


def resolve_target(target: str) -> Callable[..., Any]:
    """`aten.cumsum.default` -> torch.ops.aten.cumsum.default."""
    fn: Any = torch.ops
    for part in target.split("."):
        fn = getattr(fn, part)
    return fn


def decode_args(encoded: Any, operands: Sequence[Any]) -> Any:
    """Invert the importer's encoding of an opaque op's arguments."""
    if isinstance(encoded, list):
        return [decode_args(v, operands) for v in encoded]
    if isinstance(encoded, dict):
        if set(encoded) == {"operand"}:
            return operands[encoded["operand"]]
        if set(encoded) == {"dtype"}:
            return getattr(torch, encoded["dtype"])
        if set(encoded) == {"device"}:
            return torch.device(encoded["device"])
        if set(encoded) == {"torch"}:
            return getattr(torch, encoded["torch"])
        return {k: decode_args(v, operands) for k, v in encoded.items()}
    return encoded


def opaque_callable(op: graph.OpaqueOp) -> Callable[..., Any]:
    """A function of the op's tensor operands that runs the aten op."""
    fn = resolve_target(op.target.data)
    call = ast.literal_eval(op.args.data)

    def run(*tensors: torch.Tensor) -> Any:
        # keyword by keyword: a call whose only keyword is `dtype` is not a dtype
        kwargs = {k: decode_args(v, tensors) for k, v in call["kwargs"].items()}
        return fn(*decode_args(call["args"], tensors), **kwargs)

    return run


def _dtype(value: SSAValue) -> torch.dtype:
    assert isinstance(value.type, TensorType)
    return torch_dtype_of(value.type.element_type)


_copying_reshapes: set[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = set()
log = logging.getLogger("coda.runtime")


def view_callable(op: graph.ViewOp) -> Callable[[torch.Tensor], torch.Tensor]:
    shape = graph.tensor_shape(op.result)
    kind = op.kind.data
    if kind == "permute":
        perm = op.permutation
        return lambda x: x.permute(perm)
    if kind == "expand":
        return lambda x: x.expand(shape)
    if kind == "slice":
        dim, start, step = op.slice_spec
        stop = start + step * shape[dim]
        return lambda x: x.narrow(dim, start, min(stop, x.shape[dim]) - start)[
            (slice(None),) * dim + (slice(None, None, step),)
        ]

    def reshape(x: torch.Tensor) -> torch.Tensor:
        try:
            return x.view(shape)
        except RuntimeError:
            # not expressible as a view of these strides: torch copies. Say so, once.
            key = (tuple(x.shape), tuple(x.stride()), shape)
            if key not in _copying_reshapes:
                _copying_reshapes.add(key)
                log.warning(
                    "coda: reshape of %s (strides %s) to %s is not a view; it copies",
                    tuple(x.shape),
                    tuple(x.stride()),
                    shape,
                )
            return x.reshape(shape)

    return reshape


def constant_callable(op: graph.ConstantOp, device: torch.device) -> Callable[[], torch.Tensor]:
    shape, dtype, value = graph.tensor_shape(op.result), _dtype(op.result), op.scalar
    return lambda: torch.full(shape, value, dtype=dtype, device=device)


def evaluate(op: Operation, args: Sequence[Any], device: torch.device) -> list[Any]:
    """Run one graph op on torch tensors; returns its results."""
    if isinstance(op, graph.MatmulOp):
        out = torch.matmul(args[0].float(), args[1].float())
    elif isinstance(op, graph.PointwiseOp):
        fn = POINTWISE_FNS[op.fn.data]
        floats = [a.float() if a.is_floating_point() else a for a in args]
        out = fn.torch_ref(*floats)
    elif isinstance(op, graph.ReduceOp):
        reduce = {
            "sum": torch.sum,
            "mean": torch.mean,
            "amax": torch.amax,
            "amin": torch.amin,
            "logsumexp": torch.logsumexp,
        }
        out = reduce[op.kind.data](
            args[0].float(), dim=list(op.reduced_dims), keepdim=op.keepdim is not None
        )
    elif isinstance(op, graph.ConcatOp):
        return [torch.cat(list(args), op.axis)]
    elif isinstance(op, graph.ViewOp):
        return [view_callable(op)(args[0])]
    elif isinstance(op, graph.ConstantOp):
        return [constant_callable(op, device)()]
    elif isinstance(op, graph.OpaqueOp):
        result = opaque_callable(op)(*args)
        return list(result) if isinstance(result, tuple | list) else [result]
    elif isinstance(op, graph.AttentionOp | graph.AttentionBackwardOp):
        return _evaluate_attention(op, args)
    elif isinstance(op, graph.RotaryOp):
        out = apply_rotary(*args, transpose=op.is_transpose)
    elif isinstance(op, epilogue.GemmOp):
        return _evaluate_gemm(op, args)
    elif isinstance(op, kernel.KernelOp):
        return run_block(op.body.block, args, device)
    else:
        raise NotImplementedError(f"no reference semantics for '{op.name}'")
    return [out.to(_dtype(op.results[0]))]


def _evaluate_attention(
    op: graph.AttentionOp | graph.AttentionBackwardOp, args: Sequence[Any]
) -> list[Any]:
    """torch's own flash attention (the ops the importer recognizes), so the saved lse
    means the same thing on both sides of a fallback."""
    tail = list(args[op.POSITIONAL :])
    mask = tail.pop(0) if op.mask is not None else None
    kwargs = {"attn_mask": mask, "scale": op.scale_value}
    if isinstance(op, graph.AttentionOp):
        q, k, v = args[:3]
        if op.rotary is not None:  # cos, sin: the rest of the operands
            q, k = apply_rotary(q, *tail), apply_rotary(k, *tail)
        out = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, op.is_causal, **kwargs)
        return list(out)
    grad_out, q, k, v, o, lse = args[:6]
    if op.rotary is not None:
        q, k = apply_rotary(q, *tail), apply_rotary(k, *tail)
    dq, dk, dv = aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out, q, k, v, o, lse, 0.0, op.is_causal, **kwargs
    )
    if op.rotary is not None:  # the gradients before the rotation
        dq, dk = (apply_rotary(g, *tail, transpose=True).to(g.dtype) for g in (dq, dk))
    return [dq, dk, dv]


def _evaluate_gemm(op: epilogue.GemmOp, args: Sequence[Any]) -> list[Any]:
    """The epilogue program on the whole output at once: torch broadcasting plays the
    role of the row/col/scalar kinds."""
    sums = op.sums.get_values()
    products, inputs = args[: 2 * sum(sums)], args[2 * sum(sums) :]
    block = op.body.block
    env: dict[SSAValue, Any] = {}
    start = 0
    for arg, count in zip(block.args, sums, strict=False):
        pairs = range(start, start + 2 * count, 2)
        env[arg] = sum(torch.matmul(products[i].float(), products[i + 1].float()) for i in pairs)
        start += 2 * count
    env.update(zip(block.args[len(sums) :], inputs, strict=True))
    results: list[Any] = [None] * len(op.outputs)
    for inner in block.ops:
        vals = [env[v] for v in inner.operands]
        vals = [v.float() if v.is_floating_point() else v for v in vals]
        if isinstance(inner, epilogue.MapOp):
            env[inner.result] = POINTWISE_FNS[inner.fn.data].torch_ref(*vals)
        elif isinstance(inner, epilogue.ScaleOp):
            env[inner.result] = vals[0] * vals[1]
        elif isinstance(inner, epilogue.AccumulateOp):
            env[inner.result] = vals[0] + vals[1]
        elif isinstance(inner, epilogue.ConstantOp):
            env[inner.result] = torch.tensor(inner.value.value.data)
        elif isinstance(inner, epilogue.StoreOp):
            index = inner.index.value.data
            results[index] = vals[0].to(_dtype(op.outputs[index]))
        elif isinstance(inner, epilogue.ReduceOp):
            results[inner.index.value.data] = partial_reduce(
                inner.kind.data, vals[0], inner.group_size, inner.axis.data
            )
        elif isinstance(inner, epilogue.RowReduceOp):
            env[inner.result] = row_reduce(inner.kind.data, vals[0])
        else:
            raise NotImplementedError(f"no reference semantics for '{inner.name}'")
    return results


def row_reduce(kind: str, tile: torch.Tensor) -> torch.Tensor:
    """epilogue.row_reduce on a whole [..., M, N] output: one value per row, [..., M, 1]."""
    if kind == "sum":
        return tile.sum(-1, keepdim=True)
    if kind == "sumsq":
        return tile.square().sum(-1, keepdim=True)
    if kind == "max":
        return tile.amax(-1, keepdim=True)
    assert kind == "logsumexp", kind
    return torch.logsumexp(tile, -1, keepdim=True)


def partial_reduce(
    kind: str, tile: torch.Tensor, columns: int, axis: str = "columns"
) -> torch.Tensor:
    """epilogue.reduce on a whole [..., M, N] output: one value per row and group of
    `columns` columns (the last group padded with the kind's identity); for
    axis="rows", one per column and group of rows."""
    if axis == "rows":
        return partial_reduce(kind, tile.transpose(-1, -2), columns).transpose(-1, -2)
    n = tile.shape[-1]
    groups = -(-n // columns)
    identity = float("-inf") if kind in ("max", "logsumexp") else 0.0
    padded = torch.nn.functional.pad(tile.float(), (0, groups * columns - n), value=identity)
    grouped = padded.reshape(*tile.shape[:-1], groups, columns)
    if kind == "sum":
        return grouped.sum(-1)
    if kind == "sumsq":
        return grouped.square().sum(-1)
    if kind == "max":
        return grouped.amax(-1)
    assert kind == "logsumexp", kind
    return torch.logsumexp(grouped, -1)


def run_block(block: Block, args: Sequence[Any], device: torch.device) -> list[Any]:
    """Run a block (a function body or a kernel region) with reference semantics;
    returns the values its terminator (func.return / kernel.yield) passes on."""
    env: dict[SSAValue, Any] = dict(zip(block.args, args, strict=True))
    for op in block.ops:
        if isinstance(op, kernel.YieldOp | ReturnOp):
            return [env[v] for v in op.operands]
        results = evaluate(op, [env[v] for v in op.operands], device)
        env.update(zip(op.results, results, strict=True))
    raise ValueError("block has no terminator")
