"""The `torch.compile(model, backend="coda")` entry point.

Dynamo hands over an FX graph; AOTAutograd splits it into forward and backward aten
graphs (decomposing composite ops with `DECOMPOSITIONS`); each graph is imported,
lowered through the pass pipeline, turned into Triton kernels and wrapped in a
runtime `Program`.

A graph coda cannot compile never breaks the user's training: it runs eagerly and
the reason is logged. `options={"strict": True}` (or `CODA_STRICT=1`) raises instead,
which is what tests use to prove a graph really was compiled.

`options={"target": "cuda:sm_90a"}` also compiles every kernel ahead of time for that
GPU (`coda.codegen.aot`) and logs each kernel that would spill, overflow shared memory
or miss tensor cores (strict: raises). On a CPU the graph still runs through Triton's
interpreter; on a GPU it runs the kernels tiled for the target.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch._decomp import get_decompositions
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch._functorch.partitioners import min_cut_rematerialization_partition

from coda.compiler.dynamic import (
    concretize,
    eager_graph,
    is_symbolic,
    one_line,
    specialize_per_size,
)
from coda.compiler.fold_constants import FoldedGraph, fold_constants
from coda.compiler.fuse_cross_entropy import fuse_cross_entropy
from coda.compiler.fx_import import ImportedGraph, UnsupportedGraph, import_graph
from coda.compiler.precision_policy import (
    PrecisionPolicy,
    apply_weight_only,
    lower_with_policy,
    mark_excluded,
)
from coda.compiler.rotary import fuse_rotary
from coda.compiler.saved_values import (
    prefer_recomputing,
    prefer_recomputing_norms,
    prefer_saving,
)
from coda.compiler.symbolic_graph import SymbolicGraph, tensor_arguments
from coda.dialects.graph_dims import Dim
from coda.passes.bind_sizes import size_hints

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.dialects.func import FuncOp

    from coda.codegen.targets import Target
    from coda.runtime import Program

log = logging.getLogger("coda.compiler")
aten = torch.ops.aten

#: composite ops that AOTAutograd decomposes into ops the importer lowers
DECOMPOSITIONS = get_decompositions(
    [
        aten._softmax,
        aten._softmax_backward_data,
        aten._log_softmax,
        aten._log_softmax_backward_data,
        aten.native_layer_norm,
        aten.native_layer_norm_backward,
        aten.mse_loss,
        aten.mse_loss_backward,
        aten.addcmul,
        aten.addcdiv,
        aten.hardtanh,
        aten.hardtanh_backward,
        aten.leaky_relu,
        aten.leaky_relu_backward,
        aten.softplus,
        aten.softplus_backward,
        aten.elu,
        aten.elu_backward,
        aten.hardsigmoid,
        aten.hardswish,
        aten.mish,
        aten.rsub,
        aten.var_mean,
    ]
)


@dataclass(frozen=True)
class CodaOptions:
    #: raise on a graph coda cannot compile instead of running it eagerly
    strict: bool = False
    #: GPU to compile every kernel for ahead of time (None: no ahead-of-time check)
    target: Target | None = None
    #: low-precision policy (coda.compiler.precision_policy)
    precision: PrecisionPolicy = PrecisionPolicy()
    #: the graph is one size of a graph with symbolic sizes: kernels take their
    #: size-generic sources (set by coda_backend, not a user option)
    size_generic: bool = False

    @classmethod
    def from_user(cls, options: dict[str, Any] | None) -> CodaOptions:
        options = dict(options or {})
        strict = bool(options.pop("strict", os.environ.get("CODA_STRICT", "") == "1"))
        target = options.pop("target", None)
        precision = PrecisionPolicy.from_user(options.pop("precision", None))
        if target is not None:
            from coda.codegen.targets import parse_target  # codegen loads only when used

            target = parse_target(target)
        if options:
            raise ValueError(f"unknown coda options: {', '.join(sorted(options))}")
        return cls(strict=strict, target=target, precision=precision)


def _device_of(example_inputs: Sequence[Any]) -> torch.device:
    for value in example_inputs:
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


def compile_graph(
    gm: fx.GraphModule,
    example_inputs: Sequence[Any],
    *,
    graph_kind: str,
    options: CodaOptions,
    params: dict[int, tuple[str, torch.Tensor]] | None = None,
) -> Callable[..., Any]:
    """Compile one aten graph; on failure fall back to running `gm` eagerly. `params`:
    the graph inputs that are the model's parameters (index -> Dynamo name, value)."""
    start = time.perf_counter()
    device = _device_of(example_inputs)
    if is_symbolic(example_inputs):
        try:
            folded = fold_constants(gm, device)
            imported = import_graph(folded.gm, graph_kind)
            return _symbolic(gm, folded, imported, device, graph_kind, options, params or {})
        except UnsupportedGraph as err:
            # something the symbolic import cannot say (a slice at a symbolic offset):
            # each size is traced again, static, and compiled as any static graph (still
            # coda's kernels: no eager fallback, so strict does not raise here)
            log.info("coda: %s graph is planned per size: %s", graph_kind, one_line(err))
            return _per_size(gm, graph_kind, options, params or {})
        except Exception as err:  # a backward compiles lazily: this must not raise
            if options.strict:
                raise
            log.warning(
                "coda: %s graph is planned per size after an internal error: %s: %s",
                graph_kind, type(err).__name__, one_line(err),
            )  # fmt: skip
            return _per_size(gm, graph_kind, options, params or {})
    try:
        folded = fold_constants(gm, device)
        imported = import_graph(folded.gm, graph_kind)
        plan = _planner(folded.gm, imported, device, graph_kind, options, params or {})
        program, packed = plan(imported.module, imported.func)
    except Exception as err:  # a graph coda cannot compile must not break training
        if options.strict:
            raise
        why = (
            f": {one_line(err)}"
            if isinstance(err, UnsupportedGraph)
            else f" after an internal error: {type(err).__name__}: {one_line(err)}"
        )
        log.warning("coda: %s graph runs eagerly%s", graph_kind, why)
        return eager_graph(gm)
    log.info(
        "coda: compiled %s graph into %d steps in %.2fs",
        graph_kind,
        len(program.steps),
        time.perf_counter() - start,
    )
    run = _boxed(program, [*folded.constants, *packed], imported.size_outputs)
    return run if options.strict else _eager_if_first_run_fails(run, gm, graph_kind)


