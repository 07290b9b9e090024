// RUN: lowerc %s -p fuse-epilogues | filecheck %s
// RUN: lowerc %s -p fuse-epilogues,fuse-reductions,split-blocks | filecheck %s --check-prefix=KERNEL

// The o-projection's residual add, then the next RMSNorm's statistics: the output is
// 64 columns wide, so one program holds whole rows and rstd = rsqrt(mean(h^2) + eps) is
// complete in the epilogue, stored as a [32, 1] column beside h.
// CHECK-LABEL: func.func @residual_then_rmsnorm_statistics
func.func @residual_then_rmsnorm_statistics(%a: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %x: tensor<2x16x64xf32>) -> (tensor<2x16x64xf32>, tensor<2x16x1xf32>) {
  %o = graph.matmul %a, %wo : (tensor<32x64xf32>, tensor<64x64xf32>) -> tensor<32x64xf32>
  %o3 = graph.view "reshape" %o : tensor<32x64xf32> -> tensor<2x16x64xf32>
  %h = graph.pointwise "add"(%x, %o3) : (tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> tensor<2x16x64xf32>
  %sq = graph.pointwise "square"(%h) : (tensor<2x16x64xf32>) -> tensor<2x16x64xf32>
  %ms = graph.reduce "mean" %sq dims array<i64: 2> keepdim : tensor<2x16x64xf32> -> tensor<2x16x1xf32>
  %eps = graph.constant 1.000000e-06 : f32 -> tensor<f32>
  %v = graph.pointwise "add"(%ms, %eps) : (tensor<2x16x1xf32>, tensor<f32>) -> tensor<2x16x1xf32>
  %rstd = graph.pointwise "rsqrt"(%v) : (tensor<2x16x1xf32>) -> tensor<2x16x1xf32>
  func.return %h, %rstd : tensor<2x16x64xf32>, tensor<2x16x1xf32>
}
// CHECK:         %[[H:.*]], %[[R:.*]] = epilogue.gemm %a, %wo inputs(%{{.*}}) : ({{.*}}) -> (tensor<32x64xf32>, tensor<32x1xf32>) {
// CHECK:           %[[S:.*]] = epilogue.accumulate
// CHECK-NEXT:      %[[SQ:.*]] = epilogue.map "square"(%[[S]])
// CHECK-NEXT:      %[[SUM:.*]] = epilogue.row_reduce "sum" %[[SQ]] : !epilogue.tile<f32> -> !epilogue.col<f32>
// CHECK-NEXT:      %[[N:.*]] = epilogue.constant 6.400000e+01 : f32 -> !epilogue.scalar<f32>
// CHECK-NEXT:      %[[MEAN:.*]] = epilogue.map "div"(%[[SUM]], %[[N]]) : (!epilogue.col<f32>, !epilogue.scalar<f32>) -> !epilogue.col<f32>
// CHECK:           epilogue.map "rsqrt"(%{{.*}}) : (!epilogue.col<f32>) -> !epilogue.col<f32>
// CHECK:           epilogue.store %[[S]] : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:      epilogue.store %{{.*}} : !epilogue.col<f32> -> result 1
// CHECK:         graph.view "reshape" %[[R]] : tensor<32x1xf32> -> tensor<2x16x1xf32>
// CHECK-NOT:     graph.reduce

// One kernel: no loop kernel for the statistics.
// KERNEL-LABEL: func.func @residual_then_rmsnorm_statistics
// KERNEL-NOT:    kernel.loop
// KERNEL:        kernel.gemm "gemm0_residual_square_div_bias_rsqrt"
// KERNEL-NOT:    kernel.loop

// RMSNorm's backward after the down-projection's input gradient g = dz @ W: the row sum
// of g * w * x over whole rows, then dx = dy + rstd * w * g + c * x with the per-row
// c = -sum * rstd^3 / N, all in the epilogue. Only what a program cannot hold (the
// norm weight's gradient, a column sum over every token) stays partials.
// CHECK-LABEL: func.func @rmsnorm_backward
func.func @rmsnorm_backward(%dz: tensor<32x16xf32>, %w2: tensor<16x64xf32>, %w: tensor<64xf32>, %x: tensor<32x64xf32>, %rstd: tensor<32x1xf32>, %dy: tensor<32x64xf32>) -> (tensor<32x64xf32>, tensor<64xf32>) {
  %g = graph.matmul %dz, %w2 : (tensor<32x16xf32>, tensor<16x64xf32>) -> tensor<32x64xf32>
  %gw = graph.pointwise "mul"(%g, %w) : (tensor<32x64xf32>, tensor<64xf32>) -> tensor<32x64xf32>
  %gwx = graph.pointwise "mul"(%gw, %x) : (tensor<32x64xf32>, tensor<32x64xf32>) -> tensor<32x64xf32>
  %s = graph.reduce "sum" %gwx dims array<i64: 1> keepdim : tensor<32x64xf32> -> tensor<32x1xf32>
  %r3 = graph.pointwise "cube"(%rstd) : (tensor<32x1xf32>) -> tensor<32x1xf32>
  %sr = graph.pointwise "mul"(%s, %r3) : (tensor<32x1xf32>, tensor<32x1xf32>) -> tensor<32x1xf32>
  %n = graph.constant -6.400000e+01 : f32 -> tensor<f32>
  %c = graph.pointwise "div"(%sr, %n) : (tensor<32x1xf32>, tensor<f32>) -> tensor<32x1xf32>
  %cx = graph.pointwise "mul"(%c, %x) : (tensor<32x1xf32>, tensor<32x64xf32>) -> tensor<32x64xf32>
  %t = graph.pointwise "mul"(%gw, %rstd) : (tensor<32x64xf32>, tensor<32x1xf32>) -> tensor<32x64xf32>
  %t2 = graph.pointwise "add"(%t, %cx) : (tensor<32x64xf32>, tensor<32x64xf32>) -> tensor<32x64xf32>
  %dx = graph.pointwise "add"(%dy, %t2) : (tensor<32x64xf32>, tensor<32x64xf32>) -> tensor<32x64xf32>
  %xr = graph.pointwise "mul"(%x, %rstd) : (tensor<32x64xf32>, tensor<32x1xf32>) -> tensor<32x64xf32>
  %gxr = graph.pointwise "mul"(%g, %xr) : (tensor<32x64xf32>, tensor<32x64xf32>) -> tensor<32x64xf32>
  %dw = graph.reduce "sum" %gxr dims array<i64: 0> : tensor<32x64xf32> -> tensor<64xf32>
  func.return %dx, %dw : tensor<32x64xf32>, tensor<64xf32>
}
// CHECK:           epilogue.row_reduce "sum"
// CHECK:           epilogue.map "cube"(%{{.*}}) : (!epilogue.col<f32>) -> !epilogue.col<f32>
// CHECK:           epilogue.store
// CHECK:         graph.reduce "sum" %{{.*}} dims array<i64: 0>
// KERNEL-LABEL: func.func @rmsnorm_backward
// KERNEL:        kernel.gemm
// KERNEL-SAME:     -> (tensor<32x64xf32>, tensor<1x64xf32>)
// KERNEL:          epilogue.reduce "sum" %{{.*}} : !epilogue.tile<f32> -> result 1 rows 32
// 32 tokens are one group of rows: those partials are the whole sums, no finalize.
// KERNEL-NOT:    kernel.loop
// KERNEL:        func.return

// A 320-wide output does not fit one program's rows: the statistic stays a graph.reduce
// (fuse-reductions makes it partials and a finalize).
// CHECK-LABEL: func.func @too_wide_for_whole_rows
func.func @too_wide_for_whole_rows(%a: tensor<8x16xf32>, %w: tensor<16x320xf32>) -> (tensor<8x320xf32>, tensor<8x1xf32>) {
  %y = graph.matmul %a, %w : (tensor<8x16xf32>, tensor<16x320xf32>) -> tensor<8x320xf32>
  %m = graph.reduce "amax" %y dims array<i64: 1> keepdim : tensor<8x320xf32> -> tensor<8x1xf32>
  func.return %y, %m : tensor<8x320xf32>, tensor<8x1xf32>
}
// CHECK-NOT:     epilogue.row_reduce
// CHECK:         graph.reduce "amax"
// KERNEL-LABEL: func.func @too_wide_for_whole_rows
// KERNEL:        epilogue.reduce "max" %acc : !epilogue.tile<f32> -> result 1 columns 32
// KERNEL:        kernel.loop "loop1_amax"
