"""kernel.gemm -> Triton: generated modules run under Triton's interpreter against torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import triton
from codegen_support import load, parse_kernel

from coda.codegen import CodegenError, generate_kernel_source
from coda.dialects.kernel import KernelOp

TILE = "!epilogue.tile<f32>"
ROW = "!epilogue.row<f32>"
COL = "!epilogue.col<f32>"
SCALAR = "!epilogue.scalar<f32>"


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def _linear_gelu(m: int, n: int, k: int) -> KernelOp:
    """y = gelu(x @ w + b) + r, with the pre-activation x @ w + b stored as well."""
    x, w, b, y = (
        f"tensor<{m}x{k}xf32>",
        f"tensor<{k}x{n}xf32>",
        f"tensor<{n}xf32>",
        f"tensor<{m}x{n}xf32>",
    )
    return parse_kernel(
        {"x": x, "w": w, "b": b, "r": y},
        f"""
%y, %pre = kernel.gemm "linear_gelu_residual" (%x, %w, %b, %r)
    : ({x}, {w}, {b}, {y}) -> ({y}, {y}) {{
^bb0(%xa: {x}, %wa: {w}, %ba: {b}, %ra: {y}):
  %out, %aux = epilogue.gemm %xa, %wa inputs(%ba, %ra) : ({x}, {w}, {b}, {y}) -> ({y}, {y}) {{
  ^tile(%acc: {TILE}, %bias: {ROW}, %res: {TILE}):
    %0 = epilogue.map "add"(%acc, %bias) : ({TILE}, {ROW}) -> {TILE}
    %1 = epilogue.map "gelu"(%0) : ({TILE}) -> {TILE}
    %2 = epilogue.accumulate %1, %res : ({TILE}, {TILE}) -> {TILE}
    epilogue.store %2 : {TILE} -> result 0
    epilogue.store %0 : {TILE} -> result 1
  }}
  kernel.yield %out, %aux : {y}, {y}
}}""",
    )


def test_bias_gelu_residual_aux_store_transposed_weight(tmp_path: Path) -> None:
    m, n, k = 20, 24, 40  # ragged against 32 x 32 x 16 tiles
    source = generate_kernel_source(_linear_gelu(m, n, k))
    for line in (
        "def linear_gelu_residual(",
        "def launch(",
        '# %0 = epilogue.map "add"(%acc, %bias)',
        '# %1 = epilogue.map "gelu"(%0)',
        "# %2 = epilogue.accumulate %1, %res",
        "# epilogue.store %0 -> result 1",
    ):
        assert line in source
    mod = load(source, tmp_path)
    x = torch.randn(m, k)
    w = torch.randn(n, k).t()  # nn.Linear weight used transposed: a strided view
    b, r = torch.randn(n), torch.randn(m, n)
    y, pre = torch.empty(m, n), torch.empty(m, n)
    assert mod.launch(x, w, b, r, y, pre) == (1, 1)
    expected_pre = x @ w + b
    close(pre, expected_pre)
    close(y, torch.nn.functional.gelu(expected_pre) + r)


def test_several_tiles_in_each_direction(tmp_path: Path) -> None:
    m, n, k = 70, 40, 24
    mod = load(generate_kernel_source(_linear_gelu(m, n, k)), tmp_path)
    x, w, b, r = torch.randn(m, k), torch.randn(k, n), torch.randn(n), torch.randn(m, n)
    y, pre = torch.empty(m, n), torch.empty(m, n)
    assert mod.launch(x, w, b, r, y, pre) == (3, 2)
    close(pre, x @ w + b)


def test_col_scale_scalar_input_and_constant(tmp_path: Path) -> None:
    x, w, y = "tensor<20x40xf32>", "tensor<40x24xf32>", "tensor<20x24xf32>"
    c, s = "tensor<20x1xf32>", "tensor<f32>"
    kernel = parse_kernel(
        {"x": x, "w": w, "rs": c, "s": s},
        f"""
