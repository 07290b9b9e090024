"""kernel.loop -> Triton: generated modules run under Triton's interpreter against torch."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch
import triton
from codegen_support import load, parse_kernel

from coda.codegen import CodegenError, generate_kernel_source
from coda.dialects.pointwise_fns import POINTWISE_FNS


def build(args: dict[str, str], body: str, tmp_path: Path) -> tuple[str, ModuleType]:
    source = generate_kernel_source(parse_kernel(args, body))
    return source, load(source, tmp_path)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_pointwise_chain_broadcast_where(tmp_path: Path) -> None:
    x, b, y = "tensor<4x6x8xf32>", "tensor<8xf32>", "tensor<4x1x8xf16>"
    p = "tensor<4x6x8xi1>"
    source, mod = build(
        {"x": x, "b": b, "y": y},
        f"""
%r, %m = kernel.loop "bias_relu_select" (%x, %b, %y) : ({x}, {b}, {y}) -> ({x}, {p}) {{
^bb0(%xa: {x}, %ba: {b}, %ya: {y}):
  %zero = graph.constant 0.0 : f32 -> tensor<f32>
  %0 = graph.pointwise "add"(%xa, %ba) : ({x}, {b}) -> {x}
  %pos = graph.pointwise "gt"(%0, %zero) : ({x}, tensor<f32>) -> {p}
  %1 = graph.pointwise "where"(%pos, %0, %ya) : ({p}, {x}, {y}) -> {x}
  %2 = graph.pointwise "gelu_tanh"(%1) : ({x}) -> {x}
  kernel.yield %2, %pos : {x}, {p}
}}""",
        tmp_path,
    )
    assert "def bias_relu_select(" in source
    assert '# %pos = graph.pointwise "gt"(%0, %zero)' in source
    assert "# kernel.yield %2 -> result 0" in source
    xt = torch.randn(4, 6, 8)
    bt, yt = torch.randn(8), torch.randn(4, 1, 8).half()
    out, mask = torch.empty(4, 6, 8), torch.empty(4, 6, 8, dtype=torch.bool)
    assert mod.launch(xt, bt, yt, out, mask) == (1,)
    pos = xt + bt > 0
    selected = torch.where(pos, xt + bt, yt.float())
    close(out, torch.nn.functional.gelu(selected, approximate="tanh"))
    assert torch.equal(mask, pos)


def test_pointwise_non_contiguous_and_expanded_inputs(tmp_path: Path) -> None:
    t = "tensor<24x40xf32>"
    _, mod = build(
        {"a": t, "b": t},
        f"""
%r = kernel.loop "mul_cast" (%a, %b) : ({t}, {t}) -> (tensor<24x40xbf16>) {{
^bb0(%x: {t}, %y: {t}):
  %0 = graph.pointwise "mul"(%x, %y) : ({t}, {t}) -> {t}
  %1 = graph.pointwise "cast"(%0) : ({t}) -> tensor<24x40xbf16>
  kernel.yield %1 : tensor<24x40xbf16>
}}""",
        tmp_path,
    )
    a = torch.randn(40, 24).t()  # transposed view
    b = torch.randn(24, 1).expand(24, 40)  # stride 0 along dim 1
    out = torch.empty(24, 40, dtype=torch.bfloat16)
    assert mod.launch(a, b, out) == (1,)
    # the interpreter truncates f32 -> bf16 (triton-cpu notes): allow one bf16 ulp
    torch.testing.assert_close(out.float(), a * b, rtol=1e-2, atol=1e-2)


def test_pointwise_rank0_and_empty(tmp_path: Path) -> None:
    s = "tensor<f32>"
    _, mod = build(
        {"a": s},
        f"""
%r = kernel.loop "scalar_sqrt" (%a) : ({s}) -> ({s}) {{
^bb0(%x: {s}):
  %0 = graph.pointwise "sqrt"(%x) : ({s}) -> {s}
  kernel.yield %0 : {s}
}}""",
        tmp_path,
    )
    out = torch.empty(())
    mod.launch(torch.tensor(6.25), out)
    assert out.item() == 2.5

    e = "tensor<0x8xf32>"
    _, mod = build(
        {"a": e},
        f"""
%r = kernel.loop "empty_neg" (%a) : ({e}) -> ({e}) {{
^bb0(%x: {e}):
  %0 = graph.pointwise "neg"(%x) : ({e}) -> {e}
  kernel.yield %0 : {e}
}}""",
        tmp_path,
    )
    assert mod.launch(torch.empty(0, 8), torch.empty(0, 8)) == (0,)


def test_sum_over_dim0_bias_grad(tmp_path: Path) -> None:
    t, r = "tensor<20x24xf32>", "tensor<24xf32>"
    source, mod = build(
        {"dy": t},
        f"""
