"""chain-gemms: a GEMM whose lhs is another GEMM's output tile, computed in one kernel.

    h = epilogue_A(x @ W1)     kernel A: [M, N1] tiles, stored
    y = epilogue_B(h @ W2)     kernel B: reads h back, [M, N2] with N2 <= FULL_ROW_MAX

become one `kernel.gemm` holding both `epilogue.gemm`s, the second reading the first's
result directly:

    %h = epilogue.gemm %x, %w1 {...}
    %y = epilogue.gemm %h, %w2 {...}

Each program holds whole rows of y (N2 fits one tile, as for a row reduction), so it
computes every tile of h in its rows exactly once: its mainloop over N1 computes the
next [BLOCK_M, BLOCK_K] tile of h (A's mainloop over K1 and A's epilogue, which stores
h where something else reads it) and multiplies it into y's accumulator at once. h is
never read back, and it is not written at all when only B read it. The MLP is the case
this is for: the down projection reads silu(g) * u while it is on chip in the forward,
and the backward's dx = dg @ Wg + du @ Wu reads dg and du while the gate/up epilogue
has them.

Conditions (else the kernels stay apart):
  - both kernels are plain 2-D GEMMs: no batch dims, no low-precision operands or
    stores, A without row statistics or partial sums along its rows (its tiles are
    [BLOCK_M, BLOCK_K], BLOCK_K too narrow for whole rows or their partials); partial
    sums over A's rows (a bias gradient's) stay, each tile of A being computed once;
  - every product of B multiplies a result of A (seen through reshapes that keep its
    [M, N1] shape) by an rhs that does not depend on A; B reads A's results nowhere
    else (an epilogue input would read memory A's stores may not have reached);
  - B's output is at most FULL_ROW_MAX wide and has A's rows;
  - the merged kernel can sit where A is (B's other operands exist by then) or where
    B is (A's results have no other user before B).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from coda.dialects import epilogue, graph, kernel, lowp
from coda.passes.dataflow import function_bodies
from coda.passes.split_blocks import number_kernels

_LOW_PRECISION = (
    lowp.QuantizeOp,
    lowp.DequantizeOp,
    lowp.AssembleOp,
    lowp.StoreQuantizedOp,
)


def _plain(op: kernel.GemmKernelOp) -> epilogue.GemmOp | None:
    """The kernel's single 2-D epilogue.gemm, if it has one and no low-precision work."""
    gemms = op.gemms
    if len(gemms) != 1 or len(gemms[0].out_shape) != 2:
        return None
    for inner in op.walk():
        if isinstance(inner, _LOW_PRECISION):
            return None
    return gemms[0]


def _through_reshapes(value: SSAValue) -> tuple[SSAValue, bool]:
    """The value under a chain of reshapes, and whether only reshapes were peeled."""
    while isinstance(value.owner, graph.ViewOp):
        if value.owner.kind.data != "reshape":
            return value, False
        value = value.owner.input
    return value, True


@dataclass
class _Chain:
    producer: kernel.GemmKernelOp
    consumer: kernel.GemmKernelOp
    #: consumer block argument -> index of the producer result it stands for
    chained_args: dict[SSAValue, int]
    #: producer result index -> the producer's epilogue.gemm result it yields
    gemm_results: dict[int, SSAValue]


def _chain(a: kernel.GemmKernelOp, b: kernel.GemmKernelOp) -> _Chain | None:
    gemm_a, gemm_b = _plain(a), _plain(b)
    if gemm_a is None or gemm_b is None or gemm_a.holds_full_rows:
        return None
    if any(isinstance(o, epilogue.ReduceOp) and not o.over_rows for o in gemm_a.body.block.ops):
        return None
    m, n2 = gemm_b.out_shape
    if m != gemm_a.out_shape[0] or n2 > epilogue.FULL_ROW_MAX:
        return None
    args_b = b.body.block.args
    from_a = {
        arg: a.results.index(v) for arg, v in zip(args_b, b.inputs, strict=True) if v.owner is a
    }
    if not from_a:
        return None
    # each chained result: A's gemm result, yielded through reshapes only
    gemm_results: dict[int, SSAValue] = {}
    for index in set(from_a.values()):
        root, plain = _through_reshapes(a.terminator.values[index])
        if not plain or root.owner is not gemm_a:
            return None
        gemm_results[index] = root
    for lhs, rhs in gemm_b.product_pairs:
        root, plain = _through_reshapes(lhs)
        if root not in from_a or not plain:
            return None
        if graph.tensor_shape(lhs) != graph.tensor_shape(gemm_results[from_a[root]]):
            return None
        if _depends_on(rhs, from_a):
            return None
    # A's results feed B's products and nothing else in B
    if not all(_only_feeds_lhs(arg, gemm_b) for arg in from_a):
        return None
    return _Chain(a, b, from_a, gemm_results)


def _depends_on(value: SSAValue, args: dict[SSAValue, int]) -> bool:
    if value in args:
        return True
    owner = value.owner
    return isinstance(owner, Operation) and any(_depends_on(v, args) for v in owner.operands)


