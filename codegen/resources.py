"""What a compiled kernel costs on its target, read from the compiler's own output.

CUDA: registers, spills and stack from `ptxas -v` (the ptxas bundled in Triton's wheel)
over the kernel's PTX; AMD: the amdgcn code object metadata (`.vgpr_count`,
`.vgpr_spill_count`, `.private_segment_fixed_size`). Shared memory is Triton's own
figure. Instruction counts are static: instructions in the code, not executed ones.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from coda.codegen.targets import Target


@dataclass(frozen=True)
class KernelResources:
    graph: str  # the function of the plan: forward, backward, inference
    kernel: str
    kind: str  # gemm | loop
    target: str
    config: str  # the tile it was compiled with
    registers: int  # per thread (per lane on AMD: VGPRs + AGPRs)
    spill_bytes: int  # per thread
    shared_memory: int  # bytes per program
    stack_bytes: int  # per thread (scratch on AMD)
    #: the GEMM mainloop issues the target's tensor-core instructions; None: no GEMM
    tensor_cores: bool | None
    global_loads: int
    global_stores: int
    diagnostics: tuple[str, ...] = field(default=())

    @property
    def clean(self) -> bool:
        return not self.diagnostics


@dataclass(frozen=True)
class Measured:
    registers: int
    spill_bytes: int
    stack_bytes: int
    global_loads: int
    global_stores: int


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text, flags=re.MULTILINE))


def measure(target: Target, assembly: str, arch_name: str) -> Measured:
    """Registers, spills, stack and memory instructions of one kernel's assembly."""
    if target.backend == "cuda":
        return _measure_ptx(target, assembly, arch_name)
    return _measure_amdgcn(assembly)


def _ptxas_report(target: Target, ptx: str, arch_name: str) -> str:
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(target.arch).path
    with tempfile.TemporaryDirectory(prefix="coda-ptxas-") as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        # -v prints the resource report; the cubin itself is Triton's, not this one
        done = subprocess.run(
            [ptxas, "-v", f"--gpu-name={arch_name}", str(src), "-o", str(Path(tmp) / "k.o")],
            capture_output=True,
            text=True,
            check=True,
        )
    return done.stdout + done.stderr


def _first_int(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


# an instruction at the start of a line, optionally under a predicate (`@%p3`, `@!%p3`)
_PRED = r"^\s*(?:@!?%p\d+\s+)?"


def _measure_ptx(target: Target, ptx: str, arch_name: str) -> Measured:
    report = _ptxas_report(target, ptx, arch_name)
    return Measured(
        registers=_first_int(r"Used (\d+) registers", report),
        spill_bytes=max(
            _first_int(r"(\d+) bytes spill stores", report),
            _first_int(r"(\d+) bytes spill loads", report),
        ),
        stack_bytes=_first_int(r"(\d+) bytes stack frame", report),
        # cp.async/bulk copies are the pipelined mainloop's global loads
        global_loads=_count(rf"{_PRED}(ld\.global|cp\.async\S*\.global)", ptx),
        global_stores=_count(rf"{_PRED}(st\.global|cp\.async\.bulk\S*\.global\.shared)", ptx),
    )


def _measure_amdgcn(asm: str) -> Measured:
    def meta(key: str) -> int:
        return _first_int(rf"\.{key}:\s+(\d+)", asm)

    return Measured(
        registers=meta("vgpr_count") + meta("agpr_count"),
        spill_bytes=4 * meta("vgpr_spill_count"),  # one 4-byte VGPR per spilled register
        stack_bytes=meta("private_segment_fixed_size"),
        global_loads=_count(r"^\s*(global|buffer)_load", asm),
        global_stores=_count(r"^\s*(global|buffer)_store", asm),
    )


def diagnostics(
    target: Target,
    kernel: str,
    config: str,
    measured: Measured,
    shared: int,
    mma: bool | None,
    mma_expected: bool,
) -> tuple[str, ...]:
    """What makes a kernel unfit for `target`, one line each, naming the figure.
    `mma`: whether the mainloop uses tensor cores (None: no GEMM); `mma_expected`:
    whether its operand types allow them."""
    where = f"coda: kernel {kernel} on {target.name}"
    found = []
    if measured.spill_bytes:
        found.append(f"{where} spills {measured.spill_bytes} bytes ({config})")
    if measured.registers > target.registers:
        found.append(
            f"{where} uses {measured.registers} registers, over the {target.registers} "
            f"budget ({config})"
        )
    if shared > target.shared_memory:
        found.append(
            f"{where} uses {shared} bytes of shared memory, over the {target.shared_memory} "
            f"budget ({config})"
        )
    if mma is False and mma_expected:
        found.append(
            f"{where}: the GEMM mainloop does not use tensor cores "
            f"({target.tensor_core_pattern}) ({config})"
        )
    return tuple(found)
