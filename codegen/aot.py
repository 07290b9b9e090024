"""Ahead-of-time compilation of a plan's kernels for a real GPU, on any machine.

Triton compiles for a `GPUTarget` without that GPU being present. Each generated kernel
module is tiled for the target (`tile_config`), its launch is replayed on meta tensors
to get exactly the arguments a GPU launch would pass, and Triton's own specialization
(the JIT's binder) turns them into the signature, constexprs and divisibility hints a
launch on the GPU would compile with. The binary's resources (`resources.py`) are
checked against the target's budgets: a spill or shared memory over budget becomes a
diagnostic naming the kernel, the target and the figure.

Results are cached on disk by kernel source + target + Triton version (content-addressed,
atomic writes, like `coda.runtime.kernel_cache`), so repeated checks cost nothing. The
generated modules themselves are imported through the runtime's kernel cache (Triton
needs a real file to read a kernel's source from): the one place codegen uses runtime.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from xdsl.dialects.builtin import BFloat16Type, Float16Type, ModuleOp
from xdsl.dialects.func import FuncOp
from xdsl.ir import Operation

from coda.codegen import generate_kernel_source
from coda.codegen.resources import KernelResources, Measured, diagnostics, measure
from coda.codegen.targets import Target, parse_target
from coda.codegen.tile_config import (
    AttentionTile,
    GemmTile,
    attention_tiles,
    fits_partials,
    gemm_tiles,
    loop_tile,
    sixteen_bit_operands,
)
from coda.dialects import kernel
from coda.dialects.dtypes import torch_dtype_of
from coda.dialects.graph import AttentionBackwardOp, AttentionOp
from coda.runtime.kernel_cache import atomic_write, default_cache

AOT_CACHE_ENV = "CODA_AOT_CACHE_DIR"
# bump when what a cache entry records (resources.Measured) changes
_ENTRY_FORMAT = 1


class AotError(ValueError):
    """Kernels of a plan do not fit their target; the message lists every diagnostic."""


@dataclass(frozen=True)
class AotKernel:
    resources: KernelResources
    assembly: str  # PTX or amdgcn
    source: str  # the Triton module compiled: what a GPU of the target should run


KernelOps = kernel.GemmKernelOp | kernel.LoopKernelOp | kernel.AttentionKernelOp
Tile = GemmTile | AttentionTile


def plan_kernels(plan: ModuleOp | FuncOp | Iterable[Operation]) -> list[tuple[str, KernelOps]]:
    """(graph name, kernel op) of every generated kernel; torch fallbacks have none."""
    ops = plan.walk() if isinstance(plan, ModuleOp | FuncOp) else plan
    found = []
    for op in ops:
        if isinstance(op, KernelOps):
            parent = op.parent_op()
            graph = parent.sym_name.data if isinstance(parent, FuncOp) else ""
            found.append((graph, op))
    return found


def compile_plan(
    plan: ModuleOp | FuncOp | Iterable[Operation],
    target: Target | str,
    *,
    gemm_tile: GemmTile | None = None,
) -> list[KernelResources]:
    """Compile every kernel of `plan` for `target`; one resource report per kernel."""
    return [k.resources for k in compile_kernels(plan, target, gemm_tile=gemm_tile)]


def compile_kernels(
    plan: ModuleOp | FuncOp | Iterable[Operation],
    target: Target | str,
    *,
    gemm_tile: GemmTile | None = None,
) -> list[AotKernel]:
    """As `compile_plan`, with each kernel's assembly. `gemm_tile` forces the GEMM tile."""
    target = parse_target(target) if isinstance(target, str) else target
    return [_compile(graph, op, target, gemm_tile) for graph, op in plan_kernels(plan)]


def check(resources: Iterable[KernelResources]) -> list[str]:
    """Every diagnostic of a plan's kernels, in kernel order."""
    return [line for r in resources for line in r.diagnostics]


