"""Size-generic kernel sources (codegen/size_generic.py): the literals that vary between
two sizes' sources become `launch`/kernel parameters, and for every call the generic
source with that call's values is the concrete source generated for it."""

from __future__ import annotations

import re

import torch

from coda.codegen.size_generic import SizeGenericSources
from coda.runtime.kernel_cache import KernelCache

_SOURCE = '''"""A copy of a [{rows}, 8] tensor (rows = {rows})."""

import triton
import triton.language as tl

BLOCK = 16


@triton.jit
def copy_rows(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    # {rows} rows of 8
    mask = offs < {rows} * 8
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask), mask=mask)


def launch(x, out) -> tuple[int, ...]:
    shapes = (({rows}, 8), ({rows}, 8))
    for tensor, shape in zip([x, out], shapes):
        assert tuple(tensor.shape) == shape
    grid = (triton.cdiv({numel}, BLOCK),)
    copy_rows[grid](x, out, {numel}, BLOCK=BLOCK)
    return grid
'''


def _source(rows: int) -> str:
    return _SOURCE.format(rows=rows, numel=rows * 8)


def _substituted(generic: str, values: tuple[int, ...]) -> str:
    """The generic source with its parameters replaced by their values (and the
    header, signature and keyword additions taken out again)."""
    text = generic.split("\n", 2)[2]  # the two header lines
    text = re.sub(r", \*, _dyn: tuple\[int, \.\.\.\] = \(\)", "", text)
    text = re.sub(r", _dyn\d+=_dyn\[\d+\]", "", text)
    text = re.sub(r", _dyn\d+(?=\))", "", text)
    text = re.sub(r"_dyn\[(\d+)\]", lambda m: str(values[int(m.group(1))]), text)
    return re.sub(r"_dyn(\d+)", lambda m: str(values[int(m.group(1))]), text)


def test_first_source_stays_concrete_then_varying_literals_become_parameters() -> None:
    sources = SizeGenericSources()
    assert sources.generic(_source(4)) is None  # nothing is known to vary yet
    five = sources.generic(_source(5))
    assert five is not None
    assert five.values == (5, 5, 5, 40, 40)
    # the code is the concrete source's, with the sizes as parameters
    assert "_dyn0" in five.source and "mask = offs < _dyn0 * 8" in five.source
    assert "def launch(x, out, *, _dyn: tuple[int, ...] = ()) -> tuple[int, ...]:" in (five.source)
    # comments say which numbers vary instead of one size's
    assert "# ? rows of 8" in five.source and "[?, 8]" in five.source
    seven = sources.generic(_source(7))
    assert seven is not None and seven.source == five.source
    assert seven.values == (7, 7, 7, 56, 56)
    # substituting the values gives back exactly the code generated for that size
    concrete = _source(7).replace("[7, 8] tensor (rows = 7)", "[?, 8] tensor (rows = ?)")
    assert _substituted(seven.source, seven.values) == concrete.replace("# 7 rows", "# ? rows")


def test_generic_source_runs_every_size(tmp_path: object) -> None:
    sources = SizeGenericSources()
    sources.record(_source(3))
    cache = KernelCache(tmp_path)  # type: ignore[arg-type]
    for rows in (4, 9, 33):
        generic = sources.generic(_source(rows))
        assert generic is not None
        launch = cache.load(generic.source, interpret=True).launch
        x = torch.randn(rows, 8)
        out = torch.empty_like(x)
        launch(x, out, _dyn=generic.values)
        torch.testing.assert_close(out, x)
    assert cache.imports == 1 and cache.loads == 3


def test_a_literal_that_varies_later_widens_the_template() -> None:
    sources = SizeGenericSources()
    sources.record(_source(4))
    five = sources.generic(_source(5))
    assert five is not None
    # the column count of the shape check was 8 at both sizes: a literal until it varies
    wider = sources.generic(_source(6).replace("(6, 8), (6, 8)", "(6, 9), (6, 8)"))
    assert wider is not None and wider.source != five.source
    assert wider.values == (6, 6, 9, 6, 48, 48)
    seven = sources.generic(_source(7))
    assert seven is not None and seven.source == wider.source
    assert seven.values == (7, 7, 8, 7, 56, 56)


def test_a_module_constant_that_varies_keeps_the_concrete_source() -> None:
    sources = SizeGenericSources()
    sources.record(_source(4))
    # no parameter reaches a module constant (here a tile chosen from the size)
    assert sources.generic(_source(6).replace("BLOCK = 16", "BLOCK = 32")) is None


def test_a_size_passed_as_constexpr_stays_concrete() -> None:
    def constexpr(rows: int) -> str:
        return _source(rows).replace(
            f"copy_rows[grid](x, out, {rows * 8}, BLOCK=BLOCK)",
            f"copy_rows[grid](x, out, 0, BLOCK={rows})",
        )

    sources = SizeGenericSources()
    sources.record(constexpr(4))
    # Triton would compile one kernel per value: not a size-generic kernel
    assert sources.generic(constexpr(5)) is None


def test_another_structure_is_another_template() -> None:
    sources = SizeGenericSources()
    sources.record(_source(4))
    other = _source(5).replace("tl.load(x_ptr + offs", "2 * tl.load(x_ptr + offs")
    assert sources.generic(other) is None
    assert len(sources) == 2


def test_a_size_in_a_block_shape_stays_concrete() -> None:
    def blocks(rows: int) -> str:
        return _source(rows).replace("tl.arange(0, BLOCK)\n", f"tl.arange(0, {rows * 4})\n")

    sources = SizeGenericSources()
    sources.record(blocks(4))
    # tl.arange needs a compile-time bound: a runtime argument would not compile
    assert sources.generic(blocks(8)) is None


_CHAINED = '''"""A copy of a [{rows}, 8] tensor through a helper (a chain's producer)."""

import triton
import triton.language as tl

BLOCK = 16


@triton.jit
def _tile(x_ptr, offs, BLOCK: tl.constexpr):
    mask = offs < {rows} * 8
    return tl.load(x_ptr + offs, mask=mask, other=0.0)


@triton.jit
def copy_rows(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tile = _tile(x_ptr, offs, BLOCK)
    tl.store(out_ptr + offs, tile, mask=offs < n)


def launch(x, out) -> tuple[int, ...]:
    grid = (triton.cdiv({numel}, BLOCK),)
    copy_rows[grid](x, out, {numel}, BLOCK=BLOCK)
    return grid
'''


def test_a_size_in_a_helper_the_kernel_calls_is_passed_on(tmp_path: object) -> None:
    """A chain's producer (codegen/gemm_chain.py) is a @triton.jit function the kernel
    calls: its sizes become parameters of it too, and the kernel passes them on."""

    def chained(rows: int) -> str:
        return _CHAINED.format(rows=rows, numel=rows * 8)

    sources = SizeGenericSources()
    sources.record(chained(3))
    cache = KernelCache(tmp_path)  # type: ignore[arg-type]
    for rows in (4, 9):
        generic = sources.generic(chained(rows))
        assert generic is not None
        assert "def _tile(x_ptr, offs, BLOCK: tl.constexpr, _dyn" in generic.source
        assert "_tile(x_ptr, offs, BLOCK, _dyn" in generic.source
        x = torch.randn(rows, 8)
        out = torch.empty_like(x)
        cache.load(generic.source, interpret=True).launch(x, out, _dyn=generic.values)
        torch.testing.assert_close(out, x)
    assert cache.imports == 1
