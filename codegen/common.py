"""Pieces shared by the GEMM and loop generators: names, IR comments, types, templates."""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import jinja2
from xdsl.dialects.builtin import (
    AnyFloat,
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    Signedness,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.printer import Printer

from coda.dialects.epilogue import StoreOp
from coda.dialects.kernel import KernelOp
from coda.dialects.pointwise_fns import POINTWISE_FNS


class CodegenError(ValueError):
    """The kernel op is outside what the Triton generator handles."""


# Names every generated module uses at top level or in `launch`; SSA names avoid them.
MODULE_NAMES = frozenset({"triton", "tl", "torch", "launch", "grid", "S", "X", "R"})


@dataclass
class Stmt:
    """Generated lines under the IR op they came from (the comment)."""

    comment: str
    lines: list[str] = field(default_factory=list)


class Namer:
    """Hands out unique Python identifiers for one generated module."""

    def __init__(self, reserved: set[str] | frozenset[str]) -> None:
        self._used: set[str] = set(reserved) | MODULE_NAMES

    def fresh(self, base: str) -> str:
        ident = re.sub(r"\W", "_", base)
        # '_' starts module-private helpers (_sum, _sigmoid): SSA names never do
        if not ident or ident[0].isdigit() or ident[0] == "_":
            ident = f"v{ident}"
        if keyword.iskeyword(ident) or keyword.issoftkeyword(ident):
            ident += "_"
        candidate, n = ident, 1
        while candidate in self._used:
            candidate, n = f"{ident}_{n}", n + 1
        self._used.add(candidate)
        return candidate


class IrText:
    """SSA names and one-line op texts, exactly as `print(kernel)` spells them."""

    def __init__(self, kernel: KernelOp) -> None:
        self._printer = Printer(stream=StringIO())
        # Printing the whole op once fixes every value's name for the later look-ups.
        self._printer.print_op(kernel)

    def name(self, value: SSAValue) -> str:
        """`%name` of a value."""
        self._printer.stream = StringIO()
        return "%" + self._printer.print_ssa_value(value)

    def names(self, values: list[SSAValue] | tuple[SSAValue, ...]) -> str:
        return ", ".join(self.name(v) for v in values)

    def op(self, op: Operation) -> str:
        """The op without its type signature, e.g. `%1 = epilogue.map "gelu"(%0)`."""
        if isinstance(op, StoreOp):
            return f"epilogue.store {self.name(op.value)} -> result {op.index.value.data}"
        self._printer.stream = StringIO()
        self._printer.print_op(op)
        text = self._printer.stream.getvalue()
        return text.split(" : ", 1)[0].strip()


def element_type(value: SSAValue) -> Attribute:
    return value.type.element_type


def is_float(elem: Attribute) -> bool:
    return isinstance(elem, AnyFloat)


def compute_type(elem: Attribute) -> str:
    """The Triton type a value of `elem` has inside a kernel.

    Float math runs in float32 (float64 stays float64): loads upcast, stores convert back.
    """
    if isinstance(elem, Float64Type):
        return "tl.float64"
    if is_float(elem):
        return "tl.float32"
    if isinstance(elem, IntegerType):
        width = elem.width.data
        if width == 1:
            return "tl.int1"
        unsigned = elem.signedness.data == Signedness.UNSIGNED
        return f"tl.{'u' if unsigned else ''}int{width}"
    raise CodegenError(f"no Triton type for element type {elem}")


def load_conversion(elem: Attribute) -> str:
    """Suffix that turns a loaded `elem` into its compute type ('' when it already is)."""
    if is_float(elem) and not isinstance(elem, Float32Type | Float64Type):
        return f".to({compute_type(elem)})"
    return ""


def cast_expr(
    var: str, source: Attribute, target: Attribute, helpers: set[str], computed: bool
) -> str:
    """`graph/epilogue "cast"`: only a change of compute type (float/int/bool) emits code;
    narrowing to f16/bf16 happens at the store. A `computed` narrow float (held in float32
    by the kernel, not loaded) is rounded to its type first, whatever the target: the
    cast reads the narrow value, as any kernel that stored and reloaded it would (x
    upcast for a norm's statistics, and the statistics saved narrow for the backward,
    must agree: x - mean of a constant row is 0 only if both saw the same x)."""
    if computed and isinstance(source, BFloat16Type | Float16Type) and source != target:
        var = rounded_expr(var, source, helpers)
    if compute_type(source) == compute_type(target):
        return var
    return f"{var}.to({compute_type(target)})"


_TL_CALL = re.compile(r"\btl\.(\w+)\(")

# Module-local versions of the triton.language functions that are themselves @triton.jit
# helpers (see pointwise_expr): parameter, body (as in triton/language/standard.py).
JIT_HELPERS: dict[str, tuple[str, str]] = {
    "sigmoid": ("x", "1 / (1 + tl.exp(-x))"),
    # float32 -> the nearest bfloat16 (ties to even), built from the bits: Triton's
    # interpreter truncates float32 -> bfloat16 and mangles subnormals (a bias GPUs do
    # not have). NaN stays NaN (quiet bit set: the carry would reach the sign).
    "round_bf16": (
        "x",
        "tl.where(x != x, (x.to(tl.uint32, bitcast=True) >> 16) | 0x40,"
        " (x.to(tl.uint32, bitcast=True) + 0x7FFF"
        " + ((x.to(tl.uint32, bitcast=True) >> 16) & 1)) >> 16)"
        ".to(tl.uint16).to(tl.bfloat16, bitcast=True)",
    ),
}


def store_expr(var: str, ptr: str, target: Attribute, helpers: set[str]) -> str:
    """`var` (compute type) converted for a store into `ptr`, of element type `target`:
    narrowing to bfloat16 rounds to nearest even on every backend."""
    if isinstance(target, BFloat16Type):
        helpers.add("round_bf16")
        var = f"_round_bf16({var})"
    return f"{var}.to({ptr}.dtype.element_ty)"


def rounded_expr(var: str, elem: Attribute, helpers: set[str]) -> str:
    """`var` (compute type) rounded to the precision of `elem`, still in the compute type:
    the value a store into an `elem` tensor and a reload would give."""
    if isinstance(elem, BFloat16Type):
        helpers.add("round_bf16")
        return f"_round_bf16({var}).to(tl.float32)"
    if isinstance(elem, Float16Type):
        return f"{var}.to(tl.float16).to(tl.float32)"
    return var


def _is_jit_helper(name: str) -> bool:
    """Is `tl.<name>` a @triton.jit function of triton.language rather than a builtin?"""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    return isinstance(getattr(tl, name, None), JITFunction | InterpretedFunction)


def pointwise_expr(
    fn: str,
    operands: list[str],
    helpers: set[str],
    widened: Sequence[Attribute | None] = (),
) -> str:
    """The registry's Triton expression for `fn` applied to `operands`.

    `widened[i]` is operand i's IR element type where the kernel holds it in a wider
    compute type than that (a bf16 value computed in float32 and not stored), else None.
    Kernels skip the rounding to bf16/f16 between ops, which only perturbs arithmetic
    slightly, but a comparison is discontinuous: `x * w == amax(x * w)` with the amax
    stored as bf16 holds for no element when x * w stays float32. So the operands `fn`
    compares are rounded to their IR type first, as the IR (and eager) says they are.

    Calls of triton.language's own @jit helpers (tl.sigmoid) go to module-local copies,
    whose names are added to `helpers`. The originals were decorated when triton was
    imported: when coda's runtime switches the interpreter on only while it imports a
    kernel module, they stay compiled-mode functions that an interpreted kernel cannot
    call. (Re-decorating `tl.sigmoid.fn` would run, but the interpreter then patches
    `triton.language.core` for good, which breaks later GPU compiles in the process.)
    """
    entry = POINTWISE_FNS.get(fn)
    if entry is None:
        raise CodegenError(f'unknown pointwise function "{fn}"')

    def local(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _is_jit_helper(name):
            return match.group(0)
        if name not in JIT_HELPERS:
            raise CodegenError(
                f'"{fn}" calls tl.{name}, a @triton.jit helper of triton.language with no '
                "module-local version in coda.codegen.common.JIT_HELPERS"
            )
        helpers.add(name)
        return f"_{name}("

    operands = list(operands)
    for i in entry.compared():
        elem = widened[i] if i < len(widened) else None
        if elem is not None:
            operands[i] = rounded_expr(operands[i], elem, helpers)
    return _TL_CALL.sub(local, entry.triton.format(*operands))


def literal(attr: FloatAttr | IntegerAttr) -> str:
    """A Python literal Triton accepts for a constant attribute."""
    value = attr.value.data
    if isinstance(attr, IntegerAttr):
        elem = attr.type
        if isinstance(elem, IntegerType) and elem.width.data == 1:
            return "True" if value else "False"
        return str(int(value))
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return f'float("{value}")'
    return repr(value)


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


def render(template: str, **slots: object) -> str:
    return _TEMPLATES.get_template(template).render(**slots)
