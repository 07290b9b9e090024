"""Program: runs Triton kernels under the interpreter, torch steps, liveness, launch log."""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

from coda.runtime import (
    AllocationRecord,
    BufferAccess,
    KernelCache,
    KernelStep,
    LaunchRecord,
    OutputSpec,
    Program,
    TorchStep,
    record_allocations,
    record_launches,
    unique_bytes,
)

# out[m, n] = x[m, n] + y[m, n] over arbitrary input strides; out is contiguous.
ADD_SOURCE = """
import triton
import triton.language as tl

BLOCK_M = 8
BLOCK_N = 16


@triton.jit
def add_kernel(x, y, out, M, N, sxm, sxn, sym, syn,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    a = tl.load(x + rm[:, None] * sxm + rn[None, :] * sxn, mask=mask)
    b = tl.load(y + rm[:, None] * sym + rn[None, :] * syn, mask=mask)
    tl.store(out + rm[:, None] * N + rn[None, :], a + b, mask=mask)


def launch(x, y, out):
    M, N = out.shape
    grid = (triton.cdiv(M, BLOCK_M), triton.cdiv(N, BLOCK_N))
    add_kernel[grid](x, y, out, M, N, *x.stride(), *y.stride(),
                     BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)
    return grid
"""

M, N = 10, 20
F32 = 4


def add_step(name: str, x: str, y: str, out: str, shape: tuple[int, int] = (M, N)) -> KernelStep:
    return KernelStep(name, "loop", ADD_SOURCE, (x, y), (OutputSpec(out, shape, torch.float32),))


@pytest.fixture
def cache(tmp_path: Path) -> KernelCache:
    return KernelCache(tmp_path)


def test_kernel_step_matches_torch_and_logs_exact_bytes(cache: KernelCache) -> None:
    x = torch.randn(M, N)
    y = torch.randn(N).expand(M, N)  # stride 0 along M: only N elements are distinct
    program = Program(
        "forward", ["x", "y"], [add_step("loop_0_add", "x", "y", "out")], ["out"], cache=cache
    )
    with record_launches() as launches, record_allocations() as allocations:
        (out,) = program([x, y])

    torch.testing.assert_close(out, x + y)
    assert launches == [
        LaunchRecord(
            kernel="loop_0_add",
            kind="loop",
            grid=(2, 2),  # cdiv(10, 8), cdiv(20, 16)
            reads=(BufferAccess("x", M * N * F32), BufferAccess("y", N * F32)),
            writes=(BufferAccess("out", M * N * F32),),
            graph="forward",
        )
    ]
    assert launches[0].bytes_read == (M * N + N) * F32
    assert launches[0].bytes_written == M * N * F32
    assert allocations == [AllocationRecord("out", (M, N), "float32", M * N * F32, "forward")]


def test_views_constants_and_fallbacks(cache: KernelCache) -> None:
    x = torch.randn(N, M)
    bias = torch.randn(M, N)
    steps = [
        TorchStep("x_t", "view", lambda t: t.t(), ("x",), ("xt",)),
        TorchStep("bias", "constant", lambda: bias, (), ("b",)),
        add_step("loop_0_add", "xt", "b", "s"),  # reads a transposed (non-contiguous) view
        TorchStep("max_1", "fallback", lambda t: torch.max(t, dim=1), ("s",), ("mx", "idx")),
        add_step("loop_2_add", "s", "s", "s2"),  # same source: one cache file
    ]
    program = Program("inference", ["x"], steps, ["s2", "mx", "idx"], cache=cache)
    with record_launches() as launches, record_allocations() as allocations:
        s2, mx, idx = program([x])

    s = x.t() + bias
    torch.testing.assert_close(s2, s + s)
    torch.testing.assert_close(mx, s.max(dim=1).values)
    assert torch.equal(idx, s.max(dim=1).indices)
    assert [(r.kernel, r.kind, r.grid) for r in launches] == [
        ("loop_0_add", "loop", (2, 2)),
        ("max_1", "fallback", ()),
        ("loop_2_add", "loop", (2, 2)),
    ]
    assert launches[0].reads == (BufferAccess("xt", M * N * F32), BufferAccess("b", M * N * F32))
    assert launches[1].reads == (BufferAccess("s", M * N * F32),)
    assert launches[1].writes == (BufferAccess("mx", M * F32), BufferAccess("idx", M * 8))
    assert [(a.buffer, a.dtype) for a in allocations] == [
        ("s", "float32"),
        ("mx", "float32"),
        ("idx", "int64"),
        ("s2", "float32"),
    ]
    assert len(list(cache.root.glob("*.py"))) == 1


