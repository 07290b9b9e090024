"""Views inside a kernel are address maps: a chain of `graph.view` ops over a kernel
operand becomes one CuTe layout of that operand, and the generated code indexes the
operand's memory through it. No view is ever copied.

The operand arrives at launch as a torch tensor whose strides are kernel parameters,
so the layout starts as ``Layout.from_torch(shape, (s0, s1, ...))`` with symbolic
strides. Each view is a layout operation:

    permute  reorder the modes            slice    offset += start * stride, stride *= step
    expand   stride 0 on broadcast dims   reshape  compose with the compact layout of the
                                                   new shape (CuTe's `a ∘ b`)

A reshape that composition cannot express (the new dims straddle the old ones without
dividing them) is still addressable: the element's flat index is unflattened over the
old shape, with div/mod. The offset of an element is then a sympy expression of the
kernel's per-dim indices and the stride symbols; sympy simplifies it and
`coda.codegen.addressing.triton_expr` prints it as Triton code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

import sympy
from xdsl.ir import Block, BlockArgument, SSAValue

from coda.dialects.graph import ViewOp, tensor_shape
from coda.dialects.kernel import KernelOp
from coda.dialects.layout_algebra import Layout, LayoutError, coalesce, col_major, composition


class ViewLayoutError(ValueError):
    """A chain of views this module cannot turn into an address map."""


@dataclass(frozen=True)
class ViewAccess:
    """How to address a (view of a) kernel operand.

    `offset(indices)` is the element offset, from the operand's data pointer, of the
    view's element at `indices` (one sympy index per view dim). Its free symbols are
    the indices and `strides`, the operand's strides (kernel parameters, one per dim).
    """

    source: BlockArgument
    shape: tuple[int, ...]  # the view's torch shape
    strides: tuple[sympy.Symbol, ...]
    layout: Layout | None  # CuTe layout of the view (modes = dims reversed); None: flat
    base: sympy.Expr  # offset of element 0 (slices start inside the operand)
    # flat fallback: the layout of the last addressable tensor and the reshape after it
    flat_source: Layout | None = None
    # flat fallback: where the view's row-major index 0 lies in flat_source's index
    flat_offset: int = 0
    # per view dim, where its index 0 lies in its layout mode: a slice of a dim merged
    # from several (strided apart, so not one mode) keeps the whole merged mode, and its
    # coordinate is split over the mode's leaves after adding the slice's start
    starts: tuple[int, ...] = ()

    def offset(self, indices: Sequence[sympy.Expr]) -> sympy.Expr:
        if len(indices) != len(self.shape):
            raise ValueError(f"{len(indices)} indices for a rank-{len(self.shape)} view")
        starts = self.starts or (0,) * len(self.shape)
        # size-1 dims have index 0 whatever the caller iterates over (broadcasting)
        crd = [o if n == 1 else i + o for i, n, o in zip(indices, self.shape, starts, strict=True)]
        if self.layout is not None:
            value = self.layout(tuple(reversed(crd))) if crd else 0
        else:
            assert self.flat_source is not None
            flat = sum((c * prod(self.shape[d + 1 :]) for d, c in enumerate(crd)), start=0)
            value = self.flat_source(self.flat_offset + flat)
        return sympy.expand(self.base + value)

    @property
    def distinct_elements(self) -> int:
        """How many different elements of the operand the view reads (expanded dims
        re-read the same ones)."""
        layout = self.layout if self.layout is not None else self.flat_source
        assert layout is not None
        if 0 in self.shape:
            return 0
        if self.layout is not None and any(self.starts):
            # a dim that is a range of a merged mode reads its extent, not the whole mode
            modes = _modes(self.layout, len(self.shape))
            return prod(
                n if start else _distinct(Layout(*mode))
                for n, start, mode in zip(self.shape, self.starts, modes, strict=True)
            )
        return _distinct(layout)

    def describe(self) -> str:
        """One line for a comment in the generated code."""
        base = f" + {self.base}" if self.base != 0 else ""
        if self.layout is not None:
            return f"{self.layout}{base}"
        start = f" from {self.flat_offset}" if self.flat_offset else ""
        return f"{self.flat_source}{base} over the flat index{start} of {list(self.shape)}"


def view_access(value: SSAValue, block: Block, stride_names: Sequence[str]) -> ViewAccess:
    """The access of `value`: a block argument of `block` or a chain of views of one.
    `stride_names` names the argument's strides (one per dim)."""
    chain = _view_chain(value, block)
    root = chain[0].input if chain else value
    if not (isinstance(root, BlockArgument) and root.block is block):
        raise ViewLayoutError(f"{value} is neither a kernel operand nor a view of one")
    strides = [sympy.Symbol(n, integer=True, nonnegative=True) for n in stride_names]
    return _access(root, chain, strides)


