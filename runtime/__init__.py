"""coda runtime: kernel cache, launch/allocation log and the step executor.

Depends on nothing else of coda: only torch, triton and the standard library.
"""

from .executor import KernelStep, OutputSpec, Program, TorchStep
from .kernel_cache import KernelCache, default_cache, source_hash, triton_interpret
from .launch_log import (
    AllocationRecord,
    BufferAccess,
    LaunchRecord,
    log_allocation,
    log_launch,
    record_allocations,
    record_launches,
    unique_bytes,
)

__all__ = [
    "AllocationRecord",
    "BufferAccess",
    "KernelCache",
    "KernelStep",
    "LaunchRecord",
    "OutputSpec",
    "Program",
    "TorchStep",
    "default_cache",
    "log_allocation",
    "log_launch",
    "record_allocations",
    "record_launches",
    "source_hash",
    "triton_interpret",
    "unique_bytes",
]
