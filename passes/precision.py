"""precision: apply a low-precision policy to the kernel program.

Weight-only policies (inference) run after split-blocks. A weight is a function argument
marked `{lowp.weight}` (the backend marks the model's parameters) that only GEMM
kernels read, and only as the right-hand operand (through views: nn.Linear's [N, K]
weight, read transposed). Each such weight becomes packed storage, new function
arguments appended after the others:

    %w_codes  tensor<N x K*bits/8 x ui8>   the codes, packed densely along K
    %w_scale  tensor<N x K/group x f32>    (ui8 E4M3 codes for nvfp4)
    %w_gscale tensor<1xf32>                NVFP4's tensor scale

each tagged `{lowp.packs = <index of the weight argument>, lowp.part = "codes"|...,
lowp.format = !lowp.scaled<...>}` so that the caller can fill them (coda.compiler.
precision_policy). Inside each kernel that read the weight:

    %wq = lowp.assemble %codes, %scale : (...) -> !lowp.scaled<tensor<NxKxsi4>, ...>
    %w  = lowp.dequantize %wq : !lowp.scaled<...> -> tensor<NxKxf32>

replaces the weight operand, so codegen dequantizes each tile in the mainloop as it
loads it: the full-precision weight is never read. The original argument stays in the
signature (the caller still passes it) but nothing reads it.

Weights that do not fit the format (K not a multiple of the group, other readers) are
left in full precision.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import (
    AnyFloat,
    ArrayAttr,
    DictionaryAttr,
    Float4E2M1FNType,
    Float8E4M3FNType,
    FunctionType,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    Signedness,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute, Block, BlockArgument, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph, kernel, lowp

WEIGHT_MARK = "lowp.weight"


@dataclass(frozen=True)
class WeightFormat:
    """How a weight-only policy stores weights."""

    element: Attribute
    granularity: str
    block: tuple[int, int]
    scale_type: Attribute


#: policy -> weight format. Integers are symmetric (scale = amax / qmax) in groups of 32
#: along K; NVFP4 is NVIDIA's two-level recipe (E4M3 per 16, f32 per tensor).
WEIGHT_ONLY_POLICIES: dict[str, WeightFormat] = {
    "w4a16": WeightFormat(IntegerType(4, Signedness.SIGNED), "block", (1, 32), f32),
    "w3a16": WeightFormat(IntegerType(3, Signedness.SIGNED), "block", (1, 32), f32),
    "nvfp4": WeightFormat(Float4E2M1FNType(), "nvfp4", (1, 16), Float8E4M3FNType()),
}
PART_NAMES = ("codes", "scale", "gscale")


@dataclass(frozen=True)
class Precision(ModulePass):
    name = "precision"
    #: a key of WEIGHT_ONLY_POLICIES ("none": nothing changes)
    policy: str = "none"

    def apply(self, ctx: Context, module: ModuleOp) -> None:
        if self.policy == "none":
            return
        if self.policy not in WEIGHT_ONLY_POLICIES:
            known = ", ".join(["none", *WEIGHT_ONLY_POLICIES])
            raise ValueError(f"precision policy must be one of {known}, got '{self.policy}'")
        fmt = WEIGHT_ONLY_POLICIES[self.policy]
        for func in module.walk():
            if isinstance(func, FuncOp) and not func.is_declaration:
                for index, arg in enumerate(list(func.args)):
                    if _marked(func, index) and _reads_as_rhs_only(arg):
                        _quantize_weight(func, index, fmt)


def _marked(func: FuncOp, index: int) -> bool:
    attrs = func.arg_attrs
    return attrs is not None and WEIGHT_MARK in attrs.data[index].data


def _rhs_reader(value: SSAValue) -> bool:
    """Does every use of `value` (in a kernel body) reach an epilogue.gemm rhs through
    views only?"""
    for use in value.uses:
        user = use.operation
        if isinstance(user, graph.ViewOp):
            if not _rhs_reader(user.result):
                return False
        elif isinstance(user, epilogue.GemmOp):
            products = len(user.products)
            if not (use.index < products and use.index % 2 == 1):
                return False
        else:
            return False
    return True


def _reads_as_rhs_only(arg: BlockArgument) -> bool:
    ty = arg.type
    if not (isinstance(ty, TensorType) and len(ty.get_shape()) == 2):
        return False
    if not isinstance(ty.element_type, AnyFloat) or not arg.uses:
        return False
    for use in arg.uses:
        op = use.operation
        if not isinstance(op, kernel.GemmKernelOp):
            return False
        if not _rhs_reader(op.body.block.args[use.index]):
            return False
    return True


def _scaled_type(weight: TensorType, fmt: WeightFormat) -> lowp.ScaledType | None:
    n, k = weight.get_shape()
    bits = lowp.element_bits(fmt.element)
    if k % fmt.block[1] or (k * bits) % 8:
        return None
    data = TensorType(fmt.element, [n, k])
    return lowp.ScaledType.get(data, fmt.granularity, fmt.scale_type, fmt.block)


def _quantize_weight(func: FuncOp, index: int, fmt: WeightFormat) -> None:
    weight = func.args[index]
    assert isinstance(weight.type, TensorType)
    scaled = _scaled_type(weight.type, fmt)
    if scaled is None:
        return
    parts: list[BlockArgument] = []
    block = func.body.block
    hint = weight.name_hint or f"arg{index}"
    for part, ty in zip(PART_NAMES, lowp.storage_types(scaled), strict=False):
        arg = block.insert_arg(ty, len(block.args))
        arg.name_hint = f"{hint}_{part}"
        parts.append(arg)
        _append_arg_attrs(func, {"lowp.packs": IntegerAttr(index, i64), "lowp.part": part})
    _set_format(func, [len(block.args) - len(parts) + i for i in range(len(parts))], scaled)
    func.function_type = FunctionType.from_lists(
        [a.type for a in block.args], func.function_type.outputs.data
    )
    for use in list(weight.uses):
        dequantize_in_kernel(use.operation, use.index, parts, scaled)


def _append_arg_attrs(func: FuncOp, attrs: dict[str, Attribute | str]) -> None:
    current = list(func.arg_attrs.data) if func.arg_attrs is not None else []
    current += [DictionaryAttr({})] * (len(func.args) - 1 - len(current))
    values = {k: StringAttr(v) if isinstance(v, str) else v for k, v in attrs.items()}
    current.append(DictionaryAttr(values))
    func.arg_attrs = ArrayAttr(current)


def _set_format(func: FuncOp, indices: list[int], scaled: lowp.ScaledType) -> None:
    assert func.arg_attrs is not None
    current = list(func.arg_attrs.data)
    for i in indices:
        current[i] = DictionaryAttr({**current[i].data, "lowp.format": scaled})
    func.arg_attrs = ArrayAttr(current)


def dequantize_in_kernel(
    op: kernel.GemmKernelOp, operand: int, parts: list[SSAValue], scaled: lowp.ScaledType
) -> None:
    """Replace kernel operand `operand` by `parts` (codes, scales...) and dequantize
    them inside the kernel where it read the operand (also used by fuse-dequantize)."""
    body: Block = op.body.block
    old = body.args[operand]
    new_args = [body.insert_arg(p.type, len(body.args)) for p in parts]
    for arg, part in zip(new_args, parts, strict=True):
        arg.name_hint = part.name_hint
    assemble = lowp.AssembleOp(new_args, scaled)
    dequantize = lowp.DequantizeOp(assemble.result, old.type)
    dequantize.result.name_hint = old.name_hint
    body.insert_ops_before([assemble, dequantize], body.first_op)
    old.replace_all_uses_with(dequantize.result)
    operands = list(op.inputs)
    del operands[operand]
    op.operands = [*operands, *parts]
    body.erase_arg(old)
