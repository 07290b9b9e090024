"""A chain of two GEMMs in one kernel (passes/chain_gemms.py): the first runs as a
`@triton.jit` function that the second's mainloop calls for each lhs tile.

    for k in range(0, K, BLOCK_K):                  # K: the first GEMM's N
        h_tile = _producer(pid_m, k // BLOCK_K, ...) # [BLOCK_M, BLOCK_K] of h
        b_tile = tl.load(W2 tile)
        acc = tl.dot(h_tile, b_tile, acc)

The producer is the ordinary GEMM program (gemm_body.j2) for the output tile (pid_m,
pid_n) of the first GEMM, BLOCK_N wide: its own mainloop, its epilogue and its stores,
then it returns the stored values the second GEMM multiplies, rounded to their element
type as the store rounds them and zero past N (so the dot sees nothing else). Every
program of the kernel holds whole rows of the second GEMM's output (a single column
tile), so it calls the producer once per tile of its rows: each tile of h is computed
and stored exactly once, as in the first GEMM's own kernel.

A function keeps the two programs' names apart (both have offs_n, mask, acc, ...)
without renaming either; Triton inlines it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type
from xdsl.ir import BlockArgument, Operation, SSAValue

from coda.codegen.common import CodegenError, element_type
from coda.dialects.epilogue import StoreOp, TileValueType

if TYPE_CHECKING:
    from coda.codegen.gemm import _GemmGenerator, _Operand


class ChainStage:
    """The first GEMM of `main`'s kernel, generated as the function `fn`."""

    def __init__(self, main: _GemmGenerator, fn: str) -> None:
        from coda.codegen.gemm import _GemmGenerator

        self.main = main
        self.fn = fn
        self.gemm = main.gemms[0]
        name = main.kernel.kernel_name
        if len(self.gemm.out_shape) != 2 or len(main.gemm.out_shape) != 2:
            raise CodegenError(f'kernel.gemm "{name}": a chain of batched GEMMs')
        # the producer's tiles are the consumer's lhs tiles: BLOCK_N of one is BLOCK_K of
        # the other
        tile = replace(main.tile, block_n=main.tile.block_k)
        self.gen = _GemmGenerator(main.kernel, main.target, tile, producer=fn)
        self.body, self.k_sizes = self.gen.program()
        # the results the consumer multiplies, returned in the order of their first use
        self.returned = list(dict.fromkeys(lhs for lhs, _ in main.gemm.product_pairs))
        self.tiles = {r: main.namer.fresh(f"{main.ir.name(r)[1:]}_tile") for r in self.returned}
        # the consumer's kernel parameters for the producer's contraction sizes
        self.size_params = {k: main.namer.fresh(f"P{k}") for k in self.k_sizes}
        self.args = _arguments(self.gemm, main.kernel.body.block.args)
        self.called = False

    def operand(self, value: SSAValue, prefix: str) -> _Operand:
        """The consumer's lhs `value`, a result of the producer: its tile is what the
        producer returns for this k step (one call returns every such tile)."""
        from coda.codegen.gemm import _Operand

        main = self.main
        lines = []
        if not self.called:
            self.called = True
            targets = ", ".join(self.tiles[r] for r in self.returned)
            lines.append(f"{targets} = {self._call()}")
        if not main._native_dot() and not isinstance(element_type(value), Float32Type):
            lines.append(f"{self.tiles[value]} = {self.tiles[value]}.to(tl.float32)")
        name = main.ir.name(value)
        return _Operand(
            name=name,
            comment=f"{name}: computed for each k step by {self.fn}, the chain's first GEMM",
            setup=[],
            address=[],
            load="\n".join(lines),
            tile=self.tiles[value],
        )

    def _own_outputs(self, gen: _GemmGenerator) -> list:
        return [o for o in gen.outputs if o.gemm is self.gemm]

    def _call(self) -> str:
        main, gen = self.main, self.gen
        n1 = self.gemm.out_shape[-1]
        if n1 not in main.k_names:
            raise CodegenError(f'kernel.gemm "{main.kernel.kernel_name}": no loop over {n1}')
        args = ["pid_m", "k // BLOCK_K"]
        args += [main.ptr_of[a] for a in self.args]
        args += [o.ptr for o in self._own_outputs(main)]
        args += ["M", main.k_names[n1], *self.size_params.values()]
        args += [s for a in self.args for s in main.strides_of[a]]
        args += [s for o in self._own_outputs(main) for s in o.strides.values()]
        args += [name for name, _ in gen.constexpr_args(gen._native_dot(), scaled=False)]
        args += ["BLOCK_M", "BLOCK_K", "BLOCK_K"]
        return f"{self.fn}({', '.join(args)})"

    def slots(self) -> dict[str, object]:
        """The function's slots in gemm.py.j2."""
        gen = self.gen
        outputs = self._own_outputs(gen)
        native = gen._native_dot()
        return {
            "fn": self.fn,
            "pointers": [gen.ptr_of[a] for a in self.args] + [o.ptr for o in outputs],
            "size_names": ["M", "N", *self.k_sizes],
            "stride_params": [
                ", ".join(s)
                for s in [
                    *(gen.strides_of[a] for a in self.args),
                    *(o.strides.values() for o in outputs),
                ]
                if s
            ],
            "constexprs": [name for name, _ in gen.constexpr_args(native, scaled=False)],
            "native": native,
            "body": self.body,
            "returns": [self._returned(r) for r in self.returned],
        }

    def _returned(self, result: SSAValue) -> str:
        """The stored value of `result` as the consumer reads it: rounded to its element
        type, zero outside the tile."""
        gen = self.gen
        index = list(self.gemm.outputs).index(result)
        store = next(
            (
                op
                for op in self.gemm.body.block.ops
                if isinstance(op, StoreOp) and op.index.value.data == index
            ),
            None,
        )
        name = self.main.kernel.kernel_name
        if store is None or not (
            isinstance(store.value.type, TileValueType) and store.value.type.kind == "tile"
        ):
            raise CodegenError(f'kernel.gemm "{name}": chained result {index} is not a stored tile')
        value = f"tl.where(mask, {gen.var[store.value]}, 0.0)"
        elem = element_type(result)
        if isinstance(elem, BFloat16Type):
            gen.helpers.add("round_bf16")
            return f"_round_bf16({value})"
        if isinstance(elem, Float16Type):
            return f"{value}.to(tl.float16)"
        if isinstance(elem, Float32Type):
            return value
        raise CodegenError(f'kernel.gemm "{name}": a chained {elem} operand')


def _arguments(gemm: Operation, args: tuple[BlockArgument, ...]) -> list[BlockArgument]:
    """The kernel operands `gemm` reads (through views and prologues), in operand order."""
    used: set[SSAValue] = set()
    todo: list[SSAValue] = list(gemm.operands)
    while todo:
        value = todo.pop()
        if value in used:
            continue
        used.add(value)
        if isinstance(value.owner, Operation):
            todo.extend(value.owner.operands)
    return [a for a in args if a in used]
