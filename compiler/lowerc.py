"""`lowerc`: coda's command-line driver, built on xDSL's `xdsl-opt`.

    lowerc file.mlir -p fuse-epilogues          run passes over textual IR
    lowerc file.mlir --emit triton              lower a file to a stage and print it
    lowerc --model mlp --emit kernel            capture a model and print a stage
    lowerc --model my.py:Net --input-shape 4x16 --emit summary

    lowerc --model llama-block --dynamic 0:1    the graphs with a symbolic sequence length
    lowerc --model llama-block --dtype bf16 --target cuda:sm_90a --emit resources
    lowerc --model mlp --precision mxfp8-act --emit epilogue   a low-precision policy

Stages: fx (the aten graphs), graph, epilogue, kernel (IR), triton (generated
source), summary (the kernel table) and dot (the kernel plan as a Graphviz graph);
with --target, resources (registers, spills, shared memory, tensor cores per kernel;
exit code 1 if a kernel does not fit) and ptx/amdgcn (the assembly). `--precision
POLICY` applies a low-precision policy by the names torch.compile's
options={"precision": ...} takes (coda.compiler.precision_policy): activation policies
from the epilogue stage on, weight-only policies on the kernel stage (to a --model's
parameters under --inference; on textual IR to the arguments marked {lowp.weight}). Everything
`xdsl-opt` offers (`-p`, `--print-between-passes`, `--print-op-generic`,
`--split-input-file`, `--verify-diagnostics`, ...) works as usual. Errors in the input
are reported as `file:line:col: error: message` with exit code 1, never as a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, NoReturn

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.utils.arg_spec import parse_pipeline
from xdsl.utils.exceptions import (
    ArgSpecParseError,
    DiagnosticException,
    ParseError,
    VerifyException,
)
from xdsl.utils.lexer import Span
from xdsl.xdsl_opt_main import xDSLOptMain

from coda.dialects import CODA_DIALECTS
from coda.passes import PASSES

if TYPE_CHECKING:
    from coda.codegen.targets import Target
    from coda.compiler.models import ModelSpec
    from coda.compiler.precision_policy import PrecisionPolicy

EMIT_STAGES = ("fx", "graph", "epilogue", "kernel", "triton", "summary", "dot")
#: stages compiled ahead of time for --target
TARGET_STAGES = ("resources", "ptx", "amdgcn")


class UsageError(ValueError):
    """A mistake on the command line: reported as one line, exit code 1."""


def _usage_error(message: str) -> NoReturn:
    """argparse's `error`, raising (one line, exit code 1) instead of printing the whole
    usage text and exiting with 2."""
    raise UsageError(message)


class LocatedVerifyError(VerifyException):
    """A verifier error with the source location of the offending op."""


class LocatedParser(Parser):
    """A parser that remembers where each op starts, for verifier messages."""

    def __init__(self, ctx, text: str | bytes, name: str, line_offset: int = 0):
        super().__init__(ctx, text, name)
        self.starts: dict[Operation, int] = {}
        self.line_offset = line_offset

    def parse_operation(self) -> Operation:
        start = self.pos
        try:
            op = super().parse_operation()
        except VerifyException as err:
            # constraint checks while building the op: report them where the op starts
            raise ParseError(Span(start, start, self.lexer.input), str(err)) from None
        self.starts[op] = start
        return op

    def location(self, op: Operation) -> str:
        start = self.starts.get(op)
        if start is None:
            return self.lexer.input.name
        span = Span(start, start, self.lexer.input, self.line_offset)
        loc = span.get_location()
        return f"{loc.file}:{loc.line}:{loc.col}"

    def parse_verified_module(self, implicit_module: bool) -> ModuleOp:
        module = self.parse_module(implicit_module)
        try:
            module.verify()
        except VerifyException as err:
            # report the innermost op whose own verifier fails, where it was written
            for op in module.walk(reverse=True):
                try:
                    op.verify(verify_nested_ops=False)
                except VerifyException as inner:
                    raise LocatedVerifyError(f"{self.location(op)}: error: {inner}") from None
            raise LocatedVerifyError(f"{self.lexer.input.name}: error: {err}") from None
        return module


def _format_parse_error(err: ParseError) -> str:
    loc = err.span.get_location()
    # print_with_context starts with its own location line; keep the source and carets
    context = err.span.print_with_context().rstrip("\n").split("\n", 1)[-1]
    return f"{loc.file}:{loc.line}:{loc.col}: error: {err.msg}\n{context}"


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 4x16")
    return shape


def _pipeline_error(spec: str, err: ArgSpecParseError) -> str:
    """xDSL's pipeline syntax error (source, carets, message) as one line."""
    lines = str(err).rstrip().splitlines()
    where = lines[1] if len(lines) > 1 else ""  # pass-pipeline:LINE:COL
    column = where.rsplit(":", 1)[-1]
    return f"bad pass pipeline '{spec}' at column {column}: {lines[-1].strip()}"