def raise_on_diagnostics(resources: Iterable[KernelResources]) -> None:
    found = check(resources)
    if found:
        raise AotError("\n".join(found))


# -- one kernel ----------------------------------------------------------------------------


def _tiles(op: KernelOps, target: Target, forced: GemmTile | None) -> list[Tile | None]:
    """GEMM or attention tiles to try, best first (None: a loop kernel, tiled by
    `loop_tile`)."""
    if isinstance(op, kernel.AttentionKernelOp):
        backward = "backward" in op.kernel_name
        return list(attention_tiles(target, backward))
    if not isinstance(op, kernel.GemmKernelOp):
        return [None]
    if forced is not None:
        return [forced]
    gemms = op.gemms
    # a chain (two gemms) is tiled for its second, whose programs hold whole rows; the
    # first's tiles are BLOCK_M x BLOCK_K, which its partials must fit
    tiles = gemm_tiles(target, gemms[-1], whole_rows=len(gemms) == 2)
    if len(gemms) == 2:
        tiles = [t for t in tiles if fits_partials(replace(t, block_n=t.block_k), gemms[0])]
    return tiles


def _compile(graph: str, op: KernelOps, target: Target, forced: GemmTile | None) -> AotKernel:
    """The first tile that compiles clean; if none does, the best tile's report."""
    results = []
    for tile in _tiles(op, target, forced):
        result = _compile_tile(graph, op, target, tile)
        if result.resources.clean:
            return result
        results.append(result)
    return results[0]


def _compile_tile(graph: str, op: KernelOps, target: Target, tile: Tile | None) -> AotKernel:
    source = generate_kernel_source(op, target, tile)
    if tile is None:
        loop = loop_tile(target)
        config = f"BLOCK {loop.block} elements, {loop.num_warps} warps"
    else:
        config = tile.describe()
    cached = _Cache().get(source, target)
    if cached is None:
        try:
            compiled = _triton_compile(source, op, target)
        except Exception as err:  # a kernel Triton cannot compile is a finding, not a crash
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            message = f"coda: kernel {op.kernel_name} on {target.name} fails to compile: {first}"
            empty = KernelResources(
                graph, op.kernel_name, op.KIND, target.name, config,
                0, 0, 0, 0, None, 0, 0, (message,),
            )  # fmt: skip
            return AotKernel(empty, "", source)
        asm = compiled.asm[target.assembly]
        arch_name = ""
        if target.backend == "cuda":
            from triton.backends.nvidia.compiler import sm_arch_from_capability

            arch_name = sm_arch_from_capability(target.arch)
        measured = measure(target, asm, arch_name)
        cached = _Entry(measured, compiled.metadata.shared, asm)
        _Cache().put(source, target, cached)
    mma = (target.tensor_core_pattern in cached.assembly) if tile is not None else None
    found = diagnostics(
        target,
        op.kernel_name,
        config,
        cached.measured,
        cached.shared,
        mma,
        _mma_expected(op, target),
    )
    m = cached.measured
    resources = KernelResources(
        graph=graph,
        kernel=op.kernel_name,
        kind=op.KIND,
        target=target.name,
        config=config,
        registers=m.registers,
        spill_bytes=m.spill_bytes,
        shared_memory=cached.shared,
        stack_bytes=m.stack_bytes,
        tensor_cores=mma,
        global_loads=m.global_loads,
        global_stores=m.global_stores,
        diagnostics=found,
    )
    return AotKernel(resources, cached.assembly, source)


def _mma_expected(op: KernelOps, target: Target) -> bool:
    """Whether the GEMM mainloop (or attention's products) should run on tensor cores:
    bf16/f16 operands always; float32 ones on AMD (float32 MFMAs) and on NVIDIA only
    when TF32 is allowed (the template's INPUT_PRECISION), since IEEE float32 dots are
    FMAs there."""
    if isinstance(op, kernel.AttentionKernelOp):
        attention = next(
            o for o in op.body.block.ops if isinstance(o, AttentionOp | AttentionBackwardOp)
        )
        elem = attention.query.type.element_type
        if isinstance(elem, BFloat16Type | Float16Type) or target.backend == "hip":
            return True
        return bool(torch.backends.cuda.matmul.allow_tf32)
    if not isinstance(op, kernel.GemmKernelOp):
        return False
    if all(sixteen_bit_operands(g) for g in op.gemms) or target.backend == "hip":
        return True
    return bool(torch.backends.cuda.matmul.allow_tf32)


