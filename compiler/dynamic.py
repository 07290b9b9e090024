"""Graphs with symbolic sizes, planned per concrete size from static copies.

Dynamo recompiles a frame once with symbolic sizes when an input's size changes (or at
once under `torch._dynamo.mark_dynamic` / `dynamic=True`). The normal path traces that
graph once with AOTAutograd and imports it once with symbolic dims
(compiler/symbolic_graph.py). This module is the fallback for graphs that path cannot
take, and the bounds both share:

- `specialize_per_size`: a graph (Dynamo's, when the symbolic trace failed; an aten
  graph, when the symbolic import cannot express it) gets each call's sizes bound
  (`bind_numbers`, or `concretize` for an aten graph, which also propagates the shapes
  again) and goes through the static compiler, once per distinct set of sizes.
- `max_specializations()`: after that many distinct sizes a graph runs new sizes
  eagerly (logged once; strict raises), so a run whose sizes never repeat does not plan
  without end.

Either way the kernels are not per size: a specialization builds its program with
size-generic sources (`coda.codegen.size_generic`), in which the integer literals that
differ between the sources of two sizes are `launch`/kernel arguments, so every size
whose plan has the same code runs the same module.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

log = logging.getLogger("coda.compiler")

MAX_SPECIALIZATIONS_ENV = "CODA_MAX_SPECIALIZATIONS"
#: distinct size sets planned per symbolic graph before new sizes run eagerly. A size
#: costs its planning (about 0.2 s for a small Llama block's forward and backward, the
#: kernels being shared), so a run over a few dozen sequence lengths stays compiled
DEFAULT_MAX_SPECIALIZATIONS = 32

_SYMBOLIC = (torch.SymInt, torch.SymFloat, torch.SymBool)


def one_line(err: BaseException) -> str:
    """The first line of an exception's message: a warning must stay one log line."""
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"


def max_specializations() -> int:
    text = os.environ.get(MAX_SPECIALIZATIONS_ENV, "")
    if not text:
        return DEFAULT_MAX_SPECIALIZATIONS
    if not text.strip().isdigit():
        log.warning(
            "coda: %s=%r is not a count: using %d",
            MAX_SPECIALIZATIONS_ENV, text, DEFAULT_MAX_SPECIALIZATIONS,
        )  # fmt: skip
        return DEFAULT_MAX_SPECIALIZATIONS
    return int(text)


def is_symbolic(example_inputs: Sequence[Any]) -> bool:
    """Whether Dynamo handed over a graph with symbolic sizes: a SymInt input, or a
    tensor with a symbolic size, stride or offset."""
    for value in example_inputs:
        if isinstance(value, _SYMBOLIC):
            return True
        if isinstance(value, torch.Tensor) and any(
            isinstance(d, torch.SymInt)
            for d in (*value.shape, *value.stride(), value.storage_offset())
        ):
            return True
    return False


def _key(value: Any) -> tuple[Any, ...]:
    if isinstance(value, torch.Tensor):
        return (
            "tensor",
            tuple(value.shape),
            value.stride(),
            value.storage_offset(),
            value.dtype,
            value.device,
            value.requires_grad,
        )
    return ("value", type(value).__name__, value)


def bind_numbers(gm: fx.GraphModule, args: Sequence[Any]) -> fx.GraphModule:
    """A copy of `gm` whose non-tensor inputs (the symbolic sizes) are the constants in
    `args`; its remaining inputs are `args`' tensors, in order."""
    graph = copy.deepcopy(gm.graph)
    placeholders = list(graph.find_nodes(op="placeholder"))
    if len(placeholders) != len(args):
        raise ValueError(f"graph takes {len(placeholders)} inputs, got {len(args)}")
    for node, value in zip(placeholders, args, strict=True):
        if isinstance(value, torch.Tensor):
            continue
        _substitute(graph, node, value)
    graph.lint()
    return fx.GraphModule(gm, graph)


def _substitute(graph: fx.Graph, node: fx.Node, value: Any) -> None:
    """Replace `node` by the constant `value` in its users' arguments; erase it."""
    for user in list(node.users):
        user.args = fx.node.map_arg(user.args, lambda n: value if n is node else n)
        user.kwargs = fx.node.map_arg(user.kwargs, lambda n: value if n is node else n)
    graph.erase_node(node)


def concretize(gm: fx.GraphModule, args: Sequence[Any]) -> fx.GraphModule:
    """`bind_numbers` for a traced (aten) graph: its shape metadata is propagated again
    with `args`' tensors, and arithmetic on sizes is folded into the arguments that use
    it, so the copy is a static graph like any other."""
    bound = bind_numbers(gm, args)
    strides = traced_strides(gm, args)
    inputs = [(a, st) for a, st in zip(args, strides, strict=True) if isinstance(a, torch.Tensor)]
    with unset_fake_temporarily(), FakeTensorMode(allow_non_fake_inputs=True) as mode:
        # with the strides of the trace, not of this call's tensors: a backward's saved
        # activations come contiguous from coda's forward, and the trace may `view` them
        # as the permuted tensors eager would have saved
        fakes = [
            mode.from_tensor(t)
            if st is None
            else torch.empty_strided(t.shape, st, dtype=t.dtype, device=t.device)
            for t, st in inputs
        ]
        FakeTensorProp(bound, mode).propagate_dont_convert_inputs(*fakes)
    graph = bound.graph
    for node in list(graph.nodes):
        value = node.meta.get("val")
        if node.op == "call_function" and type(value) in (int, float, bool):
            _substitute(graph, node, value)
    graph.lint()
    bound.recompile()
    return bound


