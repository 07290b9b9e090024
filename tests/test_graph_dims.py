"""Symbolic sizes (dialects/graph_dims.py): parsing without eval, the canonical form the
verifiers compare, binding a call's sizes, and solving them from its input shapes."""

from __future__ import annotations

import itertools

import pytest
import sympy
from xdsl.dialects.builtin import TensorType, f32

from coda.dialects.graph_dims import (
    SymbolicSizeError,
    bind_dim,
    bind_type,
    canonical,
    parse_dim,
    size_symbol,
    solve_sizes,
    symbolic_shape,
    symbolic_type,
)

s0, s1 = size_symbol("s0"), size_symbol("s1")


def test_equal_sizes_are_equal_expressions() -> None:
    assert parse_dim("2*(s0 + 1)") == parse_dim("2*s0 + 2") == 2 * s0 + 2
    assert parse_dim("(s0 + s1)**2") == parse_dim("s0**2 + 2*s0*s1 + s1**2")
    assert parse_dim("s0 - s0 + 7") == 7 and isinstance(parse_dim("3*4"), int)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s0 / 2", "size 's0 / 2' is not a polynomial in sizes (+, -, *, **)"),
        ("s0 // 2", "size 's0 // 2' is not a polynomial in sizes (+, -, *, **)"),
        ("s0 ** -1", "size 's0 ** -1' is not a polynomial in sizes (+, -, *, **)"),
        ("1.5 * s0", "size '1.5 * s0' is not a polynomial in sizes (+, -, *, **)"),
        ("s0.real", "size 's0.real' is not a polynomial in sizes (+, -, *, **)"),
        ("exec('1')", "size 'exec('1')' is not a polynomial in sizes (+, -, *, **)"),
        ("2 *", "size '2 *' does not parse"),
    ],
)
def test_anything_but_a_polynomial_is_refused(text: str, message: str) -> None:
    with pytest.raises(SymbolicSizeError) as err:
        parse_dim(text)
    assert str(err.value) == message


def test_torch_symbols_get_the_size_assumptions() -> None:
    # Dynamo's symbols may carry other assumptions: the canonical form re-makes them, so
    # a size from a trace equals the same size parsed from IR text
    traced = sympy.Symbol("s0", integer=True) * 2
    assert canonical(traced) == parse_dim("2*s0")
    with pytest.raises(SymbolicSizeError, match="not a polynomial"):
        canonical(sympy.floor(s0 / 2))


def test_binding_commutes_with_size_arithmetic() -> None:
    """The expanded form is a rewrite of the traced expression: it must give the same
    number for every binding (checked exactly, over a grid of sizes)."""
    traced = [(s0 + 1) * (s1 + 3), 2 * (s0 * s1 - s1) + s1**2, (2 * s0) * (3 * s1) * 4]
    for expr, (a, b) in itertools.product(traced, itertools.product(range(1, 9), repeat=2)):
        sizes = {"s0": a, "s1": b}
        assert bind_dim(canonical(expr), sizes) == int(expr.subs({s0: a, s1: b}))


def test_types_carry_their_sizes() -> None:
    ty = symbolic_type(f32, [2, 2 * s0, 32])
    assert str(ty) == 'tensor<2x?x32xf32, #graph.dims<"2*s0">>'
    assert symbolic_shape(ty) == (2, 2 * s0, 32)
    assert bind_type(ty, {"s0": 5}) == TensorType(f32, [2, 10, 32])
    assert symbolic_type(f32, [4, sympy.Integer(8)]) == TensorType(f32, [4, 8])


def test_binding_errors_name_the_size() -> None:
    with pytest.raises(SymbolicSizeError) as err:
        bind_dim(s0 + s1, {"s0": 3}, "%x")
    assert str(err.value) == "no value for size s1 (in %x)"
    with pytest.raises(SymbolicSizeError) as err:
        bind_dim(s0 - 4, {"s0": 3}, "%x")
    assert str(err.value) == "size s0 - 4 is -1 for s0=3 (in %x)"


def test_sizes_are_solved_from_a_call() -> None:
    shapes = [(2, s0, 32), (2 * s0, s1)]
    assert solve_sizes(shapes, [(2, 7, 32), (14, 3)]) == {"s0": 7, "s1": 3}
    with pytest.raises(SymbolicSizeError) as err:
        solve_sizes(shapes, [(2, 7, 32), (15, 3)])
    assert str(err.value) == "input of shape [15, 3] does not fit ['2*s0', 's1'] with s0=7, s1=3"
    with pytest.raises(SymbolicSizeError) as err:
        solve_sizes([(s0,), (s0,)], [(2,), (3,)])
    assert str(err.value) == "size s0 is both 2 and 3 in this call"