%y = kernel.gemm "scaled" (%x, %w, %rs, %s) : ({x}, {w}, {c}, {s}) -> ({y}) {{
^bb0(%xa: {x}, %wa: {w}, %rsa: {c}, %sa: {s}):
  %o = epilogue.gemm %xa, %wa inputs(%rsa, %sa) : ({x}, {w}, {c}, {s}) -> ({y}) {{
  ^tile(%acc: {TILE}, %rstd: {COL}, %alpha: {SCALAR}):
    %0 = epilogue.scale %acc, %rstd : ({TILE}, {COL}) -> {TILE}
    %1 = epilogue.scale %0, %alpha : ({TILE}, {SCALAR}) -> {TILE}
    %half = epilogue.constant 0.5 : f32 -> {SCALAR}
    %2 = epilogue.map "sub"(%1, %half) : ({TILE}, {SCALAR}) -> {TILE}
    %3 = epilogue.map "silu"(%2) : ({TILE}) -> {TILE}
    epilogue.store %3 : {TILE} -> result 0
  }}
  kernel.yield %o : {y}
}}""",
    )
    source = generate_kernel_source(kernel)
    assert "# %half = epilogue.constant 5.000000e-01" in source
    # tl.sigmoid is itself a @triton.jit function: the module calls a local version
    assert "def _sigmoid(x):" in source
    mod = load(source, tmp_path)
    xt, wt = torch.randn(20, 40), torch.randn(40, 24)
    rs, alpha = torch.rand(20, 1) + 0.5, torch.tensor(1.5)
    out = torch.empty(20, 24)
    mod.launch(xt, wt, rs, alpha, out)
    close(out, torch.nn.functional.silu((xt @ wt) * rs * alpha - 0.5))


def test_batched_gemm_broadcast_batch_operands(tmp_path: Path) -> None:
    x, w = "tensor<3x20x40xf32>", "tensor<1x40x24xf32>"
    y, r, b = "tensor<3x20x24xf32>", "tensor<1x20x24xf32>", "tensor<24xf32>"
    kernel = parse_kernel(
        {"x": x, "w": w, "r": r, "b": b},
        f"""
%y = kernel.gemm "bmm_bias_res" (%x, %w, %r, %b) : ({x}, {w}, {r}, {b}) -> ({y}) {{
^bb0(%xa: {x}, %wa: {w}, %ra: {r}, %ba: {b}):
  %o = epilogue.gemm %xa, %wa inputs(%ra, %ba) : ({x}, {w}, {r}, {b}) -> ({y}) {{
  ^tile(%acc: {TILE}, %res: {TILE}, %bias: {ROW}):
    %0 = epilogue.map "add"(%acc, %bias) : ({TILE}, {ROW}) -> {TILE}
    %1 = epilogue.accumulate %0, %res : ({TILE}, {TILE}) -> {TILE}
    epilogue.store %1 : {TILE} -> result 0
  }}
  kernel.yield %o : {y}
}}""",
    )
    source = generate_kernel_source(kernel)
    assert "pid_b = tl.program_id(2)" in source
    mod = load(source, tmp_path)
    xt, wt = torch.randn(3, 20, 40), torch.randn(1, 40, 24)
    rt, bt = torch.randn(1, 20, 24), torch.randn(24)
    out = torch.empty(3, 20, 24)
    assert mod.launch(xt, wt, rt, bt, out) == (1, 1, 3)
    close(out, xt @ wt + bt + rt)


def _shape(*dims: int) -> str:
    return f"tensor<{'x'.join(map(str, dims))}xf32>"


def _batched_bias_residual(x: str, w: str, b: str, r: str, y: str) -> KernelOp:
    """y = x @ w + b + r and aux = x @ w + b, over any number of batch dims."""
    return parse_kernel(
        {"x": x, "w": w, "b": b, "r": r},
        f"""
