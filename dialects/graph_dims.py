"""Symbolic sizes in the graph dialect: tensor dims that depend on a graph's inputs.

Dynamo traces a model called with varying sizes once, with symbolic sizes (`s0`,
`s1`, ...). coda imports that graph once: a dim that depends on a size is `?` in its
tensor type, and the type's encoding `#graph.dims<...>` holds the sympy expressions of
its `?` dims, in order:

    tensor<2x?x32xf32, #graph.dims<"s0">>      the activations [2, s0, 32]
    tensor<?x32xf32, #graph.dims<"2*s0">>      the same, flattened to tokens

An expression is an integer polynomial in positive integer symbols, kept expanded, so
equal sizes are equal expressions and the verifiers compare them structurally. It is
parsed from its text by a small `ast` walk, never `eval`: IR files are user input.

The graph stage is symbolic: its passes (passes.SYMBOLIC_PASSES) read dims with
`symbolic_shape` and build types with `symbolic_type`, and assume, as Dynamo's 0/1
specialization guarantees, that a symbol is at least 2. `bind-sizes`
(passes/bind_sizes.py) substitutes the sizes of a call before planning, so every later
pass sees static shapes; `graph.tensor_shape` refuses a symbolic type, so no planning
pass can mistake `?` for a size.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping, Sequence

import sympy
from xdsl.dialects.builtin import DYNAMIC_INDEX, ArrayAttr, NoneAttr, StringAttr, TensorType
from xdsl.ir import Attribute, ParametrizedAttribute, SSAValue
from xdsl.irdl import irdl_attr_definition
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

#: a tensor dim: an int, or a sympy polynomial in size symbols (symbolic types only)
Dim = int | sympy.Expr


class SymbolicSizeError(ValueError):
    """A symbolic size where only a static one will do, or a size that does not parse."""


def size_symbol(name: str) -> sympy.Symbol:
    """The symbol of a size: positive and integer, as Dynamo's are."""
    return sympy.Symbol(name, integer=True, positive=True)


def canonical(expr: Dim | sympy.Basic) -> Dim:
    """`expr` expanded; a constant as a Python int."""
    if type(expr) is int:  # static sizes: most of them, on every type built
        return expr
    expr = sympy.expand(sympy.sympify(expr))
    if expr.is_Integer:
        return int(expr)
    symbols = sorted(expr.free_symbols, key=str)
    if not all(isinstance(s, sympy.Symbol) for s in symbols) or not expr.is_polynomial(*symbols):
        raise SymbolicSizeError(f"size {expr} is not a polynomial in sizes")
    poly = sympy.Poly(expr, *symbols)
    if not all(c.is_Integer for c in poly.coeffs()):
        raise SymbolicSizeError(f"size {expr} has a non-integer coefficient")
    # symbols re-made with the size assumptions, whatever produced them (torch's own)
    return expr.xreplace({s: size_symbol(s.name) for s in symbols})


_BINARY = {ast.Add: sympy.Add, ast.Sub: lambda a, b: a - b, ast.Mult: sympy.Mul}


@functools.lru_cache(maxsize=4096)
def parse_dim(text: str) -> Dim:
    """A size expression from its text (`2*s0 + 1`, `s0**2`). Cached: every size bound
    reads each symbolic type's few distinct expressions again."""

    def walk(node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return sympy.Integer(node.value)
        if isinstance(node, ast.Name):
            return size_symbol(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Pow)
            and isinstance(node.right, ast.Constant)
            and type(node.right.value) is int
            and node.right.value >= 0
        ):
            return walk(node.left) ** node.right.value
        raise SymbolicSizeError(f"size '{text}' is not a polynomial in sizes (+, -, *, **)")

    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise SymbolicSizeError(f"size '{text}' does not parse") from None
    return canonical(walk(tree.body))


def dim_text(dim: Dim) -> str:
    return str(dim).replace(" ", "")


@irdl_attr_definition
class DimsAttr(ParametrizedAttribute):
    """The sizes of a tensor type's `?` dims, as a tensor type's encoding."""

    name = "graph.dims"
    exprs: ArrayAttr[StringAttr]

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[ArrayAttr[StringAttr]]:
        pos = parser.pos
        texts = parser.parse_comma_separated_list(parser.Delimiter.ANGLE, parser.parse_str_literal)
        try:
            dims = [parse_dim(t) for t in texts]
        except SymbolicSizeError as err:
            parser.raise_error(str(err), pos, parser.pos)
        return (ArrayAttr(StringAttr(dim_text(d)) for d in dims),)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string("<" + ", ".join(f'"{e.data}"' for e in self.exprs) + ">")

    def verify(self) -> None:
        for expr in self.exprs:
            try:
                dim = parse_dim(expr.data)
            except SymbolicSizeError as err:
                raise VerifyException(str(err)) from None
            if isinstance(dim, int):
                raise VerifyException(f"'graph.dims' size {dim} is static: write it in the shape")

    @property
    def dims(self) -> tuple[Dim, ...]:
        return tuple(parse_dim(e.data) for e in self.exprs)


