"""Hooks into Triton's interpreter: skip kernel bodies, or count the bytes they touch.

Every figure in the tables (bytes, launches) depends only on shapes, never on values,
so at the reference shapes the benchmark runs each launch *without* its body: the
interpreter at these shapes takes minutes per block, and the 10-minute budget could not
hold it. At small shapes the bodies do run, under `count_interpreted_bytes`, to check
that the static byte figures match what the kernels really load and store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from triton.runtime import interpreter as ti


@contextmanager
def skip_kernel_bodies() -> Iterator[None]:
    """Launches go through every host-side step (grid, arguments, launch log) but the
    interpreter runs no program instance: outputs keep whatever `torch.empty` gave."""
    original = ti.GridExecutor.__call__

    def no_op(self: ti.GridExecutor, *args: Any, **kwargs: Any) -> None:
        return None

    ti.GridExecutor.__call__ = no_op  # type: ignore[method-assign]
    try:
        yield
    finally:
        ti.GridExecutor.__call__ = original  # type: ignore[method-assign]


@dataclass
class LaunchBytes:
    """Distinct bytes one interpreted launch loaded and stored (by address)."""

    kernel: str
    loaded: int
    stored: int


@dataclass
class _Addresses:
    loads: list[tuple[np.ndarray, int]] = field(default_factory=list)
    stores: list[tuple[np.ndarray, int]] = field(default_factory=list)


def _distinct_bytes(accesses: list[tuple[np.ndarray, int]]) -> int:
    # Group by element size so that an address read as fp32 counts 4 bytes, as bf16 2.
    total = 0
    for size in {s for _, s in accesses}:
        addrs = [a for a, s in accesses if s == size]
        total += int(np.unique(np.concatenate(addrs)).size) * size if addrs else 0
    return total


def _element_size(ptrs: ti.TensorHandle) -> int:
    return max(ptrs.get_element_ty().primitive_bitwidth // 8, 1)


@contextmanager
def count_interpreted_bytes() -> Iterator[list[LaunchBytes]]:
    """Record, per interpreted launch, the distinct bytes its masked loads and stores
    touched. Block pointers and tensor descriptors end in the same two builder calls."""
    builder = ti.InterpreterBuilder
    original = (builder.create_masked_load, builder.create_masked_store, ti.GridExecutor.__call__)
    launches: list[LaunchBytes] = []
    current: list[_Addresses] = []

    def load(self: Any, ptrs: Any, mask: Any, *args: Any, **kwargs: Any) -> Any:
        if current:
            current[-1].loads.append((ptrs.data[mask.data].ravel(), _element_size(ptrs)))
        return original[0](self, ptrs, mask, *args, **kwargs)

    def store(self: Any, ptrs: Any, value: Any, mask: Any, *args: Any, **kwargs: Any) -> Any:
        if current:
            current[-1].stores.append((ptrs.data[mask.data].ravel(), _element_size(ptrs)))
        return original[1](self, ptrs, value, mask, *args, **kwargs)

    def call(self: ti.GridExecutor, *args: Any, **kwargs: Any) -> Any:
        current.append(_Addresses())
        try:
            return original[2](self, *args, **kwargs)
        finally:
            seen = current.pop()
            launches.append(
                LaunchBytes(
                    self.fn.__name__, _distinct_bytes(seen.loads), _distinct_bytes(seen.stores)
                )
            )

    builder.create_masked_load = load  # type: ignore[method-assign]
    builder.create_masked_store = store  # type: ignore[method-assign]
    ti.GridExecutor.__call__ = call  # type: ignore[method-assign]
    try:
        yield launches
    finally:
        builder.create_masked_load, builder.create_masked_store = original[:2]  # type: ignore[method-assign]
        ti.GridExecutor.__call__ = original[2]  # type: ignore[method-assign]


def fast_cpu_benchmarker() -> Callable[[], None]:
    """Make Inductor's autotuning time each candidate once instead of for 120 ms.

    With kernel bodies skipped the timings carry no information anyway; this keeps a
    max-autotune compile at a few seconds. Returns a function that undoes the patch.
    """
    from torch._inductor.runtime.benchmarking import Benchmarker

    original = Benchmarker.benchmark_cpu

    def once(self: Any, fn: Callable[[], Any], *args: Any, **kwargs: Any) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    Benchmarker.benchmark_cpu = once  # type: ignore[method-assign]

    def undo() -> None:
        Benchmarker.benchmark_cpu = original  # type: ignore[method-assign]

    return undo
