// RUN: not lowerc %s 2>&1 | filecheck %s
// Malformed IR: a located one-line error plus the offending line, no traceback.

func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = graph.pointwise "exp"(%x) : (tensor<4xf32>) tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: parse_error.mlir:5:52: error: Expected '->'
// CHECK-NEXT: %0 = graph.pointwise "exp"(%x) : (tensor<4xf32>) tensor<4xf32>
// CHECK-NOT: Traceback
