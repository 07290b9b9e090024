"""Capture the aten graphs the backend would compile, without compiling them.

`lowerc --model` uses this to show every stage: it runs the model once through
Dynamo + AOTAutograd with the backend's decompositions and partitioner, and keeps
the forward and backward (or inference) FX graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from xdsl.dialects.builtin import ModuleOp

from coda.compiler.backend import DECOMPOSITIONS, inference_graph, partition
from coda.compiler.fold_constants import fold_constants
from coda.compiler.fx_import import import_graph
from coda.compiler.models import ModelSpec


@dataclass
class CapturedGraphs:
    #: (graph kind, FX graph) in compile order: forward then backward, or inference
    graphs: list[tuple[str, fx.GraphModule]]
    #: graph kind -> output slots (see ImportedGraph)
    output_slots: dict[str, list[int | None]]
    #: indices of the Dynamo graph inputs that are the model's parameters (the
    #: inference graph's leading inputs follow the same order)
    parameters: tuple[int, ...] = ()

    def to_module(self) -> ModuleOp:
        """One module with a func per graph, named after its kind."""
        funcs = []
        for kind, gm in self.graphs:
            # as the backend compiles it: input-independent tensors folded to inputs
            folded = fold_constants(gm, torch.device("cpu"))
            imported = import_graph(folded.gm, kind)
            self.output_slots[kind] = imported.output_slots
            imported.func.detach()
            funcs.append(imported.func)
        return ModuleOp(funcs)


def capture(
    spec: ModelSpec,
    *,
    training: bool = True,
    seed: int = 0,
    dynamic: Sequence[tuple[int, int]] = (),
) -> CapturedGraphs:
    """`dynamic`: (input, dim) pairs traced as symbolic sizes (mark_dynamic)."""
    torch.manual_seed(seed)
    model = spec.factory().to(spec.dtype)
    inputs = [
        torch.randn(shape, dtype=spec.dtype, requires_grad=training) for shape in spec.input_shapes
    ]
    for index, dim in dynamic:
        torch._dynamo.mark_dynamic(inputs[index], dim)
    graphs: list[tuple[str, fx.GraphModule]] = []

    def recorder(kind: str) -> Any:
        def record(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
            graphs.append((kind, inference_graph(gm) if kind == "inference" else gm))
            return make_boxed_func(gm.forward)

        return record

    aot = aot_autograd(
        fw_compiler=recorder("forward"),
        bw_compiler=recorder("backward"),
        inference_compiler=recorder("inference"),
        decompositions=DECOMPOSITIONS,
        partition_fn=partition,
    )
    parameters: list[int] = []

    def backend(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
        # as the coda backend does: Dynamo's example inputs are the real parameters
        parameters.extend(
            i for i, v in enumerate(example_inputs) if isinstance(v, torch.nn.Parameter)
        )
        return aot(gm, example_inputs)

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=False)
    if training:
        out = compiled(*inputs)
        (out if isinstance(out, torch.Tensor) else out[0]).float().sum().backward()
    else:
        with torch.no_grad():
            compiled(*inputs)
    return CapturedGraphs(graphs, {}, tuple(parameters))
