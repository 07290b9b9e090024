"""`lowerc`: coda's command-line driver, built on xDSL's `xdsl-opt`.

    lowerc file.mlir -p fuse-epilogues          run passes over textual IR
    lowerc file.mlir --emit triton              lower a file to a stage and print it
    lowerc --model mlp --emit kernel            capture a model and print a stage
    lowerc --model my.py:Net --input-shape 4x16 --emit summary

    lowerc --model llama-block --dtype bf16 --target cuda:sm_90a --emit resources

Stages: fx (the aten graphs), graph, epilogue, kernel (IR), triton (generated
source), summary (the kernel table) and dot (the kernel plan as a Graphviz graph);
with --target, resources (registers, spills, shared memory, tensor cores per kernel;
exit code 1 if a kernel does not fit) and ptx/amdgcn (the assembly). Everything
`xdsl-opt` offers (`-p`, `--print-between-passes`, `--print-op-generic`,
`--split-input-file`, `--verify-diagnostics`, ...) works as usual. Errors in the input
are reported as `file:line:col: error: message` with exit code 1, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.utils.exceptions import DiagnosticException, ParseError, VerifyException
from xdsl.utils.lexer import Span
from xdsl.xdsl_opt_main import xDSLOptMain

from coda.dialects import CODA_DIALECTS
from coda.passes import PASSES

if TYPE_CHECKING:
    from coda.codegen.targets import Target

EMIT_STAGES = ("fx", "graph", "epilogue", "kernel", "triton", "summary", "dot")
#: stages compiled ahead of time for --target
TARGET_STAGES = ("resources", "ptx", "amdgcn")


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
        return tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 4x16") from None


class Lowerc(xDSLOptMain):
    def __init__(self, args: Sequence[str] | None = None):
        super().__init__(
            description="coda's IR driver (an xdsl-opt with coda's dialects)", args=args
        )

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

    def apply_passes(self, prog: ModuleOp) -> None:
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
            from coda.compiler.pipeline import lower

            stage = self.args.emit
            lower(prog, stage if stage in ("graph", "epilogue", "kernel") else "kernel")

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
        from coda.codegen.targets import parse_target

        if self.args.gpu_target is None:
            if self.args.emit in TARGET_STAGES:
                raise ValueError(f"--emit {self.args.emit} needs --target")
            return None
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
        captured = capture(spec, training=not self.args.inference)
        out = self.prepare_output()
        try:
            if self.args.emit == "fx":
                for kind, gm in captured.graphs:
                    out.write(f"# ===== {kind} =====\n{gm.code.strip()}\n\n")
                return
            module = captured.to_module()
            self.apply_passes(module)
            out.write(self.output_resulting_program(module))
        finally:
            if out is not sys.stdout:
                out.close()

    def run(self) -> None:
        self._target()  # a bad --target fails before a model is captured
        self.aot_diagnostics: list[str] = []
        if self.args.model:
            self.run_model()
        else:
            super().run()
        if self.aot_diagnostics:
            from coda.codegen.aot import AotError

            count = len(self.aot_diagnostics)
            raise AotError(f"{count} kernel diagnostic(s) for {self.args.gpu_target}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        Lowerc(args=argv).run()
    except ParseError as err:
        print(_format_parse_error(err), file=sys.stderr)
        return 1
    except LocatedVerifyError as err:
        print(err, file=sys.stderr)
        return 1
    except (DiagnosticException, ValueError, FileNotFoundError) as err:
        print(f"lowerc: error: {err}", file=sys.stderr)
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