%y, %aux = kernel.gemm "batched_bias_res" (%x, %w, %b, %r)
    : ({x}, {w}, {b}, {r}) -> ({y}, {y}) {{
^bb0(%xa: {x}, %wa: {w}, %ba: {b}, %ra: {r}):
  %o, %p = epilogue.gemm %xa, %wa inputs(%ba, %ra) : ({x}, {w}, {b}, {r}) -> ({y}, {y}) {{
  ^tile(%acc: {TILE}, %bias: {ROW}, %res: {TILE}):
    %0 = epilogue.map "add"(%acc, %bias) : ({TILE}, {ROW}) -> {TILE}
    %1 = epilogue.accumulate %0, %res : ({TILE}, {TILE}) -> {TILE}
    epilogue.store %1 : {TILE} -> result 0
    epilogue.store %0 : {TILE} -> result 1
  }}
  kernel.yield %o, %p : {y}, {y}
}}""",
    )


def test_rank4_gemm_reads_unmergeable_strided_views_in_place(tmp_path: Path) -> None:
    m, n, k = 12, 10, 20
    kernel = _batched_bias_residual(
        _shape(2, 3, m, k), _shape(2, 3, k, n), _shape(n), _shape(2, 3, m, n), _shape(2, 3, m, n)
    )
    source = generate_kernel_source(kernel)
    for line in (
        "b1 = pid_b % B1",
        "b0 = pid_b // B1",
        "a_rows = offs_m * stride_xa_2",
        "a_ptrs = xa_ptr + b0 * stride_xa_0 + b1 * stride_xa_1 + a_rows[:, None] + a_cols[None, :]",
    ):
        assert line in source
    mod = load(source, tmp_path)
    # a head split [2, M, 3*K] -> [2, 3, M, K]: strides (3MK, K, 3K, 1) merge into no
    # single batch stride, so reshaping to [6, M, K] would copy
    x = torch.randn(2, m, 3, k).permute(0, 2, 1, 3)
    assert not x.is_contiguous()
    w = torch.randn(2, 3, n, k).transpose(-1, -2)  # k^T
    b, r = torch.randn(n), torch.randn(2, 3, m, n)
    y, aux = torch.empty(2, 3, m, n), torch.empty(2, 3, m, n)
    assert mod.launch(x, w, b, r, y, aux) == (1, 1, 6)
    expected = torch.matmul(x, w) + b
    close(aux, expected)
    close(y, expected + r)


def test_rank4_gemm_broadcasts_batch_dims(tmp_path: Path) -> None:
    m, n, k = 9, 14, 8
    kernel = _batched_bias_residual(
        _shape(1, 3, m, k), _shape(2, 1, k, n), _shape(n), _shape(m, n), _shape(2, 3, m, n)
    )
    mod = load(generate_kernel_source(kernel), tmp_path)
    x, w = torch.randn(1, 3, m, k), torch.randn(2, 1, k, n)
    b, r = torch.randn(n), torch.randn(m, n)  # residual broadcast along both batch dims
    y, aux = torch.empty(2, 3, m, n), torch.empty(2, 3, m, n)
    assert mod.launch(x, w, b, r, y, aux) == (1, 1, 6)
    expected = torch.matmul(x, w) + b
    close(aux, expected)
    close(y, expected + r)


def test_tile_input_broadcast_along_some_batch_dims(tmp_path: Path) -> None:
    m, n, k = 9, 14, 8
    kernel = _batched_bias_residual(
        _shape(2, 3, m, k), _shape(2, 3, k, n), _shape(n), _shape(1, 3, m, n), _shape(2, 3, m, n)
    )
    mod = load(generate_kernel_source(kernel), tmp_path)
    x, w = torch.randn(2, 3, m, k), torch.randn(2, 3, k, n)
    b, r = torch.randn(n), torch.randn(1, 3, m, n)  # one residual per head, shared by batch
    y, aux = torch.empty(2, 3, m, n), torch.empty(2, 3, m, n)
    mod.launch(x, w, b, r, y, aux)
    expected = torch.matmul(x, w) + b
    close(aux, expected)
    close(y, expected + r)


def test_rank5_gemm_three_batch_dims(tmp_path: Path) -> None:
    m, n, k = 8, 12, 16
    batch = (2, 3, 2)
    kernel = _batched_bias_residual(
        _shape(*batch, m, k),
        _shape(2, 1, 2, k, n),
        _shape(n),
        _shape(*batch, m, n),
        _shape(*batch, m, n),
    )
    source = generate_kernel_source(kernel)
    for line in ("b2 = pid_b % B2", "b1 = (pid_b // B2) % B1", "b0 = pid_b // (B1 * B2)"):
        assert line in source
    mod = load(source, tmp_path)
    x = torch.randn(3, 2, 2, k, m).permute(2, 0, 1, 4, 3)  # every dim strided
    w = torch.randn(2, 1, 2, k, n)
    b, r = torch.randn(n), torch.randn(*batch, n, m).transpose(-1, -2)
    y, aux = torch.empty(*batch, m, n), torch.empty(*batch, m, n)
    assert mod.launch(x, w, b, r, y, aux) == (1, 1, 12)
    expected = torch.matmul(x, w) + b
    close(aux, expected)
    close(y, expected + r)


def test_bf16_operands_f16_and_bf16_outputs(tmp_path: Path) -> None:
    x, w = "tensor<20x32xbf16>", "tensor<32x24xbf16>"
    h, bf = "tensor<20x24xf16>", "tensor<20x24xbf16>"
    h_tile, bf_tile = "!epilogue.tile<f16>", "!epilogue.tile<bf16>"
    kernel = parse_kernel(
        {"x": x, "w": w},
        f"""
