"""A compiled graph as a list of plain steps, run in order over a name -> value environment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from .kernel_cache import KernelCache, default_cache, triton_interpret
from .launch_log import (
    AllocationRecord,
    BufferAccess,
    LaunchRecord,
    dtype_name,
    log_allocation,
    log_launch,
    unique_bytes,
)


@dataclass(frozen=True)
class OutputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class KernelStep:
    """A generated Triton kernel.

    `source` is a Python module defining `launch(*tensors) -> grid`; the executor allocates
    `outputs` (contiguous, on the device of the first input tensor) and passes them to
    `launch` after the inputs.
    """

    name: str
    kind: str  # "gemm" | "loop" | "attention"
    source: str
    inputs: tuple[str, ...]
    outputs: tuple[OutputSpec, ...]
    #: per input, how many distinct elements the kernel reads when it reads only part
    #: of the tensor (through a slice view); None or missing: all of it
    read_elements: tuple[int | None, ...] = ()
    #: the values of a size-generic source's size parameters for this program
    #: (codegen/size_generic.py), passed to `launch` as `_dyn`; () for a concrete source
    size_args: tuple[int, ...] = ()

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)


@dataclass(frozen=True)
class TorchStep:
    """Run by torch: a fallback op (logged as a launch), or a view/constant (not logged,
    unless the view had to copy: then it is logged as a "copy" launch)."""

    name: str
    kind: str  # "fallback" | "view" | "constant"
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.outputs


Step = KernelStep | TorchStep
TORCH_STEP_KINDS = ("fallback", "view", "constant")


class Program:
    """Runs `steps` in order; values are dropped after their last use unless returned."""

    def __init__(
        self,
        graph: str,
        inputs: Sequence[str],
        steps: Sequence[Step],
        outputs: Sequence[str | None],
        cache: KernelCache | None = None,
    ) -> None:
        self.graph = graph
        self.inputs = tuple(inputs)
        self.steps = tuple(steps)
        self.outputs = tuple(outputs)
        self._cache = cache if cache is not None else default_cache()
        self._free_after = _liveness(self.inputs, self.steps, self.outputs)
        used = {n for s in self.steps for n in s.inputs} | {n for n in self.outputs if n}
        self._bound_inputs = tuple((i, n) for i, n in enumerate(self.inputs) if n in used)
        # Keyed by (step index, interpret): one CPU and one GPU module per kernel at most.
        self._launchers: dict[tuple[int, bool], Callable[..., Any]] = {}

    def __call__(self, args: list[Any]) -> list[Any]:
        if len(args) != len(self.inputs):
            raise TypeError(
                f"{self.graph} program takes {len(self.inputs)} inputs, got {len(args)}"
            )
        env: dict[str, Any] = {n: args[i] for i, n in self._bound_inputs}
        for index, step in enumerate(self.steps):
            try:
                if isinstance(step, KernelStep):
                    self._run_kernel(index, step, env, args)
                else:
                    self._run_torch(step, env)
            except Exception as e:
                e.add_note(f"in {self.graph} step {step.name!r}")
                raise
            for name in self._free_after[index]:
                del env[name]
        return [env[n] if n is not None else None for n in self.outputs]

    # Each step runs in its own method so that its local references to tensors are gone
    # when it returns; otherwise a freed value would live on until the next step.
    def _run_kernel(
        self, index: int, step: KernelStep, env: dict[str, Any], args: list[Any]
    ) -> None:
        values = [env[n] for n in step.inputs]
        device = _first_device(values) or _first_device(args) or torch.get_default_device()
        interpret = device.type == "cpu"
        launch = self._launcher(index, step, interpret)
        outs = [torch.empty(o.shape, dtype=o.dtype, device=device) for o in step.outputs]
        for spec, out in zip(step.outputs, outs, strict=True):
            log_allocation(
                AllocationRecord(
                    spec.name,
                    tuple(out.shape),
                    dtype_name(out.dtype),
                    unique_bytes(out),
                    self.graph,
                )
            )
        sizes = {"_dyn": step.size_args} if step.size_args else {}
        if interpret:
            # Some Triton paths (constexpr functions) read the knob at call time too.
            with triton_interpret(True):
                grid = launch(*values, *outs, **sizes)
        else:
            grid = launch(*values, *outs, **sizes)
        if not isinstance(grid, tuple):
            raise TypeError(f"launch() of kernel {step.name!r} returned {grid!r}, not a grid tuple")
        for spec, out in zip(step.outputs, outs, strict=True):
            env[spec.name] = out
        log_launch(
            LaunchRecord(
                kernel=step.name,
                kind=step.kind,
                grid=tuple(int(g) for g in grid),
                reads=_accesses(step.inputs, values, step.read_elements),
                writes=_accesses(step.output_names, outs),
                graph=self.graph,
            )
        )

    def _launcher(self, index: int, step: KernelStep, interpret: bool) -> Callable[..., Any]:
        launch = self._launchers.get((index, interpret))
        if launch is None:
            module: ModuleType = self._cache.load(step.source, interpret=interpret)
            launch = getattr(module, "launch", None)
            if not callable(launch):
                raise AttributeError(f"kernel {step.name!r} source defines no launch() function")
            self._launchers[(index, interpret)] = launch
        return launch

    def _run_torch(self, step: TorchStep, env: dict[str, Any]) -> None:
        values = [env[n] for n in step.inputs]
        results = _as_outputs(step, step.fn(*values))
        for name, value in zip(step.outputs, results, strict=True):
            env[name] = value
        # A fallback's fresh outputs are allocations; outputs aliasing an input are not.
        # A view with a fresh output copied (torch's reshape does when strides cannot
        # express it): that is a launch moving data too, so it is logged as a "copy".
        input_storages = {_storage_ptr(v) for v in values if isinstance(v, torch.Tensor)}
        fresh = [
            isinstance(v, torch.Tensor) and _storage_ptr(v) not in input_storages for v in results
        ]
        if step.kind == "constant" or (step.kind == "view" and not any(fresh)):
            return
        for name, value, is_fresh in zip(step.outputs, results, fresh, strict=True):
            if is_fresh:
                log_allocation(
                    AllocationRecord(
                        name,
                        tuple(value.shape),
                        dtype_name(value.dtype),
                        unique_bytes(value),
                        self.graph,
                    )
                )
        log_launch(
            LaunchRecord(
                kernel=step.name,
                kind="fallback" if step.kind == "fallback" else "copy",
                grid=(),
                reads=_accesses(step.inputs, values),
                writes=_accesses(step.outputs, results),
                graph=self.graph,
            )
        )


def _liveness(
    inputs: tuple[str, ...], steps: tuple[Step, ...], outputs: tuple[str | None, ...]
) -> tuple[tuple[str, ...], ...]:
    """Per step, the values to drop after it; also checks every name is defined once."""
    defined: dict[str, int] = {}  # name -> index of the defining step (-1: graph input)
    last_use: dict[str, int] = {}
    for name in inputs:
        if name in defined:
            raise ValueError(f"graph input {name!r} is listed twice")
        defined[name] = -1
    for index, step in enumerate(steps):
        if isinstance(step, TorchStep) and step.kind not in TORCH_STEP_KINDS:
            raise ValueError(f"step {step.name!r} has unknown kind {step.kind!r}")
        for name in step.inputs:
            if name not in defined:
                raise ValueError(f"step {step.name!r} reads undefined value {name!r}")
            last_use[name] = index
        for name in step.output_names:
            if name in defined:
                raise ValueError(f"step {step.name!r} redefines value {name!r}")
            defined[name] = index
    for name in outputs:
        if name is not None and name not in defined:
            raise ValueError(f"graph output {name!r} is never defined")
    kept = {n for n in outputs if n is not None}
    free_after: list[list[str]] = [[] for _ in steps]
    for name, index in defined.items():
        if name in kept:
            continue
        # A step output nobody reads dies right after its step; unused inputs are never bound.
        last = last_use.get(name, index)
        if last >= 0:
            free_after[last].append(name)
    return tuple(tuple(names) for names in free_after)


def _as_outputs(step: TorchStep, result: Any) -> Sequence[Any]:
    if len(step.outputs) == 1 and not isinstance(result, tuple | list):
        return (result,)
    if not step.outputs:
        return ()
    if not isinstance(result, tuple | list) or len(result) != len(step.outputs):
        raise ValueError(
            f"step {step.name!r} declares {len(step.outputs)} outputs but its fn returned "
            f"{type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, tuple | list) else "")
        )
    return result


def _accesses(
    names: Sequence[str], values: Sequence[Any], elements: Sequence[int | None] = ()
) -> tuple[BufferAccess, ...]:
    accesses = []
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        if not isinstance(value, torch.Tensor):
            continue
        nbytes = unique_bytes(value)
        part = elements[i] if i < len(elements) else None
        if part is not None:
            nbytes = min(nbytes, part * value.element_size())
        accesses.append(BufferAccess(name, nbytes))
    return tuple(accesses)


def _first_device(values: Sequence[Any]) -> torch.device | None:
    return next((v.device for v in values if isinstance(v, torch.Tensor)), None)


def _storage_ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()
