"""`kernel.gemm` -> Triton: a tiled GEMM mainloop, then the epilogue program on each tile."""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type
from xdsl.ir import Attribute, BlockArgument, SSAValue

from coda.codegen.common import (
    CodegenError,
    IrText,
    Namer,
    cast_expr,
    compute_type,
    element_type,
    literal,
    load_conversion,
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
from coda.dialects.pointwise_fns import POINTWISE_FNS

# Locals of the template; SSA-derived names must not shadow them.
_TEMPLATE_LOCALS = frozenset(
    {
        "M", "N", "K", "B", "BLOCK_M", "BLOCK_N", "BLOCK_K", "UPCAST_OPERANDS",
        "INPUT_PRECISION", "pid_m", "pid_n", "pid_b", "offs_m", "offs_n", "offs_k",
        "mask_m", "mask_n", "mask_k", "mask", "acc", "k", "a_tile", "b_tile", "a_ptrs",
        "b_ptrs",
        "stride_ab", "stride_am", "stride_ak", "stride_bb", "stride_bk", "stride_bn",
    }
)  # fmt: skip

# Dot operand types GPUs multiply natively; anything else is upcast to float32 first.
_NATIVE_DOT_TYPES: dict[type[Attribute], str] = {Float16Type: "float16", BFloat16Type: "bfloat16"}


@dataclass
class _Operand:
    """One mainloop operand (lhs or rhs) as the template needs it."""

    name: str  # IR name, for comments
    tensor: str  # launch parameter
    ptr: str  # kernel parameter
    batch: str  # ' + pid_b * stride' or ''
    stride_row: str
    stride_col: str
    strides_var: str
    upcast: str  # load suffix: '.to(tl.float32)' or ''


@dataclass
class _Input:
    """One epilogue input: a tile, row, column or scalar loaded once per output tile."""

    tensor: str
    strides_var: str


@dataclass
class _Stmt:
    comment: str
    lines: list[str] = field(default_factory=list)


def generate_gemm(kernel: GemmKernelOp) -> str:
    return _GemmGenerator(kernel).source()


class _GemmGenerator:
    def __init__(self, kernel: GemmKernelOp) -> None:
        self.kernel = kernel
        self.ir = IrText(kernel)
        self.namer = Namer(_TEMPLATE_LOCALS)
        self.gemm = _the_gemm(kernel)
        self.batched = len(self.gemm.out_shape) == 3
        self.fn = self.namer.fresh(kernel.kernel_name)
        block = kernel.body.block
        # launch parameters and kernel pointers: kernel operands, then kernel results
        self.tensor_of: dict[SSAValue, str] = {}
        self.ptr_of: dict[SSAValue, str] = {}
        for arg in block.args:
            self.tensor_of[arg] = self.namer.fresh(self.ir.name(arg)[1:])
            self.ptr_of[arg] = self.namer.fresh(f"{self.tensor_of[arg]}_ptr")
        self.outputs = self._outputs(kernel.terminator)
        if not self.outputs:
            raise CodegenError(f'kernel.gemm "{kernel.kernel_name}" has no results')
        self.var: dict[SSAValue, str] = {}  # epilogue value -> Python expression

    def _outputs(self, yield_op: YieldOp) -> list[tuple[int, str, str]]:
        """(gemm result index, launch tensor, kernel pointer) per kernel result."""
        outputs = []
        for k, value in enumerate(yield_op.values):
            if not (isinstance(value.owner, GemmOp) and value.owner is self.gemm):
                raise CodegenError(
                    f"kernel.gemm \"{self.kernel.kernel_name}\" yields {self.ir.name(value)}, "
                    "which is not a result of its epilogue.gemm"
                )
            tensor = self.namer.fresh(f"out{k}")
            outputs.append((value.index, tensor, self.namer.fresh(f"{tensor}_ptr")))
        return outputs

    def _block_arg(self, value: SSAValue, role: str) -> BlockArgument:
        if not (isinstance(value, BlockArgument) and value.block is self.kernel.body.block):
            raise CodegenError(
                f"epilogue.gemm {role} {self.ir.name(value)} must be an operand of the "
                f"kernel.gemm \"{self.kernel.kernel_name}\""
            )
        return value

    def _mainloop_operand(self, value: SSAValue, role: str) -> _Operand:
        arg = self._block_arg(value, role)
        prefix, row, col = ("a", "m", "k") if role == "lhs" else ("b", "k", "n")
        tensor = self.tensor_of[arg]
        elem = element_type(arg)
        return _Operand(
            name=self.ir.name(arg),
            tensor=tensor,
            ptr=self.ptr_of[arg],
            batch=f" + pid_b * stride_{prefix}b" if self.batched else "",
            stride_row=f"stride_{prefix}{row}",
            stride_col=f"stride_{prefix}{col}",
            strides_var=self.namer.fresh(f"{tensor}_strides"),
            upcast="" if self._native_dot() else _to_f32(elem),
        )

    def _native_dot(self) -> str:
        """'float16'/'bfloat16' when both operands have that type, else '' (float32 dot)."""
        lhs, rhs = element_type(self.gemm.lhs), element_type(self.gemm.rhs)
        if type(lhs) is type(rhs):
            return _NATIVE_DOT_TYPES.get(type(lhs), "")
        return ""

    def source(self) -> str:
        gemm = self.gemm
        lhs = self._mainloop_operand(gemm.lhs, "lhs")
        rhs = self._mainloop_operand(gemm.rhs, "rhs")
        args = gemm.body.block.args
        self.var[args[0]] = "acc"
        stride_params = [
            ", ".join(
                (["stride_ab"] if self.batched else []) + ["stride_am", "stride_ak"]
            ),
            ", ".join((["stride_bb"] if self.batched else []) + ["stride_bk", "stride_bn"]),
        ]
        stride_args = [f"*{lhs.strides_var}", f"*{rhs.strides_var}"]
        inputs: list[_Input] = []
        epilogue: list[_Stmt] = []
        for i, (value, arg) in enumerate(zip(gemm.inputs, args[1:], strict=True)):
            stmt, params, arg_exprs, inp = self._load_input(i, value, arg)
            epilogue.append(stmt)
            inputs.append(inp)
            if params:
                stride_params.append(", ".join(params))
                stride_args.append(arg_exprs)
        for op in gemm.body.block.ops:
            epilogue.append(self._epilogue_op(op))
        for _, tensor, _ in self.outputs:
            dims = (["b"] if self.batched else []) + ["m", "n"]
            stride_params.append(", ".join(f"stride_{tensor}_{d}" for d in dims))
            stride_args.append(f"*{tensor}.stride()")

        native = self._native_dot()
        constexprs = ["UPCAST_OPERANDS"] if native else ["INPUT_PRECISION"]
        constexpr_args = (
            [("UPCAST_OPERANDS", f'{lhs.tensor}.device.type == "cpu"')]
            if native
            else [("INPUT_PRECISION", '"tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"')]
        )
        tensors = [self.tensor_of[a] for a in self.kernel.body.block.args]
        tensors += [tensor for _, tensor, _ in self.outputs]
        pointers = [self.ptr_of[a] for a in self.kernel.body.block.args]
        pointers += [ptr for _, _, ptr in self.outputs]
        return render(
            "gemm.py.j2",
            kernel_name=self.kernel.kernel_name,
            gemm_text=self._gemm_text(),
            fn=self.fn,
            pointers=pointers,
            tensors=tensors,
            stride_params=stride_params,
            stride_args=stride_args,
            constexprs=constexprs,
            constexpr_args=constexpr_args,
            batched=self.batched,
            lhs=lhs,
            rhs=rhs,
            native_dot=native,
            acc_name=self.ir.name(args[0]),
            epilogue=epilogue,
            inputs=inputs,
            out_tensor=self.outputs[0][1],
        )

    def _gemm_text(self) -> str:
        gemm = self.gemm
        text = f"{self.ir.names(gemm.outputs)} = epilogue.gemm {self.ir.names([gemm.lhs, gemm.rhs])}"
        if gemm.inputs:
            text += f" inputs({self.ir.names(gemm.inputs)})"
        return text

    def _load_input(
        self, index: int, value: SSAValue, arg: BlockArgument
    ) -> tuple[_Stmt, list[str], str, _Input]:
        """Load epilogue input `index` in the shape its kind broadcasts with."""
        source = self._block_arg(value, f"input {index}")
        kind = arg.type.kind if isinstance(arg.type, TileValueType) else "?"
        var = self.namer.fresh(self.ir.name(arg)[1:])
        self.var[arg] = var
        ptr, tensor = self.ptr_of[source], self.tensor_of[source]
        strides_var = self.namer.fresh(f"{var}_strides")
        # rows, columns and scalars never vary along the batch (classify_input): only a tile
        # has a batch stride
        batch = f" + pid_b * stride_{var}_b" if self.batched else ""
        convert = load_conversion(element_type(arg))
        stmt = _Stmt(f"{self.ir.name(arg)}: !epilogue.{kind} <- {self.ir.name(source)}")
        if kind == "tile":
            stmt.lines += [
                f"{var}_ptrs = {ptr}{batch} + offs_m[:, None] * stride_{var}_m"
                f" + offs_n[None, :] * stride_{var}_n",
                f"{var} = tl.load({var}_ptrs, mask=mask){convert}",
            ]
            dims = (["b"] if self.batched else []) + ["m", "n"]
            params, args = [f"stride_{var}_{d}" for d in dims], f"*{strides_var}"
        elif kind == "row":
            stmt.lines.append(
                f"{var} = tl.load({ptr} + offs_n * stride_{var}_n, mask=mask_n){convert}[None, :]"
            )
            params, args = [f"stride_{var}_n"], f"{strides_var}[-1]"
        elif kind == "col":
            stmt.lines.append(
                f"{var} = tl.load({ptr} + offs_m * stride_{var}_m, mask=mask_m){convert}[:, None]"
            )
            params, args = [f"stride_{var}_m"], f"{strides_var}[-2]"
        elif kind == "scalar":
            stmt.lines.append(f"{var} = tl.load({ptr}){convert}")
            params, args = [], ""
        else:
            raise CodegenError(f"epilogue input {self.ir.name(arg)} has non-epilogue type {arg.type}")
        return stmt, params, args, _Input(tensor=tensor, strides_var=strides_var)

    def _epilogue_op(self, op: object) -> _Stmt:
        stmt = _Stmt(self.ir.op(op))  # type: ignore[arg-type]
        if isinstance(op, StoreOp):
            index = op.index.value.data
            value = self.var[op.value]
            targets = [(t, p) for j, t, p in self.outputs if j == index]
            if not targets:
                stmt.lines.append(f"pass  # result {index} is not yielded by the kernel")
            for tensor, ptr in targets:
                batch = f" + pid_b * stride_{tensor}_b" if self.batched else ""
                stmt.lines += [
                    f"{tensor}_ptrs = {ptr}{batch} + offs_m[:, None] * stride_{tensor}_m"
                    f" + offs_n[None, :] * stride_{tensor}_n",
                    f"tl.store({tensor}_ptrs, {value}.to({ptr}.dtype.element_ty), mask=mask)",
                ]
            return stmt
        if isinstance(op, MapOp):
            expr = self._map_expr(op)
        elif isinstance(op, ScaleOp):
            expr = f"{self.var[op.tile]} * {self.var[op.factor]}"
        elif isinstance(op, AccumulateOp):
            expr = f"{self.var[op.tile]} + {self.var[op.addend]}"
        elif isinstance(op, ConstantOp):
            # a literal needs no variable: uses splice it in
            self.var[op.result] = literal(op.value)
            return stmt
        else:
            raise CodegenError(
                f"epilogue op '{op.name}' is not supported by the Triton generator"  # type: ignore[attr-defined]
            )
        result = op.result
        var = self.namer.fresh(self.ir.name(result)[1:])
        self.var[result] = var
        stmt.lines.append(f"{var} = {expr}")
        return stmt

    def _map_expr(self, op: MapOp) -> str:
        fn = op.fn.data
        operands = [self.var[v] for v in op.inputs]
        if fn == "cast":
            return cast_expr(operands[0], element_type(op.inputs[0]), element_type(op.result))
        entry = POINTWISE_FNS.get(fn)
        if entry is None:
            raise CodegenError(f'epilogue.map has unknown function "{fn}"')
        return entry.triton.format(*operands)


def _to_f32(elem: Attribute) -> str:
    return "" if isinstance(elem, Float32Type) else ".to(tl.float32)"


def _the_gemm(kernel: GemmKernelOp) -> GemmOp:
    gemm: GemmOp | None = None
    for op in kernel.body.block.ops:
        if isinstance(op, GemmOp):
            gemm = op
        elif not isinstance(op, YieldOp):
            raise CodegenError(
                f"kernel.gemm \"{kernel.kernel_name}\" may hold only epilogue.gemm and "
                f"kernel.yield, found '{op.name}'"
            )
    if gemm is None:
        raise CodegenError(f"kernel.gemm \"{kernel.kernel_name}\" holds no epilogue.gemm")
    return gemm