class Lowerc(xDSLOptMain):
    def __init__(self, args: Sequence[str] | None = None):
        super().__init__(
            description="coda's IR driver (an xdsl-opt with coda's dialects)", args=args
        )

    def setup_pipeline(self) -> None:
        """Check pass names and options first: xDSL reports them as a Python list or
        a multi-line syntax error (a BaseException that would escape as a traceback)."""
        spec = self.args.passes
        try:
            specs = list(parse_pipeline(spec))
        except ArgSpecParseError as err:
            raise UsageError(_pipeline_error(spec, err)) from None
        for pass_spec in specs:
            factory = self.available_passes.get(pass_spec.name)
            if factory is None:
                raise UsageError(
                    f"unknown pass '{pass_spec.name}' (coda's passes: {', '.join(PASSES)})"
                )
            pass_cls = factory()
            allowed = [
                f.name.replace("_", "-")
                for f in dataclasses.fields(pass_cls)
                if f.init and f.name != "name"
            ]
            for option in pass_spec.parameters:
                if option not in allowed and option.replace("_", "-") not in allowed:
                    takes = f"options: {', '.join(allowed)}" if allowed else "it takes none"
                    raise UsageError(f"pass '{pass_spec.name}' has no option '{option}' ({takes})")
        try:
            super().setup_pipeline()
        except (ValueError, TypeError) as err:  # e.g. an option value of the wrong type
            raise UsageError(f"bad pass pipeline '{spec}': {_one_line(err)}") from None

    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        for dialect in CODA_DIALECTS:
            if dialect.name not in self.ctx.registered_dialect_names:
                self.ctx.register_dialect(dialect.name, lambda d=dialect: d)

    def register_all_passes(self) -> None:
        super().register_all_passes()
        for name, factory in PASSES.items():  # coda's canonicalize replaces xDSL's
            self.register_pass(name, factory)

    def register_all_frontends(self) -> None:
        super().register_all_frontends()

        def parse_mlir(io: IO[bytes], line_offset: int = 0) -> ModuleOp:
            parser = LocatedParser(self.ctx, io.read(), self.get_input_name(), line_offset)
            return parser.parse_verified_module(not self.args.no_implicit_module)

        self.available_frontends["mlir"] = parse_mlir

    def parse_chunk(
        self, chunk: IO[bytes], file_extension: str, start_offset: int = 0
    ) -> ModuleOp | None:
        if file_extension == "mlir":
            return self.available_frontends["mlir"](chunk, start_offset)
        return super().parse_chunk(chunk, file_extension, start_offset)

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        # xDSLOptMain builds the parser; usage mistakes must raise, not print and exit 2
        arg_parser.error = _usage_error  # type: ignore[method-assign]
        arg_parser.add_argument(
            "--model",
            help="a built-in model (mlp, llama-block, gpt2-block) or path.py:attr",
        )
        arg_parser.add_argument(
            "--input-shape",
            type=_parse_shape,
            action="append",
            help="shape of a model input, e.g. 4x16 (repeat for several inputs)",
        )
        arg_parser.add_argument(
            "--dynamic",
            type=_parse_dynamic,
            action="append",
            metavar="INPUT:DIM",
            help="trace dim DIM of input INPUT as a symbolic size (torch._dynamo.mark_dynamic): "
            "the imported IR and the graph stage keep it symbolic; the epilogue stage "
            "binds it (bind-sizes) at the traced size",
        )
        arg_parser.add_argument(
            "--inference",
            action="store_true",
            help="capture the no-grad inference graph instead of forward + backward",
        )
        arg_parser.add_argument(
            "--emit",
            choices=EMIT_STAGES + TARGET_STAGES,
            help="lower to this stage and print it",
        )
        # xdsl-opt's output format keeps `-t`; `--target` names the GPU (dest gpu_target).
        # argparse has no public way to drop an option string, hence its private tables.
        xdsl_target = arg_parser._option_string_actions.pop("--target")
        xdsl_target.option_strings.remove("--target")
        arg_parser.add_argument(
            "--target",
            dest="gpu_target",
            help="GPU to compile for ahead of time: cuda:sm_90a, cuda:sm_100a, hip:gfx942, "
            "hip:gfx950 (with --emit resources|ptx|amdgcn)",
        )
        arg_parser.add_argument(
            "--dtype",
            default="fp32",
            help="dtype of a --model's parameters and inputs: fp32 (default), bf16, fp16",
        )
        arg_parser.add_argument(
            "--precision",
            default="none",
            help="low-precision policy, as options={'precision': ...} names it "
            "(e.g. mxfp8-act, w4a16 with --inference)",
        )

    def apply_passes(self, prog: ModuleOp) -> None:
        self._check_sizes_bound(prog)
        super().apply_passes(prog)
        if self.args.emit in (
            "graph",
            "epilogue",
            "kernel",
            "triton",
            "summary",
            "dot",
            *TARGET_STAGES,
        ):
            from coda.compiler.precision_policy import lower_with_policy

            stage = self.args.emit
            stage = stage if stage in ("graph", "epilogue", "kernel") else "kernel"
            policy = self._policy()
            lower_with_policy(prog, policy, stage)
            if policy.weight_only and stage == "kernel":
                from coda.dialects import make_context
                from coda.passes.precision import Precision

                Precision(policy=policy.name).apply(make_context(), prog)
                prog.verify()

    def _check_sizes_bound(self, prog: ModuleOp) -> None:
        """Planning passes need static sizes: on a graph with symbolic sizes, bind-sizes
        must run before the first of them (the default pipeline of --emit does)."""
        from coda.passes import SYMBOLIC_PASSES
        from coda.passes.bind_sizes import symbolic_value

        names = [p.name for p in parse_pipeline(self.args.passes)] if self.args.passes else []
        planning = next((n for n in names if n == "bind-sizes" or n not in SYMBOLIC_PASSES), None)
        if planning is None or planning == "bind-sizes":
            return
        value = symbolic_value(prog)
        if value is not None:
            name = f"%{value.name_hint}: " if value.name_hint else ""
            raise UsageError(
                f"pass '{planning}' needs static sizes: run bind-sizes first ({name}{value.type})"
            )

    def _policy(self) -> PrecisionPolicy:
        """The --precision policy; a bad name is a usage error."""
        from coda.compiler.precision_policy import PrecisionPolicy

        return PrecisionPolicy.from_user(self.args.precision)

    def output_resulting_program(self, prog: ModuleOp) -> str:
        if self.args.emit in TARGET_STAGES:
            return self._ahead_of_time(prog)
        if self.args.emit == "triton":
            from coda.compiler.report import triton_listing

            return triton_listing(prog)
        if self.args.emit == "summary":
            from coda.compiler.report import kernel_summary

            return kernel_summary(prog)
        if self.args.emit == "dot":
            from coda.compiler.plan_dot import plan_dot

            return plan_dot(prog)
        if self.args.emit == "fx":
            raise ValueError("--emit fx needs --model (textual IR has no FX graph)")
        return super().output_resulting_program(prog)

    def _ahead_of_time(self, prog: ModuleOp) -> str:
        from coda.codegen.aot import check, compile_kernels
        from coda.compiler.aot_report import assembly_listing, resources_table

        target = self._target()
        kernels = compile_kernels(prog, target)
        resources = [k.resources for k in kernels]
        self.aot_diagnostics = check(resources)
        if self.args.emit == "resources":
            return resources_table(resources, target)
        return assembly_listing(kernels, target)

    def _target(self) -> Target | None:
        """The --target GPU; checks that it and --emit go together."""
        if self.args.gpu_target is None:
            if self.args.emit in TARGET_STAGES:
                raise ValueError(f"--emit {self.args.emit} needs --target")
            return None
        from coda.codegen.targets import parse_target  # (imports torch: only when used)

        target = parse_target(self.args.gpu_target)
        if self.args.emit not in TARGET_STAGES:
            raise ValueError(f"--target needs --emit {'|'.join(TARGET_STAGES)}")
        if self.args.emit in ("ptx", "amdgcn") and self.args.emit != target.assembly:
            raise ValueError(f"{target.name} compiles to {target.assembly}, not {self.args.emit}")
        return target

    def run_model(self) -> None:
        from coda.compiler.capture import capture
        from coda.compiler.models import DTYPES, load_model

        dtype = DTYPES.get(self.args.dtype)
        if dtype is None:
            raise ValueError(f"unknown dtype '{self.args.dtype}' (use one of {', '.join(DTYPES)})")
        spec = load_model(self.args.model, tuple(self.args.input_shape or ()) or None, dtype)
        _check_model_runs(self.args.model, spec)
        dynamic = tuple(self.args.dynamic or ())
        for index, dim in dynamic:
            if index >= len(spec.input_shapes) or dim >= len(spec.input_shapes[index]):
                shapes = ", ".join("x".join(map(str, s)) for s in spec.input_shapes)
                raise UsageError(f"--dynamic {index}:{dim} is outside the inputs ({shapes})")
        captured = capture(spec, training=not self.args.inference, dynamic=dynamic)
        out = self.prepare_output()
        try:
            if self.args.emit == "fx":
                for kind, gm in captured.graphs:
                    out.write(f"# ===== {kind} =====\n{gm.code.strip()}\n\n")
                return
            module = captured.to_module()
            if self._policy().weight_only:
                self._mark_weights(module, captured.parameters)
            self.apply_passes(module)
            out.write(self.output_resulting_program(module))
        finally:
            if out is not sys.stdout:
                out.close()

    def _mark_weights(self, module: ModuleOp, parameters: Sequence[int]) -> None:
        """Mark a --model's parameters {lowp.weight} as the backend does (weight-only
        policies compile inference graphs only)."""
        from xdsl.dialects.func import FuncOp

        from coda.compiler.precision_policy import mark_weights

        policy = self._policy()
        if not self.args.inference:
            raise UsageError(f"--precision {policy.name} is an inference policy: add --inference")
        for func in module.ops:
            if isinstance(func, FuncOp) and func.sym_name.data == "inference":
                mark_weights(func, [i for i in parameters if i < len(func.args)])

    def run(self) -> None:
        self._target()  # a bad --target fails before a model is captured
        if self.args.precision != "none":
            self._policy()  # and so does a bad --precision (the module imports torch)
        self.aot_diagnostics: list[str] = []
        if self.args.model:
            self.run_model()
        else:
            super().run()
        if self.aot_diagnostics:
            from coda.codegen.aot import AotError

            count = len(self.aot_diagnostics)
            raise AotError(f"{count} kernel diagnostic(s) for {self.args.gpu_target}")


