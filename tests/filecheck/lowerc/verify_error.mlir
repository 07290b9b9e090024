// RUN: not lowerc %s -p fuse-epilogues 2>&1 | filecheck %s
// A verifier error stops lowerc before any pass runs, pointing at the op.

func.func @f(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %0 = graph.matmul %a, %b : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %0 : tensor<4x8xf32>
}

// CHECK: verify_error.mlir:5:3: error: 'graph.matmul' contraction dims differ: lhs has 8, rhs has 4
// CHECK-NOT: Traceback