%db = kernel.loop "bias_grad" (%dy) : ({t}) -> ({r}) {{
^bb0(%g: {t}):
  %0 = graph.reduce "sum" %g dims array<i64: 0> : {t} -> {r}
  kernel.yield %0 : {r}
}}""",
        tmp_path,
    )
    assert '# %0 = graph.reduce "sum" %g dims array<i64: 0>' in source
    dy = torch.randn(20, 24)
    out = torch.empty(24)
    mod.launch(dy, out)
    close(out, dy.sum(0))


def test_mean_and_amax_keepdim_last_dim(tmp_path: Path) -> None:
    t, k = "tensor<6x40xf32>", "tensor<6x1xf32>"
    _, mod = build(
        {"x": t},
        f"""
%m, %a, %n = kernel.loop "row_stats" (%x) : ({t}) -> ({k}, {k}, tensor<6xf32>) {{
^bb0(%xa: {t}):
  %mean = graph.reduce "mean" %xa dims array<i64: 1> keepdim : {t} -> {k}
  %max = graph.reduce "amax" %xa dims array<i64: 1> keepdim : {t} -> {k}
  %min = graph.reduce "amin" %xa dims array<i64: 1> : {t} -> tensor<6xf32>
  kernel.yield %mean, %max, %min : {k}, {k}, tensor<6xf32>
}}""",
        tmp_path,
    )
    x = torch.randn(6, 40)
    x[2, 7] = float("nan")  # amax/amin propagate NaN like torch
    mean, amax, amin = torch.empty(6, 1), torch.empty(6, 1), torch.empty(6)
    mod.launch(x, mean, amax, amin)
    close(mean, x.mean(1, keepdim=True))
    close(amax, x.amax(1, keepdim=True))
    close(amin, x.amin(1))


def test_reduction_with_prologue_aux_output_and_post_op(tmp_path: Path) -> None:
    """RMS statistics: y = x * w saved, rstd = rsqrt(mean(y * y) + eps) per row."""
    t, w, k = "tensor<5x300xf32>", "tensor<300xf32>", "tensor<5x1xf32>"
    source, mod = build(
        {"x": t, "w": w},
        f"""
%y, %rstd = kernel.loop "rms_stats" (%x, %w) : ({t}, {w}) -> ({t}, {k}) {{
^bb0(%xa: {t}, %wa: {w}):
  %eps = graph.constant 1.0e-05 : f32 -> tensor<f32>
  %0 = graph.pointwise "mul"(%xa, %wa) : ({t}, {w}) -> {t}
  %1 = graph.pointwise "square"(%0) : ({t}) -> {t}
  %2 = graph.reduce "mean" %1 dims array<i64: 1> keepdim : {t} -> {k}
  %3 = graph.pointwise "add"(%2, %eps) : ({k}, tensor<f32>) -> {k}
  %4 = graph.pointwise "rsqrt"(%3) : ({k}) -> {k}
  kernel.yield %0, %4 : {t}, {k}
}}""",
        tmp_path,
    )
    assert "for r_start in range(0, R, BLOCK_R):" in source
    x = torch.randn(300, 5).t()  # non-contiguous input
    wt = torch.randn(300)
    y, rstd = torch.empty(5, 300), torch.empty(5, 1)
    mod.launch(x, wt, y, rstd)  # R = 300 > MAX_BLOCK_LEN: several chunks
    close(y, x * wt)
    close(rstd, torch.rsqrt((x * wt).square().mean(1, keepdim=True) + 1e-5))


def test_rank4_reduce_middle_dims_and_full_reduction(tmp_path: Path) -> None:
    t, k, s = "tensor<2x3x5x4xf32>", "tensor<2x4xf32>", "tensor<2x3x1x1xf32>"
    _, mod = build(
        {"x": t, "s": s},
        f"""
%r = kernel.loop "mid_sum" (%x, %s) : ({t}, {s}) -> ({k}) {{
^bb0(%xa: {t}, %sa: {s}):
  %0 = graph.pointwise "mul"(%xa, %sa) : ({t}, {s}) -> {t}
  %1 = graph.reduce "sum" %0 dims array<i64: 1, 2> : {t} -> {k}
  kernel.yield %1 : {k}
}}""",
        tmp_path,
    )
    x, scale = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 1, 1)
    out = torch.empty(2, 4)
    mod.launch(x, scale, out)
    close(out, (x * scale).sum((1, 2)))

    _, mod = build(
        {"x": t},
        f"""
