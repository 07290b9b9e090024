"""One Triton module for every size: the sizes a kernel's source varies in become
arguments of its `launch` and of its `@triton.jit` kernel.

A graph with symbolic sizes is still planned per concrete size (compiler/dynamic.py),
so each size yields a concrete kernel source in which sizes are integer literals
(tile masks, view strides such as `416 * b`, the `shapes` check, `M, N, K = 26, ...`).
Two sources that are equal except for integer literals (and the digits in comments
and docstrings) share a *skeleton*. The literals that differ between sources of one
skeleton are the size-dependent ones: the generic source turns each into a parameter,
`_dyn[i]` in `launch` and `_dyn{i}` in the kernel (a runtime argument, not a
`tl.constexpr`), and each call passes the values its own concrete source had.

Soundness does not rest on guessing which literals are sizes: for every call, the
generic source with that call's values substituted is token for token the concrete
source generated for that call. A literal that has not varied yet stays a literal;
when a later size changes it, the template widens (one more module, never a wrong
one). Sources whose code genuinely depends on the size (another tile count, another
plan) have another skeleton and get their own module. A template is refused (the
concrete source is used) when a varying literal sits where a runtime value is not
allowed or not enough: outside `launch`, the launched kernel and the `@triton.jit`
functions it calls (whose literals become parameters the kernel passes on: a chain's
producer, codegen/gemm_chain.py), as in module constants; in a `tl.constexpr` argument
of the launch; or in a block shape.
Triple-quoted strings are taken as documentation (generated code has no others);
other strings must match exactly.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

#: stands for a literal in a skeleton (never in generated source)
_HOLE = "\0"
_INT = re.compile(r"[0-9]+")
#: the names the generic source adds; a concrete source using them is left alone
_PARAM = "_dyn"
#: Triton functions whose arguments are block shapes or other compile-time constants
_SHAPE_FUNCTIONS = frozenset(
    {"arange", "full", "zeros", "reshape", "view", "broadcast_to", "static_range", "constexpr"}
)
_HEADER = (
    "# Size-generic (coda.codegen.size_generic): `_dyn` values are sizes, passed per call;\n"
    "# numbers in comments are those of the first size, `?` where they varied.\n"
)


@dataclass(frozen=True)
class Slot:
    start: int  # offset in the source
    end: int
    value: int
    code: bool  # an int literal in code (else digits in a comment or docstring)


@dataclass(frozen=True)
class GenericSource:
    """A size-generic module and the values its size parameters take for one call."""

    source: str
    values: tuple[int, ...]


@dataclass
class _Template:
    first: tuple[int, ...]
    varying: set[int] = field(default_factory=set)
    #: the comment digits shown as `?`, fixed at the first generic render: a comment
    #: that varies later must not make another module of the same code
    unknown_text: frozenset[int] | None = None
    #: the last render: its varying set, generic text (None: refused) and the slots whose
    #: values are the parameters, in order. The text depends on the template alone (the
    #: skeleton, `first`, `varying`, `unknown_text`), so a size that varies nothing new
    #: reuses it and only reads its own values
    rendered: tuple[frozenset[int], str | None, tuple[int, ...]] | None = None


#: what a literal can be inside of (strings, comments, names), and number literals; one
#: regex pass (the `tokenize` module takes ~10 ms for a kernel: too slow for every compile)
_TOKENS = re.compile(
    r"""
    (?P<doc>\"\"\"[\s\S]*?\"\"\"|\'\'\'[\s\S]*?\'\'\')
    | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<comment>\#[^\n]*)
    | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
    | (?P<num>(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?[jJ]?[A-Za-z_0-9.]*)
    """,
    re.VERBOSE,
)


def _slots(source: str) -> list[Slot]:
    slots: list[Slot] = []
    for m in _TOKENS.finditer(source):
        kind = m.lastgroup
        if kind == "num" and _INT.fullmatch(m.group()):
            slots.append(Slot(m.start(), m.end(), int(m.group()), True))
        elif kind in ("doc", "comment"):
            for d in _INT.finditer(m.group()):
                slots.append(
                    Slot(m.start() + d.start(), m.start() + d.end(), int(d.group()), False)
                )
    return slots


def _skeleton(source: str, slots: list[Slot]) -> str:
    parts, last = [], 0
    for slot in slots:
        parts += [source[last : slot.start], _HOLE]
        last = slot.end
    parts.append(source[last:])
    return "".join(parts)


class SizeGenericSources:
    """Templates of the kernel sources seen so far, by skeleton (process-wide: the
    sizes of a static first compile and of later symbolic ones meet here)."""

    def __init__(self) -> None:
        self._templates: dict[str, _Template] = {}

    def __len__(self) -> int:
        return len(self._templates)

    def record(self, source: str) -> None:
        """Remember a concrete source (e.g. of a graph compiled for one size only)."""
        self.generic(source, use=False)

    def generic(self, source: str, *, use: bool = True) -> GenericSource | None:
        """The generic form of `source` and its values, or None where the concrete
        source must be used (first of its skeleton, nothing varies, or refused)."""
        if _PARAM in source or _HOLE in source:
            return None
        slots = _slots(source)
        skeleton = _skeleton(source, slots)
        values = tuple(s.value for s in slots)
        template = self._templates.get(skeleton)
        if template is None:
            self._templates[skeleton] = _Template(values)
            return None
        template.varying |= {i for i, v in enumerate(values) if v != template.first[i]}
        if not use or not template.varying:
            return None
        if template.unknown_text is None:
            template.unknown_text = frozenset(i for i in template.varying if not slots[i].code)
        varying = frozenset(template.varying)
        if template.rendered is None or template.rendered[0] != varying:
            rendered = _render(source, slots, template)
            text, order = (rendered[0].source, rendered[1]) if rendered else (None, ())
            template.rendered = (varying, text, order)
        _, text, order = template.rendered
        return None if text is None else GenericSource(text, tuple(values[i] for i in order))


def _render(
    source: str, slots: list[Slot], template: _Template
) -> tuple[GenericSource, tuple[int, ...]] | None:
    """The generic source and, in parameter order, the slots whose values it takes."""
    tree = ast.parse(source)
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    launch = functions.get("launch")
    if launch is None:
        return None
    calls = [
        node
        for node in ast.walk(launch)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Subscript)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in functions
    ]
    if len(calls) != 1:
        return None
    call = calls[0]
    assert isinstance(call.func, ast.Subscript) and isinstance(call.func.value, ast.Name)
    kernel = functions[call.func.value.id]
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def span(node: ast.AST) -> tuple[int, int]:
        return (
            starts[node.lineno - 1] + node.col_offset,  # type: ignore[attr-defined]
            starts[node.end_lineno - 1] + node.end_col_offset,  # type: ignore[attr-defined]
        )

    constexprs = {
        a.arg
        for a in kernel.args.args
        if a.annotation is not None and "constexpr" in ast.unparse(a.annotation)
    }
    constexpr_spans = [span(k.value) for k in call.keywords if k.arg in constexprs]
    # @triton.jit functions the kernel calls (a chain's producer, gemm_chain.py): their
    # varying literals become parameters as well, which the kernel passes on
    helper_calls: dict[str, list[ast.Call]] = {}
    for node in ast.walk(kernel):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in functions
            and node.func.id not in (kernel.name, "launch")
        ):
            helper_calls.setdefault(node.func.id, []).append(node)
    helpers = {name: functions[name] for name in helper_calls}
    # inside the kernel and its helpers, block shapes and constexpr assignments need
    # compile-time values
    constexpr_spans += [
        span(node)
        for function in (kernel, *helpers.values())
        for node in ast.walk(function)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _SHAPE_FUNCTIONS
        )
        or (isinstance(node, ast.AnnAssign) and "constexpr" in ast.unparse(node.annotation))
    ]
    launch_span, kernel_span = span(launch), span(kernel)
    helper_spans = {name: span(f) for name, f in helpers.items()}
    edits: list[tuple[int, int, str]] = []  # (start, end, text), applied right to left
    values: list[int] = []
    order: list[int] = []  # the slot of each value
    in_kernel: list[int] = []  # the values the kernel (or a helper it calls) reads
    in_helper: dict[str, list[int]] = {name: [] for name in helpers}
    for i, slot in enumerate(slots):
        if not slot.code:
            shown = "?" if i in (template.unknown_text or ()) else str(template.first[i])
            edits.append((slot.start, slot.end, shown))
            continue
        if i not in template.varying:
            continue
        where = slot.start
        if any(a <= where < b for a, b in constexpr_spans):
            # a constexpr per size (Triton would compile a kernel per size) or a block
            # shape (a runtime value does not compile)
            return None
        if launch_span[0] <= where < launch_span[1]:
            text = f"{_PARAM}[{len(values)}]"
        elif kernel_span[0] <= where < kernel_span[1]:
            text = f"{_PARAM}{len(values)}"
            in_kernel.append(len(values))
        else:
            helper = next((n for n, (a, b) in helper_spans.items() if a <= where < b), None)
            if helper is None:
                return None  # module constants or a helper the kernel does not call
            text = f"{_PARAM}{len(values)}"
            in_kernel.append(len(values))
            in_helper[helper].append(len(values))
        edits.append((slot.start, slot.end, text))
        values.append(slot.value)
        order.append(i)
    for name, used in in_helper.items():
        if not used:
            continue
        helper = helpers[name]
        if not helper.args.args or helper.args.defaults or helper.args.vararg:
            return None
        passed = "".join(f", {_PARAM}{i}" for i in used)
        edits.append((span(helper.args.args[-1])[1],) * 2 + (passed,))  # type: ignore[arg-type]
        for helper_call in helper_calls[name]:
            if helper_call.keywords or not helper_call.args:
                return None  # positional arguments only: ours are
            edits.append((span(helper_call.args[-1])[1],) * 2 + (passed,))  # type: ignore[arg-type]
    params = "".join(f", {_PARAM}{i}" for i in in_kernel)
    args = "".join(f", {_PARAM}{i}={_PARAM}[{i}]" for i in in_kernel)
    if not kernel.args.args or not launch.args.args or not (call.args or call.keywords):
        return None
    if kernel.args.defaults or kernel.args.vararg or launch.args.vararg or launch.args.kwonlyargs:
        return None  # the added parameters would not be valid Python there
    edits.append((span(kernel.args.args[-1])[1],) * 2 + (params,))  # type: ignore[arg-type]
    edits.append((span(launch.args.args[-1])[1],) * 2 + (f", *, {_PARAM}: tuple[int, ...] = ()",))  # type: ignore[arg-type]
    last = max((*call.args, *call.keywords), key=lambda node: span(node)[1])
    edits.append((span(last)[1],) * 2 + (args,))  # type: ignore[arg-type]
    text = source
    edits.append((0, 0, _HEADER))
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + new + text[end:]
    return GenericSource(text, tuple(values)), tuple(order)


#: shared by every compile in the process
SIZE_GENERIC_SOURCES = SizeGenericSources()
