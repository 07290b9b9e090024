// RUN: lowerc %s -p bind-sizes,fuse-prologues | filecheck %s
// The gradient sum %g feeds two GEMMs, one through the transpose right after it (where
// the recomputed chains are inserted). bind-sizes re-creates the values it retypes, which
// reverses their use lists, so the transposed GEMM is rewritten first: erasing the
// transpose it no longer reads before the other GEMM's chain is inserted left that
// insertion point detached (a crash found by tests/test_fuzz_dynamic.py). Dead operands
// are erased after every rewrite now.

func.func @backward(%x: tensor<?x33xbf16, #graph.dims<"s0">>, %w: tensor<33x33xbf16>, %t0: tensor<?x33xbf16, #graph.dims<"s0">>, %t1: tensor<?x33xbf16, #graph.dims<"s0">>) -> (tensor<?x33xbf16, #graph.dims<"s0">>, tensor<33x33xbf16>) attributes {graph.size_hints = {s0 = 31 : i64}} {
  %one = graph.constant 1.000000e+00 : bf16 -> tensor<bf16>
  %s = graph.pointwise "mul"(%t1, %one) : (tensor<?x33xbf16, #graph.dims<"s0">>, tensor<bf16>) -> tensor<?x33xbf16, #graph.dims<"s0">>
  %g = graph.pointwise "add"(%s, %t0) : (tensor<?x33xbf16, #graph.dims<"s0">>, tensor<?x33xbf16, #graph.dims<"s0">>) -> tensor<?x33xbf16, #graph.dims<"s0">>
  %gt = graph.view "permute" %g perm array<i64: 1, 0> : tensor<?x33xbf16, #graph.dims<"s0">> -> tensor<33x?xbf16, #graph.dims<"s0">>
  %dw = graph.matmul %gt, %x : (tensor<33x?xbf16, #graph.dims<"s0">>, tensor<?x33xbf16, #graph.dims<"s0">>) -> tensor<33x33xbf16>
  %dx = graph.matmul %g, %w : (tensor<?x33xbf16, #graph.dims<"s0">>, tensor<33x33xbf16>) -> tensor<?x33xbf16, #graph.dims<"s0">>
  func.return %dx, %dw : tensor<?x33xbf16, #graph.dims<"s0">>, tensor<33x33xbf16>
}

// Each GEMM reads the chain recomputed in its own operand's shape; the transpose of %g
// and %g itself are gone.
// CHECK-LABEL: func.func @backward
// CHECK-NOT:     graph.view "permute" %g
// CHECK-DAG:     %[[S:.*]] = graph.pointwise "mul"(%t1, %one) : (tensor<31x33xbf16>, tensor<bf16>) -> tensor<31x33xbf16>
// CHECK-DAG:     %[[G:.*]] = graph.pointwise "add"(%[[S]], %t0) : (tensor<31x33xbf16>, tensor<31x33xbf16>) -> tensor<31x33xbf16>
// CHECK-DAG:     %[[GT:.*]] = graph.pointwise "add"({{.*}}) : (tensor<33x31xbf16>, tensor<33x31xbf16>) -> tensor<33x31xbf16>
// CHECK-DAG:     %dw = graph.matmul %[[GT]], %x : (tensor<33x31xbf16>, tensor<31x33xbf16>) -> tensor<33x33xbf16>
// CHECK-DAG:     %dx = graph.matmul %[[G]], %w : (tensor<31x33xbf16>, tensor<33x33xbf16>) -> tensor<31x33xbf16>
