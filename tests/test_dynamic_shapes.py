"""Varying sequence lengths and batch sizes: Dynamo compiles at most twice (static, then
symbolic), coda plans the symbolic graph once per distinct size (bounded, logged) while
its kernels are size-generic (one Triton module serves every size whose plan is the
same: no new module is imported), and every size matches eager in the forward and the
backward."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from coda.compiler.backend import coda_backend
from coda.compiler.dynamic import is_symbolic
from coda.compiler.models import LlamaBlock
from coda.runtime import record_launches
from coda.runtime.kernel_cache import default_cache


def _counting_backend(calls: list[fx.GraphModule], **options: Any) -> Callable[..., Any]:
    def backend(gm: fx.GraphModule, example_inputs: list[Any]) -> Any:
        calls.append(gm)
        return coda_backend(gm, example_inputs, options=options or None)

    return backend


def _step(
    fn: Callable[..., torch.Tensor], model: nn.Module, x: torch.Tensor, dynamic_dim: int = -1
) -> list[torch.Tensor]:
    """Output, input gradient and parameter gradients of one training step."""
    model.zero_grad()
    x = x.detach().clone().requires_grad_()
    if dynamic_dim >= 0:
        torch._dynamo.mark_dynamic(x, dynamic_dim)
    out = fn(x)
    out.square().mean().backward()
    return [out.detach(), x.grad, *(p.grad.clone() for p in model.parameters())]


def _assert_close(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def _specializations(caplog: pytest.LogCaptureFixture, kind: str = "forward") -> list[str]:
    """The sizes `kind` graphs were planned for (`s0=12`), in order; kind "": Dynamo
    graphs, each traced per size."""
    prefix = f"coda: {kind + ' ' if kind else ''}graph with symbolic sizes specialized for "
    return [
        r.getMessage().removeprefix(prefix).split(" (")[0]
        for r in caplog.records
        if r.getMessage().startswith(prefix)
    ]


def test_five_sequence_lengths_compile_at_most_twice(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = LlamaBlock(d=32, heads=2, kv_heads=1, ffn=64)
    calls: list[fx.GraphModule] = []
    compiled = torch.compile(model, backend=_counting_backend(calls))
    cache = default_cache()
    imported: list[int] = []  # Triton modules imported so far, after each length
    loaded: list[int] = []  # modules asked for (each new size's program asks again)
    start, start_loads = cache.imports, cache.loads
    with caplog.at_level(logging.INFO, logger="coda"):
        # (a length of 1 would be a third graph: Dynamo specializes sizes 0 and 1.)
        # Lengths 10-16 (20-32 tokens) share one plan: above 18 tokens the gated MLP's
        # projections are recomputed in the backward (saved_values), and up to 32 tokens
        # a norm weight's column partials have one 32-row group (the whole sum, so no
        # finalize kernel); lengths 24, 30 and 27 cross that line, a plan of their own.
        for seq in (12, 13, 10, 16, 11, 24, 30, 27):
            x = torch.randn(2, seq, 32)
            with record_launches() as launches:
                got = _step(compiled, model, x)
            _assert_close(got, _step(model, model, x))
            # coda's kernels ran (attention included), not an eager fallback
            kinds = {(r.graph, r.kind) for r in launches}
            assert {("forward", "attention"), ("backward", "gemm")} <= kinds, kinds
            imported.append(cache.imports - start)
            loaded.append(cache.loads - start_loads)
    assert len(calls) == 2  # the first size static, then one graph with symbolic sizes
    # the symbolic forward and backward are each planned once per new length
    expected = ["13", "10", "16", "11", "24", "30", "27"]
    for kind in ("forward", "backward"):
        assert [s.split("=")[1] for s in _specializations(caplog, kind)] == expected
    # the static graph's kernels, then the size-generic ones (unless an earlier test of
    # this process imported them): from the second length on, every length of the same
    # plan runs the modules already imported
    assert imported[1:5] == [imported[1]] * 4, imported
    assert all(b > a for a, b in zip(loaded, loaded[1:], strict=False)), loaded
    # the new plan's kernels that differ (the column partials' second row group and
    # their finalize) are imported at its first length, widened to size-generic ones at
    # its second, and reused from then on
    assert imported[7] == imported[6], imported


def test_mark_dynamic_compiles_once(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = nn.Sequential(nn.Linear(12, 24), nn.GELU(), nn.Linear(24, 5))
    calls: list[fx.GraphModule] = []
    compiled = torch.compile(model, backend=_counting_backend(calls))
    cache = default_cache()
    imported: list[int] = []
    start = cache.imports
    with caplog.at_level(logging.INFO, logger="coda"):
        for batch in (6, 3, 6, 9, 17):
            x = torch.randn(batch, 12)
            _assert_close(_step(compiled, model, x, dynamic_dim=0), _step(model, model, x))
            imported.append(cache.imports - start)
    assert len(calls) == 1
    # a size seen before reuses its program: four distinct batch sizes, four programs
    assert len(_specializations(caplog)) == 4
    # symbolic from the first call: the first size's kernels, then the size-generic
    # ones, which every later batch size reuses
    assert imported[2:] == [imported[1]] * 3, imported


def test_mark_dynamic_batch_of_a_block_reuses_its_kernels() -> None:
    """Batch size of a Llama block under mark_dynamic: one graph, and from the second
    batch size on no new Triton module (the attention kernels take the batch and
    sequence lengths as runtime arguments)."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = LlamaBlock(d=32, heads=2, kv_heads=1, ffn=64)
    calls: list[fx.GraphModule] = []
    compiled = torch.compile(model, backend=_counting_backend(calls))
    cache = default_cache()
    imported: list[int] = []
    start = cache.imports
    # 4-6 rows of 5 tokens: 20-30 tokens, one plan (see the test above)
    for batch in (4, 5, 6):
        x = torch.randn(batch, 5, 32)
        _assert_close(_step(compiled, model, x, dynamic_dim=0), _step(model, model, x))
        imported.append(cache.imports - start)
    assert len(calls) == 1
    assert imported[2] == imported[1], imported


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


