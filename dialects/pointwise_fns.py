"""The one registry of elementwise functions.

`graph.pointwise {fn}` and `epilogue.map {fn}` name an entry here. Each entry knows
its arity, its Triton expression (core `tl` math only, so it also runs under
Triton's interpreter) and its torch reference, so the importer, the verifiers, the
code generator and the reference interpreter all agree on one definition.

Triton expressions are `str.format` templates over operand names `{0}`, `{1}`, ...;
operands are always plain identifiers in generated code, so repeating one is safe.
Arithmetic happens in float32 inside kernels; `cast` converts at the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_SQRT2_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class PointwiseFn:
    name: str
    arity: int
    triton: str
    torch_ref: Callable[..., Any]
    #: the result is boolean (comparisons), whatever the operand types
    predicate: bool = False
    #: positions of the operands the Triton expression compares (a predicate compares
    #: all of them): a kernel rounds those to their IR element type first (see
    #: coda.codegen.common.pointwise_expr)
    compares: tuple[int, ...] = ()

    def compared(self) -> tuple[int, ...]:
        return tuple(range(self.arity)) if self.predicate else self.compares


def _tanh(x: str) -> str:
    # libdevice tanh does not run under the interpreter; this form is exact enough in f32.
    return f"(2.0 * tl.sigmoid(2.0 * {x}) - 1.0)"


def _torch() -> Any:
    import torch  # noqa: PLC0415 - keep `import coda.dialects` light for lowerc

    return torch


def _gelu_tanh_inner(x: str) -> str:
    return f"({_SQRT2_PI!r} * ({x} + 0.044715 * {x} * {x} * {x}))"


_FNS: tuple[PointwiseFn, ...] = (
    # arithmetic
    PointwiseFn("add", 2, "{0} + {1}", lambda a, b: a + b),
    PointwiseFn("sub", 2, "{0} - {1}", lambda a, b: a - b),
    PointwiseFn("mul", 2, "{0} * {1}", lambda a, b: a * b),
    PointwiseFn("div", 2, "{0} / {1}", lambda a, b: a / b),
    PointwiseFn("maximum", 2, "tl.maximum({0}, {1})", lambda a, b: _torch().maximum(a, b)),
    PointwiseFn("minimum", 2, "tl.minimum({0}, {1})", lambda a, b: _torch().minimum(a, b)),
    PointwiseFn("cube", 1, "{0} * {0} * {0}", lambda a: a * a * a),
    PointwiseFn("neg", 1, "-{0}", lambda a: -a),
    PointwiseFn("abs", 1, "tl.abs({0})", lambda a: a.abs()),
    PointwiseFn("reciprocal", 1, "1.0 / {0}", lambda a: a.reciprocal()),
    PointwiseFn("square", 1, "{0} * {0}", lambda a: a * a),
    # transcendental
    PointwiseFn("exp", 1, "tl.exp({0})", lambda a: a.exp()),
    PointwiseFn("log", 1, "tl.log({0})", lambda a: a.log()),
    PointwiseFn("sqrt", 1, "tl.sqrt({0})", lambda a: a.sqrt()),
    PointwiseFn("rsqrt", 1, "tl.rsqrt({0})", lambda a: a.rsqrt()),
    PointwiseFn("sin", 1, "tl.sin({0})", lambda a: a.sin()),
    PointwiseFn("cos", 1, "tl.cos({0})", lambda a: a.cos()),
    PointwiseFn("erf", 1, "tl.erf({0})", lambda a: a.erf()),
    PointwiseFn("sigmoid", 1, "tl.sigmoid({0})", lambda a: a.sigmoid()),
    PointwiseFn("tanh", 1, _tanh("{0}"), lambda a: a.tanh()),
    # activations
    PointwiseFn("relu", 1, "tl.maximum({0}, 0.0)", lambda a: a.relu()),
    PointwiseFn(
        "gelu",
        1,
        f"0.5 * {{0}} * (1.0 + tl.erf({{0}} * {_SQRT1_2!r}))",
        lambda a: _torch().nn.functional.gelu(a),
    ),
    PointwiseFn(
        "gelu_tanh",
        1,
        f"0.5 * {{0}} * (1.0 + {_tanh(_gelu_tanh_inner('{0}'))})",
        lambda a: _torch().nn.functional.gelu(a, approximate="tanh"),
    ),
    PointwiseFn("silu", 1, "{0} * tl.sigmoid({0})", lambda a: _torch().nn.functional.silu(a)),
    # activation gradients: f(dy, x) or f(dy, y) as aten defines them
    PointwiseFn(
        "gelu_backward",
        2,
        f"{{0}} * (0.5 * (1.0 + tl.erf({{1}} * {_SQRT1_2!r}))"
        f" + {{1}} * {_INV_SQRT_2PI!r} * tl.exp(-0.5 * {{1}} * {{1}}))",
        lambda dy, x: _torch().ops.aten.gelu_backward(dy, x),
    ),
    PointwiseFn(
        "gelu_tanh_backward",
        2,
        # d/dx 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3)
        f"{{0}} * (0.5 * (1.0 + {_tanh(_gelu_tanh_inner('{1}'))}) + 0.5 * {{1}}"
        f" * (1.0 - {_tanh(_gelu_tanh_inner('{1}'))} * {_tanh(_gelu_tanh_inner('{1}'))})"
        f" * {_SQRT2_PI!r} * (1.0 + 3.0 * 0.044715 * {{1}} * {{1}}))",
        lambda dy, x: _torch().ops.aten.gelu_backward(dy, x, approximate="tanh"),
    ),
    PointwiseFn(
        "silu_backward",
        2,
        "{0} * tl.sigmoid({1}) * (1.0 + {1} * (1.0 - tl.sigmoid({1})))",
        lambda dy, x: _torch().ops.aten.silu_backward(dy, x),
    ),
    PointwiseFn(
        "sigmoid_backward",
        2,
        "{0} * {1} * (1.0 - {1})",
        lambda dy, y: _torch().ops.aten.sigmoid_backward(dy, y),
    ),
    PointwiseFn(
        "tanh_backward",
        2,
        "{0} * (1.0 - {1} * {1})",
        lambda dy, y: _torch().ops.aten.tanh_backward(dy, y),
    ),
    PointwiseFn(
        "threshold_backward",
        3,
        "tl.where({1} <= {2}, 0.0, {0})",
        lambda dy, x, t: _torch().where(x <= t, _torch().zeros_like(dy), dy),
        compares=(1, 2),
    ),
    # comparisons and selection
    PointwiseFn("eq", 2, "{0} == {1}", lambda a, b: a == b, predicate=True),
    PointwiseFn("ne", 2, "{0} != {1}", lambda a, b: a != b, predicate=True),
    PointwiseFn("lt", 2, "{0} < {1}", lambda a, b: a < b, predicate=True),
    PointwiseFn("le", 2, "{0} <= {1}", lambda a, b: a <= b, predicate=True),
    PointwiseFn("gt", 2, "{0} > {1}", lambda a, b: a > b, predicate=True),
    PointwiseFn("ge", 2, "{0} >= {1}", lambda a, b: a >= b, predicate=True),
    PointwiseFn("where", 3, "tl.where({0}, {1}, {2})", lambda c, a, b: _torch().where(c, a, b)),
    # data movement: identity and dtype conversion (the target type is the result type)
    PointwiseFn("copy", 1, "{0}", lambda a: a.clone()),
    PointwiseFn("cast", 1, "{0}", lambda a: a),
)

POINTWISE_FNS: dict[str, PointwiseFn] = {fn.name: fn for fn in _FNS}


def lookup(name: str) -> PointwiseFn:
    """The registry entry for `name`; KeyError lists the known names."""
    try:
        return POINTWISE_FNS[name]
    except KeyError:
        known = ", ".join(sorted(POINTWISE_FNS))
        raise KeyError(f"unknown pointwise function '{name}' (known: {known})") from None
