"""Operand prologues: elementwise work on a GEMM operand, applied to each loaded tile.

After fuse-prologues and split-blocks, a kernel.gemm may compute a product operand as

    %xv = graph.view "reshape" %x ...                 (x, viewed as the [M, K] operand)
    %rv = graph.view "expand" %rstd ...               (one value per row, broadcast)
    %wv = graph.view "expand" %w ...                  (one value per column of K)
    %t  = graph.pointwise "mul"(%xv, %rv)
    %hn = graph.pointwise "mul"(%wv, %t)              (the operand: w * (x * rstd))

Each k step then loads a tile of every leaf through its own address map (a broadcast
leaf has stride 0 along the axis it is constant on) and evaluates the chain on the
tiles in float32, so hn exists only in registers. The result is rounded to the
operand's element type as a store of hn would have been (bfloat16 ties to even, which
the interpreter's own cast does not do), and the elements past K are zeroed: a
prologue of the masked loads' zeros need not be zero (x + b), and the dot must not see
it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type
from xdsl.ir import SSAValue

from coda.codegen.common import cast_expr, element_type, literal, pointwise_expr
from coda.dialects.graph import ConstantOp, PointwiseOp

if TYPE_CHECKING:
    from coda.codegen.gemm import _GemmGenerator, _Operand


def prologue_root(value: SSAValue) -> PointwiseOp | None:
    """The pointwise op computing `value`, if the operand is a prologue."""
    return value.owner if isinstance(value.owner, PointwiseOp) else None


def prologue_operand(
    gen: _GemmGenerator, value: SSAValue, role: str, prefix: str, root: PointwiseOp
) -> _Operand:
    """The mainloop operand `value`, computed by `root`'s chain on each k step's tiles."""
    from coda.codegen.gemm import _Operand

    leaves: dict[SSAValue, _Operand] = {}
    lines: list[str] = []

    def expr(v: SSAValue) -> str:
        owner = v.owner
        if isinstance(owner, ConstantOp):
            return literal(owner.value)
        if isinstance(owner, PointwiseOp):
            operands = [expr(i) for i in owner.inputs]
            # a comparison or a cast sees computed (float32) operands rounded to their type
            widened = [
                element_type(i) if isinstance(i.owner, PointwiseOp) else None for i in owner.inputs
            ]
            if owner.fn.data == "cast":
                source = element_type(owner.inputs[0])
                computed = widened[0] is not None
                text = cast_expr(operands[0], source, element_type(v), gen.helpers, computed)
            else:
                text = pointwise_expr(owner.fn.data, operands, gen.helpers, widened)
            var = gen.namer.fresh(f"{prefix}_{owner.fn.data}")
            lines.extend([f"# {gen.ir.op(owner)}", f"{var} = {text}"])
            return var
        if v not in leaves:
            leaf = gen._mainloop_operand(v, role, gen.namer.fresh(f"{prefix}_leaf"))
            leaves[v] = leaf
            lines[:0] = [*leaf.address, leaf.load]
            if not isinstance(element_type(v), Float32Type):
                lines.insert(len(leaf.address) + 1, f"{leaf.tile} = {leaf.tile}.to(tl.float32)")
        return leaves[v].tile

    result = expr(value)
    # the operand as a store would have held it, and zero past K
    elem = element_type(value)
    if isinstance(elem, BFloat16Type):
        gen.helpers.add("round_bf16")
        result = f"_round_bf16({result})"
    elif isinstance(elem, Float16Type):
        result = f"{result}.to(tl.float16)"
    if not isinstance(elem, Float32Type) and not gen._native_dot():
        result = f"{result}.to(tl.float32)"
    k_mask = "mask_k[None, :]" if role == "lhs" else "mask_k[:, None]"
    tile = gen.namer.fresh(f"{prefix}_tile")
    lines.append(f"{tile} = tl.where({k_mask}, {result}, 0.0)")
    setup = [line for leaf in leaves.values() for line in leaf.setup]
    leaf_comments = [leaf.comment for leaf in leaves.values() if leaf.comment != leaf.name]
    return _Operand(
        name=gen.ir.name(value),
        comment="; ".join([f"{gen.ir.name(value)}: computed on the loaded tiles", *leaf_comments]),
        setup=setup,
        address=lines,
        load="",
        tile=tile,
    )
