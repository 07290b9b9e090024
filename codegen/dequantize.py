"""Dequantize in the GEMM mainloop: a packed weight operand, read tile by tile.

After the precision pass, a kernel.gemm may read its right-hand operand as

    %wq = lowp.assemble %codes, %scale[, %gscale] : (...) -> !lowp.scaled<tensor<NxKx...>>
    %w  = lowp.dequantize %wq
    %wt = graph.view "permute" %w perm [1, 0]        (nn.Linear's weight, read as [K, N])

Each k step then loads the [BLOCK_K, BLOCK_N] tile of codes straight from the packed
bytes (a code of b bits at bit k*b of its row, possibly straddling two bytes), decodes
it, multiplies by its scale and hands a float32 tile to `tl.dot`: the weight is read
from memory at its bit width and never exists in full precision. The float32 dot is
exact for these values on every backend, including the interpreter (whose bf16 dot is
wrong); GPUs with native low-precision MMA would take `tl.dot_scaled` here instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects.builtin import BFloat16Type, Float16Type, IntegerType, Signedness
from xdsl.ir import SSAValue

from coda.codegen.common import CodegenError
from coda.codegen.quantize import decode_call, e8m0_decode_expr, unpack_call
from coda.dialects.graph import ViewOp
from coda.dialects.lowp import (
    AssembleOp,
    DequantizeOp,
    ScaledType,
    element_bits,
    element_name,
)
from coda.runtime.quantize import E4M3FN, FLOAT_FORMATS, IntFormat

if TYPE_CHECKING:
    from coda.codegen.gemm import _GemmGenerator, _Operand


def dequantized_source(value: SSAValue) -> DequantizeOp | None:
    """The lowp.dequantize that `value` is (a view of), if any."""
    root = value
    while isinstance(root.owner, ViewOp):
        root = root.owner.input
    return root.owner if isinstance(root.owner, DequantizeOp) else None


def is_transpose(value: SSAValue, source: SSAValue) -> bool:
    """`value` is `source` transposed (a 2-D permute [1, 0]): nn.Linear's weight read as
    [K, N]."""
    owner = value.owner
    return (
        isinstance(owner, ViewOp)
        and owner.input is source
        and owner.kind.data == "permute"
        and list(owner.perm.get_values()) == [1, 0]
    )


def dequantize_operand(
    gen: _GemmGenerator, value: SSAValue, role: str, prefix: str, deq: DequantizeOp
) -> _Operand:
    """The mainloop operand of a weight dequantized from packed storage."""
    from coda.codegen.gemm import _Operand

    name = f'kernel.gemm "{gen.kernel.kernel_name}"'
    if role == "rhs" and is_transpose(value, deq.result):
        # nn.Linear's [N, K] weight read as [K, N]: k runs down the tile
        row, k_of, mask = "offs_n[None, :]", "[:, None]", "mask_k[:, None] & mask_n[None, :]"
    elif role == "lhs" and value is deq.result:
        # an [M, K] activation: k runs along the tile's rows
        row, k_of, mask = "offs_m[:, None]", "[None, :]", "mask_m[:, None] & mask_k[None, :]"
    else:
        raise CodegenError(
            f"{name}: a dequantized operand must be a left-hand [M, K] operand or the "
            "right-hand [N, K] weight read transposed (as nn.Linear's weight is)"
        )
    assemble = deq.input.owner
    if not isinstance(assemble, AssembleOp):
        raise CodegenError(f"{name}: lowp.dequantize must read a lowp.assemble in the kernel")
    scaled = deq.input.type
    assert isinstance(scaled, ScaledType)
    codes, scale = assemble.parts[0], assemble.parts[1]
    cptr, sptr = gen.ptr_of[codes], gen.ptr_of[scale]
    cs0, cs1 = gen.strides_of[codes]
    ss0, ss1 = gen.strides_of[scale]
    bits = element_bits(scaled.element_type)
    group = scaled.block_shape[1]
    p = prefix
    tile = f"{p}_tile" if p in ("a", "b") else gen.namer.fresh(f"{p}_tile")
    v = {s: gen.namer.fresh(f"{p}_{s}") for s in ("first", "shift", "mask", "lo", "hi", "s")}
    setup: list[str] = []
    lines = [
        f"{v['first']} = (kk * {bits}) // 8",
        f"{v['shift']} = (kk * {bits}) % 8",
        f"{v['mask']} = {mask}",
        f"{v['lo']} = tl.load({cptr} + {row} * {cs0} + {v['first']}{k_of} * {cs1},"
        f" mask={v['mask']}, other=0)",
        # the next byte only where the code straddles into it
        f"{v['hi']} = tl.load({cptr} + {row} * {cs0} + ({v['first']}{k_of} + 1)"
        f" * {cs1}, mask={v['mask']} & ({v['shift']}{k_of} + {bits} > 8), other=0)",
        f"{v['s']} = tl.load({sptr} + {row} * {ss0} + (kk // {group}){k_of} * {ss1},"
        f" mask={v['mask']}, other=0)",
    ]
    elem = scaled.element_type
    shift = f"{v['shift']}{k_of}"
    kind = scaled.granularity.data
    if isinstance(elem, IntegerType):
        fmt = IntFormat(bits, elem.signedness.data == Signedness.SIGNED)
        elements = f"{unpack_call(v['lo'], v['hi'], shift, fmt)}.to(tl.float32)"
    else:
        code = unpack_call(v["lo"], v["hi"], shift, IntFormat(bits, signed=False))
        elements = decode_call(code, FLOAT_FORMATS[element_name(elem)])
    if kind == "nvfp4":
        gscale = gen.namer.fresh(f"{p}_gscale")
        setup.append(f"{gscale} = tl.load({gen.ptr_of[assemble.parts[2]]})")
        values = f"{elements} * ({decode_call(v['s'], E4M3FN)} * {gscale})"
    elif kind == "mx":
        values = f"{elements} * {e8m0_decode_expr(v['s'])}"
    else:
        values = f"{elements} * {v['s']}"
    target = deq.result.type.element_type
    if isinstance(target, BFloat16Type):
        gen.helpers.add("round_bf16")
        values = f"_round_bf16({values})"
    elif isinstance(target, Float16Type):
        values = f"({values}).to(tl.float16)"
    gen.lowp_helpers = True
    return _Operand(
        name=gen.ir.name(value),
        comment=(
            f"{gen.ir.name(value)} = {gen.ir.name(deq.result)}, dequantized in the mainloop "
            f"from {gen.ir.name(codes)} ({bits}-bit codes) and {gen.ir.name(scale)}"
        ),
        setup=setup,
        address=lines,
        load=f"{tile} = {values}",
        tile=tile,
    )