def stored_view_access(value: SSAValue, stride_names: Sequence[str]) -> ViewAccess:
    """Where a value lands when a kernel stores it through views: `value` is a chain of
    reshape/permute views of a kernel-computed tensor R, and the kernel's output buffer
    holds `value` (strides `stride_names`). The access addresses R's elements in that
    buffer: R = inverse chain(value), a view of the buffer (e.g. a [B*S, H*D] GEMM tile
    stored into a head-major [B, H, S, D] buffer)."""
    chain = [op for op in _view_chain(value, value.owner.parent_block())]
    for view in chain:
        if view.kind.data not in ("reshape", "permute"):
            raise ViewLayoutError(f"a store through a {view.kind.data} view is not invertible")
    inverse = Block(arg_types=[value.type])
    current: SSAValue = inverse.args[0]
    for view in reversed(chain):
        if view.kind.data == "permute":
            perm = view.permutation
            undo = [perm.index(d) for d in range(len(perm))]
            op = ViewOp("permute", current, view.input.type, perm=undo)
        else:
            op = ViewOp("reshape", current, view.input.type)
        inverse.add_op(op)
        current = op.result
    strides = [sympy.Symbol(n, integer=True, nonnegative=True) for n in stride_names]
    return _access(inverse.args[0], _view_chain(current, inverse), strides)


def is_strided_view(value: SSAValue) -> bool:
    """Whether `value`, a chain of views (in its block) of a contiguous tensor, is a
    torch strided view of that tensor: the layout of every step has one stride per dim
    (torch runs the chain step by step, so a reshape of a non-strided intermediate
    copies even where the chain's end would be strided again)."""
    block = value.owner.parent_block() if isinstance(value.owner, ViewOp) else None
    chain = _view_chain(value, block) if block is not None else []
    root = chain[0].input if chain else value
    shape = tensor_shape(root)
    contiguous = [prod(shape[d + 1 :]) for d in range(len(shape))]
    for end in range(1, len(chain) + 1):
        access = _access(root, chain[:end], contiguous)
        if access.layout is None:
            return False
        modes = _modes(access.layout, len(access.shape))
        if not all(Layout(s, d).size == 1 or coalesce(Layout(s, d)).depth == 0 for s, d in modes):
            return False
    return True


def is_addressable_view(value: SSAValue) -> bool:
    """Whether a kernel can read `value`, a chain of views of a tensor with runtime
    strides, through an address map (a reshape no layout expresses is addressed on
    the flat index, but nothing but another reshape may follow it)."""
    block = value.owner.parent_block() if isinstance(value.owner, ViewOp) else None
    chain = _view_chain(value, block) if block is not None else []
    root = chain[0].input if chain else value
    names = [f"s{d}" for d in range(len(tensor_shape(root)))]
    strides = [sympy.Symbol(n, integer=True, nonnegative=True) for n in names]
    try:
        _access(root, chain, strides)
    except ViewLayoutError:
        return False
    return True


def _view_chain(value: SSAValue, block: Block) -> list[ViewOp]:
    """The views (in `block`) that `value` is computed by, sources first."""
    chain: list[ViewOp] = []
    while isinstance(value.owner, ViewOp) and value.owner.parent_block() is block:
        chain.append(value.owner)
        value = value.owner.input
    return chain[::-1]


def _access(root: SSAValue, chain: Sequence[ViewOp], strides: Sequence[object]) -> ViewAccess:
    shape = tensor_shape(root)
    if len(strides) != len(shape):
        raise ValueError(f"{len(strides)} strides for a rank-{len(shape)} operand")
    symbols = tuple(strides)
    view_shape = tensor_shape(chain[-1].result) if chain else shape
    if 0 in shape:
        # an empty tensor has no element to address (and layouts have no empty modes)
        return ViewAccess(root, view_shape, symbols, None, sympy.Integer(0), Layout(1, 0))  # type: ignore[arg-type]
    state = _ViewState(Layout.from_torch(shape, strides) if shape else Layout(1, 0), 0, None)
    for view in chain:
        state = state.apply(view)
    return ViewAccess(root, view_shape, symbols, *state.finish())  # type: ignore[arg-type]


