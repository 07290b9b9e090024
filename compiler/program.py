"""Turn a function in the kernel dialect into a runtime `Program`.

This is the one place where IR meets the runtime: kernel ops become generated
Triton modules (`KernelStep`), fallbacks, views and constants become torch calls
(`TorchStep`). The runtime itself never sees IR.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from xdsl.dialects.builtin import TensorType
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import SSAValue

from coda.codegen import generate_kernel_source
from coda.codegen.size_generic import SIZE_GENERIC_SOURCES
from coda.compiler.reference import constant_callable, run_block, view_callable
from coda.dialects import graph, kernel
from coda.dialects.dtypes import torch_dtype_of
from coda.dialects.view_layout import read_elements
from coda.runtime import KernelStep, OutputSpec, Program, TorchStep


class _Names:
    """Readable, unique buffer names taken from the IR's name hints."""

    def __init__(self) -> None:
        self.names: dict[SSAValue, str] = {}
        self.taken: set[str] = set()

    def __getitem__(self, value: SSAValue) -> str:
        if value not in self.names:
            base = value.name_hint or "buf"
            name, n = base, 1
            while name in self.taken:
                name, n = f"{base}_{n}", n + 1
            self.taken.add(name)
            self.names[value] = name
        return self.names[value]

    def all(self, values: Sequence[SSAValue]) -> tuple[str, ...]:
        return tuple(self[v] for v in values)


def _fallback_callable(op: kernel.FallbackKernelOp, device: torch.device) -> Callable[..., Any]:
    """Run the region's graph ops with their reference (torch) semantics."""
    return lambda *tensors: tuple(run_block(op.body.block, tensors, device))


def _output_specs(values: Sequence[SSAValue], names: _Names) -> tuple[OutputSpec, ...]:
    specs = []
    for value in values:
        assert isinstance(value.type, TensorType)
        specs.append(
            OutputSpec(
                names[value],
                graph.tensor_shape(value),
                torch_dtype_of(value.type.element_type),
            )
        )
    return tuple(specs)


def build_program(
    func: FuncOp,
    output_slots: Sequence[int | None],
    graph_kind: str,
    device: torch.device,
    sources: Mapping[str, str] | None = None,
    size_generic: bool = False,
) -> Program:
    """A runnable program for `func`, which must be in the kernel dialect. `sources`
    (kernel name -> Triton module) replaces the default interpreter-tiled sources, e.g.
    with the ones compiled ahead of time for a GPU target. `size_generic`: the graph
    is one size of a graph with symbolic sizes, so kernels take the size-generic form
    of their source where one is known (codegen/size_generic.py); every source is
    recorded either way, so that a later size can find its template."""
    names = _Names()
    block = func.body.block
    steps: list[KernelStep | TorchStep] = []
    returned: Sequence[SSAValue] = ()
    for op in block.ops:
        if isinstance(op, kernel.GemmKernelOp | kernel.LoopKernelOp | kernel.AttentionKernelOp):
            checked = (sources or {}).get(op.kernel_name)
            source = checked or generate_kernel_source(op)
            # a source compiled ahead of time for a GPU runs as it was checked
            generic = SIZE_GENERIC_SOURCES.generic(source, use=size_generic and not checked)
            steps.append(
                KernelStep(
                    name=op.kernel_name,
                    kind=op.KIND,
                    source=generic.source if generic else source,
                    inputs=names.all(op.inputs),
                    outputs=_output_specs(op.outputs, names),
                    read_elements=read_elements(op),
                    size_args=generic.values if generic else (),
                )
            )
        elif isinstance(op, kernel.FallbackKernelOp):
            steps.append(
                TorchStep(
                    op.kernel_name,
                    "fallback",
                    _fallback_callable(op, device),
                    names.all(op.inputs),
                    names.all(op.outputs),
                )
            )
        elif isinstance(op, graph.ViewOp):
            steps.append(
                TorchStep(
                    names[op.result],
                    "view",
                    view_callable(op),
                    (names[op.input],),
                    (names[op.result],),
                )
            )
        elif isinstance(op, graph.ConstantOp):
            steps.append(
                TorchStep(
                    names[op.result],
                    "constant",
                    constant_callable(op, device),
                    (),
                    (names[op.result],),
                )
            )
        elif isinstance(op, ReturnOp):
            returned = op.arguments
        else:
            raise ValueError(
                f"'{op.name}' is outside any kernel: run split-blocks before building a program"
            )
    outputs = [None if slot is None else names[returned[slot]] for slot in output_slots]
    return Program(graph_kind, names.all(block.args), steps, outputs)
