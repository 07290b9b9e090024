"""fuse-dequantize: dequantize where a GEMM loads its operand, not in memory.

After split-blocks, a function-level `lowp.dequantize` of a `lowp.assemble` (codes and
scales a producing epilogue stored, see fuse-quantize) that GEMM kernels read becomes
part of each such kernel: the kernel takes the codes and scales as operands instead of
the dequantized tensor, and codegen dequantizes each tile in the mainloop
(coda.codegen.dequantize). The high-precision tensor is never materialized.

A dequantized value that anything but GEMM kernels reads cannot run in a kernel yet:
the pass reports it rather than leaving an op that no kernel executes.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block
from xdsl.passes import ModulePass

from coda.dialects import kernel, lowp
from coda.passes.dataflow import function_bodies
from coda.passes.precision import dequantize_in_kernel


class FuseDequantizeError(ValueError):
    pass


def fuse_dequantize(op: lowp.DequantizeOp, block: Block) -> None:
    assemble = op.input.owner
    if not isinstance(assemble, lowp.AssembleOp):
        raise FuseDequantizeError(
            "'lowp.dequantize' outside kernels must read a lowp.assemble (codes and scales "
            "stored by a producing epilogue)"
        )
    for use in list(op.result.uses):
        if not isinstance(use.operation, kernel.GemmKernelOp):
            raise FuseDequantizeError(
                f"'lowp.dequantize' result is read by '{use.operation.name}': only GEMM "
                "kernels dequantize in their mainloop"
            )
        dequantize_in_kernel(use.operation, use.index, list(assemble.parts), op.input.type)
    block.erase_op(op)
    if not assemble.result.uses:
        block.erase_op(assemble)


@dataclass(frozen=True)
class FuseDequantize(ModulePass):
    name = "fuse-dequantize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            for dequantize in [o for o in block.ops if isinstance(o, lowp.DequantizeOp)]:
                fuse_dequantize(dequantize, block)


__all__ = ["FuseDequantize", "FuseDequantizeError", "fuse_dequantize"]
