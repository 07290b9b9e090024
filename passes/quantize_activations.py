"""quantize-activations: MX-quantize the activations that flow from GEMM to GEMM.

After fuse-epilogues, where the left operand [M, K] of an `epilogue.gemm` is a result of
another `epilogue.gemm`, that operand becomes `lowp.dequantize(lowp.quantize(x))` in
MX (blocks of 32 along K, E8M0 scales, the OCP floor rule), element `e4m3fn`, `e5m2` or
`e2m1` (two codes a byte):

    %h = epilogue.gemm %x, %w1t ...            %h = epilogue.gemm %x, %w1t ...
    %y = epilogue.gemm %h, %w2t ...     =>     %q = lowp.quantize %h : ... -> !lowp.scaled<...>
                                               %d = lowp.dequantize %q
                                               %y = epilogue.gemm %d, %w2t ...

fuse-quantize then moves the quantize into %h's epilogue and fuse-dequantize the
dequantize into %y's mainloop, so the activation travels through memory as 8-bit
codes plus one scale byte per 32. Only the reading GEMM sees the quantized value; other
readers (a residual add, the backward pass's saved activations) keep high precision.
This is the activation half of an MXFP8 recipe (see coda.compiler.precision_policy).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import (
    AnyFloat,
    Float4E2M1FNType,
    Float8E4M3FNType,
    Float8E5M2Type,
    Float8E8M0FNUType,
    ModuleOp,
    TensorType,
)
from xdsl.dialects.func import FuncOp
from xdsl.ir import Block, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph, lowp
from coda.passes.quantize_operands import kept_values

ELEMENTS = {"e4m3fn": Float8E4M3FNType, "e5m2": Float8E5M2Type, "e2m1": Float4E2M1FNType}


def _quantizable(value: SSAValue) -> bool:
    ty = value.type
    if not isinstance(value.owner, epilogue.GemmOp) or not isinstance(ty, TensorType):
        return False
    shape = ty.get_shape()
    return len(shape) == 2 and shape[-1] % 32 == 0 and isinstance(ty.element_type, AnyFloat)


def _reads(value: SSAValue, kept: set[SSAValue]) -> bool:
    """Is `value` one of `kept`, or a view of one?"""
    while isinstance(value.owner, graph.ViewOp):
        value = value.owner.input
    return value in kept


def quantize_activations_in(
    block: Block, element: str, kept: set[SSAValue] | frozenset[SSAValue] = frozenset()
) -> None:
    """`kept`: values an excluded layer owns (its weight): GEMMs reading one keep their
    left operands in high precision."""
    done: dict[SSAValue, SSAValue] = {}
    for gemm in [op for op in block.ops if isinstance(op, epilogue.GemmOp)]:
        if any(_reads(v, set(kept)) for v in gemm.operands):
            continue
        for position in range(0, len(gemm.products), 2):  # the left operands
            value = gemm.products[position]
            if not _quantizable(value):
                continue
            if value not in done:
                data = TensorType(ELEMENTS[element](), value.type.get_shape())
                scaled = lowp.ScaledType.get(data, "mx", Float8E8M0FNUType(), rule="floor")
                quantize = lowp.QuantizeOp(value, scaled)
                dequantize = lowp.DequantizeOp(quantize.result, value.type)
                quantize.result.name_hint = f"{value.name_hint or 'act'}_mx"
                block.insert_ops_after([quantize, dequantize], value.owner)
                done[value] = dequantize.result
            gemm.operands[position] = done[value]


@dataclass(frozen=True)
class QuantizeActivations(ModulePass):
    name = "quantize-activations"
    element: str = "e4m3fn"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.element not in ELEMENTS:
            raise ValueError(f"element must be one of {', '.join(ELEMENTS)}, got {self.element}")
        for func in [o for o in op.walk() if isinstance(o, FuncOp) and not o.is_declaration]:
            quantize_activations_in(func.body.block, self.element, kept_values(func))


__all__ = ["QuantizeActivations", "quantize_activations_in"]
