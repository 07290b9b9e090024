"""`kernel.loop` -> Triton: one pass over the iteration shape S, optionally reducing.

Every operand is addressed through its strides after `expand(S)` (0 where it broadcasts),
so one scheme covers broadcasting, transposed views and expanded tensors. A view chain
inside the kernel (split-blocks moves the views that feed it in) is addressed through
its layout over the viewed operand's strides instead (`coda.dialects.view_layout`), so a
reshape that strides cannot express is read in place too:

* no graph.reduce: a 1D grid over numel(S); each lane splits its flat index into S
  coordinates (row-major) and dots them with each operand's strides;
* with graph.reduce: blocks of [BLOCK_X, BLOCK_R], x over the kept coordinates and r over
  the reduced ones; each program loops over R, accumulates on a [BLOCK_X, BLOCK_R] tile
  and reduces it along r once at the end. S-shaped outputs are stored inside the loop,
  reduce results (and pointwise ops on them) after it;
* small reductions (the per-32-column partials of a row sum that a GEMM epilogue wrote):
  a graph.reduce of a kernel operand with S's kept extents and a different, static extent
  along S's reduced dims. Each program loads them as one masked [BLOCK_X, P_BLOCK] block
  before the loop over R, reduces it along axis 1 and runs the per-row ops on the result;
  the pass over R then reads it as `[:, None]`. This is the finalize of a norm backward's
  row sum and its elementwise pass (dx = t + c * h) in one launch. Small reductions run
  beside one pointwise pass only, not beside a reduction over S (split-blocks plans no
  such kernel; codegen rejects it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import sympy
from xdsl.ir import BlockArgument, Operation, SSAValue

from coda.codegen.addressing import triton_expr
from coda.codegen.common import (
    JIT_HELPERS,
    CodegenError,
    IrText,
    Namer,
    Stmt,
    cast_expr,
    compute_type,
    element_type,
    is_float,
    literal,
    load_conversion,
    pointwise_expr,
    render,
    store_expr,
)
from coda.codegen.targets import Target
from coda.codegen.tile_config import loop_tile
from coda.dialects.graph import (
    ConcatOp,
    ConstantOp,
    PointwiseOp,
    ReduceOp,
    ViewOp,
    broadcast_shapes,
    tensor_shape,
)
from coda.dialects.kernel import LoopKernelOp
from coda.dialects.view_layout import ViewLayoutError, view_access

_TEMPLATE_LOCALS = frozenset(
    {
        "BLOCK", "BLOCK_X", "BLOCK_R", "MAX_BLOCK_LEN", "BLOCK_ELEMENTS", "NUM_WARPS", "numel",
        "offs",
        "mask", "rest", "pid", "x_idx", "x_mask", "x_rest", "r_start", "r_idx", "r_mask",
        "r_rest",
    }
)  # fmt: skip

# (identity of the accumulator, combine function of the final tl.reduce)
_REDUCTIONS = {
    "sum": ("0.0", "_sum"),
    "mean": ("0.0", "_sum"),
    "amax": ('float("-inf")', "_max"),
    "amin": ('float("inf")', "_min"),
}


@dataclass
class _Dim:
    """One dimension of the loop shape: an IR dim of S, or a virtual size-1 dim."""

    index: int  # loop dim number: names i{index}, size{index}
    source: int | None  # dim of S, None when virtual
    reduced: bool


@dataclass
class _ViewTerms:
    """A view's element offset split by the loop indices it uses, printed: `base` (none),
    `kept` and `red` (only kept / only reduced dims; vectors), `mixed` (both: a block)."""

    base: str
    kept: str
    red: str
    mixed: str


@dataclass
class _Tensor:
    """A kernel parameter: launch name, pointer, and the loop dims it is addressed along."""

    tensor: str
    ptr: str
    dims: list[_Dim]  # the others broadcast: no index term, no stride parameter
    strides: dict[int, str]  # loop dim index (operand dim for views) -> stride parameter
    stride_args: str  # launch expression for the strides of `dims`
    offs_x: str = ""  # kernel local: offset of its kept coordinates (reductions only)
    view: _ViewTerms | None = None  # addressed through a view chain's layout
    var: str = ""  # kernel local holding its loaded block (default: `tensor`)
    # loop dim index -> index expression, for a concat piece read at index - start
    shift: dict[int, str] = field(default_factory=dict)

    @property
    def stride_params(self) -> list[str]:
        return list(self.strides.values())


def generate_loop(kernel: LoopKernelOp, target: Target | None = None) -> str:
    """Triton source for `kernel`, blocked for `target` (None: the interpreter)."""
    return _LoopGenerator(kernel, target).source()


class _LoopGenerator:
    def __init__(self, kernel: LoopKernelOp, target: Target | None = None) -> None:
        self.tile = loop_tile(target)
        self.kernel = kernel
        self.ir = IrText(kernel)
        block = kernel.body.block
        self.ops: list[Operation] = [op for op in block.ops if op is not kernel.terminator]
        for op in self.ops:
            if not isinstance(op, PointwiseOp | ReduceOp | ConstantOp | ViewOp | ConcatOp):
                raise CodegenError(f"kernel.loop cannot generate '{op.name}'")
        # views are read through their layouts when the ops that use them load
        self.ops = [op for op in self.ops if not isinstance(op, ViewOp)]
        self.reduces = [op for op in self.ops if isinstance(op, ReduceOp)]
        if self.reduces and any(isinstance(op, ConcatOp) for op in self.ops):
            raise CodegenError(
                f'kernel.loop "{kernel.kernel_name}" concatenates and reduces: a concat is '
                "computed in pointwise loops only"
            )
        self.small = self._small_reductions()
        self.shape, reduced = self._iteration_shape()
        self.post_reduce = self._post_reduce_ops()
        # A virtual leading dim keeps the index math uniform for rank-0 S (no reduce) and
        # for full reductions (no kept dim): it has size 1 and stride 0 everywhere.
        virtual = not self.shape or (self.reduces and len(reduced) == len(self.shape))
        self.dims = [_Dim(0, None, False)] if virtual else []
        self.dims += [_Dim(len(self.dims) + d, d, d in reduced) for d in range(len(self.shape))]
        reserved = {f"i{d.index}" for d in self.dims} | {f"size{d.index}" for d in self.dims}
        self.namer = Namer(_TEMPLATE_LOCALS | reserved)
        self.fn = self.namer.fresh(kernel.kernel_name)
        self.helpers: set[str] = set()  # triton.language @jit helpers the kernel calls
        self.var: dict[SSAValue, str] = {}
        self.uniform: set[SSAValue] = set()  # values that read no tensor (constants)
        self.reduced_space: set[SSAValue] = set()  # reduce results and ops on them
        self.inputs: dict[SSAValue, _Tensor] = {}  # loaded operand (or view) -> parameter
        self.row_var: dict[SSAValue, str] = {}  # a per-row operand loaded after the loop
        self.names: dict[SSAValue, str] = {}  # launch parameter per kernel operand
        self.small_inputs: dict[SSAValue, _Tensor] = {}  # a small reduction's operand
        self.small_index: dict[SSAValue, tuple[str, list[str]]] = {}  # flat, coordinates
        # each small input loaded so far: the value padding its block (None: no padding)
        self.small_identity: dict[SSAValue, str | None] = {}
        self.pieces: list[_Tensor] = []  # concat inputs, each read at shifted indices
        self.emitted_in: dict[SSAValue, int] = {}  # value -> last pass over R computing it

    # -- shape analysis ------------------------------------------------------------------

    def _pass_shape(self) -> tuple[int, ...] | None:
        """The broadcast of the pointwise results: the shape one pass over S covers."""
        shapes = [tensor_shape(op.results[0]) for op in self.ops if isinstance(op, PointwiseOp)]
        return broadcast_shapes(*shapes) if shapes else None

    def _small_reductions(self) -> list[ReduceOp]:
        """Reductions whose input is a kernel operand (or a view chain of one) of the pass
        shape's rank and kept extents, with another extent along the reduced dims than
        the pass covers: they run once per row before the loop over R."""
        pass_shape = self._pass_shape()
        if pass_shape is None:
            return []
        block = self.kernel.body.block
        small = []
        for op in self.reduces:
            shape = tensor_shape(op.input)
            root = _root(op.input)
            if len(shape) != len(pass_shape) or not (
                isinstance(root, BlockArgument) and root.block is block
            ):
                continue
            dims = set(op.reduced_dims)
            kept = all(shape[d] == pass_shape[d] for d in range(len(shape)) if d not in dims)
            if kept and any(pass_shape[d] not in (1, shape[d]) for d in dims):
                small.append(op)
        return small

    def _iteration_shape(self) -> tuple[tuple[int, ...], set[int]]:
        """S and the reduced dims of S; checks the split pass's one-shape guarantee."""
        name = f'kernel.loop "{self.kernel.kernel_name}"'
        if not self.kernel.terminator.values:
            raise CodegenError(f"{name} yields nothing")
        if not self.reduces:
            shapes = {tensor_shape(v) for v in self.kernel.terminator.values}
            if len(shapes) != 1:
                raise CodegenError(
                    f"{name} yields values of different shapes {sorted(shapes)}; "
                    "a loop kernel without a reduction has one iteration shape"
                )
            return shapes.pop(), set()
        main = [op for op in self.reduces if op not in self.small]
        if main and self.small:
            raise CodegenError(
                f"{name}: {self.ir.op(self.small[0])} is a small reduction beside the "
                f"reduction {self.ir.op(main[0])}; small reductions run beside one "
                "pointwise pass only"
            )
        first = (main or self.small)[0]
        dims = set(first.reduced_dims)
        shape = tensor_shape(first.input) if main else self._pass_shape()
        assert shape is not None  # small reductions exist only beside a pass
        if not dims:
            raise CodegenError(f"{name}: {self.ir.op(first)} reduces over no dims")
        for op in self.reduces:
            if op is first:
                continue
            same_shape = op in self.small or tensor_shape(op.input) == shape
            if not same_shape or set(op.reduced_dims) != dims:
                raise CodegenError(
                    f"{name}: {self.ir.op(op)} and {self.ir.op(first)} reduce different "
                    "shapes or dims; one loop kernel runs one reduction pass"
                )
        return shape, dims

    def _post_reduce_ops(self) -> set[Operation]:
        """Pointwise ops with one value per kept coordinate (not of the iteration shape):
        ops on reduction results (rsqrt(mean + eps)) and the per-row operands they combine
        with (rstd^3 of a norm's backward). They run once after a pass, not in the loop
        over R."""
        if not self.reduces:
            return set()
        return {
            op
            for op in self.ops
            if isinstance(op, PointwiseOp) and tensor_shape(op.result) != self.shape
        }

    def _check_s_shape(self, value: SSAValue, what: str) -> None:
        shape = tensor_shape(value)
        if broadcast_shapes(shape, self.shape) != self.shape:
            raise CodegenError(
                f"{what} {self.ir.name(value)} of shape {list(shape)} does not broadcast to "
                f"the iteration shape {list(self.shape)}"
            )

    # -- pieces ----------------------------------------------------------------------------

    @property
    def kept(self) -> list[_Dim]:
        return _kept(self.dims)

    @property
    def red(self) -> list[_Dim]:
        return [d for d in self.dims if d.reduced]

    def _tensor(
        self,
        name: str,
        base: str,
        dims: list[_Dim],
        positions: list[int | None],
        rank: int,
        in_loop: bool = True,
    ) -> _Tensor:
        """A parameter addressed along `dims`; `positions[i]` is the dim of `base` (a torch
        tensor of rank `rank` at launch) that gives the stride of `dims[i]`, None for 0.
        Tensors accessed `in_loop` of a reduction get their kept offset computed once."""
        if positions == list(range(rank)):
            args = f"*{base}.stride()"
        else:
            args = ", ".join("0" if p is None else f"{base}.stride({p})" for p in positions)
        ptr = self.namer.fresh(f"{name}_ptr")
        strides = {d.index: self.namer.fresh(f"stride_{name}_{d.index}") for d in dims}
        t = _Tensor(name, ptr, dims, strides, args)
        if in_loop and self.reduces and any(not d.reduced for d in dims):
            t.offs_x = self.namer.fresh(f"{name}_offs_x")
        return t

    def _input(self, arg: BlockArgument, name: str) -> _Tensor:
        """An operand: addressed along the dims of S it does not broadcast over."""
        self._check_s_shape(arg, "operand")
        shape = tensor_shape(arg)
        padded = (1,) * (len(self.shape) - len(shape)) + shape
        dims = [d for d in self.dims if d.source is not None and padded[d.source] != 1]
        # one name for the tensor (in launch) and its loaded block (in the kernel)
        return self._tensor(
            name, f"{name}.expand(S)", dims, [d.source for d in dims], len(self.shape)
        )

    def _axis_dim(self, axis: int) -> _Dim:
        return next(d for d in self.dims if d.source == axis)

    def _piece(self, value: SSAValue, axis: int, start: int) -> _Tensor:
        """A concat input (same rank as S, smaller along `axis`), read at index - start."""
        dim = self._axis_dim(axis)
        if not isinstance(value, BlockArgument):
            return self._view_input(value, self.names[_root(value)], shift=(dim, start))
        shape = tensor_shape(value)
        dims = [d for d in self.dims if d.source is not None and shape[d.source] != 1]
        name = self.names[value]
        t = self._tensor(name, name, dims, [d.source for d in dims], len(shape))
        t.var = self.namer.fresh(f"{name}_part")
        if start:
            t.shift = {dim.index: f"(i{dim.index} - {start})"}
        return t

    def _view_input(
        self,
        value: SSAValue,
        source: str,
        shift: tuple[_Dim, int] | None = None,
        index: dict[int, str] | None = None,
    ) -> _Tensor:
        """A view chain of the operand launched as `source`, read through its layout
        (at index - start along a dim when `shift` is given: a concat piece). `index`
        renames loop dims' coordinates (a small reduction's own reduced coordinates);
        such an operand need not broadcast to S."""
        index = index or {}
        if shift is None and not index:
            self._check_s_shape(value, "operand")
        block = self.kernel.body.block
        root = value
        while isinstance(root.owner, ViewOp):
            root = root.owner.input
        var = self.namer.fresh(self.ir.name(value)[1:])
        strides = {d: self.namer.fresh(f"stride_{var}_{d}") for d in range(len(tensor_shape(root)))}
        try:
            access = view_access(value, block, list(strides.values()))
        except ViewLayoutError as error:
            raise CodegenError(f'kernel.loop "{self.kernel.kernel_name}": {error}') from None
        shape = tensor_shape(value)
        by_source = {d.source: d for d in self.dims if d.source is not None}
        loop_dims = [by_source[len(self.shape) - len(shape) + j] for j in range(len(shape))]
        symbol = {
            d.index: sympy.Symbol(index.get(d.index, f"i{d.index}"), integer=True, nonnegative=True)
            for d in loop_dims
        }
        expr = access.offset([symbol[d.index] for d in loop_dims])
        if shift is not None and shift[1]:
            index = symbol[shift[0].index]
            expr = sympy.expand(expr.xreplace({index: index - shift[1]}))
        kept = {symbol[d.index] for d in loop_dims if not d.reduced}
        red = {symbol[d.index] for d in loop_dims if d.reduced}
        parts: dict[tuple[bool, bool], sympy.Expr] = {}
        for term in sympy.Add.make_args(expr):
            key = (bool(term.free_symbols & kept), bool(term.free_symbols & red))
            parts[key] = parts.get(key, sympy.Integer(0)) + term
        vector = {sym: str(sym) for sym in symbol.values()}
        block_names = {s: f"{s}[:, None]" for s in kept} | {s: f"{s}[None, :]" for s in red}

        def text(key: tuple[bool, bool], names: dict[sympy.Symbol, str]) -> str:
            term = parts.get(key, sympy.Integer(0))
            return "" if term == 0 else triton_expr(term, names)

        terms = _ViewTerms(
            base=text((False, False), vector),
            kept=text((True, False), vector),
            red=text((False, True), vector),
            mixed=text((True, True), block_names),
        )
        ptr = self.namer.fresh(f"{var}_ptr")
        t = _Tensor(source, ptr, loop_dims, strides, f"*{source}.stride()", view=terms, var=var)
        if self.reduces and terms.kept:
            t.offs_x = self.namer.fresh(f"{var}_offs_x")
        return t

    def _offset(self, t: _Tensor, dims: list[_Dim]) -> str:
        if t.view is not None:  # only asked for the kept offset of a reduction's input
            return " + ".join(p for p in (t.view.base, t.view.kept) if p)
        return " + ".join(
            f"{t.shift.get(d.index, f'i{d.index}')} * {t.strides[d.index]}" for d in dims
        )

    def _view_access(self, t: _Tensor) -> tuple[str, str | None]:
        assert t.view is not None
        v = t.view
        if not self.reduces:
            parts = [t.ptr, v.base, v.kept]
            return " + ".join(p for p in parts if p), "mask" if v.kept else None
        kept = bool(v.kept) or bool(v.mixed)
        red = bool(v.red) or bool(v.mixed)
        parts = [t.ptr]
        parts.append(f"{t.offs_x}[:, None]" if v.kept else v.base)
        parts += [f"({v.red})[None, :]" if v.red else "", v.mixed]
        mask = {
            (True, True): "mask",
            (True, False): "x_mask[:, None]",
            (False, True): "r_mask[None, :]",
            (False, False): None,
        }[(kept, red)]
        return " + ".join(p for p in parts if p), mask

    def _access(self, t: _Tensor) -> tuple[str, str | None]:
        """Pointer expression and mask of `t`'s block inside the loop (None: one scalar)."""
        if t.view is not None:
            return self._view_access(t)
        if not t.dims:
            return t.ptr, None
        if not self.reduces:
            return f"{t.ptr} + {self._offset(t, t.dims)}", "mask"
        kept = _kept(t.dims)
        red = [d for d in t.dims if d.reduced]
        if not red:
            return f"{t.ptr} + {t.offs_x}[:, None]", "x_mask[:, None]"
        red_offs = f"({self._offset(t, red)})[None, :]"
        if not kept:
            return f"{t.ptr} + {red_offs}", "r_mask[None, :]"
        return f"{t.ptr} + {t.offs_x}[:, None] + {red_offs}", "mask"

    def source(self) -> str:
        block = self.kernel.body.block
        inputs = self.inputs
        loads: list[Stmt] = []
        # launch parameter per kernel operand (a direct use loads it under that name)
        names = self.names = {a: self.namer.fresh(self.ir.name(a)[1:]) for a in block.args}
        load_of: dict[SSAValue, Stmt] = {}
        small_inputs = {op.input for op in self.small}
        for value in _loaded_values(block):
            if value in small_inputs:
                self._small_input(value)
                continue
            if isinstance(value, BlockArgument):
                inp = self._input(value, names[value])
                comment = f"{self.ir.name(value)}: {value.type}"
            else:
                inp = self._view_input(value, names[_root(value)])
                comment = (
                    f"{self.ir.name(value)}: {value.type} <- view of {self.ir.name(_root(value))}"
                )
            inputs[value] = inp
            var = self.var[value] = inp.var or inp.tensor
            ptr, mask = self._access(inp)
            load = f"tl.load({ptr}, mask={mask})" if mask else f"tl.load({ptr})"
            line = f"{var} = {load}{load_conversion(element_type(value))}"
            load_of[value] = Stmt(comment, [line])
            loads.append(load_of[value])
        body: list[Stmt] = []
        inits: list[Stmt] = []
        finals: list[Stmt] = []
        phases: list[dict[str, list[Stmt]]] = []
        prologue: list[Stmt] = []
        if self.reduces:
            prologue, phases = self._emit_phases(load_of)
        else:
            for op in self.ops:
                self._emit(op, body, inits, finals)
        outputs, s_stores, x_stores = self._stores()
        if phases:  # each S-shaped store runs in the last pass that computed its value
            for stmt, phase in zip(s_stores, self.s_store_phase, strict=True):
                phases[phase]["body"].append(stmt)
        operands = [*inputs.values(), *self.small_inputs.values(), *self.pieces, *outputs]
        slots = dict(
            kernel_name=self.kernel.kernel_name,
            fn=self.fn,
            shape=list(self.shape),
            reduced_dims=[d.source for d in self.red],
            main_reduction=not self.small,
            dims=self.dims,
            kept=self.kept,
            red=self.red,
            virtual=any(d.source is None for d in self.dims),
            sizes=[f"size{d.index}" for d in self.dims],
            tensors=[names[a] for a in block.args] + [o.tensor for o in outputs],
            operands=operands,
            broadcast=self._broadcast_args(inputs),
            x_offsets=[(t.offs_x, self._offset(t, _kept(t.dims))) for t in operands if t.offs_x],
            x_numel=_product(self.kept),
            r_numel=_product(self.red),
            inner_reduced=self.dims[-1].reduced,
            combines=sorted({_REDUCTIONS[op.kind.data][1] for op in self.reduces}),
            helpers=[(n, *JIT_HELPERS[n]) for n in sorted(self.helpers)],
            loads=loads,
            body=body,
            inits=inits,
            finals=finals,
            prologue=prologue,
            s_stores=s_stores,
            phases=phases,
            x_stores=x_stores,
            tile=self.tile,
        )
        return render("reduction.py.j2" if self.reduces else "pointwise.py.j2", **slots)

    def _broadcast_args(self, inputs: dict[SSAValue, _Tensor]) -> list[str]:
        """Shapes whose broadcast is S at launch time: used inputs, then constants."""
        shapes = [
            repr(tuple(tensor_shape(v))) if t.view is not None else f"{t.tensor}.shape"
            for v, t in inputs.items()
        ]
        for op in self.ops:
            pieces_only = all(isinstance(u.operation, ConcatOp) for u in op.results[0].uses)
            if isinstance(op, ConstantOp) and tensor_shape(op.result) and not pieces_only:
                shapes.append(repr(tuple(tensor_shape(op.result))))
        if (not shapes or self.pieces) and self.shape:
            # concat pieces are smaller than S along the axis: S is the static shape
            shapes.append(repr(tuple(self.shape)))
        return shapes

    # -- passes of a reduction kernel -------------------------------------------------------

    def _plan_phases(self) -> dict[Operation, int]:
        """The pass over R each op runs in. A reduction's result is known after its
        pass: ops on it alone (rsqrt(mean + eps)) run right after that pass; an op of the
        iteration shape that reads it (x - amax of a softmax) runs in the next pass,
        which reads the inputs again. Ops of passes before are recomputed, not stored."""
        ready: dict[SSAValue, int] = {}  # first pass whose loop body may read the value
        phase: dict[Operation, int] = {}  # -1: before the first pass (small reductions)
        for op in self.ops:
            first = max((ready.get(v, 0) for v in op.operands), default=0)
            if op in self.small or (op in self.post_reduce and self.small):
                # a small reduction, or per-row work in a kernel without a main reduction
                phase[op] = -1
                ready[op.result] = 0
            elif isinstance(op, ReduceOp):
                phase[op] = first
                ready[op.result] = first + 1
            elif op in self.post_reduce:
                # after the pass that made its inputs (the first, for per-row operands)
                phase[op] = max(first - 1, 0)
                ready[op.result] = phase[op] + 1
            else:
                phase[op] = first
                ready[op.result] = first
        for op in self.ops:  # a literal only the ops before the first pass read goes there
            uses = [use.operation for use in op.results[0].uses] if op.results else []
            if isinstance(op, ConstantOp) and uses and all(phase[u] == -1 for u in uses):
                phase[op] = -1
        return phase

    def _emit_phases(
        self, load_of: dict[SSAValue, Stmt]
    ) -> tuple[list[Stmt], list[dict[str, list[Stmt]]]]:
        """Statements before the first pass, then each pass's inits, loop body, finals."""
        phase = self._plan_phases()
        prologue = self._emit_prologue([op for op in self.ops if phase[op] == -1])
        in_loop = [op for op in self.ops if op not in self.post_reduce and phase[op] >= 0]
        count = 1 + max(phase[op] for op in in_loop)
        producers = {r: op for op in in_loop for r in op.results}
        phases = []
        for p in range(count):
            body: list[Stmt] = []
            inits: list[Stmt] = []
            finals: list[Stmt] = []
            # this pass's ops and the earlier in-loop values they read, recomputed
            needed: set[Operation] = set()
            stack = [op for op in in_loop if phase[op] == p]
            while stack:
                op = stack.pop()
                if op in needed or isinstance(op, ReduceOp) and phase[op] != p:
                    continue
                needed.add(op)
                stack += [producers[v] for v in op.operands if v in producers]
            used = {v for op in needed for v in op.operands}
            loads = [stmt for value, stmt in load_of.items() if value in used]
            for op in self.ops:
                if op in needed or (op in self.post_reduce and phase[op] == p):
                    self._emit(op, body, inits, finals)
                    for result in op.results:
                        self.emitted_in[result] = p
            phases.append({"inits": inits, "body": loads + body, "finals": finals})
        return prologue, phases

    def _emit_prologue(self, ops: list[Operation]) -> list[Stmt]:
        """Small reductions and per-row ops on them, once per block of rows."""
        prologue: list[Stmt] = []
        for op in self.ops:  # literals are spliced in: known before any statement
            if isinstance(op, ConstantOp):
                self.var[op.result] = literal(op.value)
                self.uniform.add(op.result)
        for op in ops:
            if op in self.small:
                assert isinstance(op, ReduceOp)
                prologue += self._emit_small_reduce(op)
            else:
                self._emit(op, prologue, [], prologue)
        return prologue

    # -- ops -------------------------------------------------------------------------------

    def _emit(self, op: Operation, body: list[Stmt], inits: list[Stmt], finals: list[Stmt]) -> None:
        stmt = Stmt(self.ir.op(op))
        if isinstance(op, ConstantOp):
            # a literal needs no variable: uses splice it in
            self.var[op.result] = literal(op.value)
            self.uniform.add(op.result)
            body.append(stmt)
            return
        if isinstance(op, ReduceOp):
            self._emit_reduce(op, body, inits, finals)
            return
        if isinstance(op, ConcatOp):
            body.append(self._emit_concat(op))
            return
        assert isinstance(op, PointwiseOp)
        var = self.namer.fresh(self.ir.name(op.result)[1:])
        self.var[op.result] = var
        if all(v in self.uniform for v in op.inputs):
            self.uniform.add(op.result)
        if op in self.post_reduce:
            self._check_post_reduce(op)
            for value in op.inputs:
                if self._row_operand(value) and value not in self.row_var:
                    finals.append(self._row_load(value))
            stmt.lines.append(f"{var} = {self._pointwise_expr(op)}")
            self.reduced_space.add(op.result)
            finals.append(stmt)
        else:
            stmt.lines.append(f"{var} = {self._pointwise_expr(op)}")
            self._check_s_shape(op.result, "graph.pointwise result")
            body.append(stmt)

    def _emit_concat(self, op: ConcatOp) -> Stmt:
        """Each lane loads from the one input whose range along the axis holds its index
        (masked loads: the others read nothing) and selects it."""
        stmt = Stmt(self.ir.op(op))
        index = f"i{self._axis_dim(op.axis).index}"
        ends, parts = [], []
        for value, start in zip(op.inputs, op.offsets(), strict=True):
            end = start + tensor_shape(value)[op.axis]
            ends.append(end)
            if isinstance(value.owner, ConstantOp):
                parts.append(literal(value.owner.value))
                continue
            t = self._piece(value, op.axis, start)
            self.pieces.append(t)
            ptr, block = self._access(t)
            inside = [f"({index} >= {start})" if start else "", f"({index} < {end})"]
            if value is op.inputs[-1]:
                inside[1] = ""
            mask = " & ".join(["mask", *(c for c in inside if c)])
            # a piece of one element is one scalar load (in bounds for every lane), which
            # the select below broadcasts
            load = f"tl.load({ptr}, mask={mask}, other=0)" if block else f"tl.load({ptr})"
            stmt.lines.append(f"{t.var} = {load}{load_conversion(element_type(value))}")
            parts.append(t.var)
        expr = parts[-1]
        for end, part in zip(reversed(ends[:-1]), reversed(parts[:-1]), strict=True):
            expr = f"tl.where({index} < {end}, {part}, {expr})"
        var = self.var[op.result] = self.namer.fresh(self.ir.name(op.result)[1:])
        stmt.lines.append(f"{var} = {expr}")
        return stmt

    def _row_operand(self, value: SSAValue) -> bool:
        """`value` is an operand with one value per kept coordinate (no reduced dim)."""
        t = self.inputs.get(value)
        if t is None:
            return False
        if t.view is not None:
            return not (t.view.red or t.view.mixed)
        return not any(d.reduced for d in t.dims)

    def _row_load(self, value: SSAValue) -> Stmt:
        """Load a per-row operand once per kept coordinate, after the loop over R."""
        t = self.inputs[value]
        var = self.row_var[value] = self.namer.fresh(f"{t.var or t.tensor}_row")
        kept = t.view.kept if t.view is not None else t.offs_x
        base = t.view.base if t.view is not None else ""
        ptr = " + ".join(p for p in (t.ptr, t.offs_x if kept else base) if p)
        load = f"tl.load({ptr}, mask=x_mask)" if kept else f"tl.load({ptr})"
        comment = f"{self.ir.name(value)}: one value per row"
        return Stmt(comment, [f"{var} = {load}{load_conversion(element_type(value))}"])

    def _check_post_reduce(self, op: PointwiseOp) -> None:
        """Ops after the loop see one value per kept coordinate: reduce results, per-row
        operands, constants."""
        shape = tensor_shape(op.result)
        for v in op.inputs:
            if v in self.reduced_space and tensor_shape(v) == shape:
                continue
            if v in self.uniform and broadcast_shapes(tensor_shape(v), shape) == shape:
                continue
            if self._row_operand(v) and broadcast_shapes(tensor_shape(v), shape) == shape:
                continue
            raise CodegenError(
                f"{self.ir.op(op)} mixes the reduce result with {self.ir.name(v)}; "
                "a loop kernel runs one reduction pass and cannot reuse a reduce result "
                "inside it"
            )

    def _emit_reduce(
        self, op: ReduceOp, body: list[Stmt], inits: list[Stmt], finals: list[Stmt]
    ) -> None:
        kind = op.kind.data
        text = self.ir.op(op)
        if op.input in self.reduced_space:
            raise CodegenError(f"{text} reduces a reduce result: that needs a second pass")
        if not (is_float(element_type(op.input)) and is_float(element_type(op.result))):
            raise CodegenError(f"{text}: only float reductions are supported")
        identity, combine = _REDUCTIONS[kind]
        ctype = compute_type(element_type(op.result))
        var = self.namer.fresh(self.ir.name(op.result)[1:])
        acc = self.namer.fresh(f"{var}_acc")
        self.var[op.result] = var
        self.reduced_space.add(op.result)
        value = self.var[op.input]
        masked = f"tl.where(mask, {value}, {identity})"
        # a mean accumulates in float64: a float32 sum of n equal values is rounded, and
        # sum / n then misses the value (x - mean of a constant row is not 0, and a norm's
        # 1/sqrt(eps) amplifies it); eager's CPU reductions accumulate in double too
        acc_type = "tl.float64" if kind == "mean" else ctype
        if kind == "mean":
            masked = f"{masked}.to(tl.float64)"
        inits.append(Stmt(text, [f"{acc} = tl.full([BLOCK_X, BLOCK_R], {identity}, {acc_type})"]))
        if kind in ("sum", "mean"):
            update = f"{acc} += {masked}"
        else:
            fn = "tl.maximum" if kind == "amax" else "tl.minimum"
            update = f"{acc} = {fn}({acc}, {masked}, propagate_nan=tl.PropagateNan.ALL)"
        body.append(Stmt(text, [update]))
        final = f"{var} = tl.reduce({acc}, 1, {combine})"
        if kind == "mean":
            final = f"{var} = (tl.reduce({acc}, 1, {combine}) / R).to({ctype})"
        finals.append(Stmt(text, [final]))

    def _small_input(self, value: SSAValue) -> None:
        """A small reduction's operand: kept coordinates as in the pass, its reduced
        coordinates from a flat index over its own (static) reduced extent."""
        base = self.ir.name(value)[1:]
        flat = self.namer.fresh(f"{base}_p")
        red = self.red
        coords = [flat] if len(red) == 1 else [self.namer.fresh(f"{flat}{d.index}") for d in red]
        index = {d.index: c for d, c in zip(red, coords, strict=True)}
        t = self._view_input(value, self.names[_root(value)], index=index)
        self.small_inputs[value] = t
        self.small_index[value] = (flat, coords)

    def _emit_small_reduce(self, op: ReduceOp) -> list[Stmt]:
        """One masked [BLOCK_X, P_BLOCK] load of the values each row reduces (the identity
        past the end), reduced along axis 1 with the combine helper of the loop's
        reductions."""
        kind = op.kind.data
        text = self.ir.op(op)
        if not (is_float(element_type(op.input)) and is_float(element_type(op.result))):
            raise CodegenError(f"{text}: only float reductions are supported")
        shape = tensor_shape(op.input)
        count = math.prod(shape[d.source] for d in self.red if d.source is not None)
        identity, combine = _REDUCTIONS[kind]
        loaded = op.input in self.small_identity  # another reduction of it loaded it
        stmts = [] if loaded else [self._small_load(op.input, identity)]
        var = self.var[op.result] = self.namer.fresh(self.ir.name(op.result)[1:])
        self.reduced_space.add(op.result)
        t = self.small_inputs[op.input]
        masked = t.var
        padding = self.small_identity[op.input]
        if padding is not None and padding != identity:
            # the block was loaded for another kind: its masked lanes hold that identity
            flat = self.small_index[op.input][0]
            masked = f"tl.where(({flat} < {count})[None, :], {t.var}, {identity})"
        final = f"{var} = tl.reduce({masked}, 1, {combine})"
        if kind == "mean":  # in float64, as in _emit_reduce
            ctype = compute_type(element_type(op.result))
            total = f"tl.reduce({masked}.to(tl.float64), 1, {combine})"
            final = f"{var} = ({total} / {count}).to({ctype})"
        return [*stmts, Stmt(text, [final])]

    def _small_load(self, value: SSAValue, identity: str) -> Stmt:
        """Each row's values of a small reduction's operand as one block, padded to a
        power of two with `identity`."""
        t = self.small_inputs[value]
        flat, coords = self.small_index[value]
        shape = tensor_shape(value)
        extents = [shape[d.source] for d in self.red if d.source is not None]
        count = math.prod(extents)
        width = 1 << max(count - 1, 0).bit_length()  # next power of two: a block's length
        self.small_identity[value] = identity if width != count else None
        lines = [f"{flat} = tl.arange(0, {width})"]
        if len(coords) > 1:  # row-major coordinates of the flat index, static sizes
            inner = count
            for j, (coord, extent) in enumerate(zip(coords, extents, strict=True)):
                inner //= extent
                index = f"{flat} // {inner}" if inner > 1 else flat
                if j > 0:  # no wrap outermost: lanes past P are out of range but masked
                    index = f"({index}) % {extent}" if inner > 1 else f"{index} % {extent}"
                lines.append(f"{coord} = {index}")
        ptr, varies = self._view_access(t)
        if varies != "mask":  # not along both rows and values (one value, one row): a block
            ptr = f"{ptr} + tl.full((BLOCK_X, {width}), 0, tl.int32)"
        mask = "x_mask[:, None]"
        if width != count:
            mask += f" & ({flat} < {count})[None, :]"
        load = f"tl.load({ptr}, mask={mask}, other={identity})"
        lines.append(f"{t.var} = {load}{load_conversion(element_type(value))}")
        comment = f"{self.ir.name(value)}: {value.type}, {count} values per row"
        return Stmt(comment + ("" if width == count else f" (one block of {width})"), lines)

    def _operand(self, value: SSAValue, in_loop: bool) -> str:
        """How an op reads `value`: in a later pass over the rows, a reduction's result
        is one value per row of the block; after the loop, a per-row operand is its
        row-wise load."""
        if not in_loop:
            return self.row_var.get(value, self.var[value])
        if value in self.reduced_space:
            return f"{self.var[value]}[:, None]"
        return self.var[value]

    def _pointwise_expr(self, op: PointwiseOp) -> str:
        in_loop = op not in self.post_reduce
        operands = [self._operand(v, in_loop) for v in op.inputs]
        # values this kernel computes are float32 whatever their IR type; loaded operands
        # and literals hold what the IR type can
        widened = [
            element_type(v) if isinstance(v.owner, PointwiseOp | ReduceOp) else None
            for v in op.inputs
        ]
        if op.fn.data == "cast":
            source, target = element_type(op.inputs[0]), element_type(op.result)
            return cast_expr(operands[0], source, target, self.helpers, widened[0] is not None)
        return pointwise_expr(op.fn.data, operands, self.helpers, widened)

    # -- outputs ---------------------------------------------------------------------------

    def _stores(self) -> tuple[list[_Tensor], list[Stmt], list[Stmt]]:
        """Output parameters, stores inside the loop (S-shaped), stores after it."""
        outputs: list[_Tensor] = []
        s_stores: list[Stmt] = []
        x_stores: list[Stmt] = []
        self.s_store_phase: list[int] = []  # the pass each S-shaped store runs in
        for k, value in enumerate(self.kernel.terminator.values):
            name = self.namer.fresh(f"out{k}")
            var = self.var.get(value)
            if var is None or value in self.uniform:
                raise CodegenError(
                    f"kernel.loop yields {self.ir.name(value)}, which reads no tensor; "
                    "a splat constant needs no kernel"
                )
            if value in self.reduced_space:
                out = self._reduced_output(name, value)
                ptr, mask, stores = f"{out.ptr} + {self._offset(out, out.dims)}", "x_mask", x_stores
            else:
                if tensor_shape(value) != self.shape:
                    raise CodegenError(
                        f"kernel.loop yields {self.ir.name(value)} of shape "
                        f"{list(tensor_shape(value))}, not the iteration shape "
                        f"{list(self.shape)}"
                    )
                positions = [d.source for d in self.dims]
                out = self._tensor(name, name, self.dims, positions, len(self.shape))
                access, mask = self._access(out)
                ptr, stores = access, s_stores
                self.s_store_phase.append(self.emitted_in.get(value, 0))
            stored = store_expr(var, out.ptr, element_type(value), self.helpers)
            store = f"tl.store({ptr}, {stored}, mask={mask})"
            stores.append(Stmt(f"kernel.yield {self.ir.name(value)} -> result {k}", [store]))
            outputs.append(out)
        return outputs, s_stores, x_stores

    def _reduced_output(self, name: str, value: SSAValue) -> _Tensor:
        """A reduce-shaped output, addressed along the kept dims (keepdim or not)."""
        rank = len(tensor_shape(value))
        keepdim = rank == len(self.shape)
        sources = [d.source for d in self.kept if d.source is not None]
        position = {src: src if keepdim else j for j, src in enumerate(sources)}
        positions = [None if d.source is None else position[d.source] for d in self.kept]
        return self._tensor(name, name, self.kept, positions, rank, in_loop=False)


def _root(value: SSAValue) -> SSAValue:
    while isinstance(value.owner, ViewOp):
        value = value.owner.input
    return value


def _loaded_values(block) -> list[SSAValue]:
    """Kernel operands and view chain ends that the kernel's ops read, in block order."""
    values: list[SSAValue] = []
    for op in block.ops:
        if isinstance(op, ViewOp | ConcatOp):  # a concat loads its pieces itself
            continue
        for operand in op.operands:
            owner = operand.owner
            direct = isinstance(operand, BlockArgument) and operand.block is block
            if (direct or isinstance(owner, ViewOp)) and operand not in values:
                values.append(operand)
    return values


def _product(dims: Iterable[_Dim]) -> str:
    """Launch expression for the number of coordinates along `dims`."""
    factors = [f"S[{d.source}]" for d in dims if d.source is not None]
    return " * ".join(factors) if factors else "1"


def _kept(dims: list[_Dim]) -> list[_Dim]:
    return [d for d in dims if not d.reduced]
