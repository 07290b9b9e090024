// RUN: lowerc %s -p fuse-epilogues,split-blocks | filecheck %s

// g = a + b is the GEMM's lhs and, as the residual of g + g @ w, its epilogue's input
// too. An epilogue input is read from memory, so g is not recomputed as the mainloop's
// prologue: a loop kernel writes it and the GEMM kernel reads it for both.
// CHECK-LABEL: func.func @residual_of_the_operand
func.func @residual_of_the_operand(%a: tensor<8x4xf32>, %b: tensor<8x4xf32>, %w: tensor<4x4xf32>) -> tensor<8x4xf32> {
  %g = graph.pointwise "add"(%a, %b) : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<8x4xf32>
  %m = graph.matmul %g, %w : (tensor<8x4xf32>, tensor<4x4xf32>) -> tensor<8x4xf32>
  %r = graph.pointwise "add"(%g, %m) : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<8x4xf32>
  func.return %r : tensor<8x4xf32>
}
// CHECK-NEXT:    %[[G:.*]] = kernel.loop "loop0_add" (%a, %b)
// CHECK:         kernel.gemm "gemm1_residual" (%[[G]], %w)
// CHECK-NEXT:    ^bb0(%[[GA:.*]]: tensor<8x4xf32>, %[[WA:.*]]: tensor<4x4xf32>):
// CHECK-NEXT:      epilogue.gemm %[[GA]], %[[WA]] inputs(%[[GA]])
// CHECK-NOT:     graph.pointwise
// CHECK:         kernel.yield