%r = kernel.loop "total" (%x) : ({t}) -> (tensor<f32>) {{
^bb0(%xa: {t}):
  %0 = graph.reduce "sum" %xa dims array<i64: 0, 1, 2, 3> : {t} -> tensor<f32>
  kernel.yield %0 : tensor<f32>
}}""",
        tmp_path,
    )
    total = torch.empty(())
    mod.launch(x, total)
    close(total, x.sum())


def test_softmax_runs_in_passes_of_one_kernel(tmp_path: Path) -> None:
    """amax, then exp(x - amax) summed, then the division: three passes over each row
    in one kernel, x re-read and exp recomputed instead of stored."""
    t, k = "tensor<6x40xf32>", "tensor<6x1xf32>"
    source, mod = build(
        {"x": t},
        f"""
%r, %m = kernel.loop "softmax" (%x) : ({t}) -> ({t}, {k}) {{
^bb0(%xa: {t}):
  %0 = graph.reduce "amax" %xa dims array<i64: 1> keepdim : {t} -> {k}
  %1 = graph.pointwise "sub"(%xa, %0) : ({t}, {k}) -> {t}
  %2 = graph.pointwise "exp"(%1) : ({t}) -> {t}
  %3 = graph.reduce "sum" %2 dims array<i64: 1> keepdim : {t} -> {k}
  %4 = graph.pointwise "div"(%2, %3) : ({t}, {k}) -> {t}
  kernel.yield %4, %0 : {t}, {k}
}}""",
        tmp_path,
    )
    assert "# pass 3 of 3 over the reduced coordinates" in source
    x = torch.randn(6, 40) * 4
    out, amax = torch.empty(6, 40), torch.empty(6, 1)
    mod.launch(x, out, amax)
    close(out, torch.softmax(x, dim=1))
    assert torch.equal(amax, x.amax(1, keepdim=True))


def test_layer_norm_statistics_and_normalization_in_one_kernel(tmp_path: Path) -> None:
    """mean; then the centered squares' mean, eps and rsqrt after that pass; then the
    normalized output: a reduction of values that depend on an earlier reduction."""
    t, k, w = "tensor<5x3x24xf32>", "tensor<5x3x1xf32>", "tensor<24xf32>"
    _, mod = build(
        {"x": t, "w": w},
        f"""
%r = kernel.loop "layer_norm" (%x, %w) : ({t}, {w}) -> ({t}) {{
^bb0(%xa: {t}, %wa: {w}):
  %eps = graph.constant 1.0e-05 : f32 -> tensor<f32>
  %0 = graph.reduce "mean" %xa dims array<i64: 2> keepdim : {t} -> {k}
  %1 = graph.pointwise "sub"(%xa, %0) : ({t}, {k}) -> {t}
  %2 = graph.pointwise "square"(%1) : ({t}) -> {t}
  %3 = graph.reduce "mean" %2 dims array<i64: 2> keepdim : {t} -> {k}
  %4 = graph.pointwise "add"(%3, %eps) : ({k}, tensor<f32>) -> {k}
  %5 = graph.pointwise "rsqrt"(%4) : ({k}) -> {k}
  %6 = graph.pointwise "mul"(%1, %5) : ({t}, {k}) -> {t}
  %7 = graph.pointwise "mul"(%6, %wa) : ({t}, {w}) -> {t}
  kernel.yield %7 : {t}
}}""",
        tmp_path,
    )
    x, wt = torch.randn(5, 3, 24) * 3 + 1, torch.randn(24)
    out = torch.empty(5, 3, 24)
    mod.launch(x, wt, out)
    close(out, torch.nn.functional.layer_norm(x, (24,), eps=1e-5) * wt)


def test_rms_norm_input_gradient_reads_a_per_row_operand_after_the_loop(
    tmp_path: Path,
) -> None:
    """The RMSNorm input gradient in one kernel: sum(g * x) per row; then, after that
    pass, -0.5 * sum * rstd^3 / N with rstd loaded once per row; then a second pass
    adding the per-row factor times x to the incoming gradient."""
    t, k = "tensor<6x3x40xf32>", "tensor<6x3x1xf32>"
    source, mod = build(
        {"g": t, "x": t, "rstd": k, "gx": t},
        f"""