def _only_feeds_lhs(value: SSAValue, gemm: epilogue.GemmOp) -> bool:
    """Every use of `value` is an lhs operand of `gemm`'s products, directly or through
    reshapes."""
    products = 2 * sum(gemm.sums.get_values())
    for use in value.uses:
        user = use.operation
        if user is gemm and use.index < products and use.index % 2 == 0:
            continue
        if not (isinstance(user, graph.ViewOp) and user.kind.data == "reshape"):
            return False
        if not _only_feeds_lhs(user.result, gemm):
            return False
    return True


def _placement(chain: _Chain, block: Block) -> Operation | None:
    """The op the merged kernel replaces in position (A or B), or None if neither
    keeps every operand defined before its use."""
    position = {op: i for i, op in enumerate(block.ops)}
    a, b = chain.producer, chain.consumer
    others = [v for v in b.inputs if v.owner is not a]
    if all(not isinstance(v.owner, Operation) or position[v.owner] < position[a] for v in others):
        return a
    for result in a.results:
        for use in result.uses:
            if use.operation is not b and position[use.operation] < position[b]:
                return None
    return b


def _merge(chain: _Chain, block: Block, at: Operation) -> kernel.GemmKernelOp:
    a, b = chain.producer, chain.consumer
    inputs: list[SSAValue] = list(a.inputs)
    for value in b.inputs:
        if value.owner is not a and value not in inputs:
            inputs.append(value)
    body = Block(arg_types=[v.type for v in inputs])
    outer: dict[SSAValue, SSAValue] = {}
    for value, arg in zip(inputs, body.args, strict=True):
        outer[value] = arg
        arg.name_hint = value.name_hint
    mapping_a = {arg: outer[v] for arg, v in zip(a.body.block.args, a.inputs, strict=True)}
    _clone_into(body, a, mapping_a)
    yielded_a = [mapping_a[v] for v in a.terminator.values]
    # B's chained lhs operands read A's gemm result itself; its other arguments map to
    # the merged kernel's
    mapping_b: dict[SSAValue, SSAValue] = {}
    for arg, value in zip(b.body.block.args, b.inputs, strict=True):
        if arg not in chain.chained_args:
            mapping_b[arg] = outer[value]
    gemm_b = _plain(b)
    assert gemm_b is not None
    for lhs, _ in gemm_b.product_pairs:
        root, _ = _through_reshapes(lhs)
        mapping_b[lhs] = mapping_a[chain.gemm_results[chain.chained_args[root]]]
    chained: set[SSAValue] = set(chain.chained_args)

    def reshapes_chained(op: Operation) -> bool:
        """A reshape of a chained result: B reads the gemm's result itself."""
        if isinstance(op, graph.ViewOp) and op.input in chained:
            chained.add(op.result)
            return True
        return False

    _clone_into(body, b, mapping_b, skip=reshapes_chained)
    # A's results that something besides B reads stay results of the merged kernel
    kept = [i for i, r in enumerate(a.results) if any(u.operation is not b for u in r.uses)]
    yielded = [yielded_a[i] for i in kept] + [mapping_b[v] for v in b.terminator.values]
    body.add_op(kernel.YieldOp(yielded))
    _erase_unused(body)
    name = f"{a.kernel_name}_chain_{_label(b.kernel_name)}".rstrip("_")
    merged = kernel.GemmKernelOp(name, inputs, [v.type for v in yielded], Region(body))
    block.insert_op_before(merged, at)
    replaced = [a.results[i] for i in kept] + list(b.results)
    for old, new in zip(replaced, merged.results, strict=True):
        new.name_hint = old.name_hint
        old.replace_all_uses_with(new)
    block.erase_op(b)
    block.erase_op(a)
    return merged


def _clone_into(
    body: Block,
    source: kernel.GemmKernelOp,
    mapping: dict[SSAValue, SSAValue],
    skip: Callable[[Operation], bool] = lambda op: False,
) -> None:
    """Clone the ops of `source`'s body but its yield (and those `skip` takes) into
    `body`, recording each result's clone in `mapping`."""
    for op in source.body.block.ops:
        if isinstance(op, kernel.YieldOp) or skip(op):
            continue
        clone = op.clone(value_mapper=mapping)
        body.add_op(clone)
        for old, new in zip(op.results, clone.results, strict=True):
            new.name_hint = old.name_hint
            mapping[old] = new


def _label(name: str) -> str:
    """A kernel name without its kind and number: `gemm3_residual` -> `residual`."""
    head, _, rest = name.partition("_")
    return rest if head.startswith("gemm") else name


def _erase_unused(body: Block) -> None:
    """Views of the chained results that nothing reads any more."""
    for op in reversed(list(body.ops)):
        if isinstance(op, graph.ViewOp) and not op.result.uses:
            body.erase_op(op)


def chain_block(block: Block) -> bool:
    changed = False
    progress = True
    while progress:
        progress = False
        gemms = [op for op in block.ops if isinstance(op, kernel.GemmKernelOp)]
        for b in gemms:
            producers = {v.owner for v in b.inputs if isinstance(v.owner, kernel.GemmKernelOp)}
            for a in sorted(producers, key=gemms.index):
                chain = _chain(a, b)
                at = None if chain is None else _placement(chain, block)
                if chain is not None and at is not None:
                    _merge(chain, block, at)
                    changed = progress = True
                    break
            if progress:
                break
    if changed:
        number_kernels(block)
    return changed


@dataclass(frozen=True)
class ChainGemms(ModulePass):
    name = "chain-gemms"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for block in function_bodies(op):
            chain_block(block)