def test_specializations_are_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CODA_MAX_SPECIALIZATIONS", "2")
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = TwoLayer()
    compiled = torch.compile(model, backend="coda", dynamic=True, options={"strict": False})
    with caplog.at_level(logging.INFO, logger="coda"):
        for batch in (2, 3, 4, 5, 3):
            x = torch.randn(batch, 16)
            _assert_close(_step(compiled, model, x), _step(model, model, x))
    assert len(_specializations(caplog)) == 2
    limit = [r.getMessage() for r in caplog.records if "new sizes eagerly" in r.getMessage()]
    assert limit == [
        f"coda: {kind} graph runs new sizes eagerly after 2 specializations "
        "(CODA_MAX_SPECIALIZATIONS=2)"
        for kind in ("forward", "backward")
    ]


def test_strict_raises_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODA_MAX_SPECIALIZATIONS", "1")
    torch._dynamo.reset()
    compiled = torch.compile(TwoLayer(), backend="coda", dynamic=True, options={"strict": True})
    with torch.no_grad():
        compiled(torch.randn(2, 16))
        with pytest.raises(Exception, match="saw more than 1 distinct sizes"):
            compiled(torch.randn(3, 16))


def test_symbolic_graph_is_traced_and_imported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """AOTAutograd traces the symbolic graph once and coda imports its forward and its
    backward once (sizes are `?` dims in the IR) and runs their graph stage (rotary
    fusion, canonicalization, folded views) once; each new size only binds and plans
    from the epilogue stage."""
    import coda.compiler.backend as backend
    import coda.compiler.symbolic_graph as symbolic_graph

    traced: list[int] = []
    imported: list[str] = []
    stages: list[str] = []
    partition, import_graph = backend.partition, backend.import_graph
    lower = symbolic_graph.lower

    def counting_partition(joint: fx.GraphModule, *args: Any, **kwargs: Any) -> Any:
        traced.append(1)
        return partition(joint, *args, **kwargs)

    def counting_import(gm: fx.GraphModule, kind: str) -> Any:
        result = import_graph(gm, kind)
        imported.append(f"{kind}: {result.func.function_type}")
        return result

    def recording_lower(module: Any, until: str = "kernel", start: str = "graph") -> Any:
        stages.append(f"{start}..{until}")
        return lower(module, until, start)

    monkeypatch.setattr(backend, "partition", counting_partition)
    monkeypatch.setattr(backend, "import_graph", counting_import)
    monkeypatch.setattr(symbolic_graph, "lower", recording_lower)
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = TwoLayer()
    compiled = torch.compile(model, backend="coda", options={"strict": True})
    for batch in (6, 3, 9, 4):
        x = torch.randn(batch, 16)
        _assert_close(_step(compiled, model, x, dynamic_dim=0), _step(model, model, x))
    assert len(traced) == 1
    assert [text.split(":")[0] for text in imported] == ["forward", "backward"]
    assert all('#graph.dims<"s' in text for text in imported), imported
    # the graph stage ran on the symbolic forward and backward once; sizes start after it
    assert stages == ["graph..graph", "graph..graph"]


