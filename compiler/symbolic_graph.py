"""Compile an aten graph with symbolic sizes: import it once, bind each call's sizes.

Under `torch.compile` with varying sizes (or `mark_dynamic`), Dynamo hands coda a graph
whose sizes are SymInts and AOTAutograd traces its forward and backward once, with
those symbols. The AOTAutograd partitioner's size-dependent choices (what the backward
recomputes, compiler/saved_values.py) become Dynamo guards, so a size that would choose
otherwise is a recompile Dynamo bounds and logs.

Each forward or backward graph is imported once into the graph dialect with symbolic
dims (dialects/graph_dims.py): `tensor<?x32xf32, #graph.dims<"2*s0">>`, and runs the
graph stage of the pipeline once, symbolic (rotary fusion, canonicalization, folded
views). A call solves the symbols from its inputs' shapes and, the first time it sees
those sizes, clones that module, binds the sizes (`bind-sizes`) and runs the rest of
the pipeline, whose plan depends on them (tiles, row groups); its kernels are
size-generic sources shared between sizes (codegen/size_generic.py). Distinct sizes
are bounded as in compiler/dynamic.py; a size that fails to compile runs eagerly,
logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
from xdsl.dialects.builtin import ModuleOp
from xdsl.dialects.func import FuncOp

from coda.compiler.dynamic import (
    MAX_SPECIALIZATIONS_ENV,
    eager_graph,
    max_specializations,
    one_line,
)
from coda.compiler.fold_constants import FoldedGraph
from coda.compiler.fx_import import ImportedGraph, size_dim
from coda.compiler.pipeline import lower
from coda.dialects.graph_dims import (
    Dim,
    SymbolicSizeError,
    bind_dim,
    solve_sizes,
    symbolic_shape,
)
from coda.passes.bind_sizes import bind_sizes

log = logging.getLogger("coda.compiler")

#: plans one bound module from a pipeline stage: (module, func, first stage) -> a boxed
#: runnable taking the call's tensors
Plan = Callable[[ModuleOp, FuncOp, str], Callable[[list[Any]], list[Any]]]
#: one size's runnable: (the call's arguments, its tensors and folded values) -> outputs
Run = Callable[[list[Any], list[torch.Tensor]], list[Any]]


class SymbolicGraph:
    """AOTAutograd's boxed callable for one symbolic graph: plans each new size."""

    def __init__(
        self,
        gm: fx.GraphModule,
        folded: FoldedGraph,
        imported: ImportedGraph,
        plan: Plan,
        *,
        graph_kind: str,
        strict: bool,
    ) -> None:
        # an instance attribute: Dynamo's wrappers copy the callable's __dict__
        self._boxed_call = True
        self.gm, self.folded, self.imported, self.plan = gm, folded, imported, plan
        self.graph_kind, self.strict = graph_kind, strict
        placeholders = list(folded.gm.graph.find_nodes(op="placeholder"))
        own = len(list(gm.graph.find_nodes(op="placeholder")))
        #: the size inputs (index, expression) and every tensor input's symbolic shape
        self.size_inputs = [
            (i, size_dim(n.meta["val"]))
            for i, n in enumerate(placeholders[:own])
            if isinstance(n.meta.get("val"), torch.SymInt)
        ]
        self.arg_shapes = [symbolic_shape(a) for a in imported.func.body.block.args]
        #: the module each size is bound from, and the pipeline stage that plans it
        self.source, self.start = self._graph_stage()
        self.runs: dict[tuple[tuple[str, int], ...], Run] = {}
        self.solved: dict[tuple[Any, ...], tuple[tuple[str, int], ...]] = {}
        self.eager = eager_graph(gm)
        self.warned = False

    def _graph_stage(self) -> tuple[ModuleOp, str]:
        """The imported module through the graph stage, which keeps sizes symbolic
        (passes.SYMBOLIC_PASSES): its rewrites then run once, not once per size. If they
        fail, each size runs them after binding (logged)."""
        module = self.imported.module.clone()
        try:
            lower(module, until="graph")
        except Exception as err:
            if self.strict:
                raise
            log.warning(
                "coda: %s graph's graph stage runs per size: %s: %s",
                self.graph_kind, type(err).__name__, one_line(err),
            )  # fmt: skip
            return self.imported.module, "graph"
        return module, "epilogue"

    def sizes(self, args: Sequence[Any], tensors: Sequence[torch.Tensor]) -> dict[str, int]:
        """Each symbol's value in this call (graph_dims.solve_sizes)."""
        shapes: list[tuple[Dim, ...]] = [(dim,) for _, dim in self.size_inputs]
        values: list[Sequence[int]] = [(int(args[i]),) for i, _ in self.size_inputs]
        return solve_sizes([*shapes, *self.arg_shapes], [*values, *(t.shape for t in tensors)])

    def __call__(self, args: list[Any]) -> list[Any]:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        tensors += self.folded.values(args)
        # the sizes of shapes seen before without sympy: this runs on every call
        shapes = (*(args[i] for i, _ in self.size_inputs), *(t.shape for t in tensors))
        key = self.solved.get(shapes)
        if key is None:
            if len(self.solved) >= 4096:  # sizes that never repeat must not grow it forever
                self.solved.clear()
            try:
                key = self.solved[shapes] = tuple(sorted(self.sizes(args, tensors).items()))
            except SymbolicSizeError as err:  # inputs Dynamo's guards should have refused
                if self.strict:
                    raise
                log.warning("coda: %s graph runs eagerly: %s", self.graph_kind, err)
                return self.eager(args)
        run = self.runs.get(key)
        if run is None:
            run = self._specialize(dict(key))
        return run(args, tensors)

    def _eager(self, args: list[Any], tensors: list[torch.Tensor]) -> list[Any]:
        return self.eager(args)

    def _specialize(self, sizes: dict[str, int]) -> Run:
        text = ", ".join(f"{k}={v}" for k, v in sorted(sizes.items()))
        limit = max_specializations()
        if len(self.runs) >= limit:
            if self.strict:
                raise RuntimeError(
                    f"coda: {self.graph_kind} graph saw more than {limit} distinct sizes "
                    f"(now {text}); set {MAX_SPECIALIZATIONS_ENV} to compile more"
                )
            if not self.warned:
                self.warned = True
                log.warning(
                    "coda: %s graph runs new sizes eagerly after %d specializations (%s=%d)",
                    self.graph_kind, limit, MAX_SPECIALIZATIONS_ENV, limit,
                )  # fmt: skip
            return self._eager
        try:
            module = self.source.clone()
            func = module.ops.first
            assert isinstance(func, FuncOp)
            bind_sizes(func, sizes)
            planned = self.plan(module, func, self.start)
            sizes_out = {i: bind_dim(d, sizes) for i, d in self.imported.size_outputs.items()}
            run: Run = functools.partial(_with_sizes, planned, sizes_out)
        except Exception as err:  # these sizes run eagerly; the others keep their plans
            if self.strict:
                raise
            log.warning(
                "coda: %s graph runs eagerly for %s after an internal error: %s: %s",
                self.graph_kind, text, type(err).__name__, one_line(err),
            )  # fmt: skip
            run = self._eager
        self.runs[tuple(sorted(sizes.items()))] = run
        log.info(
            "coda: %s graph with symbolic sizes specialized for %s (%d of at most %d)",
            self.graph_kind, text, len(self.runs), limit,
        )  # fmt: skip
        return run


def _with_sizes(
    planned: Callable[[list[Any]], list[Any]],
    sizes: dict[int, int],
    args: list[Any],
    tensors: list[torch.Tensor],
) -> list[Any]:
    """One size's program; the sizes the graph returns (for its backward) filled in."""
    outputs = planned(tensors)
    for index, value in sizes.items():
        outputs[index] = value
    return outputs


def tensor_arguments(gm: fx.GraphModule) -> list[int]:
    """Graph input index of each func argument (size inputs are not arguments)."""
    return [
        i
        for i, n in enumerate(gm.graph.find_nodes(op="placeholder"))
        if not isinstance(n.meta.get("val"), torch.SymInt)
    ]