def traced_strides(gm: fx.GraphModule, args: Sequence[Any]) -> list[tuple[int, ...] | None]:
    """Each input's strides in the trace, at this call's sizes (None for a size input,
    or where a stride is not a polynomial of the sizes: the call's own then)."""
    import sympy

    placeholders = list(gm.graph.find_nodes(op="placeholder"))
    sizes: dict[sympy.Symbol, int] = {}
    for node, arg in zip(placeholders, args, strict=True):
        val = node.meta.get("val")
        dims = (
            [(val, arg)]
            if isinstance(val, torch.SymInt)
            else list(zip(val.shape, arg.shape, strict=False))
            if isinstance(val, torch.Tensor) and isinstance(arg, torch.Tensor)
            else []
        )
        for dim, value in dims:
            if isinstance(dim, torch.SymInt) and isinstance(dim.node.expr, sympy.Symbol):
                sizes[dim.node.expr] = int(value)
    strides: list[tuple[int, ...] | None] = []
    for node, arg in zip(placeholders, args, strict=True):
        val = node.meta.get("val")
        if not (isinstance(val, torch.Tensor) and isinstance(arg, torch.Tensor)):
            strides.append(None)
            continue
        exprs = [s.node.expr.xreplace(sizes) if isinstance(s, torch.SymInt) else s
                 for s in val.stride()]  # fmt: skip
        ok = all(isinstance(e, int) or getattr(e, "is_Integer", False) for e in exprs)
        strides.append(tuple(int(e) for e in exprs) if ok else None)
    return strides


def specialize_per_size(
    gm: fx.GraphModule,
    compile_static: Callable[[fx.GraphModule, list[torch.Tensor]], Callable[..., Any]],
    *,
    strict: bool,
    bind: Callable[[fx.GraphModule, Sequence[Any]], fx.GraphModule] = bind_numbers,
) -> Callable[..., Any]:
    """A Dynamo-convention callable (positional arguments) that runs `gm`, a graph with
    symbolic sizes, through `compile_static` once per distinct set of input sizes, at
    most `max_specializations()` of them; later new sizes run `gm` eagerly. `bind`
    makes the static graph of one call (`concretize` for an aten graph)."""
    names = [n.name for n in gm.graph.find_nodes(op="placeholder")]
    programs: dict[tuple[Any, ...], Callable[..., Any]] = {}
    state = {"warned": False}

    def run(*args: Any) -> Any:
        key = tuple(_key(a) for a in args)
        program = programs.get(key)
        if program is None:
            program = _specialize(args)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        return program(*tensors)

    def _specialize(args: Sequence[Any]) -> Callable[..., Any]:
        limit = max_specializations()
        sizes = ", ".join(
            f"{name}={a}"
            for name, a in zip(names, args, strict=True)
            if not isinstance(a, torch.Tensor)
        ) or "shapes " + ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))
        eager = functools.partial(_eager, gm, args)
        if len(programs) >= limit:
            if strict:
                raise RuntimeError(
                    f"coda: graph saw more than {limit} distinct sizes (now {sizes}); "
                    f"set {MAX_SPECIALIZATIONS_ENV} to compile more"
                )
            if not state["warned"]:
                state["warned"] = True
                log.warning(
                    "coda: graph runs new sizes eagerly after %d specializations (%s=%d)",
                    limit, MAX_SPECIALIZATIONS_ENV, limit,
                )  # fmt: skip
            return eager
        try:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            program = compile_static(bind(gm, args), tensors)
        except Exception as err:  # binding failed: these sizes run eagerly
            if strict:
                raise
            log.warning(
                "coda: graph runs eagerly for %s after an internal error: %s: %s",
                sizes, type(err).__name__, one_line(err),
            )  # fmt: skip
            program = eager
        programs[tuple(_key(a) for a in args)] = program
        log.info(
            "coda: graph with symbolic sizes specialized for %s (%d of at most %d)",
            sizes, len(programs), limit,
        )  # fmt: skip
        return program

    run.specializations = programs  # type: ignore[attr-defined]
    return run


def _eager(gm: fx.GraphModule, args: Sequence[Any], *tensors: torch.Tensor) -> Any:
    """`gm` on this call's tensors and the sizes of the call that specialized it."""
    it = iter(tensors)
    return run_traced(gm, [next(it) if isinstance(a, torch.Tensor) else a for a in args])


def run_traced(gm: fx.GraphModule, args: Sequence[Any]) -> Any:
    """`gm` run eagerly on `args`, each tensor with the strides it had in the trace. A
    backward's saved activations come contiguous from coda's forward where eager's
    were, say, permuted, and the traced graph may `view` them as such."""
    strides = traced_strides(gm, args)
    return gm(
        *(
            _restrided(a, st) if isinstance(a, torch.Tensor) and st and a.stride() != st else a
            for a, st in zip(args, strides, strict=True)
        )
    )


def _restrided(tensor: torch.Tensor, strides: tuple[int, ...]) -> torch.Tensor:
    out = torch.empty_strided(tensor.shape, strides, dtype=tensor.dtype, device=tensor.device)
    return out.copy_(tensor)


def eager_graph(gm: fx.GraphModule) -> Callable[[list[Any]], Any]:
    """AOTAutograd's boxed convention for `run_traced`: the eager fallback of a graph."""

    def run(args: list[Any]) -> Any:
        return run_traced(gm, args)

    run._boxed_call = True  # type: ignore[attr-defined]
    return run