def _two_batches_in_kernels(caplog: pytest.LogCaptureFixture) -> list[str]:
    """TwoLayer (not strict) at two batch sizes under mark_dynamic: every step matches
    eager and runs coda's GEMM kernels forward and backward. Returns the log."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = TwoLayer()
    compiled = torch.compile(model, backend="coda", options={"strict": False})
    with caplog.at_level(logging.INFO, logger="coda"):
        for batch in (6, 3):
            x = torch.randn(batch, 16)
            with record_launches() as launches:
                got = _step(compiled, model, x, dynamic_dim=0)
            _assert_close(got, _step(model, model, x))
            assert {("forward", "gemm"), ("backward", "gemm")} <= {
                (r.graph, r.kind) for r in launches
            }
    return [r.getMessage() for r in caplog.records]


def test_a_graph_stage_that_fails_on_symbolic_sizes_runs_per_size(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If a graph-stage rewrite fails on the symbolic module, each size runs the whole
    pipeline after binding, as before: logged, never eager, never wrong."""
    import coda.compiler.symbolic_graph as symbolic_graph

    def failing(module: Any, until: str = "kernel", start: str = "graph") -> Any:
        raise RuntimeError("no symbolic rewrite today")

    monkeypatch.setattr(symbolic_graph, "lower", failing)
    messages = _two_batches_in_kernels(caplog)
    for kind in ("forward", "backward"):
        assert (
            f"coda: {kind} graph's graph stage runs per size: RuntimeError: "
            "no symbolic rewrite today"
        ) in messages, messages
    assert len(_specializations(caplog)) == 2