%h, %g = kernel.gemm "bf16_gemm" (%x, %w) : ({x}, {w}) -> ({h}, {bf}) {{
^bb0(%xa: {x}, %wa: {w}):
  %o, %p = epilogue.gemm %xa, %wa : ({x}, {w}) -> ({h}, {bf}) {{
  ^tile(%acc: {TILE}):
    %0 = epilogue.map "cast"(%acc) : ({TILE}) -> {h_tile}
    epilogue.store %0 : {h_tile} -> result 0
    %1 = epilogue.map "cast"(%acc) : ({TILE}) -> {bf_tile}
    epilogue.store %1 : {bf_tile} -> result 1
  }}
  kernel.yield %o, %p : {h}, {bf}
}}""",
    )
    source = generate_kernel_source(kernel)
    assert "if UPCAST_OPERANDS:" in source  # GPUs feed bf16 straight to tl.dot
    mod = load(source, tmp_path)
    xt, wt = torch.randn(20, 32).bfloat16(), torch.randn(32, 24).bfloat16()
    out_h, out_bf = torch.empty(20, 24, dtype=torch.float16), torch.empty(20, 24).bfloat16()
    mod.launch(xt, wt, out_h, out_bf)
    expected = xt.float() @ wt.float()
    torch.testing.assert_close(out_h, expected.half(), rtol=1e-3, atol=1e-3)
    # the interpreter truncates f32 -> bf16 (triton-cpu notes): allow one bf16 ulp
    torch.testing.assert_close(out_bf.float(), expected, rtol=1e-2, atol=1e-2)


def test_epilogue_comparison_sees_the_bf16_rounded_product(tmp_path: Path) -> None:
    """An epilogue comparing the accumulator cast to bf16 with a stored bf16 value (the
    row max of the same product) compares the rounded product, as eager does: in float32
    no element equals the max."""
    x, w, m = "tensor<20x32xbf16>", "tensor<32x24xbf16>", "tensor<20x1xbf16>"
    p, bf_tile, col = "tensor<20x24xi1>", "!epilogue.tile<bf16>", "!epilogue.col<bf16>"
    kernel = parse_kernel(
        {"x": x, "w": w, "m": m},
        f"""
