"""`kernel.gemm` -> Triton: a tiled GEMM mainloop, then the epilogue program on each tile.

Grid: (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)[, prod(batch)]). Each program accumulates its
[BLOCK_M, BLOCK_N] tile in float32 over K, then runs the epilogue region op by op on it.
Operands and epilogue inputs may be views of kernel operands (split-blocks moves the
views that feed a GEMM into its kernel): each is addressed through the CuTe layout of its
view chain over the operand's runtime strides (`addressing.py`), so a transposed weight,
a strided slice or a head merge `[B,H,S,D] -> [B*S, H*D]` is read in place. Size-1 and
broadcast dims are index 0, so batch-size-1 operands and broadcast inputs need no copy.

Any number of leading batch dims: grid axis 2 enumerates the output's batch dims
row-major, and the kernel splits `pid_b` into one index per dim (b0, b1, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import sympy
from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue

from coda.codegen.addressing import triton_expr
from coda.codegen.common import (
    JIT_HELPERS,
    CodegenError,
    IrText,
    Namer,
    Stmt,
    cast_expr,
    element_type,
    literal,
    load_conversion,
    pointwise_expr,
    render,
    store_expr,
)
from coda.codegen.dequantize import dequantize_operand, dequantized_source
from coda.codegen.gemm_chain import ChainStage
from coda.codegen.prologue import prologue_operand, prologue_root
from coda.codegen.quantize import HELPERS_SOURCE
from coda.codegen.quantize_epilogue import store_quantized_lines
from coda.codegen.quantize_operand import quantize_operand, quantized_source, scaled_dot_lines
from coda.codegen.targets import Target
from coda.codegen.tile_config import GemmTile, gemm_tile
from coda.codegen.tiling import batch_indices, tile_offsets
from coda.dialects.epilogue import (
    AccumulateOp,
    ColType,
    ConstantOp,
    GemmOp,
    MapOp,
    ReduceOp,
    RowReduceOp,
    ScaleOp,
    StoreOp,
    TileValueType,
)
from coda.dialects.graph import ConcatOp, PointwiseOp, ViewOp, tensor_shape
from coda.dialects.graph import ConstantOp as GraphConstantOp
from coda.dialects.kernel import GemmKernelOp, YieldOp
from coda.dialects.lowp import AssembleOp, DequantizeOp, QuantizeOp, StoreQuantizedOp
from coda.dialects.view_layout import (
    ViewAccess,
    ViewLayoutError,
    stored_view_access,
    view_access,
)

# Locals of the template; SSA-derived names must not shadow them. Per batch dim d the
# template also uses b{d}, B{d}, stride_ab{d} and stride_bb{d} (see _batch_locals).
_TEMPLATE_LOCALS = frozenset(
    {
        "M", "N", "K", "B", "shapes", "tensor", "shape", "BLOCK_M", "BLOCK_N", "BLOCK_K",
        "UPCAST_OPERANDS", "NATIVE_LOWP", "NUM_WARPS", "NUM_STAGES",
        "INPUT_PRECISION", "pid_m", "pid_n", "pid_b", "offs_m", "offs_n", "offs_k",
        "mask_m", "mask_n", "mask_k", "mask", "acc", "k", "a_tile", "b_tile", "a_ptrs",
        "b_ptrs", "kk", "batch", "K1", "K2", "K3", "K4", "K5", "K6", "K7",
    }
)  # fmt: skip


def _batch_locals(rank: int) -> set[str]:
    """Template locals for the batch dims of a rank-`rank` output."""
    return {f"{prefix}{d}" for d in range(rank - 2) for prefix in ("b", "B")}


def _batch_offset(dims: list[str], strides: dict[str, str]) -> str:
    """' + b0 * stride_b0 + b1 * stride_b1 ...': the start of the batch of this program."""
    return "".join(f" + {d} * {strides[d]}" for d in dims)


def _index(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, nonnegative=True)


@dataclass
class _Address:
    """An access's offset split by what it varies with, printed as Triton expressions:
    `base` (a scalar per program), `rows` and `cols` (vectors along the tile's two axes)
    and `mixed` (terms of both, only for reshapes that are not layouts: a 2D block)."""

    base: str
    rows: str
    cols: str
    mixed: str
    comment: str

    def pointer(self, ptr: str, rows: str | None, cols: str | None, block: str) -> str:
        """`ptr` plus the offsets; `rows`/`cols` name the hoisted vectors (None: inline).
        `block` is the tile's shape (e.g. "(BLOCK_M, BLOCK_N)")."""
        parts = [ptr, self.base]
        parts.append(f"{rows or f'({self.rows})'}[:, None]" if self.rows else "")
        parts.append(f"{cols or f'({self.cols})'}[None, :]" if self.cols else "")
        parts.append(self.mixed)
        text = " + ".join(p for p in parts if p)
        if not self.mixed and not (self.rows and self.cols):
            # a size-1 dim has no offset term: the pointers would be a scalar or one row
            # or column, which the tile's mask and stored value cannot broadcast into
            text = f"tl.broadcast_to({text}, {block})"
        return text


#: the shape of an output tile, as the generated kernels spell it
TILE = "(BLOCK_M, BLOCK_N)"


def _address(
    access: ViewAccess, dims: list[str], row: str, col: str, names: dict[str, str]
) -> _Address:
    """Split `access`'s offset over the iteration `dims` (the view's dims right-aligned
    to them) into base/rows/cols/mixed. `names` maps each dim to its Triton index."""
    indices = [_index(d) for d in dims[len(dims) - len(access.shape) :]]
    expr = access.offset(indices)
    r, c = _index(row), _index(col)
    parts: dict[tuple[bool, bool], sympy.Expr] = {}
    for term in sympy.Add.make_args(expr):
        key = (r in term.free_symbols, c in term.free_symbols)
        parts[key] = parts.get(key, sympy.Integer(0)) + term
    vector = {_index(d): n for d, n in names.items()}
    broadcast = vector | {r: f"{names[row]}[:, None]", c: f"{names[col]}[None, :]"}

    def text(key: tuple[bool, bool], symbols: dict[sympy.Symbol, str]) -> str:
        term = parts.get(key, sympy.Integer(0))
        return "" if term == 0 else triton_expr(term, symbols)

    return _Address(
        base=text((False, False), vector),
        rows=text((True, False), vector),
        cols=text((False, True), vector),
        mixed=text((True, True), broadcast),
        comment=access.describe(),
    )


# Operand types GPUs feed to tl.dot as they are; anything else is upcast to float32 first.
_NATIVE_DOT_TYPES: dict[type[Attribute], str] = {Float16Type: "float16", BFloat16Type: "bfloat16"}


@dataclass
class _Operand:
    """One mainloop operand (lhs or rhs)."""

    name: str  # IR name, for comments
    comment: str  # how it is read: the layout of its view chain over a kernel operand
    setup: list[str]  # lines before the mainloop (offsets that do not depend on k)
    address: list[str]  # lines in the mainloop, ending in the `ptrs` assignment
    load: str  # the load of this k step's tile, assigned to `tile`
    tile: str  # kernel local holding the tile


@dataclass
class _Mainloop:
    """One loop over K: loads each operand tile once and adds the products to their
    accumulators."""

    k_size: str  # kernel parameter: this loop's contraction size
    comments: list[str]
    setup: list[str]
    body: list[str]
    after: list[str] = field(default_factory=list)  # after the loop (scaled GEMMs' scales)


@dataclass
class _Input:
    """One epilogue input: a tile, row, column or scalar, loaded once per output tile."""

    load: Stmt


@dataclass
class _Output:
    """One kernel result: written by the stores of gemm result `index`."""

    index: int
    gemm: GemmOp  # the epilogue.gemm whose result `index` it is (a chain has two)
    tensor: str
    ptr: str
    ptrs: str  # kernel local: the tile's addresses
    strides: dict[str, str]  # 'b0', 'b1', ... /'m'/'n' (dims of the buffer) -> parameter
    # stored in another layout: the result reaches the buffer through views
    address: _Address | None = None
    # that layout's offset over the kernel's dims (a column is stored at n = 0)
    offset: sympy.Expr | None = None


def generate_gemm(
    kernel: GemmKernelOp, target: Target | None = None, tile: GemmTile | None = None
) -> str:
    """Triton source for `kernel`, tiled for `target` (None: the interpreter) unless an
    explicit `tile` overrides the choice."""
    return _GemmGenerator(kernel, target, tile).source()


class _GemmGenerator:
    """Generates the program of one epilogue.gemm of `kernel`: the kernel's own (its
    last gemm), or with `producer` the stage function of a chain's first gemm."""

    def __init__(
        self,
        kernel: GemmKernelOp,
        target: Target | None = None,
        tile: GemmTile | None = None,
        producer: str | None = None,
    ) -> None:
        self.kernel = kernel
        self.ir = IrText(kernel)
        self.gemms = kernel_gemms(kernel)
        self.gemm = self.gemms[0] if producer else self.gemms[-1]
        chained = len(self.gemms) == 2
        self.tile = tile or gemm_tile(target, self.gemm, whole_rows=chained)
        self.target = target
        self.tile_for = target.name if target else "Triton's interpreter"
        rank = len(self.gemm.out_shape)
        self.namer = Namer(_TEMPLATE_LOCALS | _batch_locals(rank))
        self.batch_dims = [f"b{d}" for d in range(rank - 2)]  # indices into the batch dims
        self.fn = producer or self.namer.fresh(kernel.kernel_name)
        # kernel operands: one launch parameter and one pointer each
        self.tensor_of: dict[SSAValue, str] = {}
        self.ptr_of: dict[SSAValue, str] = {}
        self.strides_of: dict[SSAValue, list[str]] = {}  # kernel parameters
        for arg in kernel.body.block.args:
            tensor = self.tensor_of[arg] = self.namer.fresh(self.ir.name(arg)[1:])
            self.ptr_of[arg] = self.namer.fresh(f"{tensor}_ptr")
            self.strides_of[arg] = [
                self.namer.fresh(f"stride_{tensor}_{d}") for d in range(len(tensor_shape(arg)))
            ]
        self.outputs = [self._output(k, v) for k, v in enumerate(kernel.terminator.values)]
        if not self.outputs:
            raise CodegenError(f'kernel.gemm "{kernel.kernel_name}" has no results')
        self.helpers: set[str] = set()  # triton.language @jit helpers the kernel calls
        self.combines: set[str] = set()  # module-local reduction combines (helpers.j2)
        self.lowp_helpers = False  # whether coda.codegen.quantize's helpers are needed
        self.scaled_dot = False  # whether a mainloop multiplies fp8/MX codes on GPUs
        self.var: dict[SSAValue, str] = {}  # epilogue value -> Python expression
        self.k_names: dict[int, str] = {}  # contraction size -> its kernel parameter
        # a chain's first gemm, which the kernel's mainloop runs as a function
        self.chain: ChainStage | None = None
        if producer is None and chained:
            self.chain = ChainStage(self, "_" + self.namer.fresh(f"{self.fn}_producer"))

    @property
    def _dims(self) -> list[str]:
        """Dims of the output: batch dims (if any), rows, columns."""
        return [*self.batch_dims, "m", "n"]

    def _output(self, k: int, value: SSAValue) -> _Output:
        result = value
        while isinstance(result.owner, ViewOp):  # stored in another layout
            result = result.owner.input
        if result.owner not in self.gemms:
            raise CodegenError(
                f'kernel.gemm "{self.kernel.kernel_name}" yields {self.ir.name(value)}, '
                "which is not a result of its epilogue.gemm (or a view of one)"
            )
        gemm = result.owner
        assert isinstance(gemm, GemmOp)
        index = list(gemm.outputs).index(result)
        tensor = self.namer.fresh(f"out{k}")
        out = _Output(
            index=index,
            gemm=gemm,
            tensor=tensor,
            ptr=self.namer.fresh(f"{tensor}_ptr"),
            ptrs=self.namer.fresh(f"{tensor}_ptrs"),
            strides={},
        )
        if result is value:
            out.strides = {d: self.namer.fresh(f"stride_{tensor}_{d}") for d in self._dims}
            return out
        dims = range(len(tensor_shape(value)))
        out.strides = {str(d): self.namer.fresh(f"stride_{tensor}_{d}") for d in dims}
        try:
            access = stored_view_access(value, list(out.strides.values()))
        except ViewLayoutError as error:
            raise CodegenError(f'kernel.gemm "{self.kernel.kernel_name}": {error}') from None
        names = {d: d for d in self.batch_dims} | {"m": "offs_m", "n": "offs_n"}
        out.address = _address(access, self._dims, "m", "n", names)
        indices = [_index(d) for d in self._dims[len(self._dims) - len(access.shape) :]]
        out.offset = access.offset(indices)
        return out

    def _access(self, value: SSAValue, role: str) -> ViewAccess:
        block = self.kernel.body.block
        root = value
        while isinstance(root.owner, ViewOp):
            root = root.owner.input
        if not (isinstance(root, BlockArgument) and root.block is block):
            raise CodegenError(
                f"epilogue.gemm {role} {self.ir.name(value)} must be an operand of the "
                f'kernel.gemm "{self.kernel.kernel_name}" or a view of one'
            )
        try:
            return view_access(value, block, self.strides_of[root])
        except ViewLayoutError as error:
            raise CodegenError(f'kernel.gemm "{self.kernel.kernel_name}": {error}') from None

    def _comment(self, value: SSAValue, access: ViewAccess) -> str:
        """'%x' or '%v: layout ... of %x' for the generated code's comments."""
        name = self.ir.name(value)
        if value is access.source:
            return name
        return f"{name} = layout {access.describe()} of {self.ir.name(access.source)}"

    def _native_dot(self) -> str:
        """'float16'/'bfloat16' when every mainloop operand has that type, else ''
        (float32 dot)."""
        types = {type(element_type(v)) for v in self.gemm.products}
        return _NATIVE_DOT_TYPES.get(types.pop(), "") if len(types) == 1 else ""

    def _mainloop_operand(
        self, value: SSAValue, role: str, prefix: str, piece: tuple[int, int] | None = None
    ) -> _Operand:
        """The mainloop operand `value`. `piece` = (start, size): `value` is a piece of a
        concatenation along the operand's output dim (rows of the lhs, columns of the
        rhs), read where the tile's rows (columns) fall in [start, start + size)."""
        if piece is None:  # a piece of a concatenation is read through its address alone
            special = self._special_operand(value, role, prefix)
            if special is not None:
                return special
        access = self._access(value, role)
        row, col = ("m", "k") if role == "lhs" else ("k", "n")
        names = {d: d for d in self.batch_dims} | {"m": "offs_m", "n": "offs_n", "k": "kk"}
        outer = "m" if role == "lhs" else "n"  # the dim a concatenation stacks pieces on
        if piece is not None:
            names[outer] = f"(offs_{outer} - {piece[0]})"
        address = _address(access, [*self.batch_dims, row, col], row, col, names)
        # offsets along m or n are hoisted out of the mainloop; those along k are not
        hoisted = "rows" if role == "lhs" else "cols"
        setup, lines = [], []
        vectors: dict[str, str | None] = {"rows": None, "cols": None}
        for part in ("rows", "cols"):
            expr = getattr(address, part)
            if expr:
                var = vectors[part] = self.namer.fresh(f"{prefix}_{part}")
                (setup if part == hoisted else lines).append(f"{var} = {expr}")
        ptr = self.ptr_of[access.source]
        # the plain GEMM's a_ptrs/a_tile are template locals; merged GEMMs' are fresh
        ptrs = f"{prefix}_ptrs" if prefix in ("a", "b") else self.namer.fresh(f"{prefix}_ptrs")
        block = "(BLOCK_M, BLOCK_K)" if role == "lhs" else "(BLOCK_K, BLOCK_N)"
        lines.append(f"{ptrs} = {address.pointer(ptr, vectors['rows'], vectors['cols'], block)}")
        f32 = isinstance(element_type(value), Float32Type)
        upcast = "" if self._native_dot() or f32 else ".to(tl.float32)"
        rows, cols = ("mask_m", "mask_k") if role == "lhs" else ("mask_k", "mask_n")
        if piece is not None:
            start, size = piece
            inside = f"(offs_{outer} >= {start}) & (offs_{outer} < {start + size})"
            rows, cols = (
                (f"({rows} & {inside})", cols) if role == "lhs" else (rows, f"({cols} & {inside})")
            )
        mask = f"{rows}[:, None] & {cols}[None, :]"
        tile = f"{prefix}_tile" if prefix in ("a", "b") else self.namer.fresh(f"{prefix}_tile")
        return _Operand(
            name=self.ir.name(value),
            comment=self._comment(value, access),
            setup=setup,
            address=lines,
            load=f"{tile} = tl.load({ptrs}, mask={mask}, other=0.0){upcast}",
            tile=tile,
        )

    def _special_operand(self, value: SSAValue, role: str, prefix: str) -> _Operand | None:
        """A mainloop operand not read as it is: concatenated, quantized as it is loaded,
        dequantized from packed storage, computed by a prologue or by the chain's first
        gemm; None otherwise."""
        if self.chain is not None and value.owner is self.chain.gemm:
            return self.chain.operand(value, prefix)
        if isinstance(value.owner, ConcatOp):
            return self._concat_operand(value, role, prefix, value.owner)
        quantized = quantized_source(value)
        if quantized is not None:  # quantized as loaded (quantize-operands)
            return quantize_operand(self, value, role, prefix, *quantized)
        deq = dequantized_source(value)
        if deq is not None:  # a packed low-precision weight (the precision pass)
            return dequantize_operand(self, value, role, prefix, deq)
        root = prologue_root(value)
        if root is not None:  # elementwise work on the operand (fuse-prologues)
            return prologue_operand(self, value, role, prefix, root)
        return None

    def _concat_operand(
        self, value: SSAValue, role: str, prefix: str, concat: ConcatOp
    ) -> _Operand:
        """An operand concatenated along its output dim (q|k|v weights of different
        widths): each piece is loaded where the tile's rows (columns) fall in its range,
        zeros elsewhere, and the pieces summed."""
        outer = 0 if role == "lhs" else 1
        if concat.axis != outer:
            raise CodegenError(
                f'kernel.gemm "{self.kernel.kernel_name}": a concatenated {role} must be '
                f"joined along dim {outer} (its output dim), not {concat.axis}"
            )
        pieces = [
            self._mainloop_operand(v, role, self.namer.fresh(f"{prefix}_part"), (start, size))
            for v, start, size in zip(
                concat.inputs,
                concat.offsets(),
                (tensor_shape(v)[outer] for v in concat.inputs),
                strict=True,
            )
        ]
        tile = self.namer.fresh(f"{prefix}_tile")
        return _Operand(
            name=self.ir.name(value),
            comment="; ".join(
                [f"{self.ir.name(value)} = concatenation of {len(pieces)} pieces"]
                + [p.comment for p in pieces if p.comment != p.name]
            ),
            setup=[line for p in pieces for line in p.setup],
            address=[line for p in pieces for line in (*p.address, p.load)],
            load=f"{tile} = {' + '.join(p.tile for p in pieces)}",
            tile=tile,
        )

    def _mainloops(self) -> tuple[list[_Mainloop], dict[str, int]]:
        """One loop per contraction size: it adds every product over that K to its
        accumulator, loading each operand tile once however many products share it.
        Also the kernel parameter naming each contraction size (K, K1, ...)."""
        gemm = self.gemm
        accs = [self.var[arg] for arg in gemm.body.block.args[: len(gemm.accumulators)]]
        by_k: dict[int, list[tuple[str, SSAValue, SSAValue]]] = {}
        for acc, products in zip(accs, gemm.accumulators, strict=True):
            for lhs, rhs in products:
                by_k.setdefault(tensor_shape(lhs)[-1], []).append((acc, lhs, rhs))
        single = len(gemm.products) == 2
        k_sizes = {"K" if i == 0 else f"K{i}": k for i, k in enumerate(by_k)}
        self.k_names = {k: name for name, k in k_sizes.items()}
        loops = []
        for k_size, products in zip(k_sizes, by_k.values(), strict=True):
            operands: dict[tuple[str, SSAValue], _Operand] = {}
            dots = []
            for acc, lhs, rhs in products:
                tiles = []
                for role, value, letter in (("lhs", lhs, "a"), ("rhs", rhs, "b")):
                    if (role, value) not in operands:
                        prefix = letter if single else self.namer.fresh(f"{letter}{len(operands)}")
                        operands[role, value] = self._mainloop_operand(value, role, prefix)
                    tiles.append(operands[role, value].tile)
                dots.append((acc, *tiles))
            loops.append(self._mainloop(k_size, list(operands.values()), dots))
        return loops, k_sizes

    def _mainloop(
        self, k_size: str, operands: list[_Operand], dots: list[tuple[str, str, str]]
    ) -> _Mainloop:
        comments = [
            f"{acc} += {a} @ {b}"
            for acc, a, b in (
                (acc, *(next(o.name for o in operands if o.tile == t) for t in (a, b)))
                for acc, a, b in dots
            )
        ]
        comments += [o.comment for o in operands if o.comment != o.name]
        body = [line for o in operands for line in o.address]
        body += [line for o in operands if o.load for line in o.load.split("\n")]
        native = self._native_dot()
        scaled = scaled_dot_lines(operands, dots)
        after: list[str] = []
        if scaled is not None:
            self.scaled_dot = True
            body += scaled[0]
            after = scaled[1]
        elif native:
            body.append("if UPCAST_OPERANDS:")
            body.append(
                f"    # the interpreter multiplies {native} bit patterns wrongly: give it float32"
            )
            body += [f"    {o.tile} = {o.tile}.to(tl.float32)" for o in operands]
            body += [f"{acc} = tl.dot({a}, {b}, {acc})" for acc, a, b in dots]
        else:
            body += [
                f"{acc} = tl.dot({a}, {b}, {acc}, input_precision=INPUT_PRECISION)"
                for acc, a, b in dots
            ]
        setup = [line for o in operands for line in o.setup]
        return _Mainloop(k_size, comments, setup, body, after)

    def program(self) -> tuple[dict[str, object], dict[str, int]]:
        """The slots of the program body (gemm_body.j2) and the contraction sizes, by
        kernel parameter name."""
        gemm = self.gemm
        args = gemm.body.block.args
        count = len(gemm.accumulators)
        for arg in args[:count]:
            # the accumulators keep their IR names (acc, acc_1, ...) where they are free
            self.var[arg] = "acc" if count == 1 else self.namer.fresh(self.ir.name(arg)[1:])
        mainloops, k_sizes = self._mainloops()
        # each input is loaded right before its first use, not all at the top: a tile
        # the end of a long epilogue reads would hold its registers all along (whole-row
        # norm backwards spilled on sm_100a)
        unloaded = {
            arg: (i, value)
            for i, (value, arg) in enumerate(zip(gemm.inputs, args[count:], strict=True))
        }
        epilogue = []
        for op in gemm.body.block.ops:
            for operand in op.operands:
                if operand in unloaded:
                    index, value = unloaded.pop(operand)
                    epilogue.append(self._input(index, value, operand).load)
            epilogue.append(self._epilogue_op(op))
        out_shape = gemm.out_shape
        body = {
            # offsets of this program's tile, for the tile the source is generated with
            "tile_offsets": [
                tile_offsets("offs_m", out_shape[-2], self.tile.block_m, "pid_m", "BLOCK_M"),
                tile_offsets("offs_n", out_shape[-1], self.tile.block_n, "pid_n", "BLOCK_N"),
            ],
            "accumulators": [self.var[a] for a in args[:count]],
            "mainloops": mainloops,
            "acc_names": self.ir.names(args[:count]),
            "epilogue": epilogue,
        }
        return body, k_sizes

    def constexpr_args(self, native: str, scaled: bool) -> list[tuple[str, str]]:
        """The kernel's tl.constexpr arguments and their values in `launch`, for dots of
        `native` 16-bit operands ('' for float32) and scaled fp8/MX dots."""
        first = self.tensor_of[self.kernel.body.block.args[0]]
        if native:
            # only the interpreter (CPU tensors) needs float32 operands
            args = [("UPCAST_OPERANDS", f'{first}.device.type == "cpu"')]
        else:
            # float32 operands: full precision unless torch allows TF32 for matmuls
            precision = '"tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"'
            args = [("INPUT_PRECISION", precision)]
        if scaled:
            # GPUs multiply fp8/MX codes natively; the interpreter dequantized tiles
            args.append(("NATIVE_LOWP", f'{first}.device.type != "cpu"'))
        return args

    def source(self) -> str:
        body, k_sizes = self.program()
        operands = self.kernel.body.block.args
        stride_params, stride_args = [], []
        for arg in operands:
            if self.strides_of[arg]:
                stride_params.append(", ".join(self.strides_of[arg]))
                stride_args.append(f"*{self.tensor_of[arg]}.stride()")
        for out in self.outputs:
            stride_params.append(", ".join(out.strides.values()))
            stride_args.append(f"*{out.tensor}.stride()")
        native = self._native_dot()
        constexpr_args = self.constexpr_args(native, self.scaled_dot)
        size_names, sizes = ["M", "N", *k_sizes], [*self.gemm.out_shape[-2:], *k_sizes.values()]
        gemm_text = self._gemm_text()
        stage = None
        if self.chain is not None:
            stage = self.chain.slots()
            gemm_text = f"{self.chain.gen._gemm_text()}\n{gemm_text}"
            for pair in self.constexpr_args(stage["native"], scaled=False):
                if pair[0] not in dict(constexpr_args):
                    constexpr_args.append(pair)
            size_names += self.chain.size_params.values()
            sizes += self.chain.k_sizes.values()
            self.helpers |= self.chain.gen.helpers
            self.combines |= self.chain.gen.combines
            self.lowp_helpers |= self.chain.gen.lowp_helpers
        out_shape = self.gemm.out_shape
        return render(
            "gemm.py.j2",
            kernel_name=self.kernel.kernel_name,
            tile=self.tile,
            tile_for=self.tile_for,
            gemm_text=gemm_text,
            fn=self.fn,
            pointers=[self.ptr_of[a] for a in operands] + [o.ptr for o in self.outputs],
            tensors=[self.tensor_of[a] for a in operands] + [o.tensor for o in self.outputs],
            stride_params=stride_params,
            stride_args=stride_args,
            constexpr_args=constexpr_args,
            batch_dims=self.batch_dims,
            batch_index=batch_indices(
                self.batch_dims, [f"B{d}" for d in range(len(self.batch_dims))], "pid_b"
            ),
            # sizes of batch dims 1, 2, ... (kernel parameters); dim 0's is never needed
            batch_sizes=[f"B{d}" for d in range(1, len(self.batch_dims))],
            size_names=size_names,
            sizes=tuple(sizes),
            shapes=tuple(tensor_shape(v) for v in (*operands, *self.kernel.terminator.values)),
            batch=tuple(out_shape[:-2]),
            num_batches=prod(out_shape[:-2]),
            main=body,
            stage=stage,
            native_dot=native,
            helpers=[(n, *JIT_HELPERS[n]) for n in sorted(self.helpers)],
            combines=sorted(self.combines),
            lowp_helpers=HELPERS_SOURCE if self.lowp_helpers else "",
            out_tensor=self.outputs[0].tensor,
        )

    def _gemm_text(self) -> str:
        gemm = self.gemm
        operands = " | ".join(
            " + ".join(self.ir.names([lhs, rhs]) for lhs, rhs in acc) for acc in gemm.accumulators
        )
        text = f"{self.ir.names(gemm.outputs)} = epilogue.gemm {operands}"
        if gemm.inputs:
            text += f" inputs({self.ir.names(gemm.inputs)})"
        return text

    def _input(self, index: int, value: SSAValue, arg: BlockArgument) -> _Input:
        """Epilogue input `index`, loaded in the shape its kind broadcasts with."""
        if not isinstance(arg.type, TileValueType):
            raise CodegenError(f"epilogue input {self.ir.name(arg)} has type {arg.type}")
        access = self._access(value, f"input {index}")
        kind = arg.type.kind
        var = self.var[arg] = self.namer.fresh(self.ir.name(arg)[1:])
        load = Stmt(f"{self.ir.name(arg)}: {arg.type} <- {self._comment(value, access)}")
        convert = load_conversion(element_type(arg))
        names = {d: d for d in self.batch_dims} | {"m": "offs_m", "n": "offs_n"}
        address = _address(access, self._dims, "m", "n", names)
        ptr = self.ptr_of[access.source]
        # rows, columns and scalars never vary along the other axis (classify_input)
        if kind == "tile":
            ptrs = self.namer.fresh(f"{var}_ptrs")
            load.lines += [
                f"{ptrs} = {address.pointer(ptr, None, None, TILE)}",
                f"{var} = tl.load({ptrs}, mask=mask){convert}",
            ]
        elif kind == "row":
            ptrs = " + ".join(p for p in (ptr, address.base, address.cols) if p)
            if not address.cols:  # a row of one element: no offset vector to mask
                ptrs = f"tl.broadcast_to({ptrs}, (BLOCK_N,))"
            load.lines.append(f"{var} = tl.load({ptrs}, mask=mask_n){convert}[None, :]")
        elif kind == "col":
            ptrs = " + ".join(p for p in (ptr, address.base, address.rows) if p)
            if not address.rows:
                ptrs = f"tl.broadcast_to({ptrs}, (BLOCK_M,))"
            load.lines.append(f"{var} = tl.load({ptrs}, mask=mask_m){convert}[:, None]")
        else:
            ptrs = " + ".join(p for p in (ptr, address.base) if p)
            load.lines.append(f"{var} = tl.load({ptrs}){convert}")
        return _Input(load)

    def _epilogue_op(self, op: Operation) -> Stmt:
        stmt = Stmt(self.ir.op(op))
        if isinstance(op, StoreOp):
            stmt.lines += self._store(op)
            return stmt
        if isinstance(op, ReduceOp):
            stmt.lines += self._partial_reduce(op)
            return stmt
        if isinstance(op, RowReduceOp):
            var = self.var[op.result] = self.namer.fresh(self.ir.name(op.result)[1:])
            stmt.lines += self._row_reduce(op, var)
            return stmt
        if isinstance(op, StoreQuantizedOp):
            stmt.lines += store_quantized_lines(self, op)
            return stmt
        if isinstance(op, ConstantOp):
            # a literal needs no variable: its uses splice it in
            self.var[op.result] = literal(op.value)
            return stmt
        if isinstance(op, MapOp):
            expr = self._map_expr(op)
        elif isinstance(op, ScaleOp):
            expr = f"{self.var[op.tile]} * {self.var[op.factor]}"
        elif isinstance(op, AccumulateOp):
            expr = f"{self.var[op.tile]} + {self.var[op.addend]}"
        else:
            raise CodegenError(f"epilogue op '{op.name}' has no Triton lowering")
        var = self.var[op.result] = self.namer.fresh(self.ir.name(op.result)[1:])
        stmt.lines.append(f"{var} = {expr}")
        return stmt

    def _store(self, op: StoreOp) -> list[str]:
        index = op.index.value.data
        value = self.var[op.value]
        lines = []
        column = isinstance(op.value.type, ColType)
        for out in self._outputs_of(index):
            if column:  # one value per row, [..., M, 1]: the program holds whole rows
                out_type = element_type(self.gemm.results[index])
                stored = store_expr(value, out.ptr, out_type, self.helpers)
                if out.offset is not None:  # through views: the layout at column 0
                    offset = out.offset.subs(_index("n"), 0)
                    names = {_index(d): d for d in self.batch_dims} | {_index("m"): "offs_m"}
                    text = triton_expr(offset, names)
                    if _index("m") in offset.free_symbols:
                        ptrs = f"{out.ptr} + ({text})[:, None]"
                    else:  # one row: a [BLOCK_M, 1] block of its address
                        at = out.ptr if offset == 0 else f"{out.ptr} + {text}"
                        ptrs = f"tl.broadcast_to({at}, (BLOCK_M, 1))"
                    lines += [
                        f"# stored through layout {out.address.comment}, column 0",
                        f"{out.ptrs} = {ptrs}",
                        f"tl.store({out.ptrs}, {stored}, mask=mask_m[:, None])",
                    ]
                    continue
                batch = _batch_offset(self.batch_dims, out.strides)
                lines += [
                    f"{out.ptrs} = {out.ptr}{batch} + offs_m[:, None] * {out.strides['m']}",
                    f"tl.store({out.ptrs}, {stored}, mask=mask_m[:, None])",
                ]
                continue
            if out.address is not None:
                lines += [
                    f"# stored through layout {out.address.comment}",
                    f"{out.ptrs} = {out.address.pointer(out.ptr, None, None, TILE)}",
                ]
            else:
                batch = _batch_offset(self.batch_dims, out.strides)
                lines.append(
                    f"{out.ptrs} = {out.ptr}{batch} + offs_m[:, None] * {out.strides['m']}"
                    f" + offs_n[None, :] * {out.strides['n']}"
                )
            out_type = element_type(self.gemm.results[index])
            stored = store_expr(value, out.ptr, out_type, self.helpers)
            lines.append(f"tl.store({out.ptrs}, {stored}, mask=mask)")
        return lines or [f"pass  # result {index} is not a result of the kernel"]

    def _outputs_of(self, index: int) -> list[_Output]:
        """The kernel results that result `index` of this generator's gemm is stored to."""
        return [o for o in self.outputs if o.index == index and o.gemm is self.gemm]

    def _row_reduce(self, op: RowReduceOp, var: str) -> list[str]:
        """A whole row's statistic as a [BLOCK_M, 1] column in `var`: the program holds
        every column (BLOCK_N >= N; elements past N hold the kind's identity). A GPU
        reduces across lanes with tl.sum/tl.max; the interpreter halves the row as the
        partials do (`_tree`: it cannot call triton.language's reductions here)."""
        x = self.var[op.tile]
        kind = op.kind.data
        value = f"{x} * {x}" if kind == "sumsq" else x
        if kind == "max":
            return self._reduce_row(var, "max", f'tl.where(mask, {value}, float("-inf"))')
        if kind == "logsumexp":
            # max-shifted; a row past M (all -inf) gives -inf, not NaN
            top = self.namer.fresh(f"{var}_max")
            lines = self._reduce_row(top, "max", f'tl.where(mask, {value}, float("-inf"))')
            lines.append(f'{top} = tl.where({top} == float("-inf"), 0.0, {top})')
            shifted = f"tl.where(mask, tl.exp({value} - {top}), 0.0)"
            lines += self._reduce_row(var, "+", shifted)
            lines.append(f"{var} = {top} + tl.log({var})")
            return lines
        return self._reduce_row(var, "+", f"tl.where(mask, {value}, 0.0)")

    def _reduce_row(self, var: str, combine: str, masked: str) -> list[str]:
        if self.target is not None:
            # a GPU reduces across its lanes with shuffles (the halving costs registers);
            # a module-local combine, as tl.sum itself may be an interpreted function here
            fn = "_max" if combine == "max" else "_sum"
            self.combines.add(fn)
            return [f"{var} = tl.reduce({masked}, 1, {fn})[:, None]"]
        lines = [f"{var} = tl.reshape({masked}, (BLOCK_M, 1, BLOCK_N))"]
        return lines + self._tree(var, combine, "BLOCK_M", "1", self.tile.block_n)

    def _partial_reduce(self, op: ReduceOp) -> list[str]:
        """epilogue.reduce: the tile as [BLOCK_M, BLOCK_N / columns, columns] groups,
        reduced over the last axis; program pid_n writes partials pid_n * (BLOCK_N /
        columns) onwards. Over rows, the same on the transposed tile: [BLOCK_N,
        BLOCK_M / rows, rows], program pid_m writing rows pid_m * (BLOCK_M / rows) on.
        Elements past the edge hold the kind's identity."""
        group = op.group_size
        lanes, across, block = (
            ("BLOCK_N", "BLOCK_M", self.tile.block_m)
            if op.over_rows
            else ("BLOCK_M", "BLOCK_N", self.tile.block_n)
        )
        if block % group:
            raise CodegenError(
                f'kernel.gemm "{self.kernel.kernel_name}": {across} {block} is not '
                f"a multiple of the {group} {op.axis.data} per partial"
            )
        kind = op.kind.data
        x = self.var[op.value]
        groups = f"{across} // {group}"
        name = self.namer.fresh(f"{self.ir.name(op.value)[1:]}_{kind}")
        identity = 'float("-inf")' if kind in ("max", "logsumexp") else "0.0"
        value = f"{x} * {x}" if kind == "sumsq" else x
        masked = f"tl.where(mask, {value}, {identity})"
        if op.over_rows:
            masked = f"tl.trans({masked})"
        lines = [f"{name} = tl.reshape({masked}, ({lanes}, {groups}, {group}))"]
        if kind in ("sum", "sumsq"):
            lines += self._tree(name, "+", lanes, groups, group)
        elif kind == "max":
            lines += self._tree(name, "max", lanes, groups, group)
        else:
            # max-shifted; a group with no column in range (all -inf) gives -inf, not NaN
            top = self.namer.fresh(f"{name}_max")
            lines.append(f"{top} = {name}")
            lines += self._tree(top, "max", lanes, groups, group)
            lines.append(f'{top} = tl.where({top} == float("-inf"), 0.0, {top})')
            lines.append(f"{name} = tl.exp({name} - {top}[:, :, None])")
            lines += self._tree(name, "+", lanes, groups, group)
            lines.append(f"{name} = {top} + tl.log({name})")
        index = op.index.value.data
        offs = self.namer.fresh(f"{name}_offs")
        pid = "pid_m" if op.over_rows else "pid_n"
        lines.append(f"{offs} = {pid} * ({groups}) + tl.arange(0, {groups})")
        shape = tensor_shape(self.gemm.outputs[index])
        partials = shape[-2] if op.over_rows else shape[-1]
        # the partials block is [lanes, groups]: its row and column index vectors
        partial = f"{offs}[None, :]"
        m, n = (partial, "offs_n[:, None]") if op.over_rows else ("offs_m[:, None]", partial)
        lane_mask = "mask_n" if op.over_rows else "mask_m"
        mask = f"{lane_mask}[:, None] & ({offs} < {partials})[None, :]"
        for out in self._outputs_of(index):
            if out.address is not None and out.offset is not None:
                ptrs = self._partials_through(out.ptr, out.offset, m, n, lanes, groups)
                lines += [f"# stored through layout {out.address.comment}", f"{out.ptrs} = {ptrs}"]
            else:
                batch = _batch_offset(self.batch_dims, out.strides)
                lines.append(
                    f"{out.ptrs} = {out.ptr}{batch} + {m} * {out.strides['m']}"
                    f" + {n} * {out.strides['n']}"
                )
            lines.append(f"tl.store({out.ptrs}, {name}, mask={mask})")
        return lines

    def _partials_through(
        self, ptr: str, offset: sympy.Expr, m: str, n: str, lanes: str, groups: str
    ) -> str:
        """The addresses of a [lanes, groups] partials block stored through views: their
        layout's `offset` at row index `m` and column index `n` (a transposed or
        reshaped result of partials, such as a column sum read as a row)."""
        names = {_index(d): d for d in self.batch_dims} | {_index("m"): m, _index("n"): n}
        text = triton_expr(offset, names) if offset != 0 else ""
        ptrs = f"{ptr} + {text}" if text else ptr
        if not {_index("m"), _index("n")} <= offset.free_symbols:
            # a size-1 dim has no offset term: broadcast to the block the mask covers
            ptrs = f"tl.broadcast_to({ptrs}, ({lanes}, {groups}))"
        return ptrs

    def _tree(self, var: str, combine: str, lanes: str, groups: str, group: int) -> list[str]:
        """Reduce `var`, [lanes, groups, group], over its last axis by halving it
        (adjacent pairs via tl.split), leaving [lanes, groups]. Elementwise steps:
        tl.reduce with a module-local combine runs element by element in the
        interpreter (its fast paths know only triton.language's own combines, which
        cannot run here: helpers.j2), and the halving is as valid on a GPU."""
        lines = []
        width = group
        while width > 1:
            width //= 2
            lo, hi = self.namer.fresh(f"{var}_lo"), self.namer.fresh(f"{var}_hi")
            lines.append(
                f"{lo}, {hi} = tl.split(tl.reshape({var}, ({lanes}, {groups}, {width}, 2)))"
            )
            both = f"tl.maximum({lo}, {hi})" if combine == "max" else f"{lo} + {hi}"
            lines.append(f"{var} = {both}")
        lines.append(f"{var} = tl.reshape({var}, ({lanes}, {groups}))")
        return lines

    def _map_expr(self, op: MapOp) -> str:
        operands = [self.var[v] for v in op.inputs]
        # the accumulators and epilogue results are float32 whatever their IR type;
        # loaded epilogue inputs and literals hold what the IR type can
        gemm = op.parent_op()
        assert isinstance(gemm, GemmOp)
        inputs = set(gemm.body.block.args[len(gemm.accumulators) :])
        widened = [
            None if v in inputs or isinstance(v.owner, ConstantOp) else element_type(v)
            for v in op.inputs
        ]
        if op.fn.data == "cast":
            source, target = element_type(op.inputs[0]), element_type(op.result)
            return cast_expr(operands[0], source, target, self.helpers, widened[0] is not None)
        return pointwise_expr(op.fn.data, operands, self.helpers, widened)


def kernel_gemms(kernel: GemmKernelOp) -> list[GemmOp]:
    """The kernel's epilogue.gemm (two for a chain: producer, then consumer), checked to
    be all that it holds besides operand work."""
    gemms: list[GemmOp] = []
    for op in kernel.body.block.ops:
        if isinstance(op, GemmOp):
            gemms.append(op)
        elif not isinstance(
            op,
            YieldOp
            | ViewOp
            | AssembleOp
            | DequantizeOp
            | QuantizeOp
            | PointwiseOp
            | GraphConstantOp
            | ConcatOp,
        ):
            raise CodegenError(
                f'kernel.gemm "{kernel.kernel_name}" may hold only graph.view, operand '
                "prologues (graph.pointwise, graph.constant), lowp quantization, "
                f"epilogue.gemm and kernel.yield, found '{op.name}'"
            )
    if not gemms:
        raise CodegenError(f'kernel.gemm "{kernel.kernel_name}" holds no epilogue.gemm')
    if len(gemms) > 2:
        raise CodegenError(f'kernel.gemm "{kernel.kernel_name}" chains {len(gemms)} GEMMs')
    return gemms
