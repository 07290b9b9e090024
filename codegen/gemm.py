"""`kernel.gemm` -> Triton: a tiled GEMM mainloop, then the epilogue program on each tile.

Grid: (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)[, prod(batch)]). Each program accumulates its
[BLOCK_M, BLOCK_N] tile in float32 over K, then runs the epilogue region op by op on it.
Operands are addressed through their strides (a transposed weight is just a view), and
`launch` expands batch-size-1 operands and broadcast epilogue inputs, giving them stride 0.

Any number of leading batch dims: grid axis 2 enumerates the output's batch dims
row-major, and the kernel splits `pid_b` into one index per dim (b0, b1, ...). Every
tensor adds `b0 * stride_b0 + b1 * stride_b1 + ...`, so operands whose batch dims cannot
be merged into one stride (a head split `[B,S,H*D] -> [B,H,S,D]`) are read in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue

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
)
from coda.dialects.epilogue import (
    AccumulateOp,
    ConstantOp,
    GemmOp,
    MapOp,
    ScaleOp,
    StoreOp,
    TileValueType,
)
from coda.dialects.kernel import GemmKernelOp, YieldOp

# Locals of the template; SSA-derived names must not shadow them. Per batch dim d the
# template also uses b{d}, B{d}, stride_ab{d} and stride_bb{d} (see _batch_locals).
_TEMPLATE_LOCALS = frozenset(
    {
        "M", "N", "K", "B", "BLOCK_M", "BLOCK_N", "BLOCK_K", "UPCAST_OPERANDS",
        "INPUT_PRECISION", "pid_m", "pid_n", "pid_b", "offs_m", "offs_n", "offs_k",
        "mask_m", "mask_n", "mask_k", "mask", "acc", "k", "a_tile", "b_tile", "a_ptrs",
        "b_ptrs", "stride_am", "stride_ak", "stride_bk", "stride_bn", "batch",
    }
)  # fmt: skip


def _batch_locals(rank: int) -> set[str]:
    """Template locals for the batch dims of a rank-`rank` output."""
    return {
        f"{prefix}{d}" for d in range(rank - 2) for prefix in ("b", "B", "stride_ab", "stride_bb")
    }


def _batch_offset(dims: list[str], strides: dict[str, str]) -> str:
    """' + b0 * stride_b0 + b1 * stride_b1 ...': the start of the batch of this program."""
    return "".join(f" + {d} * {strides[d]}" for d in dims)


# Operand types GPUs feed to tl.dot as they are; anything else is upcast to float32 first.
_NATIVE_DOT_TYPES: dict[type[Attribute], str] = {Float16Type: "float16", BFloat16Type: "bfloat16"}


@dataclass
class _Operand:
    """One mainloop operand (lhs or rhs)."""

    name: str  # IR name, for comments
    tensor: str  # launch parameter
    ptr: str  # kernel parameter
    batch: str  # ' + b0 * stride_ab0 + b1 * stride_ab1 ...' or ''
    stride_params: list[str]  # kernel parameters: batch strides, rows, columns
    stride_row: str
    stride_col: str
    strides_var: str  # launch local holding its strides
    upcast: str  # load suffix: '.to(tl.float32)' or ''


@dataclass
class _Input:
    """One epilogue input: a tile, row, column or scalar, loaded once per output tile."""

    tensor: str  # launch parameter it is read from
    strides_var: str  # launch local: its strides after expanding to the output shape
    load: Stmt
    stride_params: list[str] = field(default_factory=list)
    stride_args: str = ""  # launch expression for stride_params


@dataclass
class _Output:
    """One kernel result: written by the stores of gemm result `index`."""

    index: int
    tensor: str
    ptr: str
    ptrs: str  # kernel local: the tile's addresses
    strides: dict[str, str]  # 'b0', 'b1', ... /'m'/'n' -> kernel parameter


def generate_gemm(kernel: GemmKernelOp) -> str:
    return _GemmGenerator(kernel).source()


class _GemmGenerator:
    def __init__(self, kernel: GemmKernelOp) -> None:
        self.kernel = kernel
        self.ir = IrText(kernel)
        self.gemm = _the_gemm(kernel)
        rank = len(self.gemm.out_shape)
        self.namer = Namer(_TEMPLATE_LOCALS | _batch_locals(rank))
        self.batch_dims = [f"b{d}" for d in range(rank - 2)]  # indices into the batch dims
        self.fn = self.namer.fresh(kernel.kernel_name)
        # kernel operands: one launch parameter and one pointer each
        self.tensor_of: dict[SSAValue, str] = {}
        self.ptr_of: dict[SSAValue, str] = {}
        for arg in kernel.body.block.args:
            self.tensor_of[arg] = self.namer.fresh(self.ir.name(arg)[1:])
            self.ptr_of[arg] = self.namer.fresh(f"{self.tensor_of[arg]}_ptr")
        self.outputs = [self._output(k, v) for k, v in enumerate(kernel.terminator.values)]
        if not self.outputs:
            raise CodegenError(f'kernel.gemm "{kernel.kernel_name}" has no results')
        self.helpers: set[str] = set()  # triton.language @jit helpers the kernel calls
        self.var: dict[SSAValue, str] = {}  # epilogue value -> Python expression

    @property
    def _dims(self) -> list[str]:
        """Dims of the output: batch dims (if any), rows, columns."""
        return [*self.batch_dims, "m", "n"]

    def _output(self, k: int, value: SSAValue) -> _Output:
        if value.owner is not self.gemm:
            raise CodegenError(
                f'kernel.gemm "{self.kernel.kernel_name}" yields {self.ir.name(value)}, '
                "which is not a result of its epilogue.gemm"
            )
        assert isinstance(value.owner, GemmOp)
        index = list(self.gemm.outputs).index(value)
        tensor = self.namer.fresh(f"out{k}")
        return _Output(
            index=index,
            tensor=tensor,
            ptr=self.namer.fresh(f"{tensor}_ptr"),
            ptrs=self.namer.fresh(f"{tensor}_ptrs"),
            strides={d: self.namer.fresh(f"stride_{tensor}_{d}") for d in self._dims},
        )

    def _block_arg(self, value: SSAValue, role: str) -> BlockArgument:
        if not (isinstance(value, BlockArgument) and value.block is self.kernel.body.block):
            raise CodegenError(
                f"epilogue.gemm {role} {self.ir.name(value)} must be an operand of the "
                f'kernel.gemm "{self.kernel.kernel_name}"'
            )
        return value

    def _native_dot(self) -> str:
        """'float16'/'bfloat16' when both operands have that type, else '' (float32 dot)."""
        lhs, rhs = element_type(self.gemm.lhs), element_type(self.gemm.rhs)
        if type(lhs) is type(rhs):
            return _NATIVE_DOT_TYPES.get(type(lhs), "")
        return ""

    def _mainloop_operand(self, value: SSAValue, role: str) -> _Operand:
        arg = self._block_arg(value, role)
        prefix, row, col = ("a", "m", "k") if role == "lhs" else ("b", "k", "n")
        tensor = self.tensor_of[arg]
        f32 = isinstance(element_type(arg), Float32Type)
        strides = {d: f"stride_{prefix}{d}" for d in self.batch_dims}
        strides |= {"row": f"stride_{prefix}{row}", "col": f"stride_{prefix}{col}"}
        return _Operand(
            name=self.ir.name(arg),
            tensor=tensor,
            ptr=self.ptr_of[arg],
            batch=_batch_offset(self.batch_dims, strides),
            stride_params=list(strides.values()),
            stride_row=strides["row"],
            stride_col=strides["col"],
            strides_var=self.namer.fresh(f"{tensor}_strides"),
            upcast="" if self._native_dot() or f32 else ".to(tl.float32)",
        )

    def source(self) -> str:
        gemm = self.gemm
        lhs = self._mainloop_operand(gemm.lhs, "lhs")
        rhs = self._mainloop_operand(gemm.rhs, "rhs")
        args = gemm.body.block.args
        self.var[args[0]] = "acc"
        inputs = [
            self._input(i, value, arg)
            for i, (value, arg) in enumerate(zip(gemm.inputs, args[1:], strict=True))
        ]
        epilogue = [inp.load for inp in inputs]
        epilogue += [self._epilogue_op(op) for op in gemm.body.block.ops]

        stride_params = [", ".join(lhs.stride_params), ", ".join(rhs.stride_params)]
        stride_args = [f"*{lhs.strides_var}", f"*{rhs.strides_var}"]
        for inp in inputs:
            if inp.stride_params:
                stride_params.append(", ".join(inp.stride_params))
                stride_args.append(inp.stride_args)
        for out in self.outputs:
            stride_params.append(", ".join(out.strides.values()))
            stride_args.append(f"*{out.tensor}.stride()")

        native = self._native_dot()
        if native:
            # only the interpreter (CPU tensors) needs float32 operands
            constexpr_args = [("UPCAST_OPERANDS", f'{lhs.tensor}.device.type == "cpu"')]
        else:
            # float32 operands: full precision unless torch allows TF32 for matmuls
            precision = '"tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"'
            constexpr_args = [("INPUT_PRECISION", precision)]
        operands = self.kernel.body.block.args
        return render(
            "gemm.py.j2",
            kernel_name=self.kernel.kernel_name,
            gemm_text=self._gemm_text(),
            fn=self.fn,
            pointers=[self.ptr_of[a] for a in operands] + [o.ptr for o in self.outputs],
            tensors=[self.tensor_of[a] for a in operands] + [o.tensor for o in self.outputs],
            stride_params=stride_params,
            stride_args=stride_args,
            constexpr_args=constexpr_args,
            batch_dims=self.batch_dims,
            # sizes of batch dims 1, 2, ... (kernel parameters); dim 0's is never needed
            batch_sizes=[f"B{d}" for d in range(1, len(self.batch_dims))],
            lhs=lhs,
            rhs=rhs,
            native_dot=native,
            acc_name=self.ir.name(args[0]),
            epilogue=epilogue,
            inputs=inputs,
            helpers=[(n, *JIT_HELPERS[n]) for n in sorted(self.helpers)],
            combines=[],
            out_tensor=self.outputs[0].tensor,
        )

    def _gemm_text(self) -> str:
        gemm = self.gemm
        operands = self.ir.names([gemm.lhs, gemm.rhs])
        text = f"{self.ir.names(gemm.outputs)} = epilogue.gemm {operands}"
        if gemm.inputs:
            text += f" inputs({self.ir.names(gemm.inputs)})"
        return text

    def _input(self, index: int, value: SSAValue, arg: BlockArgument) -> _Input:
        """Epilogue input `index`, loaded in the shape its kind broadcasts with."""
        source = self._block_arg(value, f"input {index}")
        if not isinstance(arg.type, TileValueType):
            raise CodegenError(f"epilogue input {self.ir.name(arg)} has type {arg.type}")
        kind = arg.type.kind
        var = self.var[arg] = self.namer.fresh(self.ir.name(arg)[1:])
        ptr, tensor = self.ptr_of[source], self.tensor_of[source]
        inp = _Input(
            tensor=tensor,
            strides_var=self.namer.fresh(f"{var}_strides"),
            load=Stmt(f"{self.ir.name(arg)}: {arg.type} <- {self.ir.name(source)}"),
        )
        convert = load_conversion(element_type(arg))
        stride = {d: self.namer.fresh(f"stride_{var}_{d}") for d in self._dims}
        if kind == "tile":
            ptrs = self.namer.fresh(f"{var}_ptrs")
            batch = _batch_offset(self.batch_dims, stride)
            inp.load.lines += [
                f"{ptrs} = {ptr}{batch} + offs_m[:, None] * {stride['m']}"
                f" + offs_n[None, :] * {stride['n']}",
                f"{var} = tl.load({ptrs}, mask=mask){convert}",
            ]
            inp.stride_params = [stride[d] for d in self._dims]
            inp.stride_args = f"*{inp.strides_var}"
        # rows, columns and scalars never vary along any batch dim (classify_input), so
        # they need no batch strides
        elif kind == "row":
            inp.load.lines.append(
                f"{var} = tl.load({ptr} + offs_n * {stride['n']}, mask=mask_n){convert}[None, :]"
            )
            inp.stride_params, inp.stride_args = [stride["n"]], f"{inp.strides_var}[-1]"
        elif kind == "col":
            inp.load.lines.append(
                f"{var} = tl.load({ptr} + offs_m * {stride['m']}, mask=mask_m){convert}[:, None]"
            )
            inp.stride_params, inp.stride_args = [stride["m"]], f"{inp.strides_var}[-2]"
        else:
            inp.load.lines.append(f"{var} = tl.load({ptr}){convert}")
        return inp

    def _epilogue_op(self, op: Operation) -> Stmt:
        stmt = Stmt(self.ir.op(op))
        if isinstance(op, StoreOp):
            stmt.lines += self._store(op)
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
        for out in (o for o in self.outputs if o.index == index):
            batch = _batch_offset(self.batch_dims, out.strides)
            lines += [
                f"{out.ptrs} = {out.ptr}{batch} + offs_m[:, None] * {out.strides['m']}"
                f" + offs_n[None, :] * {out.strides['n']}",
                f"tl.store({out.ptrs}, {value}.to({out.ptr}.dtype.element_ty), mask=mask)",
            ]
        return lines or [f"pass  # result {index} is not a result of the kernel"]

    def _map_expr(self, op: MapOp) -> str:
        operands = [self.var[v] for v in op.inputs]
        if op.fn.data == "cast":
            return cast_expr(operands[0], element_type(op.inputs[0]), element_type(op.result))
        return pointwise_expr(op.fn.data, operands, self.helpers)


def _the_gemm(kernel: GemmKernelOp) -> GemmOp:
    gemm: GemmOp | None = None
    for op in kernel.body.block.ops:
        if isinstance(op, GemmOp):
            gemm = op
        elif not isinstance(op, YieldOp):
            raise CodegenError(
                f'kernel.gemm "{kernel.kernel_name}" may hold only epilogue.gemm and '
                f"kernel.yield, found '{op.name}'"
            )
    if gemm is None:
        raise CodegenError(f'kernel.gemm "{kernel.kernel_name}" holds no epilogue.gemm')
    return gemm