%r = kernel.loop "rms_norm_backward" (%g, %x, %rstd, %gx) : ({t}, {t}, {k}, {t}) -> ({t}) {{
^bb0(%ga: {t}, %xa: {t}, %ra: {k}, %gxa: {t}):
  %half = graph.constant -5.000000e-01 : f32 -> tensor<f32>
  %n = graph.constant 4.000000e+01 : f32 -> tensor<f32>
  %0 = graph.pointwise "mul"(%ga, %xa) : ({t}, {t}) -> {t}
  %1 = graph.reduce "sum" %0 dims array<i64: 2> keepdim : {t} -> {k}
  %2 = graph.pointwise "mul"(%1, %half) : ({k}, tensor<f32>) -> {k}
  %3 = graph.pointwise "cube"(%ra) : ({k}) -> {k}
  %4 = graph.pointwise "mul"(%2, %3) : ({k}, {k}) -> {k}
  %5 = graph.pointwise "div"(%4, %n) : ({k}, tensor<f32>) -> {k}
  %6 = graph.pointwise "mul"(%5, %xa) : ({k}, {t}) -> {t}
  %7 = graph.pointwise "add"(%gxa, %6) : ({t}, {t}) -> {t}
  kernel.yield %7 : {t}
}}""",
        tmp_path,
    )
    assert "# pass 2 of 2 over the reduced coordinates" in source
    assert "# %ra: one value per row" in source
    g, x, gx = torch.randn(6, 3, 40), torch.randn(6, 3, 40), torch.randn(6, 3, 40)
    rstd = torch.rand(6, 3, 1) + 0.5
    out = torch.empty(6, 3, 40)
    mod.launch(g, x, rstd, gx, out)
    factor = -0.5 * (g * x).sum(-1, keepdim=True) * rstd**3 / 40
    close(out, gx + factor * x)


def test_loop_kernels_compile_for_gpu(tmp_path: Path) -> None:
    """The generated Triton is valid for an H100, compiled on this CPU-only machine."""
    from triton.backends.compiler import GPUTarget

    t, k = "tensor<4x64xf16>", "tensor<4xf32>"
    kernel = parse_kernel(
        {"x": t},
        f"""
%e, %s = kernel.loop "silu_rowsum" (%x) : ({t}) -> ({t}, {k}) {{
^bb0(%xa: {t}):
  %0 = graph.pointwise "silu"(%xa) : ({t}) -> {t}
  %1 = graph.pointwise "cast"(%0) : ({t}) -> tensor<4x64xf32>
  %2 = graph.reduce "sum" %1 dims array<i64: 1> : tensor<4x64xf32> -> {k}
  kernel.yield %0, %2 : {t}, {k}
}}""",
    )
    mod = load(generate_kernel_source(kernel), tmp_path, interpret=False)
    fn = mod.silu_rowsum
    pointers = {"xa_ptr": "*fp16", "out0_ptr": "*fp16", "out1_ptr": "*fp32"}
    signature = {
        p.name: "constexpr" if p.is_constexpr else pointers.get(p.name, "i32") for p in fn.params
    }
    source = triton.compiler.ASTSource(
        fn=fn, signature=signature, constexprs={"BLOCK_X": 8, "BLOCK_R": 64}
    )
    assert "ld.global" in triton.compile(source, target=GPUTarget("cuda", 90, 32)).asm["ptx"]


# masked-off lanes compute on zeros (log(0), 1/0): numpy warns, the stores drop them
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("fn", sorted(POINTWISE_FNS))
def test_every_registry_function_matches_torch(fn: str, tmp_path: Path) -> None:
    entry = POINTWISE_FNS[fn]
    f, b = "tensor<16xf32>", "tensor<16xi1>"
    arg_types = [b if fn == "where" and i == 0 else f for i in range(entry.arity)]
    result = b if entry.predicate else f
    names = [f"a{i}" for i in range(entry.arity)]
    operands = ", ".join(f"%{n}" for n in names)
    types = ", ".join(arg_types)
    _, mod = build(
        dict(zip(names, arg_types, strict=True)),
        f"""
%r = kernel.loop "apply_{fn}" ({operands}) : ({types}) -> ({result}) {{
^bb0({", ".join(f"%x{i}: {t}" for i, t in enumerate(arg_types))}):
  %0 = graph.pointwise "{fn}"({", ".join(f"%x{i}" for i in range(entry.arity))})
      : ({types}) -> {result}
  kernel.yield %0 : {result}
}}""",
        tmp_path,
    )
    # positive operands keep log, sqrt, rsqrt and pow in their domains
    torch.manual_seed(0)
    args = [torch.rand(16) * 1.5 + 0.25 for _ in range(entry.arity)]
    if fn == "where":
        args[0] = torch.rand(16) > 0.5
    out = torch.empty(16, dtype=torch.bool if entry.predicate else torch.float32)
    mod.launch(*args, out)
    expected = entry.torch_ref(*args)
    if entry.predicate:
        assert torch.equal(out, expected)
    else:
        close(out, expected)


def test_reduction_reads_a_head_merge_in_place(tmp_path: Path) -> None:
    """The bias gradient of an output projection: sum over rows of [B,H,S,D] viewed as
    [B*S, H*D]. The merge is no torch view; the kernel reads it through its layout."""
    a, p, m = "tensor<2x3x5x4xf32>", "tensor<2x5x3x4xf32>", "tensor<10x12xf32>"
    source, mod = build(
        {"a": a},
        f"""
