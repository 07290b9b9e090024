"""View chains as layouts (coda.dialects.view_layout) against torch's own views.

The source tensor holds its storage offsets (arange viewed with random strides), so a
view's element value is the offset the layout must compute for it."""

from __future__ import annotations

import itertools
import math

import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects.builtin import TensorType, f32
from xdsl.ir import Block

from coda.codegen.addressing import triton_expr
from coda.dialects import graph
from coda.dialects.view_layout import ViewLayoutError, is_strided_view, view_access


@st.composite
def view_chains(draw: st.DrawFn) -> tuple[tuple[int, ...], list[tuple]]:
    """A source shape and a chain of (kind, params, result shape) views."""
    shape = tuple(draw(st.lists(st.sampled_from([1, 2, 3, 4, 6]), min_size=1, max_size=4)))
    chain, current = [], shape
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["permute", "reshape", "slice", "expand"]))
        if kind == "permute":
            perm = draw(st.permutations(range(len(current))))
            current = tuple(current[p] for p in perm)
            chain.append(("permute", list(perm), current))
        elif kind == "reshape":
            n = math.prod(current)
            divisors = [d for d in range(1, n + 1) if n % d == 0]
            first = draw(st.sampled_from(divisors))
            rest = n // first
            second = draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0]))
            current = tuple(x for x in (first, second, rest // second))
            chain.append(("reshape", None, current))
        elif kind == "slice":
            dim = draw(st.integers(0, len(current) - 1))
            start = draw(st.integers(0, current[dim] - 1))
            step = draw(st.integers(1, 2))
            count = len(range(start, current[dim], step))
            current = tuple(count if d == dim else n for d, n in enumerate(current))
            chain.append(("slice", (dim, start, step), current))
        else:
            ones = [d for d, n in enumerate(current) if n == 1]
            if not ones:
                continue
            dim = draw(st.sampled_from(ones))
            current = tuple(3 if d == dim else n for d, n in enumerate(current))
            chain.append(("expand", None, current))
    return shape, chain


def _torch_view(t: torch.Tensor, chain: list[tuple]) -> torch.Tensor:
    for kind, params, shape in chain:
        if kind == "permute":
            t = t.permute(params)
        elif kind == "reshape":
            t = t.reshape(shape)  # may copy: values still name the source offsets
        elif kind == "slice":
            dim, start, step = params
            t = t.narrow(dim, start, t.shape[dim] - start)[
                (slice(None),) * dim + (slice(None, None, step),)
            ]
        else:
            t = t.expand(shape)
    return t


@settings(max_examples=300, deadline=None)
@given(view_chains(), st.data())
def test_view_chain_layout_matches_torch(case, data: st.DataObject) -> None:
    shape, chain = case
    block = Block(arg_types=[TensorType(f32, list(shape))])
    value = block.args[0]
    for kind, params, result_shape in chain:
        ty = TensorType(f32, list(result_shape))
        if kind == "permute":
            op = graph.ViewOp("permute", value, ty, perm=params)
        elif kind == "slice":
            op = graph.ViewOp("slice", value, ty, slice=params)
        else:
            op = graph.ViewOp(kind, value, ty)
        block.add_op(op)
        value = op.result
    # a source with random (possibly transposed) strides: storage holds offsets
    order = data.draw(st.permutations(range(len(shape))))
    base = torch.arange(math.prod(shape)).reshape([shape[o] for o in order])
    source = base.permute([order.index(d) for d in range(len(shape))])
    assert tuple(source.shape) == shape
    try:
        access = view_access(value, block, [f"s{d}" for d in range(len(shape))])
    except ViewLayoutError:
        return  # a slice of a merged dim that no layout expresses (codegen reports it)
    expected = _torch_view(source, chain)
    strides = dict(zip(access.strides, source.stride(), strict=True))
    indices = sympy.symbols(f"i0:{len(access.shape)}", integer=True, nonnegative=True)
    # evaluate the code the kernel would run (integer // and %), not a float lambdify
    names = {s: s.name for s in (*indices, *access.strides)}
    code = compile(triton_expr(access.offset(list(indices)), names), "<offset>", "eval")
    for index in itertools.product(*[range(n) for n in expected.shape]):
        env = {s.name: v for s, v in strides.items()} | {f"i{d}": i for d, i in enumerate(index)}
        got = eval(code, {}, env)
        assert got == int(expected[index]), (index, access.describe())
    # a torch view exactly when the layout has one stride per dim (contiguous source)
    if order == list(range(len(shape))):
        try:
            source.view(-1)  # contiguous source
            _strict_view(source, chain)
            viewable = True
        except RuntimeError:
            viewable = False
        assert is_strided_view(value) == viewable


def _strict_view(t: torch.Tensor, chain: list[tuple]) -> torch.Tensor:
    """Like _torch_view but reshapes with .view: raises where torch would copy."""
    for kind, params, shape in chain:
        t = t.view(shape) if kind == "reshape" else _torch_view(t, [(kind, params, shape)])
    return t


def test_read_elements_counts_overlapping_views_once() -> None:
    """RoPE reads the k half of a [B, 4, S, D] projection whole and as two halves: the
    kernel reads the half's elements once, not twice; disjoint pieces add up."""
    from codegen_support import parse_kernel

    from coda.dialects.view_layout import read_elements

    x, k, h = "tensor<2x4x3x8xf32>", "tensor<2x2x3x8xf32>", "tensor<2x2x3x4xf32>"
    kernel = parse_kernel(
        {"x": x, "y": x},
        f"""
%r = kernel.loop "rope" (%x, %y) : ({x}, {x}) -> ({k}) {{
^bb0(%a: {x}, %b: {x}):
  %kk = graph.view "slice" %a slice array<i64: 1, 0, 1> : {x} -> {k}
  %lo = graph.view "slice" %kk slice array<i64: 3, 0, 1> : {k} -> {h}
  %hi = graph.view "slice" %kk slice array<i64: 3, 4, 1> : {k} -> {h}
  %bl = graph.view "slice" %b slice array<i64: 3, 0, 1> : {x} -> tensor<2x4x3x4xf32>
  %0 = graph.concat %hi, %lo dim 3 : ({h}, {h}) -> {k}
  %1 = graph.pointwise "mul"(%kk, %0) : ({k}, {k}) -> {k}
  %2 = graph.view "slice" %bl slice array<i64: 1, 0, 1> : tensor<2x4x3x4xf32> -> {h}
  %3 = graph.view "slice" %bl slice array<i64: 1, 2, 1> : tensor<2x4x3x4xf32> -> {h}
  %4 = graph.concat %2, %3 dim 3 : ({h}, {h}) -> {k}
  %5 = graph.pointwise "add"(%1, %4) : ({k}, {k}) -> {k}
  kernel.yield %5 : {k}
}}""",
    )
    assert read_elements(kernel) == (2 * 2 * 3 * 8, 2 * 2 * 3 * 4 * 2)


def test_range_of_a_merged_outer_dim_is_a_range_of_the_flat_index() -> None:
    """flatten([2, 16]) then elements 3..19: no layout of the runtime strides slices the
    merged (16, 2) mode, but a range of the outermost dim is a range of the row-major
    index, addressed flat from 3. Checked against torch for contiguous and transposed
    strides (the fuzzer's narrow-after-flatten)."""
    block = Block(arg_types=[TensorType(f32, [2, 16])])
    flat = graph.ViewOp("reshape", block.args[0], TensorType(f32, [32]))
    part = graph.ViewOp("slice", flat.result, TensorType(f32, [17]), slice=(0, 3, 1))
    block.add_ops([flat, part])
    access = view_access(part.result, block, ["s0", "s1"])
    assert access.layout is None and access.flat_offset == 3
    i = sympy.Symbol("i", integer=True, nonnegative=True)
    s0, s1 = sympy.symbols("s0 s1", integer=True, nonnegative=True)
    # sources whose values are their storage offsets: the view's values are the offsets
    for source in (torch.arange(32.0).reshape(2, 16), torch.arange(32.0).reshape(16, 2).t()):
        strides = {s0: source.stride(0), s1: source.stride(1)}
        offsets = [int(access.offset([i]).subs(strides | {i: k})) for k in range(17)]
        assert offsets == source.reshape(32)[3:20].long().tolist()


def test_range_of_a_merged_inner_dim_splits_its_coordinate() -> None:
    """flatten([4, 16, 16], 0, 1), transposed, then elements 26..63 of the merged dim
    (the fuzzer's softmax over such a narrow): with runtime strides the merged dim is two
    modes (16, 4) that a range from 26 does not compose with, and it is not the outermost
    dim. The view keeps the whole merged mode and starts its coordinate at 26, split
    over the two strides. Checked against torch for contiguous and permuted sources."""
    block = Block(arg_types=[TensorType(f32, [4, 16, 16])])
    flat = graph.ViewOp("reshape", block.args[0], TensorType(f32, [64, 16]))
    turned = graph.ViewOp("permute", flat.result, TensorType(f32, [16, 64]), perm=[1, 0])
    part = graph.ViewOp("slice", turned.result, TensorType(f32, [16, 38]), slice=(1, 26, 1))
    block.add_ops([flat, turned, part])
    access = view_access(part.result, block, ["s0", "s1", "s2"])
    assert access.starts == (0, 26)
    assert access.distinct_elements == 16 * 38  # the range, not the whole merged dim
    i, j = sympy.symbols("i j", integer=True, nonnegative=True)
    names = {s: s.name for s in (i, j, *access.strides)}
    code = compile(triton_expr(access.offset([i, j]), names), "<offset>", "eval")
    for order in ((0, 1, 2), (2, 0, 1), (1, 2, 0)):
        base = torch.arange(4 * 16 * 16).reshape([(4, 16, 16)[o] for o in order])
        source = base.permute([order.index(d) for d in range(3)])
        expected = source.reshape(64, 16).t()[:, 26:]
        env = dict(zip(("s0", "s1", "s2"), source.stride(), strict=True))
        for a, b in itertools.product(range(16), range(38)):
            assert eval(code, {}, env | {"i": a, "j": b}) == int(expected[a, b])
