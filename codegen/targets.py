"""The GPUs coda compiles for ahead of time, and the budgets each kernel must fit.

Triton compiles for these on a CPU-only machine (`coda.codegen.aot`): the figures here
are what the compiled kernels are checked against, so a kernel that would spill or run
out of shared memory on someone's GPU is a compile-time diagnostic instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str  # as users spell it: "cuda:sm_90a"
    backend: str  # Triton backend: "cuda" | "hip"
    arch: int | str  # Triton GPUTarget arch: compute capability (cuda) or gfx name (hip)
    gpu: str  # the product, for messages
    warp_size: int
    #: shared memory (LDS on AMD) one program may use, bytes
    shared_memory: int
    #: registers one thread may hold before the compiler spills (VGPRs+AGPRs on AMD)
    registers: int
    #: substring of an instruction that only a tensor-core mainloop emits
    tensor_core_pattern: str
    #: the assembly `lowerc --emit` prints: "ptx" | "amdgcn"
    assembly: str

    def gpu_target(self):  # -> triton.backends.compiler.GPUTarget (triton loads lazily)
        from triton.backends.compiler import GPUTarget

        return GPUTarget(self.backend, self.arch, self.warp_size)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        # H100: 227 KiB of the 228 KiB per SM are addressable by one block
        Target("cuda:sm_90a", "cuda", 90, "H100", 32, 232448, 255, "wgmma.mma_async", "ptx"),
        # B200: accumulators live in tensor memory; tcgen05.mma issues the MMAs
        Target("cuda:sm_100a", "cuda", 100, "B200", 32, 232448, 255, "tcgen05.mma", "ptx"),
        # MI300X: 64 KiB LDS per CU; 512 VGPRs per lane (256 arch + 256 acc)
        Target("hip:gfx942", "hip", "gfx942", "MI300X", 64, 65536, 512, "mfma", "amdgcn"),
        # MI350: LDS grows to 160 KiB
        Target("hip:gfx950", "hip", "gfx950", "MI350", 64, 163840, 512, "mfma", "amdgcn"),
    )
}


def parse_target(name: str) -> Target:
    """The target called `name`; a ValueError listing the valid ones otherwise."""
    target = TARGETS.get(name)
    if target is None:
        raise ValueError(f"unknown target '{name}' (valid targets: {', '.join(TARGETS)})")
    return target