class DropLast(nn.Module):
    """A slice whose end is a size expression (`s0 - 1`): the symbolic import cannot
    say it, so each size of this graph is traced static and compiled on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.fc(x[:, : x.shape[1] - 1]))


def test_a_size_the_import_cannot_say_is_planned_per_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = DropLast()
    compiled = torch.compile(model, backend="coda", options={"strict": False})
    with caplog.at_level(logging.INFO, logger="coda"):
        for seq in (5, 7, 4):
            x = torch.randn(2, seq, 16)
            with record_launches() as launches:
                got = _step(compiled, model, x, dynamic_dim=1)
            _assert_close(got, _step(model, model, x))
            assert ("forward", "gemm") in {(r.graph, r.kind) for r in launches}
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "eagerly" in m], messages
    per_size = [m for m in messages if "is planned per size" in m]
    assert per_size and "symbolic size" in per_size[0], messages


def test_a_failed_symbolic_trace_traces_each_size(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import coda.compiler.backend as backend

    partition = backend.partition

    def static_only(joint: fx.GraphModule, joint_inputs: Any, **kwargs: Any) -> Any:
        if is_symbolic(torch.utils._pytree.tree_leaves(joint_inputs)):
            raise RuntimeError("no symbolic partition today")
        return partition(joint, joint_inputs, **kwargs)

    monkeypatch.setattr(backend, "partition", static_only)
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = TwoLayer()
    compiled = torch.compile(model, backend="coda", options={"strict": False})
    with caplog.at_level(logging.INFO, logger="coda"):
        for batch in (6, 3, 9):
            x = torch.randn(batch, 16)
            _assert_close(_step(compiled, model, x, dynamic_dim=0), _step(model, model, x))
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "coda: graph is traced per size after the symbolic trace failed: RuntimeError: "
        "no symbolic partition today"
    ) in messages
    assert len(_specializations(caplog, kind="")) == 3, messages


@pytest.mark.parametrize("model", ["llama-block", "gpt2-block"])
def test_a_bound_symbolic_graph_plans_as_the_static_one(model: str) -> None:
    """The symbolic import bound to the traced sizes lowers to the very kernels the static
    import of those sizes does (`lowerc --model M --dynamic 0:1 --emit kernel`)."""
    from coda.compiler.capture import capture
    from coda.compiler.models import load_model
    from coda.compiler.pipeline import lower

    spec = load_model(model, None, torch.float32)
    static = lower(capture(spec).to_module())
    symbolic = capture(spec, dynamic=[(0, 1)]).to_module()
    assert '#graph.dims<"s' in str(symbolic)
    assert str(lower(symbolic)) == str(static)


def test_a_symbolic_language_model_plans_the_static_kernels() -> None:
    """The LM's cross-entropy rewrite under a symbolic token count: its views spell the
    count -1 (a size symbol as a graph constant would fail wherever the graph runs
    eagerly: lowerc's capture runs it, a fallback would), and the bound graph plans
    the kernels of the static one (only a folded input's index differs)."""
    from coda.compiler.capture import capture
    from coda.compiler.models import load_model
    from coda.compiler.pipeline import lower
    from coda.dialects import kernel

    def kernels(module: Any) -> list[str]:
        return [op.kernel_name for op in module.walk() if isinstance(op, kernel.KernelOp)]

    spec = load_model("llama-lm", None, torch.float32)
    symbolic = capture(spec, dynamic=[(0, 1)]).to_module()
    assert '#graph.dims<"2*s' in str(symbolic)
    assert kernels(lower(symbolic)) == kernels(lower(capture(spec).to_module()))


def _kept_arguments(
    monkeypatch: pytest.MonkeyPatch, policy: object, dynamic: bool
) -> list[tuple[str, str]]:
    """(graph, type) of every function argument a compile marked {lowp.keep}."""
    import coda.compiler.backend as backend

    kept: list[tuple[str, str]] = []
    mark_excluded = backend.mark_excluded

    def recording(func: Any, *args: Any) -> None:
        mark_excluded(func, *args)
        attrs = func.arg_attrs.data if func.arg_attrs else ()
        kept.extend(
            (func.sym_name.data, str(arg.type))
            for arg, attr in zip(func.args, attrs, strict=False)
            if "lowp.keep" in attr.data
        )

    monkeypatch.setattr(backend, "mark_excluded", recording)
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = TwoLayer()
    compiled = torch.compile(model, backend="coda", options={"strict": True, "precision": policy})
    x = torch.randn(8, 16, requires_grad=True)
    if dynamic:
        torch._dynamo.mark_dynamic(x, 0)
    compiled(x).sum().backward()
    return sorted(kept)


def test_precision_exclusions_hold_with_symbolic_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parameters are numbered without the size inputs, so a policy's `exclude` keeps the
    same arguments in full precision as in a static compile: fc2's weight and bias."""
    policy = {"policy": "fp8-rowwise", "exclude": ["fc2"]}
    static = _kept_arguments(monkeypatch, policy, dynamic=False)
    assert ("forward", "tensor<8x32xf32>") in static and ("forward", "tensor<8xf32>") in static
    assert _kept_arguments(monkeypatch, policy, dynamic=True) == static


def test_a_bad_bound_is_a_warning_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from coda.compiler.dynamic import DEFAULT_MAX_SPECIALIZATIONS, max_specializations

    monkeypatch.setenv("CODA_MAX_SPECIALIZATIONS", "lots")
    with caplog.at_level(logging.WARNING, logger="coda"):
        assert max_specializations() == DEFAULT_MAX_SPECIALIZATIONS == 32
    assert [r.getMessage() for r in caplog.records] == [
        "coda: CODA_MAX_SPECIALIZATIONS='lots' is not a count: using 32"
    ]


def test_an_internal_error_in_the_symbolic_import_plans_per_size(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A backward compiles lazily, inside the user's `backward()`: an error importing a
    symbolic graph must not escape; the graph is planned per size from static traces."""
    import coda.compiler.backend as backend

    import_graph = backend.import_graph

    def symbolic_fails(gm: fx.GraphModule, kind: str) -> Any:
        if any(isinstance(n.meta.get("val"), torch.SymInt) for n in gm.graph.nodes):
            raise RuntimeError("no symbolic import today")
        return import_graph(gm, kind)

    monkeypatch.setattr(backend, "import_graph", symbolic_fails)
    messages = _two_batches_in_kernels(caplog)
    for kind in ("forward", "backward"):
        assert (
            f"coda: {kind} graph is planned per size after an internal error: RuntimeError: "
            "no symbolic import today"
        ) in messages, messages