%p = kernel.gemm "is_row_max" (%x, %w, %m) : ({x}, {w}, {m}) -> ({p}) {{
^bb0(%xa: {x}, %wa: {w}, %ma: {m}):
  %o = epilogue.gemm %xa, %wa inputs(%ma) : ({x}, {w}, {m}) -> ({p}) {{
  ^tile(%acc: {TILE}, %max: {col}):
    %0 = epilogue.map "cast"(%acc) : ({TILE}) -> {bf_tile}
    %1 = epilogue.map "eq"(%0, %max) : ({bf_tile}, {col}) -> !epilogue.tile<i1>
    epilogue.store %1 : !epilogue.tile<i1> -> result 0
  }}
  kernel.yield %o : {p}
}}""",
    )
    source = generate_kernel_source(kernel)
    mod = load(source, tmp_path)
    gen = torch.Generator().manual_seed(0)
    xt = torch.randn(20, 32, generator=gen).bfloat16()
    wt = torch.randn(32, 24, generator=gen).bfloat16()
    product = (xt.float() @ wt.float()).bfloat16()
    row_max = product.amax(-1, keepdim=True)
    out = torch.empty(20, 24, dtype=torch.bool)
    mod.launch(xt, wt, row_max, out)
    assert torch.equal(out, product == row_max)
    assert out.any(-1).all()


def test_empty_output_launches_nothing(tmp_path: Path) -> None:
    mod = load(generate_kernel_source(_linear_gelu(0, 24, 40)), tmp_path)
    x, w, b, r = torch.randn(0, 40), torch.randn(40, 24), torch.randn(24), torch.randn(0, 24)
    assert mod.launch(x, w, b, r, torch.empty(0, 24), torch.empty(0, 24)) == (0, 1)


def test_launch_rejects_tensors_of_other_shapes(tmp_path: Path) -> None:
    mod = load(generate_kernel_source(_linear_gelu(20, 24, 40)), tmp_path)
    x, w, b, r = torch.randn(0, 40), torch.randn(40, 24), torch.randn(24), torch.randn(0, 24)
    with pytest.raises(
        ValueError,
        match=r"linear_gelu_residual: expected a tensor of shape \(20, 40\), got \(0, 40\)",
    ):
        mod.launch(x, w, b, r, torch.empty(0, 24), torch.empty(0, 24))


def test_rejects_ops_beside_the_gemm() -> None:
    x, w, y = "tensor<4x8xf32>", "tensor<8x4xf32>", "tensor<4x4xf32>"
    kernel = parse_kernel(
        {"x": x, "w": w},
        f"""