def _per_size(
    gm: fx.GraphModule,
    graph_kind: str,
    options: CodaOptions,
    params: dict[int, tuple[str, torch.Tensor]],
) -> Callable[..., Any]:
    """A symbolic aten graph compiled per size from static copies of it (`concretize`)."""
    numbered = _numbered(params, gm, graph_kind)

    def compile_static(static: fx.GraphModule, tensors: list[torch.Tensor]) -> Any:
        boxed = compile_graph(
            static, tensors, graph_kind=graph_kind, options=options, params=numbered
        )
        return lambda *args: boxed(list(args))

    return make_boxed_func(
        specialize_per_size(gm, compile_static, strict=options.strict, bind=concretize)
    )


def _numbered(
    params: dict[int, tuple[str, torch.Tensor]], gm: fx.GraphModule, graph_kind: str
) -> dict[int, tuple[str, torch.Tensor]]:
    """`params` (by Dynamo input index) as the precision policy reads them: a forward or
    inference graph's parameters by position among its tensor arguments (size inputs
    are no func arguments), a backward's by Dynamo input index still, which its argument
    names (primals_<i+1>) and gradient outputs carry."""
    if graph_kind == "backward":
        return params
    arguments = tensor_arguments(gm)
    return {arguments.index(i): p for i, p in params.items() if i in arguments}


def _planner(
    folded_gm: fx.GraphModule,
    imported: ImportedGraph,
    device: torch.device,
    graph_kind: str,
    options: CodaOptions,
    params: dict[int, tuple[str, torch.Tensor]],
) -> Callable[[ModuleOp, FuncOp], tuple[Program, list[torch.Tensor]]]:
    """Lowers an imported graph (static, or bound to one call's sizes) into a program
    and the packed weights it takes after its other inputs."""
    from coda.compiler.program import build_program  # codegen loads only when compiling

    placeholders = [n.name for n in folded_gm.graph.nodes if n.op == "placeholder"]
    names = [placeholders[i] for i in tensor_arguments(folded_gm)]
    numbered = _numbered(params, folded_gm, graph_kind)

    def plan(
        module: ModuleOp, func: FuncOp, start: str = "graph"
    ) -> tuple[Program, list[torch.Tensor]]:
        mark_excluded(func, names, imported.output_slots, graph_kind, options.precision,
                      numbered)  # fmt: skip
        lower_with_policy(module, options.precision, start=start)
        packed = apply_weight_only(func, options.precision, graph_kind, numbered)
        sources = _ahead_of_time(module, graph_kind, options)
        # a GPU runs what was checked for it; the interpreter keeps its small tiles
        sources = sources if device.type != "cpu" else None
        program = build_program(
            func,
            imported.output_slots,
            graph_kind,
            device,
            sources=sources,
            size_generic=options.size_generic,
        )
        return program, packed

    return plan


