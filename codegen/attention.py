"""`kernel.attention` -> Triton: FlashAttention-style tiled attention.

Forward (`attention.py.j2`): one program per BLOCK_M query rows of one (batch, head);
it walks the keys BLOCK_N at a time with an online softmax (running max and sum), so
the S x S scores never leave the chip, and stores the output and the rows' logsumexp.
Backward (`attention_backward.py.j2`): one kernel with two kinds of program. The first
B * Hkv * cdiv(Skv, BLOCK_N) programs own a block of keys and accumulate its dK and dV
over every query row of every query head of its group; the rest own a block of query
rows and accumulate dQ over the keys. Both recompute the probabilities from the saved
logsumexp and delta = rowsum(dO * O), so nothing S x S is stored and no atomics are
needed.

Every operand is addressed through the layout of its view chain over its runtime
strides (`coda.dialects.view_layout`): q/k/v sliced out of one projection and split
into heads, k/v broadcast over a GQA group (expand + reshape), a broadcast mask and dO
read from the output projection's gradient are all read in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import sympy
from xdsl.dialects.builtin import BFloat16Type, Float16Type
from xdsl.ir import BlockArgument, SSAValue

from coda.codegen.addressing import triton_expr
from coda.codegen.common import JIT_HELPERS, CodegenError, IrText, Namer, render, store_expr
from coda.codegen.targets import Target
from coda.codegen.tile_config import AttentionTile, attention_tiles
from coda.dialects.graph import AttentionBackwardOp, AttentionOp, tensor_shape
from coda.dialects.kernel import AttentionKernelOp
from coda.dialects.view_layout import ViewLayoutError, view_access

_INDEX = {n: sympy.Symbol(n, integer=True, nonnegative=True) for n in ("b", "h", "r", "c")}


@dataclass(frozen=True)
class Operand:
    """How the kernel addresses one tensor it reads or writes: `ptrs(rows, cols)` is a
    [len(rows), len(cols)] block of pointers (`transposed`: [len(cols), len(rows)])."""

    ptr: str
    base: str  # offset of this program's (batch, head), a scalar expression
    rows: str  # in terms of `{rows}`
    cols: str  # in terms of `{cols}`
    comment: str

    def ptrs(self, rows: str, cols: str, transposed: bool = False) -> str:
        # a size-1 dim is addressed at index 0: `0 * offs` keeps the pointers a block
        r = self.rows.format(rows=rows) if self.rows != "0" else f"0 * {rows}"
        c = self.cols.format(cols=cols) if self.cols != "0" else f"0 * {cols}"
        r_axis, c_axis = ("[None, :]", "[:, None]") if transposed else ("[:, None]", "[None, :]")
        base = f"{self.ptr} + {self.base}" if self.base != "0" else self.ptr
        return f"{base} + ({r}){r_axis} + ({c}){c_axis}"

    def vector(self, rows: str) -> str:
        """A vector of pointers along the rows (lse, delta: one value per query row)."""
        r = self.rows.format(rows=rows) if self.rows != "0" else f"0 * {rows}"
        base = f"{self.ptr} + {self.base}" if self.base != "0" else self.ptr
        return f"{base} + ({r})"


def _split(expr: sympy.Expr, head: str) -> tuple[str, str, str]:
    """An offset over (b, h, r, c) as (base, rows, cols) Triton expressions."""
    r, c = _INDEX["r"], _INDEX["c"]
    parts = {"base": sympy.Integer(0), "rows": sympy.Integer(0), "cols": sympy.Integer(0)}
    for term in sympy.Add.make_args(sympy.expand(expr)):
        free = term.free_symbols
        if r in free and c in free:
            raise CodegenError(f"attention operand offset {expr} mixes rows and columns")
        key = "rows" if r in free else "cols" if c in free else "base"
        parts[key] += term
    names = {_INDEX["b"]: "b", _INDEX["h"]: head, r: "{rows}", c: "{cols}"}
    return tuple(triton_expr(parts[k], names) for k in ("base", "rows", "cols"))  # type: ignore[return-value]


def _reductions(target: Target | None) -> dict[str, str]:
    """The combine functions of the row max and sum. For the interpreter, triton.language's
    own, passed and never called: the interpreter reduces with numpy only for those (a
    module-local combine runs once per element in Python, 30x slower). For a GPU target,
    module-local ones like every other kernel's: in a process that imported triton with
    TRITON_INTERPRET=1, triton.language's are interpreter functions a GPU compile rejects."""
    if target is None:
        return {
            "max_combine": "tl.standard._elementwise_max",
            "sum_combine": "tl.standard._sum_combine",
        }
    return {"max_combine": "_max", "sum_combine": "_sum"}


