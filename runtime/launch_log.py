"""Per-launch and per-allocation records, read by tests and benchmarks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch

logger = logging.getLogger("coda.runtime")


@dataclass(frozen=True)
class BufferAccess:
    name: str
    nbytes: int


@dataclass(frozen=True)
class LaunchRecord:
    kernel: str
    kind: str  # "gemm" | "loop" | "fallback" | "copy" (a torch reshape that copied)
    grid: tuple[int, ...]
    reads: tuple[BufferAccess, ...]
    writes: tuple[BufferAccess, ...]
    graph: str  # "forward" | "backward" | "inference" | ...

    @property
    def bytes_read(self) -> int:
        return sum(a.nbytes for a in self.reads)

    @property
    def bytes_written(self) -> int:
        return sum(a.nbytes for a in self.writes)


@dataclass(frozen=True)
class AllocationRecord:
    buffer: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype without the "torch." prefix, e.g. "float32"
    nbytes: int
    graph: str


def unique_bytes(t: torch.Tensor) -> int:
    """Bytes of distinct memory a non-overlapping strided view touches.

    Stride-0 dims (expand/broadcast) re-read the same elements, so they do not count.
    """
    if t.numel() == 0:
        return 0
    n = t.element_size()
    for size, stride in zip(t.shape, t.stride(), strict=True):
        if stride != 0:
            n *= size
    return n


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


R = TypeVar("R")

# Lists of the active record_* contexts, innermost last.
_launch_sinks: list[list[LaunchRecord]] = []
_allocation_sinks: list[list[AllocationRecord]] = []


def log_launch(record: LaunchRecord) -> None:
    logger.debug("launch %s", record)
    for sink in _launch_sinks:
        sink.append(record)


def log_allocation(record: AllocationRecord) -> None:
    logger.debug("alloc %s", record)
    for sink in _allocation_sinks:
        sink.append(record)


@contextmanager
def _collect(sinks: list[list[R]]) -> Iterator[list[R]]:
    records: list[R] = []
    sinks.append(records)
    try:
        yield records
    finally:
        # By identity: list.remove compares by value and two empty lists are equal.
        for i, sink in enumerate(sinks):
            if sink is records:
                del sinks[i]
                break


def record_launches() -> AbstractContextManager[list[LaunchRecord]]:
    """Collect every LaunchRecord logged while the context is active (nestable)."""
    return _collect(_launch_sinks)


def record_allocations() -> AbstractContextManager[list[AllocationRecord]]:
    """Collect every AllocationRecord logged while the context is active (nestable)."""
    return _collect(_allocation_sinks)
