// RUN: lowerc %s -p split-blocks | filecheck %s

// A norm backward after fuse-reductions: the GEMM epilogue wrote the row sum as two
// partials per row (%part, [rows, ceil(64 / 32)]); the finalize sums them in the
// reduction's own shape, the per-row ops scale the sum by rstd^3, and the elementwise
// pass computes dx = g + c * h over all 64 columns. The pass absorbs the small
// reduction and the per-row work: one loop kernel, which reads the partials in place
// through the reshape.
// CHECK-LABEL: func.func @finalize_and_pass
func.func @finalize_and_pass(%part: tensor<32x2xf32>, %rstd: tensor<2x16x1xf32>, %h: tensor<2x16x64xf32>, %g: tensor<2x16x64xf32>) -> tensor<2x16x64xf32> {
  %half = graph.constant -5.000000e-01 : f32 -> tensor<f32>
  %n = graph.constant 6.400000e+01 : f32 -> tensor<f32>
  %v = graph.view "reshape" %part : tensor<32x2xf32> -> tensor<2x16x2xf32>
  %0 = graph.reduce "sum" %v dims array<i64: 2> keepdim : tensor<2x16x2xf32> -> tensor<2x16x1xf32>
  %1 = graph.pointwise "cube"(%rstd) : (tensor<2x16x1xf32>) -> tensor<2x16x1xf32>
  %2 = graph.pointwise "mul"(%0, %half) : (tensor<2x16x1xf32>, tensor<f32>) -> tensor<2x16x1xf32>
  %3 = graph.pointwise "mul"(%2, %1) : (tensor<2x16x1xf32>, tensor<2x16x1xf32>) -> tensor<2x16x1xf32>
  %4 = graph.pointwise "div"(%3, %n) : (tensor<2x16x1xf32>, tensor<f32>) -> tensor<2x16x1xf32>
  %5 = graph.pointwise "mul"(%4, %h) : (tensor<2x16x1xf32>, tensor<2x16x64xf32>) -> tensor<2x16x64xf32>
  %6 = graph.pointwise "add"(%g, %5) : (tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> tensor<2x16x64xf32>
  func.return %6 : tensor<2x16x64xf32>
}
// CHECK-NEXT:    %[[L:.*]] = kernel.loop "loop0_sum_cube_mul_div" (%part, %rstd, %h, %g) : (tensor<32x2xf32>, tensor<2x16x1xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> (tensor<2x16x64xf32>) {
// CHECK-NEXT:    ^bb0(%[[P:.*]]: tensor<32x2xf32>, %[[R:.*]]: tensor<2x16x1xf32>, %[[H:.*]]: tensor<2x16x64xf32>, %[[G:.*]]: tensor<2x16x64xf32>):
// CHECK:           %[[V:.*]] = graph.view "reshape" %[[P]] : tensor<32x2xf32> -> tensor<2x16x2xf32>
// CHECK-NEXT:      %[[S:.*]] = graph.reduce "sum" %[[V]] dims array<i64: 2> keepdim
// CHECK:           %[[C:.*]] = graph.pointwise "div"
// CHECK-NEXT:      %[[M:.*]] = graph.pointwise "mul"(%[[C]], %[[H]])
// CHECK-NEXT:      %[[D:.*]] = graph.pointwise "add"(%[[G]], %[[M]])
// CHECK-NEXT:      kernel.yield %[[D]] : tensor<2x16x64xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[L]]

// More than 1024 values per row are too many for one block of registers: the
// finalize stays a reduction kernel of its own and the pass reads its result.
// CHECK-LABEL: func.func @too_many_partials
func.func @too_many_partials(%part: tensor<8x1100xf32>, %h: tensor<2x4x2200xf32>) -> tensor<2x4x2200xf32> {
  %v = graph.view "reshape" %part : tensor<8x1100xf32> -> tensor<2x4x1100xf32>
  %0 = graph.reduce "sum" %v dims array<i64: 2> keepdim : tensor<2x4x1100xf32> -> tensor<2x4x1xf32>
  %1 = graph.pointwise "mul"(%0, %h) : (tensor<2x4x1xf32>, tensor<2x4x2200xf32>) -> tensor<2x4x2200xf32>
  func.return %1 : tensor<2x4x2200xf32>
}
// CHECK-NEXT:    %[[F:.*]] = kernel.loop "loop0_sum" (%part)
// CHECK:         kernel.loop "loop1_mul" (%[[F]], %h)

// A pass that also reduces (sum over the rows of dx) does not take the small
// reduction: a kernel runs small reductions and one pointwise pass only. The row sum
// of dx reads dx from the first kernel.
// CHECK-LABEL: func.func @pass_that_reduces
func.func @pass_that_reduces(%part: tensor<32x2xf32>, %h: tensor<2x16x64xf32>) -> (tensor<2x16x64xf32>, tensor<2x16x1xf32>) {
  %v = graph.view "reshape" %part : tensor<32x2xf32> -> tensor<2x16x2xf32>
  %0 = graph.reduce "sum" %v dims array<i64: 2> keepdim : tensor<2x16x2xf32> -> tensor<2x16x1xf32>
  %1 = graph.pointwise "mul"(%0, %h) : (tensor<2x16x1xf32>, tensor<2x16x64xf32>) -> tensor<2x16x64xf32>
  %2 = graph.reduce "amax" %1 dims array<i64: 2> keepdim : tensor<2x16x64xf32> -> tensor<2x16x1xf32>
  func.return %1, %2 : tensor<2x16x64xf32>, tensor<2x16x1xf32>
}
// CHECK-NEXT:    %[[A:.*]] = kernel.loop "loop0_sum_mul" (%part, %h)
// CHECK:           graph.reduce "sum"
// CHECK-NOT:       graph.reduce
// CHECK:           kernel.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[B:.*]] = kernel.loop "loop1_amax" (%[[A]])