def test_a_view_that_copies_is_logged_as_a_copy_launch(cache: KernelCache) -> None:
    """torch's reshape copies when strides cannot express it: that moves data, so it is
    a launch (and an allocation) in the logs, not a free view."""
    steps = [
        TorchStep("xt", "view", lambda t: t.t(), ("x",), ("t",)),  # a view: not logged
        TorchStep("flat", "view", lambda t: t.reshape(-1), ("t",), ("f",)),  # copies
    ]
    program = Program("forward", ["x"], steps, ["f"], cache=cache)
    x = torch.randn(3, 4)
    with record_launches() as launches, record_allocations() as allocations:
        (flat,) = program([x])
    torch.testing.assert_close(flat, x.t().reshape(-1))
    assert [(r.kernel, r.kind, r.bytes_read, r.bytes_written) for r in launches] == [
        ("flat", "copy", 48, 48)
    ]
    assert [(a.buffer, a.shape) for a in allocations] == [("f", (12,))]


def test_values_freed_after_last_use(cache: KernelCache) -> None:
    refs: dict[str, weakref.ref[torch.Tensor]] = {}
    alive_at_check: dict[str, bool] = {}

    def probe(t: torch.Tensor) -> torch.Tensor:
        refs["t"] = weakref.ref(t)
        return t * 2

    def check(u: torch.Tensor) -> torch.Tensor:
        alive_at_check["t"] = refs["t"]() is not None
        alive_at_check["kept"] = refs["kept"]() is not None
        return u + 1

    def keep(t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        refs["kept"] = weakref.ref(out)
        return out

    steps = [
        add_step("loop_0_add", "x", "y", "t"),
        TorchStep("keep", "fallback", keep, ("t",), ("kept",)),  # a graph output
        TorchStep("probe", "fallback", probe, ("t",), ("u",)),  # last use of t
        TorchStep("check", "fallback", check, ("u",), ("v",)),
    ]
    program = Program("forward", ["x", "y"], steps, ["v", "kept"], cache=cache)
    v, kept = program([torch.randn(M, N), torch.randn(M, N)])

    assert alive_at_check == {"t": False, "kept": True}
    assert refs["kept"]() is kept


def test_none_outputs_and_int_inputs(cache: KernelCache) -> None:
    steps = [TorchStep("scale", "fallback", lambda t, k: t * k, ("x", "k"), ("y",))]
    program = Program("backward", ["x", "k", "unused"], steps, [None, "y", None, "k"], cache=cache)
    x = torch.randn(3)
    with record_launches() as launches:
        out = program([x, 3, torch.randn(2)])

    assert out[0] is None and out[2] is None and out[3] == 3
    torch.testing.assert_close(out[1], x * 3)
    assert launches[0].reads == (BufferAccess("x", 12),)  # the int k moves no buffer


def test_undefined_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="'relu_0'.*'missing'"):
        Program(
            "forward",
            ["x"],
            [TorchStep("relu_0", "fallback", torch.relu, ("missing",), ("y",))],
            ["y"],
        )
    with pytest.raises(ValueError, match="'nowhere'"):
        Program("forward", ["x"], [], ["nowhere"])
    with pytest.raises(ValueError, match="redefines"):
        Program("forward", ["x"], [TorchStep("v", "view", torch.t, ("x",), ("x",))], ["x"])


def test_step_errors_name_the_step(cache: KernelCache) -> None:
    def boom(t: torch.Tensor) -> Any:
        raise RuntimeError("boom")

    program = Program(
        "forward", ["x"], [TorchStep("bad_0", "fallback", boom, ("x",), ("y",))], ["y"], cache=cache
    )
    with pytest.raises(RuntimeError, match="boom") as info:
        program([torch.zeros(1)])
    assert any("'bad_0'" in note for note in info.value.__notes__)
    with pytest.raises(TypeError, match="takes 1 inputs"):
        program([])


def test_records_nest_and_log_at_debug(
    cache: KernelCache, caplog: pytest.LogCaptureFixture
) -> None:
    program = Program(
        "forward",
        ["x"],
        [TorchStep("neg_0", "fallback", torch.neg, ("x",), ("y",))],
        ["y"],
        cache=cache,
    )
    caplog.set_level(logging.DEBUG, logger="coda.runtime")
    with record_launches() as outer:
        program([torch.zeros(2)])
        with record_launches() as inner:
            program([torch.zeros(2)])
    program([torch.zeros(2)])

    assert [len(outer), len(inner)] == [2, 1]
    assert sum("neg_0" in r.getMessage() for r in caplog.records) == 3


def test_unique_bytes() -> None:
    assert unique_bytes(torch.zeros(4, 5)) == 80
    assert unique_bytes(torch.zeros(5).expand(4, 5)) == 20
    assert unique_bytes(torch.zeros(4, 5).t()) == 80
    assert unique_bytes(torch.zeros(0, 5)) == 0
    assert unique_bytes(torch.tensor(1.0, dtype=torch.float16)) == 2
    assert unique_bytes(torch.zeros(1, dtype=torch.int64).expand(3, 7)) == 8