class _Generator:
    def __init__(
        self, kernel: AttentionKernelOp, target: Target | None, tile: AttentionTile | None
    ) -> None:
        self.kernel = kernel
        self.target = target
        block = kernel.body.block
        ops = [op for op in block.ops if isinstance(op, AttentionOp | AttentionBackwardOp)]
        self.op = ops[0]
        self.backward = isinstance(self.op, AttentionBackwardOp)
        self.tile = tile or attention_tiles(target, self.backward)[0]
        self.tile_for = target.name if target is not None else "Triton's interpreter"
        self.ir = IrText(kernel)
        self.namer = Namer(set())
        self.tensor_of: dict[SSAValue, str] = {}
        self.strides_of: dict[SSAValue, list[str]] = {}
        roles = self._roles()
        for arg in block.args:
            name = self.namer.fresh("".join(roles.get(arg, [])) or arg.name_hint or "arg")
            self.tensor_of[arg] = name
            self.strides_of[arg] = [
                self.namer.fresh(f"stride_{name}_{d}") for d in range(len(tensor_shape(arg)))
            ]
        self.outputs = [self.namer.fresh(n) for n in self._output_names()]
        self.fn = self.namer.fresh(kernel.kernel_name)

    def _roles(self) -> dict[SSAValue, list[str]]:
        """Kernel operand -> the attention operands it holds (through views): tensors are
        named after them, e.g. `qkv` for one projection's output read as q, k and v."""
        op = self.op
        names = ["q", "k", "v"]
        values = [op.query, op.key, op.value]
        if isinstance(op, AttentionBackwardOp):
            names, values = ["dout", *names, "out", "lse"], [op.grad_out, *values, op.out, op.lse]
        if op.mask is not None:
            names, values = [*names, "mask"], [*values, op.mask]
        if op.rotary is not None:
            names, values = [*names, "cos", "sin"], [*values, *op.rotary]
        roles: dict[SSAValue, list[str]] = {}
        for name, value in zip(names, values, strict=True):
            while not isinstance(value, BlockArgument):
                value = value.owner.operands[0]
            if name not in roles.setdefault(value, []):
                roles[value].append(name)
        return roles

    def _output_names(self) -> list[str]:
        return ["dq", "dk", "dv"] if self.backward else ["out", "lse"]

    def operand(self, value: SSAValue, head: str) -> Operand:
        """Address a read operand (a kernel argument or a view chain of one)."""
        block = self.kernel.body.block
        root = value
        while not isinstance(root, BlockArgument):
            root = root.owner.operands[0]  # views only: the verifier allows nothing else
        if root.block is not block:
            raise CodegenError(f"{self.ir.name(value)} is not an operand of the kernel")
        try:
            access = view_access(value, block, self.strides_of[root])
        except ViewLayoutError as error:
            raise CodegenError(f'kernel.attention "{self.kernel.kernel_name}": {error}') from None
        indices = [_INDEX[n] for n in ("b", "h", "r", "c")[: len(access.shape)]]
        base, rows, cols = _split(access.offset(indices), head)
        comment = self.ir.name(value)
        if value is not root:
            comment += f" = layout {access.describe()} of {self.ir.name(root)}"
        return Operand(f"{self.tensor_of[root]}_ptr", base, rows, cols, comment)

    def output(self, index: int, head: str) -> Operand:
        """A result: a contiguous buffer the runtime allocates."""
        value = self.op.results[index]
        shape = tensor_shape(value)
        strides = [prod(shape[d + 1 :]) for d in range(len(shape))]
        indices = [_INDEX[n] for n in ("b", "h", "r", "c")[: len(shape)]]
        offset = sum((i * s for i, s in zip(indices, strides, strict=True)), sympy.Integer(0))
        base, rows, cols = _split(offset, head)
        return Operand(f"{self.outputs[index]}_ptr", base, rows, cols, self.ir.name(value))

    def source(self) -> str:
        op = self.op
        b, hq, s, d = tensor_shape(op.query)
        _, hkv, skv, dv = tensor_shape(op.value)
        q_elem = op.query.type.element_type
        native = isinstance(q_elem, BFloat16Type | Float16Type)
        args = list(self.kernel.body.block.args)
        first = self.tensor_of[args[0]]
        if native:
            constexprs = [("UPCAST_OPERANDS", f'{first}.device.type == "cpu"')]
        else:
            precision = '"tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"'
            constexprs = [("INPUT_PRECISION", precision)]
        group = hq // hkv
        slots: dict[str, object] = dict(
            kernel_name=self.kernel.kernel_name,
            op_text=self._op_text(),
            fn=self.fn,
            tile=self.tile,
            tile_for=self.tile_for,
            tensors=[self.tensor_of[a] for a in args] + self.outputs,
            pointers=[f"{self.tensor_of[a]}_ptr" for a in args]
            + [f"{o}_ptr" for o in self.outputs],
            stride_params=[", ".join(self.strides_of[a]) for a in args if self.strides_of[a]],
            stride_args=[f"*{self.tensor_of[a]}.stride()" for a in args if self.strides_of[a]],
            constexpr_args=constexprs,
            native_dot=native,
            sizes=dict(B=b, H=hq, GROUP=group, S=s, S_KV=skv, D=d, DV=dv),
            # batch and sequence lengths are runtime arguments, so that one compiled
            # kernel serves every length (compiler/dynamic.py); head counts and head
            # dims shape the tiles and stay compile-time constants
            runtime_sizes=("B", "S", "S_KV"),
            block_d=max(16, 1 << (d - 1).bit_length()),
            block_dv=max(16, 1 << (dv - 1).bit_length()),
            scale=repr(float(op.scale_value)),
            causal=op.is_causal,
            shapes=tuple(tensor_shape(v) for v in (*args, *op.results)),
            combines=[] if self.target is None else ["_max", "_sum"],
            **_reductions(self.target),
            # GQA: query head h reads key/value head h // GROUP
            q=self.operand(op.query, "h"),
            k=self.operand(op.key, "hk"),
            v=self.operand(op.value, "hk"),
            mask=self.operand(op.mask, "h") if op.mask is not None else None,
            **self._rotary(d),
        )
        helpers: set[str] = set()
        if not self.backward:
            assert isinstance(op, AttentionOp)
            out = self.output(0, "h")
            store = store_expr("out", out.ptr, q_elem, helpers)
            slots |= dict(out=out, lse=self.output(1, "h"), out_store=store)
            return render("attention.py.j2", helpers=self._helpers(helpers), **slots)
        assert isinstance(op, AttentionBackwardOp)
        slots |= dict(
            do=self.operand(op.grad_out, "h"),
            o=self.operand(op.out, "h"),
            lse=self.operand(op.lse, "h"),
            dq=self.output(0, "h"),
            dk=self.output(1, "hk"),
            dv=self.output(2, "hk"),
            stores={g: store_expr(g, f"{g}_ptr", q_elem, helpers) for g in ("dq", "dk", "dv")},
        )
        return render("attention_backward.py.j2", helpers=self._helpers(helpers), **slots)

    def _rotary(self, head_dim: int) -> dict[str, object]:
        """The rotary tables, [B, 1, S, D]: one per (batch, position), for every head."""
        op = self.op
        if op.rotary is None:
            return {"rotary": False}
        if head_dim < 16 or head_dim & (head_dim - 1):
            raise CodegenError(
                f'kernel.attention "{self.kernel.kernel_name}": rotary embeddings swap the '
                f"halves of a head on chip, which needs a power-of-two head dim >= 16, "
                f"got {head_dim}"
            )
        cos, sin = op.rotary
        return {"rotary": True, "cos": self.operand(cos, "0"), "sin": self.operand(sin, "0")}

    @staticmethod
    def _helpers(names: set[str]) -> list[tuple[str, str, str]]:
        return [(n, *JIT_HELPERS[n]) for n in sorted(names)]

    def _op_text(self) -> str:
        return self.ir.op(self.op)


def generate_attention(
    kernel: AttentionKernelOp, target: Target | None = None, tile: AttentionTile | None = None
) -> str:
    source = _Generator(kernel, target, tile).source()
    # macros that emit nothing (no upcast for float32) leave indented empty lines
    return "\n".join(line.rstrip() for line in source.splitlines()) + "\n"


__all__ = ["generate_attention"]