%s = kernel.loop "bias_grad" (%a) : ({a}) -> (tensor<12xf32>) {{
^bb0(%aa: {a}):
  %t = graph.view "permute" %aa perm array<i64: 0, 2, 1, 3> : {a} -> {p}
  %g = graph.view "reshape" %t : {p} -> {m}
  %0 = graph.reduce "sum" %g dims array<i64: 0> : {m} -> tensor<12xf32>
  kernel.yield %0 : tensor<12xf32>
}}""",
        tmp_path,
    )
    # x runs over the 12 columns (D, H), r over the 10 rows (S, B): one div/mod each
    assert "g_offs_x = stride_g_1 * (i1 // 4) + stride_g_3 * (i1 % 4)" in source, source
    assert "(stride_g_0 * (i0 // 5) + stride_g_2 * (i0 % 5))[None, :]" in source
    at = torch.randn(2, 3, 5, 4)
    out = torch.empty(12)
    mod.launch(at, out)
    close(out, at.transpose(1, 2).reshape(10, 12).sum(0))
    mod.launch(at.transpose(0, 3).contiguous().transpose(0, 3), out)  # other strides
    close(out, at.transpose(1, 2).reshape(10, 12).sum(0))


def test_pointwise_reads_a_reshape_that_is_not_a_layout(tmp_path: Path) -> None:
    """[6, 4]^T -> [3, 8] has no layout (8 straddles rows of 6): flat-index addressing."""
    src, t, x = "tensor<6x4xf32>", "tensor<4x6xf32>", "tensor<3x8xf32>"
    source, mod = build(
        {"a": src, "b": x},
        f"""
%y = kernel.loop "flat_add" (%a, %b) : ({src}, {x}) -> ({x}) {{
^bb0(%aa: {src}, %bb: {x}):
  %t = graph.view "permute" %aa perm array<i64: 1, 0> : {src} -> {t}
  %r = graph.view "reshape" %t : {t} -> {x}
  %0 = graph.pointwise "add"(%r, %bb) : ({x}, {x}) -> {x}
  kernel.yield %0 : {x}
}}""",
        tmp_path,
    )
    assert "((8 * i0 + i1) % 6)" in source, source
    at, bt = torch.randn(6, 4), torch.randn(3, 8)
    out = torch.empty(3, 8)
    mod.launch(at, bt, out)
    close(out, at.t().reshape(3, 8) + bt)


def test_concat_of_operands_views_and_constants(tmp_path: Path) -> None:
    """Each lane reads the one piece whose range holds its index: an operand, a strided
    slice of another operand (read at index - start through its layout) and a splat."""
    a, x, s = "tensor<3x2x5xf32>", "tensor<3x8x5xf32>", "tensor<3x4x5xf32>"
    c, out = "tensor<3x1x5xf32>", "tensor<3x7x5xf32>"
    source, mod = build(
        {"a": a, "x": x, "w": "tensor<5xf32>"},
        f"""
%r = kernel.loop "concat_scale" (%a, %x, %w) : ({a}, {x}, tensor<5xf32>) -> ({out}) {{
^bb0(%pa: {a}, %px: {x}, %pw: tensor<5xf32>):
  %odd = graph.view "slice" %px slice array<i64: 1, 1, 2> : {x} -> {s}
  %one = graph.constant -2.5 : f32 -> {c}
  %0 = graph.concat %pa, %odd, %one dim 1 : ({a}, {s}, {c}) -> {out}
  %1 = graph.pointwise "mul"(%0, %pw) : ({out}, tensor<5xf32>) -> {out}
  kernel.yield %1 : {out}
}}""",
        tmp_path,
    )
    assert "tl.where(i1 < 2, " in source and "tl.where(i1 < 6, " in source
    at, xt, wt = torch.randn(3, 2, 5), torch.randn(3, 8, 5), torch.randn(5)
    result = torch.empty(3, 7, 5)
    mod.launch(at, xt, wt, result)
    expected = torch.cat([at, xt[:, 1::2], torch.full((3, 1, 5), -2.5)], dim=1) * wt
    assert torch.equal(result, expected)


def test_concat_reads_a_transposed_operand(tmp_path: Path) -> None:
    t, out = "tensor<4x3xf32>", "tensor<8x3xf32>"
    _, mod = build(
        {"p": t, "q": t},
        f"""
