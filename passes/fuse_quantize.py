"""fuse-quantize: quantize a GEMM result in the epilogue that produces it.

After fuse-epilogues, a `lowp.quantize` of an `epilogue.gemm` result whose scale blocks
lie within a row (mx, nvfp4, block<1xB>) becomes a `lowp.store_quantized` of the same
tile in that epilogue, writing codes and scales as two new results, and the quantized
value becomes `lowp.assemble` of them:

    %y = epilogue.gemm ... { ... epilogue.store %t -> result 0 }
    %q = lowp.quantize %y : tensor<MxNxf32> -> !lowp.scaled<..., mx<32, floor>, ...>
  =>
    %y, %codes, %scales = epilogue.gemm ... {
      ... epilogue.store %t -> result 0
      lowp.store_quantized %t -> results(1, 2) as !lowp.scaled<...>
    }
    %q = lowp.assemble %codes, %scales

The amax per block, the scale and the rounding happen while the tile is on chip. A
result that nothing but quantizes read is no longer stored in high precision at all.
Row-wise and tensor-wise scales need the whole row or tensor first: those quantizes
stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, lowp
from coda.passes.dataflow import function_bodies


def _stored_tile(gemm: epilogue.GemmOp, index: int) -> SSAValue | None:
    for op in gemm.body.block.ops:
        if isinstance(op, epilogue.StoreOp) and op.index.value.data == index:
            return op.value
    return None


def _indices(op: Operation) -> list[str]:
    """Names of the properties of an epilogue writer that hold result indices."""
    if isinstance(op, epilogue.StoreOp | epilogue.ReduceOp):
        return ["index"]
    if isinstance(op, lowp.StoreQuantizedOp):
        return ["codes", "scales"]
    return []


def _rebuilt(
    gemm: epilogue.GemmOp, block: Block, types: list, drop: set[int]
) -> tuple[epilogue.GemmOp, dict[int, int]]:
    """A new gemm after `gemm` with result types `types` (old results first, then new
    ones), without the results in `drop` (their stores erased), `gemm`'s region and
    uses moved over; also old index -> new index."""
    body = gemm.body.block
    for op in list(body.ops):
        if isinstance(op, epilogue.StoreOp) and op.index.value.data in drop:
            body.erase_op(op)
    kept = [i for i in range(len(types)) if i not in drop]
    renumber = {old: new for new, old in enumerate(kept)}
    for op in body.ops:
        for prop in _indices(op):
            attr = op.properties[prop]
            op.properties[prop] = type(attr)(renumber[attr.value.data], attr.type)
    new = epilogue.GemmOp(gemm.accumulators, list(gemm.inputs), [types[i] for i in kept], Region())
    gemm.body.move_blocks(new.body)
    block.insert_op_after(new, gemm)
    for old_index, result in enumerate(gemm.results):
        if old_index in renumber:
            result_new = new.results[renumber[old_index]]
            result_new.name_hint = result.name_hint
            result.replace_all_uses_with(result_new)
    return new, renumber  # the caller erases `gemm` once the quantize is gone


def fuse_quantize(op: lowp.QuantizeOp, block: Block) -> bool:
    gemm = op.input.owner
    scaled = op.result.type
    if not isinstance(gemm, epilogue.GemmOp) or len(gemm.out_shape) != 2:
        return False
    if scaled.block_shape[0] != 1 or scaled.granularity.data in ("tensor", "row"):
        return False
    index = list(gemm.results).index(op.input)
    tile = _stored_tile(gemm, index)
    if tile is None:
        return False
    count = len(gemm.results)
    gemm.body.block.add_op(lowp.StoreQuantizedOp(tile, count, count + 1, scaled))
    types = [*gemm.result_types, *lowp.storage_types(scaled)[:2]]
    others = [u for u in op.input.uses if u.operation is not op]
    drop = set() if others else {index}
    new, renumber = _rebuilt(gemm, block, types, drop)
    codes, scales = new.results[renumber[count]], new.results[renumber[count + 1]]
    hint = op.input.name_hint or "q"
    codes.name_hint, scales.name_hint = f"{hint}_codes", f"{hint}_scales"
    assemble = lowp.AssembleOp([codes, scales], scaled)
    assemble.result.name_hint = op.result.name_hint
    block.insert_op_after(assemble, new)
    op.result.replace_all_uses_with(assemble.result)
    block.erase_op(op)
    block.erase_op(gemm)
    return True


@dataclass(frozen=True)
class FuseQuantize(ModulePass):
    name = "fuse-quantize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            for quantize in [o for o in block.ops if isinstance(o, lowp.QuantizeOp)]:
                fuse_quantize(quantize, block)


__all__ = ["FuseQuantize", "fuse_quantize"]