def _symbolic(
    gm: fx.GraphModule,
    folded: FoldedGraph,
    imported: ImportedGraph,
    device: torch.device,
    graph_kind: str,
    options: CodaOptions,
    params: dict[int, tuple[str, torch.Tensor]],
) -> Callable[..., Any]:
    """A graph with symbolic sizes, imported once: each call's sizes are bound and
    planned the first time they are seen (compiler/symbolic_graph.py)."""
    plan = _planner(folded.gm, imported, device, graph_kind, options, params)

    def plan_run(module: ModuleOp, func: FuncOp, start: str) -> Callable[[list[Any]], list[Any]]:
        began = time.perf_counter()
        program, packed = plan(module, func, start)
        log.info(
            "coda: compiled %s graph into %d steps in %.2fs",
            graph_kind, len(program.steps), time.perf_counter() - began,
        )  # fmt: skip
        run = _boxed(program, packed)
        return run if options.strict else _eager_if_first_run_fails(run, gm, graph_kind)

    log.info(
        "coda: %s graph imported with symbolic sizes %s",
        graph_kind, ", ".join(sorted(size_hints(imported.func))),
    )  # fmt: skip
    return SymbolicGraph(
        gm, folded, imported, plan_run, graph_kind=graph_kind, strict=options.strict
    )


def _eager_if_first_run_fails(
    run: Callable[[list[Any]], list[Any]], gm: fx.GraphModule, graph_kind: str
) -> Callable[[list[Any]], list[Any]]:
    """Kernels are imported and Triton-compiled at the first call, so compilation can
    still fail there. The graph is functional (inputs are not mutated, the list is not
    cleared), so rerunning it eagerly is safe; once a run succeeded, later errors are
    the user's (e.g. out of memory) and propagate."""
    state = {"run": run, "proven": False}

    def guarded(args: list[Any]) -> list[Any]:
        if state["proven"]:
            return state["run"](args)
        try:
            result = state["run"](args)
        except Exception as err:  # a failed first run must not break training
            log.warning(
                "coda: %s graph runs eagerly after its first compiled run failed: %s: %s",
                graph_kind, type(err).__name__, one_line(err),
            )  # fmt: skip
            state["run"] = eager_graph(gm)
            result = state["run"](args)
        state["proven"] = True
        return result

    guarded._boxed_call = True  # type: ignore[attr-defined]
    return guarded


def _ahead_of_time(module: Any, graph_kind: str, options: CodaOptions) -> dict[str, str] | None:
    """Compile the plan's kernels for `options.target`; kernel name -> the source compiled.
    Diagnostics are logged, or raised (AotError) when strict."""
    if options.target is None:
        return None
    from coda.codegen.aot import check, compile_kernels, raise_on_diagnostics

    kernels = compile_kernels(module, options.target)
    if options.strict:
        raise_on_diagnostics(k.resources for k in kernels)
    for line in check(k.resources for k in kernels):
        log.warning("%s", line)
    clean = sum(k.resources.clean for k in kernels)
    log.info(
        "coda: %s graph: %d of %d kernels compile cleanly for %s",
        graph_kind, clean, len(kernels), options.target.name,
    )  # fmt: skip
    return {k.resources.kernel: k.source for k in kernels}


def _boxed(
    program: Callable[[list[Any]], list[Any]],
    constants: list[torch.Tensor],
    sizes: Mapping[int, Dim] | None = None,
) -> Callable[[list[Any]], list[Any]]:
    """AOTAutograd's boxed calling convention: one list of arguments; the tensors folded
    at compile time follow the graph's own inputs. `sizes`: the outputs that are sizes
    (a forward returns those its backward takes), static by now."""
    static = {i: int(d) for i, d in (sizes or {}).items()}

    def run(args: list[Any]) -> list[Any]:
        if constants:
            args = [*args, *constants]
        outputs = program(args)
        for index, value in static.items():
            outputs[index] = value
        return outputs

    run._boxed_call = True  # type: ignore[attr-defined]
    return run