%r = kernel.loop "concat" (%p, %q) : ({t}, {t}) -> ({out}) {{
^bb0(%a: {t}, %b: {t}):
  %0 = graph.concat %b, %a dim 0 : ({t}, {t}) -> {out}
  kernel.yield %0 : {out}
}}""",
        tmp_path,
    )
    p, q = torch.randn(3, 4).t(), torch.randn(4, 3)  # p arrives transposed: strides (1, 4)
    result = torch.empty(8, 3)
    mod.launch(p, q, result)
    assert torch.equal(result, torch.cat([q, p]))


def test_rejects_concat_in_a_reduction(tmp_path: Path) -> None:
    t, out = "tensor<4x3xf32>", "tensor<8x3xf32>"
    kernel = parse_kernel(
        {"p": t},
        f"""
%r = kernel.loop "concat_sum" (%p) : ({t}) -> (tensor<3xf32>) {{
^bb0(%a: {t}):
  %0 = graph.concat %a, %a dim 0 : ({t}, {t}) -> {out}
  %1 = graph.reduce "sum" %0 dims array<i64: 0> : {out} -> tensor<3xf32>
  kernel.yield %1 : tensor<3xf32>
}}""",
    )
    with pytest.raises(CodegenError, match="concatenates and reduces"):
        generate_kernel_source(kernel)


def test_bf16_stores_round_to_nearest_even(tmp_path: Path) -> None:
    """Narrowing float32 -> bfloat16 at a store matches torch bit for bit (ties to even,
    overflow to inf, NaN and signed zeros kept), also under the interpreter, whose own
    cast truncates."""
    t, b = "tensor<4096xf32>", "tensor<4096xbf16>"
    _, mod = build(
        {"a": t},
        f"""