def symbolic_type(element_type: Attribute, shape: Iterable[Dim]) -> TensorType:
    """A tensor type with these dims: static ones in the shape, the others `?` with
    their expressions in the encoding."""
    dims = [canonical(d) for d in shape]
    symbolic = [d for d in dims if not isinstance(d, int)]
    static = [DYNAMIC_INDEX if not isinstance(d, int) else d for d in dims]
    if not symbolic:
        return TensorType(element_type, static)
    return TensorType(
        element_type, static, DimsAttr(ArrayAttr(StringAttr(dim_text(d)) for d in symbolic))
    )


def _type(value: SSAValue | Attribute) -> TensorType:
    ty = value.type if isinstance(value, SSAValue) else value
    assert isinstance(ty, TensorType), f"expected a tensor type, got {ty}"
    return ty


def is_symbolic(value: SSAValue | Attribute) -> bool:
    ty = value.type if isinstance(value, SSAValue) else value
    return isinstance(ty, TensorType) and DYNAMIC_INDEX in ty.get_shape()


def symbolic_shape(value: SSAValue | Attribute) -> tuple[Dim, ...]:
    """The dims of a tensor-typed value or type, sympy expressions where symbolic."""
    ty = _type(value)
    shape = ty.get_shape()
    if DYNAMIC_INDEX not in shape:
        return tuple(shape)
    if not isinstance(ty.encoding, DimsAttr):
        raise SymbolicSizeError(f"{ty} has a '?' dim but no #graph.dims encoding")
    exprs = iter(ty.encoding.dims)
    try:
        dims = tuple(next(exprs) if d == DYNAMIC_INDEX else d for d in shape)
    except StopIteration:
        raise SymbolicSizeError(f"{ty} has more '?' dims than #graph.dims sizes") from None
    if next(exprs, None) is not None:
        raise SymbolicSizeError(f"{ty} has fewer '?' dims than #graph.dims sizes")
    return dims


def verified_shape(value: SSAValue | Attribute) -> tuple[Dim, ...]:
    """`symbolic_shape` for a verifier: a malformed symbolic type is a VerifyException."""
    try:
        return symbolic_shape(value)
    except SymbolicSizeError as err:
        raise VerifyException(str(err)) from None


def bind_type(ty: Attribute, sizes: Mapping[str, int]) -> Attribute:
    """`ty` with every size symbol replaced by its value (static afterwards)."""
    if not is_symbolic(ty):
        return ty
    assert isinstance(ty, TensorType)
    shape = [bind_dim(d, sizes, ty) for d in symbolic_shape(ty)]
    return TensorType(ty.element_type, shape, NoneAttr())


def bind_dim(dim: Dim, sizes: Mapping[str, int], where: object = None) -> int:
    if isinstance(dim, int):
        return dim
    missing = sorted(s.name for s in dim.free_symbols if s.name not in sizes)
    if missing:
        raise SymbolicSizeError(f"no value for size {', '.join(missing)} (in {where})")
    value = dim.xreplace({size_symbol(n): sympy.Integer(v) for n, v in sizes.items()})
    if not value.is_Integer or int(value) < 0:
        raise SymbolicSizeError(f"size {dim} is {value} for {_sizes_text(sizes)} (in {where})")
    return int(value)


def _sizes_text(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(sizes.items()))


def solve_sizes(
    shapes: Sequence[tuple[Dim, ...]], concrete: Sequence[Sequence[int]]
) -> dict[str, int]:
    """Each size's value from the inputs of a call: a dim that is one size gives it;
    every dim is then checked against its expression."""
    sizes: dict[str, int] = {}
    for shape, actual in zip(shapes, concrete, strict=True):
        for dim, value in zip(shape, actual, strict=True):
            if isinstance(dim, sympy.Symbol):
                if sizes.setdefault(dim.name, value) != value:
                    raise SymbolicSizeError(
                        f"size {dim.name} is both {sizes[dim.name]} and {value} in this call"
                    )
    for shape, actual in zip(shapes, concrete, strict=True):
        if len(shape) != len(actual) or any(
            bind_dim(d, sizes, shape) != v for d, v in zip(shape, actual, strict=True)
        ):
            raise SymbolicSizeError(
                f"input of shape {list(actual)} does not fit {[dim_text(d) for d in shape]} "
                f"with {_sizes_text(sizes)}"
            )
    return sizes


__all__ = [
    "Dim",
    "DimsAttr",
    "SymbolicSizeError",
    "bind_dim",
    "bind_type",
    "canonical",
    "dim_text",
    "is_symbolic",
    "parse_dim",
    "size_symbol",
    "solve_sizes",
    "symbolic_shape",
    "symbolic_type",
    "verified_shape",
]