%y = kernel.gemm "stray" (%x, %w) : ({x}, {w}) -> ({y}) {{
^bb0(%xa: {x}, %wa: {w}):
  %c = graph.reduce "sum" %xa dims array<i64: 1> : {x} -> tensor<4xf32>
  %o = epilogue.gemm %xa, %wa : ({x}, {w}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %o : {y}
}}""",
    )
    with pytest.raises(CodegenError, match="may hold only graph.view, operand prologues"):
        generate_kernel_source(kernel)


def compile_for_sm90(fn: object, pointers: dict[str, str], constexprs: dict[str, object]) -> str:
    """PTX of a generated kernel for an H100, compiled on this CPU-only machine."""
    from triton.backends.compiler import GPUTarget

    params = fn.params  # type: ignore[attr-defined]
    signature = {
        p.name: "constexpr" if p.is_constexpr else pointers.get(p.name, "i32") for p in params
    }
    source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    return compiled.asm["ptx"]


def test_bf16_gemm_compiles_for_gpu_with_tensor_cores(tmp_path: Path) -> None:
    x, w, b, y = "tensor<64x64xbf16>", "tensor<64x64xbf16>", "tensor<64xf32>", "tensor<64x64xbf16>"
    bf_tile = "!epilogue.tile<bf16>"
    kernel = parse_kernel(
        {"x": x, "w": w, "b": b},
        f"""
%y = kernel.gemm "gpu_linear" (%x, %w, %b) : ({x}, {w}, {b}) -> ({y}) {{
^bb0(%xa: {x}, %wa: {w}, %ba: {b}):
  %o = epilogue.gemm %xa, %wa inputs(%ba) : ({x}, {w}, {b}) -> ({y}) {{
  ^tile(%acc: {TILE}, %bias: {ROW}):
    %0 = epilogue.map "add"(%acc, %bias) : ({TILE}, {ROW}) -> {TILE}
    %1 = epilogue.map "cast"(%0) : ({TILE}) -> {bf_tile}
    epilogue.store %1 : {bf_tile} -> result 0
  }}
  kernel.yield %o : {y}
}}""",
    )
    mod = load(generate_kernel_source(kernel), tmp_path, interpret=False)
    ptx = compile_for_sm90(
        mod.gpu_linear,
        {"xa_ptr": "*bf16", "wa_ptr": "*bf16", "ba_ptr": "*fp32", "out0_ptr": "*bf16"},
        {"UPCAST_OPERANDS": False, "BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 16},
    )
    assert "mma" in ptx


def test_rank4_gemm_compiles_for_gpu(tmp_path: Path) -> None:
    """The batch-index arithmetic also passes Triton's compiler, not only its interpreter."""
    t = _shape(2, 3, 64, 64)
    kernel = _batched_bias_residual(t, t, _shape(64), t, t)
    mod = load(generate_kernel_source(kernel), tmp_path, interpret=False)
    names = ("xa_ptr", "wa_ptr", "ba_ptr", "ra_ptr", "out0_ptr", "out1_ptr")
    ptx = compile_for_sm90(
        mod.batched_bias_res,
        dict.fromkeys(names, "*fp32"),
        {"INPUT_PRECISION": "tf32", "BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 16},
    )
    assert "mma" in ptx


def _head_merge_projection(b: int, h: int, s: int, d: int, n: int) -> KernelOp:
    """out = a.permute(0, 2, 1, 3).reshape(b*s, h*d) @ w + r.reshape(b*s, n): the views
    sit inside the kernel, so the GEMM reads attention's [B,H,S,D] output in place."""
    a, p, m2 = f"tensor<{b}x{h}x{s}x{d}xf32>", f"tensor<{b}x{s}x{h}x{d}xf32>", f"{b * s}"
    x, w, r3 = f"tensor<{m2}x{h * d}xf32>", f"tensor<{h * d}x{n}xf32>", f"tensor<{b}x{s}x{n}xf32>"
    y = f"tensor<{m2}x{n}xf32>"
    return parse_kernel(
        {"a": a, "w": w, "r": r3},
        f"""
%y = kernel.gemm "o_proj_residual" (%a, %w, %r) : ({a}, {w}, {r3}) -> ({y}) {{
^bb0(%aa: {a}, %wa: {w}, %ra: {r3}):
  %t = graph.view "permute" %aa perm array<i64: 0, 2, 1, 3> : {a} -> {p}
  %xa = graph.view "reshape" %t : {p} -> {x}
  %r2 = graph.view "reshape" %ra : {r3} -> {y}
  %out = epilogue.gemm %xa, %wa inputs(%r2) : ({x}, {w}, {y}) -> ({y}) {{
  ^tile(%acc: {TILE}, %res: {TILE}):
    %0 = epilogue.accumulate %acc, %res : ({TILE}, {TILE}) -> {TILE}
    epilogue.store %0 : {TILE} -> result 0
  }}
  kernel.yield %out : {y}
}}""",
    )


def test_views_inside_the_kernel_are_layouts_of_its_operands(tmp_path: Path) -> None:
    b, h, s, d, n = 2, 3, 10, 8, 12  # head merge: M = B*S straddles the 32-row tile
    source = generate_kernel_source(_head_merge_projection(b, h, s, d, n))
    # the lhs is attention's output through one layout, in CuTe order (last dim first):
    # K = (D,H), M = (S,B), each mode addressed with div/mod over the runtime strides
    for line in (
        "#   %xa = layout ((8,3),(10,2)):((stride_aa_3,stride_aa_1),(stride_aa_2,stride_aa_0)) "
        "of %aa",
        "a_rows = stride_aa_0 * (offs_m // 10) + stride_aa_2 * (offs_m % 10)",
        "a_cols = stride_aa_1 * (kk // 8) + stride_aa_3 * (kk % 8)",
    ):
        assert line in source, source
    mod = load(source, tmp_path)
    attn = torch.randn(b, h, s, d)
    w, r = torch.randn(h * d, n), torch.randn(b, s, n)
    y = torch.empty(b * s, n)
    mod.launch(attn, w, r, y)
    close(y, attn.transpose(1, 2).reshape(b * s, h * d) @ w + r.reshape(b * s, n))
    # any strides: the same module reads a transposed copy of the operand correctly
    attn_t = attn.transpose(0, 3).contiguous().transpose(0, 3)
    mod.launch(attn_t, w, r, y)
    close(y, attn.transpose(1, 2).reshape(b * s, h * d) @ w + r.reshape(b * s, n))


def test_a_reshape_that_is_not_a_layout_is_addressed_by_flat_index(tmp_path: Path) -> None:
    """[6, 4]^T -> [3, 8]: the new rows straddle the old ones (8 is neither a multiple nor
    a divisor of 6), so no layout exists; the flat index is unflattened instead."""
    src, t, x, w, y = (
        "tensor<6x4xf32>", "tensor<4x6xf32>", "tensor<3x8xf32>", "tensor<8x5xf32>",
        "tensor<3x5xf32>",
    )  # fmt: skip
    kernel = parse_kernel(
        {"a": src, "w": w},
        f"""
%y = kernel.gemm "flat" (%a, %w) : ({src}, {w}) -> ({y}) {{
^bb0(%aa: {src}, %wa: {w}):
  %t = graph.view "permute" %aa perm array<i64: 1, 0> : {src} -> {t}
  %xa = graph.view "reshape" %t : {t} -> {x}
  %out = epilogue.gemm %xa, %wa : ({x}, {w}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  kernel.yield %out : {y}
}}""",
    )
    source = generate_kernel_source(kernel)
    assert "over the flat index of [3, 8]" in source
    assert "a_ptrs = aa_ptr + stride_aa_0 * ((kk[None, :] + 8 * offs_m[:, None]) % 6)" in source
    mod = load(source, tmp_path)
    a, wt = torch.randn(6, 4), torch.randn(8, 5)
    out = torch.empty(3, 5)
    mod.launch(a, wt, out)
    close(out, a.t().reshape(3, 8) @ wt)


def test_a_result_stored_head_major_through_its_views(tmp_path: Path) -> None:
    """The kernel yields permute(reshape(x @ w)): the [B*S, H*D] tile is written through
    the inverse layout straight into a contiguous [B, H, S, D] buffer."""
    x, w, y = "tensor<20x16xf32>", "tensor<16x24xf32>", "tensor<20x24xf32>"
    r, p = "tensor<2x10x3x8xf32>", "tensor<2x3x10x8xf32>"
    kernel = parse_kernel(
        {"x": x, "w": w},
        f"""
%q = kernel.gemm "q_head_major" (%x, %w) : ({x}, {w}) -> ({p}) {{
^bb0(%xa: {x}, %wa: {w}):
  %o = epilogue.gemm %xa, %wa : ({x}, {w}) -> ({y}) {{
  ^tile(%acc: {TILE}):
    epilogue.store %acc : {TILE} -> result 0
  }}
  %s = graph.view "reshape" %o : {y} -> {r}
  %t = graph.view "permute" %s perm array<i64: 0, 2, 1, 3> : {r} -> {p}
  kernel.yield %t : {p}
}}""",
    )
    source = generate_kernel_source(kernel)
    # rows (S,B) and columns (D,H) of the tile land at their head-major addresses
    assert "# stored through layout ((8,3),(10,2)):((stride_out0_3,stride_out0_1)," in source
    mod = load(source, tmp_path)
    xt, wt = torch.randn(20, 16), torch.randn(16, 24)
    out = torch.empty(2, 3, 10, 8)
    mod.launch(xt, wt, out)
    close(out, (xt @ wt).view(2, 10, 3, 8).permute(0, 2, 1, 3))


def _merged_swiglu_and_sum(m: int, n: int, k: int, k2: int, dtype: str) -> KernelOp:
    """Gate and up share %x (one K loop, %x loaded once); the third accumulator sums two
    products over different K (two K loops into one accumulator)."""
    x, w, d, wd, y = (
        f"tensor<{m}x{k}x{dtype}>",
        f"tensor<{k}x{n}x{dtype}>",
        f"tensor<{m}x{k2}x{dtype}>",
        f"tensor<{k2}x{n}x{dtype}>",
        f"tensor<{m}x{n}x{dtype}>",
    )
    tile = f"!epilogue.tile<{dtype}>"
    return parse_kernel(
        {"x": x, "wg": w, "wu": w, "d": d, "wd": wd},
        f"""
%h, %s = kernel.gemm "swiglu_and_sum" (%x, %wg, %wu, %d, %wd)
    : ({x}, {w}, {w}, {d}, {wd}) -> ({y}, {y}) {{
^bb0(%xa: {x}, %wga: {w}, %wua: {w}, %da: {d}, %wda: {wd}):
  %ho, %so = epilogue.gemm %xa, %wga | %xa, %wua | %xa, %wga + %da, %wda
      : ({x}, {w}, {x}, {w}, {x}, {w}, {d}, {wd}) -> ({y}, {y}) {{
  ^tile(%gate: {TILE}, %up: {TILE}, %total: {TILE}):
    %0 = epilogue.map "silu"(%gate) : ({TILE}) -> {TILE}
    %1 = epilogue.map "mul"(%0, %up) : ({TILE}, {TILE}) -> {TILE}
    %2 = epilogue.map "cast"(%1) : ({TILE}) -> {tile}
    %3 = epilogue.map "cast"(%total) : ({TILE}) -> {tile}
    epilogue.store %2 : {tile} -> result 0
    epilogue.store %3 : {tile} -> result 1
  }}
  kernel.yield %ho, %so : {y}, {y}
}}""",
    )


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_merged_gemms_share_loads_and_sum_over_concatenated_k(tmp_path: Path, dtype) -> None:
    m, n, k, k2 = 20, 24, 40, 24  # ragged against the interpreter's tiles
    source = generate_kernel_source(_merged_swiglu_and_sum(m, n, k, k2, dtype))
    # one loop over K for the three accumulators (each %x tile loaded once), one over K1
    assert source.count("for k in range(") == 2, source
    assert source.count("= tl.load(a") == 2, source  # %xa in the first loop, %da in the second
    for line in (
        "#   gate += %xa @ %wga",
        "#   up += %xa @ %wua",
        "#   total += %xa @ %wga",
        "#   total += %da @ %wda",
    ):
        assert line in source, source
    mod = load(source, tmp_path)
    torch_dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    torch.manual_seed(0)
    x, wg, wu = torch.randn(m, k), torch.randn(k, n), torch.randn(k, n)
    d, wd = torch.randn(m, k2), torch.randn(k2, n)
    x, wg, wu, d, wd = (t.to(torch_dtype) for t in (x, wg, wu, d, wd))
    h, s = torch.empty(m, n, dtype=torch_dtype), torch.empty(m, n, dtype=torch_dtype)
    mod.launch(x, wg, wu, d, wd, h, s)
    f = [t.float() for t in (x, wg, wu, d, wd)]
    want_h = torch.nn.functional.silu(f[0] @ f[1]) * (f[0] @ f[2])
    want_s = f[0] @ f[1] + f[3] @ f[4]
    if dtype == "f32":
        close(h, want_h)
        close(s, want_s)
    else:  # float32 accumulation, one bf16 rounding at the store
        torch.testing.assert_close(h, want_h.to(torch.bfloat16), rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(s, want_s.to(torch.bfloat16), rtol=1e-2, atol=1e-2)
