"""Eager PyTorch: every aten op a kernel launch, moving its inputs' and outputs' bytes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from benchmarks.measure import Measurement
from benchmarks.roofline import kernel_time
from benchmarks.workloads import Workload, run_step
from coda.runtime import unique_bytes

aten = torch.ops.aten

#: ops that allocate or only describe memory: no kernel runs for them
NO_KERNEL = {
    aten.empty.memory_format,
    aten.empty_strided.default,
    aten.empty_like.default,
    aten._unsafe_view.default,  # a view that autograd does not track as one
    aten._reshape_alias.default,
    aten.detach.default,
    aten.lift_fresh.default,
    aten._local_scalar_dense.default,
    aten.set_.source_Storage_storage_offset,
    aten.resize_.default,
}


def _tensors(values: Sequence[Any]) -> list[torch.Tensor]:
    return [v for v in tree_flatten(list(values))[0] if isinstance(v, torch.Tensor)]


def launches_kernel(func: torch._ops.OpOverload) -> bool:
    """Views alias their input and allocations only reserve memory: neither launches."""
    return func not in NO_KERNEL and not func.is_view


def op_bytes(args: Sequence[Any], outputs: Sequence[Any]) -> int:
    """Unique bytes of the distinct tensors an op reads and writes (an in-place or out=
    op's output is the same memory as an argument: counted once)."""
    seen: set[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = set()
    total = 0
    for t in _tensors(args) + _tensors(outputs):
        key = (
            t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t),
            t.storage_offset(),
            tuple(t.shape),
            tuple(t.stride()),
        )
        if key not in seen:
            seen.add(key)
            total += unique_bytes(t)
    return total


def _attention_flops(products: int) -> Any:
    """torch's FLOP counter has no formula for its CPU flash-attention ops: the one it
    uses for the CUDA ones (2 products forward, 4 backward, 2 * B * Hq * S * Skv * D
    each), also for grouped-query attention."""

    def count(*args: Any, **kwargs: Any) -> int:
        q, k = (args[1], args[2]) if products == 4 else (args[0], args[1])
        b, h, s, d = q.shape
        return products * 2 * b * h * s * k.shape[2] * d

    return count


_CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops(2),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_flops(4),
}


def op_flops(
    func: torch._ops.OpOverload, args: Sequence[Any], kwargs: dict[str, Any], out: Any
) -> int:
    packet = func._overloadpacket
    if packet in _CPU_ATTENTION_FLOPS:
        return _CPU_ATTENTION_FLOPS[packet](*args, **kwargs)
    counter = flop_registry.get(packet)
    if counter is None:
        return 0
    return int(counter(*args, **kwargs, out_val=out))


@dataclass
class OpRecord:
    op: str
    nbytes: int
    flops: int


class EagerRecorder(TorchDispatchMode):
    """Records every aten op that launches a kernel (see `launches_kernel`)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[OpRecord] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if launches_kernel(func):
            self.records.append(
                OpRecord(
                    str(func), op_bytes([args, kwargs], [out]), op_flops(func, args, kwargs, out)
                )
            )
        return out


def measure_eager(workload: Workload) -> Measurement:
    model, x, grad = workload.build()
    run_step(model, model, x, grad)  # warm-up: lazy initialisations are not the workload
    with EagerRecorder() as recorder:
        run_step(model, model, x, grad)
    records = recorder.records
    return Measurement(
        system="eager",
        workload=workload.key,
        launches=len(records),
        bytes=sum(r.nbytes for r in records),
        flops=sum(r.flops for r in records),
        modeled_s=sum(kernel_time(r.flops, r.nbytes) for r in records),
    )