def partition(joint: fx.GraphModule, joint_inputs: Sequence[Any], **kwargs: Any) -> Any:
    """AOTAutograd's min-cut partitioner, recomputing views in the backward instead of
    saving them: coda's kernels read views in place, but a saved view that strides
    cannot express (q's `[B*S, H*D] -> [B*H, S, D]` head split) would need a copy.
    Cross-entropy is rewritten first (`fuse_cross_entropy`) so that the forward saves
    the LM head's operands and logsumexp instead of `[tokens, vocab]` log-probabilities,
    and the residual stream and constants are saved rather than recomputed, a gated
    MLP's projections recomputed rather than saved (`saved_values`)."""
    fuse_cross_entropy(joint)
    fuse_rotary(joint)
    prefer_saving(joint)
    prefer_recomputing(joint)
    prefer_recomputing_norms(joint)
    with torch._functorch.config.patch(recompute_views=True):
        return min_cut_rematerialization_partition(joint, joint_inputs, **kwargs)


def inference_graph(gm: fx.GraphModule) -> fx.GraphModule:
    """The inference graph as coda compiles it: an evaluation loss gets the same
    cross-entropy rewrite as training (no partition sees this graph), so an LM head
    under `no_grad` writes no [tokens, vocab] logits either."""
    fuse_cross_entropy(gm)
    fuse_rotary(gm)
    return gm


def coda_backend(
    gm: fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any
) -> Callable[..., Any]:
    """Dynamo backend; receives `options=`/`mode=` only when the user passes them."""
    options = CodaOptions.from_user(kwargs.get("options"))
    if is_symbolic(example_inputs):
        # AOTAutograd traces once with the symbolic sizes; each forward and backward graph
        # is imported once and planned per distinct size, a bounded number of them, with
        # size-generic kernels that sizes share (compiler/symbolic_graph.py)
        generic = dataclasses.replace(options, size_generic=True)
        try:
            return _compile(gm, example_inputs, options=generic, on_error="raise")
        except Exception as err:
            if options.strict:
                raise
            # the symbolic trace failed: each size is traced and compiled on its own
            log.info(
                "coda: graph is traced per size after the symbolic trace failed: %s: %s",
                type(err).__name__, one_line(err),
            )  # fmt: skip
            static = functools.partial(_compile, options=generic)
            return specialize_per_size(gm, static, strict=options.strict)
    return _compile(gm, example_inputs, options=options)


def _compile(
    gm: fx.GraphModule,
    example_inputs: Sequence[Any],
    *,
    options: CodaOptions,
    on_error: str = "eager",
) -> Callable[..., Any]:
    """aot_autograd + coda's graph compiler; a failure outside compile_graph
    (AOTAutograd, joint rewrites, partitioning) runs `gm` eagerly, or raises when
    `on_error` is "raise" (or the options are strict)."""
    # Dynamo's example inputs are the real parameters (AOTAutograd's compilers see fake
    # tensors): a weight-only policy packs their values once, at compile time
    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    params = {
        i: (names[i] if i < len(names) else f"arg{i}", value)
        for i, value in enumerate(example_inputs)
        if isinstance(value, torch.nn.Parameter)
    }
    compiler = functools.partial(compile_graph, options=options, params=params)
    try:
        return _aot(gm, example_inputs, compiler)
    except Exception as err:
        # AOTAutograd itself, the joint-graph rewrites or the partitioner failed: the
        # whole Dynamo graph runs eagerly (each graph compile_graph sees falls back alone)
        if options.strict or on_error == "raise":
            raise
        log.warning(
            "coda: graph runs eagerly after an internal error: %s: %s",
            type(err).__name__, one_line(err),
        )  # fmt: skip
        return gm.forward


def _aot(
    gm: fx.GraphModule, example_inputs: Sequence[Any], compiler: Callable[..., Any]
) -> Callable[..., Any]:
    return aot_autograd(
        fw_compiler=functools.partial(compiler, graph_kind="forward"),
        bw_compiler=functools.partial(compiler, graph_kind="backward"),
        inference_compiler=lambda gm, example_inputs: compiler(
            inference_graph(gm), example_inputs, graph_kind="inference"
        ),
        decompositions=DECOMPOSITIONS,
        partition_fn=partition,
    )(gm, example_inputs)