%r = kernel.loop "to_bf16" (%a) : ({t}) -> ({b}) {{
^bb0(%x: {t}):
  %0 = graph.pointwise "cast"(%x) : ({t}) -> {b}
  kernel.yield %0 : {b}
}}""",
        tmp_path,
    )
    gen = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2**32, (4000,), generator=gen, dtype=torch.int64)
    x = bits.to(torch.int32).view(torch.float32)  # every exponent, signs, NaNs, subnormals
    ties = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)])  # exactly halfway
    edges = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 3.3895e38, 1e-40])
    x = torch.cat([x, ties, edges, torch.randn(4096 - 4000 - 9, generator=gen)])
    out = torch.empty(4096, dtype=torch.bfloat16)
    mod.launch(x, out)
    expected = x.to(torch.bfloat16)
    nan = expected.isnan()
    assert torch.equal(out.isnan(), nan)
    assert torch.equal(out[~nan].view(torch.int16), expected[~nan].view(torch.int16))


def test_comparisons_see_low_precision_values_rounded_to_their_type(tmp_path: Path) -> None:
    """A bf16 (f16) value computed in the kernel is float32 there; a comparison must see
    it rounded to its IR type, as eager and a store would: the gradient of amax(x * w)
    compares the recomputed x * w with the stored bf16 amax, and in float32 no element
    equalled it (the fuzzer's NaN gradient). Loaded operands are compared as loaded."""
    for elem, dtype in (("bf16", torch.bfloat16), ("f16", torch.float16)):
        t, r, p = f"tensor<4x31x{elem}>", f"tensor<4x1x{elem}>", "tensor<4x31xi1>"
        source, mod = build(
            {"x": t, "w": t, "m": r},
            f"""
%r = kernel.loop "is_max_{elem}" (%x, %w, %m) : ({t}, {t}, {r}) -> ({p}) {{
^bb0(%xa: {t}, %wa: {t}, %ma: {r}):
  %0 = graph.pointwise "mul"(%xa, %wa) : ({t}, {t}) -> {t}
  %1 = graph.pointwise "eq"(%ma, %0) : ({r}, {t}) -> {p}
  kernel.yield %1 : {p}
}}""",
            tmp_path,
        )
        assert "== ma" not in source and "ma == " in source  # the loaded operand as is
        gen = torch.Generator().manual_seed(0)
        x, w = (torch.randn(4, 31, generator=gen).to(dtype) for _ in range(2))
        m = (x * w).amax(-1, keepdim=True)
        out = torch.empty(4, 31, dtype=torch.bool)
        mod.launch(x, w, m, out)
        assert torch.equal(out, m == x * w)
        assert out.any(-1).all()  # every row finds its max


def test_upcasts_see_low_precision_values_rounded_to_their_type(tmp_path: Path) -> None:
    """An upcast of a bf16 (f16) value computed in the kernel reads it rounded to its
    type, as eager and a reload of a store would: a norm's upcast x and its statistics
    saved in bf16 must agree (x - mean of a constant row is 0 only if both saw the same
    x). Loaded operands are cast as loaded."""
    for elem, dtype in (("bf16", torch.bfloat16), ("f16", torch.float16)):
        t, f = f"tensor<4x31x{elem}>", "tensor<4x31xf32>"
        source, mod = build(
            {"x": t, "c": t},
            f"""
%r, %s = kernel.loop "upcast_{elem}" (%x, %c) : ({t}, {t}) -> ({f}, {f}) {{
^bb0(%xa: {t}, %ca: {t}):
  %0 = graph.pointwise "sub"(%xa, %ca) : ({t}, {t}) -> {t}
  %1 = graph.pointwise "cast"(%0) : ({t}) -> {f}
  %2 = graph.pointwise "cast"(%xa) : ({t}) -> {f}
  kernel.yield %1, %2 : {f}, {f}
}}""",
            tmp_path,
        )
        gen = torch.Generator().manual_seed(0)
        x, c = (torch.randn(4, 31, generator=gen).to(dtype) for _ in range(2))
        upcast, loaded = torch.empty(4, 31), torch.empty(4, 31)
        mod.launch(x, c, upcast, loaded)
        assert torch.equal(upcast, (x - c).float())  # rounded, then widened
        assert (x.float() - c.float() != (x - c).float()).any()  # which float32 is not
        assert torch.equal(loaded, x.float())


def _finalize_then_dx_kernel(rows: tuple[int, int], n: int, partials: int) -> str:
    """A norm backward after fuse-reductions: the row sum arrives as `partials` values
    per row ([rows, P], viewed in the reduction's shape), is finalized with the per-row
    ops c = -0.5 * sum * rstd^3 / N, then dx = g + c * (2 * h) over all N columns."""
    a, b = rows
    t, k, p, flat = (
        f"tensor<{a}x{b}x{n}xf32>",
        f"tensor<{a}x{b}x1xf32>",
        f"tensor<{a}x{b}x{partials}xf32>",
        f"tensor<{a * b}x{partials}xf32>",
    )
    return f"""
%r = kernel.loop "finalize_dx" (%part, %rstd, %h, %g) : ({flat}, {k}, {t}, {t}) -> ({t}) {{
^bb0(%pa: {flat}, %ra: {k}, %ha: {t}, %ga: {t}):
  %half = graph.constant -5.000000e-01 : f32 -> tensor<f32>
  %n = graph.constant {float(n):e} : f32 -> tensor<f32>
  %two = graph.constant 2.000000e+00 : f32 -> tensor<f32>
  %v = graph.view "reshape" %pa : {flat} -> {p}
  %0 = graph.reduce "sum" %v dims array<i64: 2> keepdim : {p} -> {k}
  %1 = graph.pointwise "cube"(%ra) : ({k}) -> {k}
  %2 = graph.pointwise "mul"(%0, %half) : ({k}, tensor<f32>) -> {k}
  %3 = graph.pointwise "mul"(%2, %1) : ({k}, {k}) -> {k}
  %4 = graph.pointwise "div"(%3, %n) : ({k}, tensor<f32>) -> {k}
  %5 = graph.pointwise "mul"(%ha, %two) : ({t}, tensor<f32>) -> {t}
  %6 = graph.pointwise "mul"(%4, %5) : ({k}, {t}) -> {t}
  %7 = graph.pointwise "add"(%ga, %6) : ({t}, {t}) -> {t}
  kernel.yield %7 : {t}
}}"""


def test_small_reduction_of_partials_runs_before_the_pass(tmp_path: Path) -> None:
    """N = 72 columns leave P = 3 partials per row (a block of 4, one lane masked to the
    identity); 15 rows are not a multiple of BLOCK_X = 8. The partials are summed and
    the per-row ops run once per row before the loop; the pass reads c as `[:, None]`."""
    t, k, flat = "tensor<3x5x72xf32>", "tensor<3x5x1xf32>", "tensor<15x3xf32>"
    source, mod = build(
        {"part": flat, "rstd": k, "h": t, "g": t}, _finalize_then_dx_kernel((3, 5), 72, 3), tmp_path
    )
    prologue, loop = source.split("for r_start in range(0, R, BLOCK_R):")
    assert "# %v: tensor<3x5x3xf32>, 3 values per row (one block of 4)" in prologue
    assert "mask=x_mask[:, None] & (v_p < 3)[None, :], other=0.0)" in prologue
    assert "tl.reduce(v, 1, _sum)" in prologue and "ra_row * ra_row * ra_row" in prologue
    assert "pass 2 of" not in source and "[:, None] * v" in loop
    part, rstd = torch.randn(15, 3), torch.rand(3, 5, 1) + 0.5
    h, g, out = torch.randn(3, 5, 72), torch.randn(3, 5, 72), torch.empty(3, 5, 72)
    mod.launch(part, rstd, h, g, out)
    c = -0.5 * part.view(3, 5, 3).sum(-1, keepdim=True) * rstd**3 / 72
    close(out, g + c * (2 * h))


# rows past X load the -inf padding everywhere (-inf - -inf): the stores drop them
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_small_reductions_over_two_dims_amax_and_mean(tmp_path: Path) -> None:
    """Reduced dims (1, 2) of S = [6, 4, 8]: the small input's 3 x 2 values per row are
    one flat block of 8 split into row-major coordinates; amax masks with -inf."""
    t, k, p = "tensor<6x4x8xf32>", "tensor<6x1x1xf32>", "tensor<6x3x2xf32>"
    source, mod = build(
        {"p": p, "x": t},
        f"""
%r, %s = kernel.loop "amax_mean_shift" (%p, %x) : ({p}, {t}) -> ({t}, {k}) {{
^bb0(%pa: {p}, %xa: {t}):
  %0 = graph.reduce "amax" %pa dims array<i64: 1, 2> keepdim : {p} -> {k}
  %1 = graph.reduce "mean" %pa dims array<i64: 1, 2> keepdim : {p} -> {k}
  %2 = graph.pointwise "sub"(%0, %1) : ({k}, {k}) -> {k}
  %3 = graph.pointwise "sub"(%xa, %2) : ({t}, {k}) -> {t}
  kernel.yield %3, %2 : {t}, {k}
}}""",
        tmp_path,
    )
    assert "pa_p1 = pa_p // 2" in source and "pa_p2 = pa_p % 2" in source
    # one load for both reductions; the mean masks the -inf padding back to 0
    assert source.count("tl.load(pa_1_ptr") == 1 and 'other=float("-inf")' in source
    assert "tl.where((pa_p < 6)[None, :], pa_1, 0.0).to(tl.float64), 1, _sum) / 6" in source
    ps, x = torch.randn(6, 3, 2), torch.randn(6, 4, 8)
    out, row = torch.empty(6, 4, 8), torch.empty(6, 1, 1)
    mod.launch(ps, x, out, row)
    shift = ps.amax((1, 2), keepdim=True) - ps.mean((1, 2), keepdim=True)
    close(row, shift)
    close(out, x - shift)


def test_rejects_a_small_reduction_beside_a_main_reduction() -> None:
    t, k, p = "tensor<4x8xf32>", "tensor<4x1xf32>", "tensor<4x2xf32>"
    kernel = parse_kernel(
        {"p": p, "x": t},
        f"""
%r = kernel.loop "both" (%p, %x) : ({p}, {t}) -> ({k}) {{
^bb0(%pa: {p}, %xa: {t}):
  %0 = graph.reduce "sum" %pa dims array<i64: 1> keepdim : {p} -> {k}
  %1 = graph.pointwise "mul"(%xa, %0) : ({t}, {k}) -> {t}
  %2 = graph.reduce "sum" %1 dims array<i64: 1> keepdim : {t} -> {k}
  kernel.yield %2 : {k}
}}""",
    )
    with pytest.raises(CodegenError, match="beside one pointwise pass only"):
        generate_kernel_source(kernel)


def test_small_reduction_kernel_compiles_for_gpu(tmp_path: Path) -> None:
    """The finalize + dx kernel is valid Triton for an H100 (sm_90a), compiled here."""
    from test_codegen_gemm import compile_for_sm90

    kernel = parse_kernel(
        {
            "part": "tensor<64x3xf32>",
            "rstd": "tensor<4x16x1xf32>",
            "h": "tensor<4x16x72xf32>",
            "g": "tensor<4x16x72xf32>",
        },
        _finalize_then_dx_kernel((4, 16), 72, 3),
    )
    mod = load(generate_kernel_source(kernel), tmp_path, interpret=False)
    pointers = {f"{name}_ptr": "*fp32" for name in ("ra", "ha", "ga", "v", "out0")}
    ptx = compile_for_sm90(mod.finalize_dx, pointers, {"BLOCK_X": 8, "BLOCK_R": 128})
    assert "ld.global" in ptx and "st.global" in ptx