class _Pointer:
    """What Triton's specialization reads of a tensor argument: its dtype and address
    (0: 16-byte aligned, as every buffer the runtime allocates)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.dtype = tensor.dtype

    def data_ptr(self) -> int:
        return 0


def _launch_arguments(module: types.ModuleType, op: KernelOps) -> tuple[Any, tuple, dict]:
    """The JIT kernel of a generated module and the arguments `launch` passes it, recorded
    by running `launch` on meta tensors with a recorder in place of the kernel."""
    from triton.runtime.jit import JITFunction

    # '_'-prefixed JIT functions are module-local helpers (common.JIT_HELPERS)
    (name, fn), *more = [
        (n, v) for n, v in vars(module).items() if isinstance(v, JITFunction) and n[0] != "_"
    ]
    assert not more, f"{op.kernel_name}: several kernels in one module"
    calls: list[tuple[tuple, dict]] = []

    class _Record:
        def __getitem__(self, grid: object) -> Any:
            return lambda *args, **kwargs: calls.append((args, kwargs))

    # a copy of `launch` whose globals see the recorder: the shared module stays intact
    launch = types.FunctionType(module.launch.__code__, {**vars(module), name: _Record()})
    tensors = [
        torch.empty(v.type.get_shape(), dtype=torch_dtype_of(v.type.element_type), device="meta")
        for v in (*op.inputs, *op.outputs)
    ]
    launch(*tensors)
    if not calls:
        raise ValueError("launch has an empty grid")
    args, kwargs = calls[0]
    return fn, tuple(_Pointer(a) if isinstance(a, torch.Tensor) else a for a in args), kwargs


def _triton_compile(source: str, op: KernelOps, target: Target) -> Any:
    import triton
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    module = default_cache().load(source, interpret=False)
    fn, args, kwargs = _launch_arguments(module, op)
    gpu = target.gpu_target()
    backend = make_backend(gpu)
    # Triton's JIT turns launch arguments into a compile request the same way on a GPU
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(
        backend, kwargs, bound, specialization, options
    )
    ast = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(ast, target=gpu, options=options.__dict__)


# -- the on-disk cache ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    measured: Measured
    shared: int
    assembly: str


def aot_cache_root() -> Path:
    env = os.environ.get(AOT_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "coda" / "aot"


class _Cache:
    """`{key}.json` (resources) and `{key}.asm` per kernel source and target. Budgets are
    applied when reading, so changing a budget needs no invalidation."""

    def __init__(self) -> None:
        self.root = aot_cache_root()

    @staticmethod
    def key(source: str, target: Target) -> str:
        import triton

        text = f"{_ENTRY_FORMAT}\0{target.name}\0{triton.__version__}\0{source}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def get(self, source: str, target: Target) -> _Entry | None:
        key = self.key(source, target)
        try:
            meta = json.loads((self.root / f"{key}.json").read_text(encoding="utf-8"))
            assembly = (self.root / f"{key}.asm").read_text(encoding="utf-8")
            measured = Measured(**meta["measured"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        return _Entry(measured, int(meta["shared"]), assembly)

    def put(self, source: str, target: Target, entry: _Entry) -> None:
        key = self.key(source, target)
        meta = {"measured": dataclasses.asdict(entry.measured), "shared": entry.shared}
        # the assembly first: a .json is only ever visible next to a complete .asm
        atomic_write(self.root / f"{key}.asm", entry.assembly)
        atomic_write(self.root / f"{key}.json", json.dumps(meta))