@dataclass
class _ViewState:
    layout: Layout | None
    base: sympy.Expr | int
    # after a reshape composition cannot express: the layout before it (flat-indexed)
    flat: Layout | None
    flat_offset: int = 0
    # per torch dim, its slice start within its mode (ViewAccess.starts); () all 0
    starts: tuple[int, ...] = ()

    def apply(self, view: ViewOp) -> _ViewState:
        dst = tensor_shape(view.result)
        src = tensor_shape(view.input)
        kind = view.kind.data
        if self.layout is None:
            # already flat-indexed: any further view is expressed on the flat index only
            # if it is a reshape; the rest would need the per-dim form
            if kind != "reshape":
                raise ViewLayoutError(
                    f"a {kind} view after a reshape that is not a layout cannot be addressed"
                )
            return self
        modes = _modes(self.layout, len(src))  # torch order
        starts = list(self.starts or (0,) * len(src))
        if kind == "permute":
            modes = [modes[p] for p in view.permutation]
            starts = [starts[p] for p in view.permutation]
        elif kind == "expand":
            for d, start in enumerate(starts):
                if start and src[d] == 1:  # the one element broadcast: into the base
                    self.base = self.base + Layout(*modes[d])(start)
                    starts[d] = 0
            pad = len(dst) - len(src)
            padded = [(1, 0)] * pad + modes
            sizes = (1,) * pad + src
            modes = [(n, 0) if s == 1 else m for m, s, n in zip(padded, sizes, dst, strict=True)]
            starts = [0] * pad + starts
        elif kind == "slice":
            dim, start, step = view.slice_spec
            mode = Layout(*modes[dim])
            if starts[dim]:  # already a range of a merged mode: a range of that range
                if step != 1:
                    raise ViewLayoutError(f"cannot slice merged dim {mode} with step {step}")
                starts[dim] += start
                return _ViewState(self.layout, self.base, None, 0, tuple(starts))
            if not isinstance(mode.shape, tuple):
                modes[dim] = (dst[dim], mode.stride * step)
            else:  # a dim merged by an earlier reshape: slice its layout by composition
                try:
                    sliced = composition(mode, Layout(dst[dim], step))
                except LayoutError as error:
                    if dim == 0 and step == 1 and not any(starts):
                        # a range of the outermost dim is a range of the flat index:
                        # address the sliced view flat-indexed in the unsliced one
                        return _ViewState(
                            None, self.base, _from_modes(modes), start * prod(src[1:])
                        )
                    if step != 1:
                        raise ViewLayoutError(f"cannot slice merged dim {mode}: {error}") from None
                    # keep the whole merged mode; the coordinate starts at `start`
                    starts[dim] = start
                    return _ViewState(_from_modes(modes), self.base, None, 0, tuple(starts))
                modes[dim] = (sliced.shape, sliced.stride)
            self.base = self.base + mode(start)
        elif kind == "reshape":
            if any(starts):
                raise ViewLayoutError("a reshape of a slice of a merged dim cannot be addressed")
            current = _from_modes(modes)
            try:
                new = composition(current, col_major(tuple(reversed(dst))) if dst else Layout(1))
            except LayoutError:
                return _ViewState(None, self.base, current)
            return _ViewState(new, self.base, None)
        else:
            raise ViewLayoutError(f"graph.view kind '{kind}' has no layout")
        return _ViewState(_from_modes(modes), self.base, None, 0, tuple(starts))

    def finish(self) -> tuple[Layout | None, sympy.Expr, Layout | None, int, tuple[int, ...]]:
        starts = self.starts if any(self.starts) else ()
        return self.layout, sympy.sympify(self.base), self.flat, self.flat_offset, starts


def _modes(layout: Layout, rank: int) -> list[tuple[object, object]]:
    """The (shape, stride) of each torch dim (CuTe modes reversed); modes may be nested."""
    if rank == 0:
        return []
    shape, stride = layout.shape, layout.stride
    if not isinstance(shape, tuple):
        shape, stride = (shape,), (stride,)
    assert isinstance(stride, tuple) and len(shape) == rank, (layout, rank)
    return list(reversed(list(zip(shape, stride, strict=True))))


def _distinct(layout: Layout) -> int:
    """Offsets a layout reaches, counting leaves of stride 0 (broadcasts) once."""
    leaves = zip(_flat(layout.shape), _flat(layout.stride), strict=True)
    return prod(int(s) for s, d in leaves if d != 0)


def _flat(t: object) -> list[object]:
    return [x for e in t for x in _flat(e)] if isinstance(t, tuple) else [t]


def _from_modes(modes: Sequence[tuple[object, object]]) -> Layout:
    """A layout with one mode per torch dim (reversed into CuTe order)."""
    if not modes:
        return Layout(1, 0)
    rev = list(reversed(modes))
    return Layout(tuple(s for s, _ in rev), tuple(d for _, d in rev))


def read_elements(op: KernelOp) -> tuple[int | None, ...]:
    """Per kernel operand: the distinct elements its views read, when the kernel reads
    it only through views (a slice reads part of it); None: the kernel reads it all
    directly."""
    block = op.body.block
    counts: list[int | None] = []
    for arg in block.args:
        ends = _view_chain_ends(arg)
        if ends is None:
            counts.append(None)
            continue
        stride_names = [f"s{d}" for d in range(len(tensor_shape(arg)))]
        total = sum(view_access(v, block, stride_names).distinct_elements for v in ends)
        # views of one operand may overlap (RoPE reads x whole and as two halves): each
        # element is read once, so no more than the operand holds. Exact when the views
        # are disjoint (split pieces) or one covers the operand; an upper bound otherwise.
        counts.append(min(total, prod(tensor_shape(arg))))
    return tuple(counts)


def _view_chain_ends(arg: SSAValue) -> list[SSAValue] | None:
    """The outermost views over `arg` that something other than a view reads (views of
    such a view read a subset of it), or None if something reads `arg` itself."""

    def ends(value: SSAValue) -> list[SSAValue]:
        users = [use.operation for use in value.uses]
        if any(not isinstance(u, ViewOp) for u in users):
            return [value]  # views of it read a subset of what it reads
        found = []
        for user in users:
            if isinstance(user, ViewOp):
                found += ends(user.result)
        return found

    if any(not isinstance(use.operation, ViewOp) for use in arg.uses):
        return None
    return ends(arg) or None