def _parse_dynamic(text: str) -> tuple[int, int]:
    """`--dynamic 0:1` -> (input 0, dim 1)."""
    index, colon, dim = text.partition(":")
    if not (colon and index.isdigit() and dim.isdigit()):
        raise argparse.ArgumentTypeError(f"'{text}' is not INPUT:DIM (e.g. 0:1)")
    return int(index), int(dim)


def _check_model_runs(name: str, spec: ModelSpec) -> None:
    """Run the model eagerly once: a model that does not build or does not accept the
    given input shapes is the user's mistake, reported as one line (Dynamo would report
    it as a page of traceback and internal frames)."""
    import torch

    shapes = ", ".join("x".join(map(str, shape)) for shape in spec.input_shapes)
    try:
        model = spec.factory()
        if not isinstance(model, torch.nn.Module):
            raise UsageError(f"model '{name}' is a {type(model).__name__}, not a torch.nn.Module")
        model = model.to(spec.dtype)
        with torch.no_grad():
            model(*(torch.randn(shape, dtype=spec.dtype) for shape in spec.input_shapes))
    except UsageError:
        raise
    except Exception as err:
        raise UsageError(
            f"model '{name}' fails on inputs of shape {shapes}: "
            f"{type(err).__name__}: {_one_line(err)}"
        ) from None


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    try:
        Lowerc(args=argv).run()
    except ParseError as err:
        print(_format_parse_error(err), file=sys.stderr)
        return 1
    except LocatedVerifyError as err:
        print(err, file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        print(f"lowerc: error: input file '{err.filename}' does not exist", file=sys.stderr)
        return 1
    except (DiagnosticException, ValueError) as err:
        print(f"lowerc: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if os.environ.get("CODA_DEBUG"):
            raise
        print(
            f"lowerc: internal error: {type(err).__name__}: {err} "
            "(set CODA_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
