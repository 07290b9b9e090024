"""Human-readable views of a module in the kernel dialect (`lowerc --emit ...`)."""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute, Operation

from coda.dialects import epilogue, graph, kernel
from coda.dialects.view_layout import read_elements


def _funcs(module: ModuleOp) -> list[FuncOp]:
    return [op for op in module.ops if isinstance(op, FuncOp)]


def kernels_of(func: FuncOp) -> list[kernel.KernelOp]:
    return [op for op in func.body.block.ops if isinstance(op, kernel.KernelOp)]


def triton_listing(module: ModuleOp) -> str:
    """The generated Triton source of every kernel, function by function."""
    from coda.codegen import generate_kernel_source

    parts = []
    for func in _funcs(module):
        for op in kernels_of(func):
            header = f"# ===== @{func.sym_name.data}: {op.kernel_name} ({op.KIND}) ====="
            if isinstance(op, kernel.FallbackKernelOp):
                targets = [
                    o.target.data for o in op.body.block.ops if isinstance(o, graph.OpaqueOp)
                ]
                parts.append(f"{header}\n# runs in torch: {', '.join(targets)}\n")
            else:
                parts.append(f"{header}\n{generate_kernel_source(op).rstrip()}\n")
    return "\n".join(parts)


def tensor_bytes(ty: Attribute) -> int:
    """Bytes of a dense tensor of this type (a static estimate: views count fully)."""
    assert isinstance(ty, TensorType)
    numel = 1
    for size in ty.get_shape():
        numel *= size
    width = ty.element_type.bitwidth if hasattr(ty.element_type, "bitwidth") else 32
    return numel * max(width, 8) // 8


def _element_bytes(ty: Attribute) -> int:
    assert isinstance(ty, TensorType)
    width = ty.element_type.bitwidth if hasattr(ty.element_type, "bitwidth") else 32
    return max(width, 8) // 8


def fused_ops(op: kernel.KernelOp) -> list[Operation]:
    """The source ops a kernel computes (epilogue primitives count one each)."""
    ops: list[Operation] = []
    for inner in op.body.block.ops:
        if isinstance(inner, epilogue.GemmOp):
            ops.append(inner)
            ops += [
                e
                for e in inner.body.block.ops
                if not isinstance(e, epilogue.StoreOp | epilogue.ConstantOp)
            ]
        elif isinstance(inner, graph.ConcatOp) and all(
            isinstance(v.owner, graph.ConstantOp) for v in inner.inputs
        ):
            continue  # a pattern of constants (a sign per piece) is index arithmetic
        elif isinstance(inner, graph.ConcatOp) and isinstance(op, kernel.GemmKernelOp):
            continue  # weights of several projections, read piece by piece: addressing
        elif not isinstance(inner, kernel.YieldOp | graph.ConstantOp | graph.ViewOp):
            ops.append(inner)
    return ops


def describe_op(op: Operation) -> str:
    """A source op in a few characters: its function, reduction or aten target."""
    if isinstance(op, epilogue.MapOp | graph.PointwiseOp):
        return op.fn.data
    if isinstance(op, graph.ReduceOp):
        return f"{op.kind.data}{list(op.reduced_dims)}"
    if isinstance(op, graph.OpaqueOp):
        return op.target.data
    return op.name.split(".")[-1]


def _describe(ops: list[Operation]) -> str:
    return " ".join(describe_op(op) for op in ops)


_ATTENTION_TARGETS = ("scaled_dot_product", "flash_attention", "efficient_attention")


def kernel_kind(op: kernel.KernelOp) -> str:
    """gemm / loop / attention / fallback: attention (compute-bound) apart from other
    torch fallbacks, for the summary and the plan picture."""
    if isinstance(op, kernel.FallbackKernelOp):
        targets = [o.target.data for o in op.body.block.ops if isinstance(o, graph.OpaqueOp)]
        if any(a in t for t in targets for a in _ATTENTION_TARGETS):
            return "attention"
    return op.KIND


def _memory_bound(op: kernel.KernelOp) -> tuple[int, int]:
    """(memory-bound source ops in GEMM epilogues, memory-bound ops elsewhere) of a
    kernel. GEMMs themselves and attention are compute-bound; views are free."""
    ops = [o for o in fused_ops(op) if not isinstance(o, epilogue.GemmOp)]
    if isinstance(op, kernel.GemmKernelOp):
        return len(ops), 0
    if kernel_kind(op) == "attention":
        return 0, 0
    matmuls = ("aten.mm", "aten.bmm", "aten.addmm")
    return 0, sum(not describe_op(o).startswith(matmuls) for o in ops)


def kernel_summary(module: ModuleOp) -> str:
    """The kernel schedule as a table, with launches and bytes per function."""
    lines = []
    fused_in = fused_total = 0
    for func in _funcs(module):
        lines.append(f"@{func.sym_name.data}")
        header = f"  {'kernel':<40} {'kind':<9} {'read B':>10} {'written B':>10}  fused ops"
        lines.append(header)
        lines.append("  " + "-" * (len(header) + 8))
        total_read = total_written = 0
        kernels = kernels_of(func)
        for op in kernels:
            read = sum(
                tensor_bytes(v.type) if n is None else n * _element_bytes(v.type)
                for v, n in zip(op.inputs, read_elements(op), strict=True)
            )
            written = sum(tensor_bytes(t) for t in op.result_types)
            total_read += read
            total_written += written
            lines.append(
                f"  {op.kernel_name:<40} {op.KIND:<9} {read:>10} {written:>10}  "
                f"{_describe(fused_ops(op))}"
            )
        gemms = sum(isinstance(op, kernel.GemmKernelOp) for op in kernels)
        fallbacks = sum(isinstance(op, kernel.FallbackKernelOp) for op in kernels)
        attention = sum(isinstance(op, kernel.AttentionKernelOp) for op in kernels)
        counts = [_memory_bound(op) for op in kernels]
        inside, outside = sum(c[0] for c in counts), sum(c[1] for c in counts)
        fused_in += inside
        fused_total += inside + outside
        lines.append(
            f"  {len(kernels)} launches ({gemms} gemm, "
            + (f"{attention} attention, " if attention else "")
            + f"{fallbacks} torch fallback), "
            f"{total_read + total_written} bytes moved (static estimate), "
            f"{inside} of {inside + outside} memory-bound ops in GEMM epilogues"
        )
        lines.append("")
    if fused_total:
        share = 100 * fused_in / fused_total
        lines.append(
            f"memory-bound ops inside GEMM epilogues: {fused_in} of {fused_total} ({share:.0f}%)"
        )
    return "\n".join(lines)
