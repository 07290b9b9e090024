// RUN: lowerc %s -p fuse-epilogues,split-blocks | filecheck %s

// The backward of a Linear + ReLU layer: dgrad GEMM with the ReLU mask in its
// epilogue, a bias-gradient reduction as a loop kernel, a wgrad GEMM whose
// operand is a transposed view (moved into the GEMM kernel: it reads %dy in
// place through the view's layout), a fallback, and a pointwise chain
// that loop-fuses into one kernel with its constant inlined.
// CHECK-LABEL: func.func @backward
func.func @backward(%dy: tensor<4x8xf32>, %w: tensor<8x16xf32>, %x: tensor<4x16xf32>, %h: tensor<4x16xf32>) -> (tensor<4x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  %0 = graph.matmul %dy, %w : (tensor<4x8xf32>, tensor<8x16xf32>) -> tensor<4x16xf32>
  %zero = graph.constant 0.000000e+00 : f32 -> tensor<f32>
  %1 = graph.pointwise "threshold_backward"(%0, %h, %zero) : (tensor<4x16xf32>, tensor<4x16xf32>, tensor<f32>) -> tensor<4x16xf32>
  %dyt = graph.view "permute" %dy perm array<i64: 1, 0> : tensor<4x8xf32> -> tensor<8x4xf32>
  %2 = graph.matmul %dyt, %x : (tensor<8x4xf32>, tensor<4x16xf32>) -> tensor<8x16xf32>
  %3 = graph.reduce "sum" %dy dims array<i64: 0> : tensor<4x8xf32> -> tensor<8xf32>
  %4 = graph.opaque "aten.cumsum.default"(%dy) args "{'args': [{'operand': 0}, 1], 'kwargs': {}}" : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %half = graph.constant 5.000000e-01 : f32 -> tensor<f32>
  %5 = graph.pointwise "mul"(%4, %half) : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %6 = graph.pointwise "exp"(%5) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %1, %2, %3, %4, %6 : tensor<4x16xf32>, tensor<8x16xf32>, tensor<8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}
// CHECK-NEXT:    %[[G0:.*]] = kernel.gemm "gemm0_threshold_backward" (%dy, %w, %h) : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<4x16xf32>) -> (tensor<4x16xf32>) {
// CHECK-NEXT:    ^bb0(%{{.*}}: tensor<4x8xf32>, %{{.*}}: tensor<8x16xf32>, %{{.*}}: tensor<4x16xf32>):
// CHECK-NEXT:      %{{.*}} = epilogue.gemm
// CHECK:             epilogue.map "threshold_backward"
// CHECK:           kernel.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[G1:.*]] = kernel.gemm "gemm1" (%dy, %x) : (tensor<4x8xf32>, tensor<4x16xf32>) -> (tensor<8x16xf32>) {
// CHECK-NEXT:    ^bb0(%[[DY:.*]]: tensor<4x8xf32>, %[[X:.*]]: tensor<4x16xf32>):
// CHECK-NEXT:      %[[T:.*]] = graph.view "permute" %[[DY]] perm array<i64: 1, 0> : tensor<4x8xf32> -> tensor<8x4xf32>
// CHECK-NEXT:      %{{.*}} = epilogue.gemm %[[T]], %[[X]]
// CHECK:         %[[L2:.*]] = kernel.loop "loop2_sum" (%dy) : (tensor<4x8xf32>) -> (tensor<8xf32>) {
// CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<4x8xf32>):
// CHECK-NEXT:      %[[R:.*]] = graph.reduce "sum" %[[A]] dims array<i64: 0> : tensor<4x8xf32> -> tensor<8xf32>
// CHECK-NEXT:      kernel.yield %[[R]] : tensor<8xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[F3:.*]] = kernel.fallback "torch3_cumsum" (%dy)
// CHECK-NEXT:    ^bb0(%{{.*}}: tensor<4x8xf32>):
// CHECK-NEXT:      %{{.*}} = graph.opaque "aten.cumsum.default"
// CHECK-NEXT:      kernel.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[L4:.*]] = kernel.loop "loop4_mul_exp" (%[[F3]]) : (tensor<4x8xf32>) -> (tensor<4x8xf32>) {
// CHECK-NEXT:    ^bb0(%[[B:.*]]: tensor<4x8xf32>):
// CHECK-NEXT:      %[[H:.*]] = graph.constant 5.000000e-01 : f32 -> tensor<f32>
// CHECK-NEXT:      %[[M:.*]] = graph.pointwise "mul"(%[[B]], %[[H]])
// CHECK-NEXT:      %[[E:.*]] = graph.pointwise "exp"(%[[M]])
// CHECK-NEXT:      kernel.yield %[[E]] : tensor<4x8xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[G0]], %[[G1]], %[[L2]], %[[F3]], %[[L4]]
// CHECK-NOT:     graph.constant
// CHECK-NOT:     graph.view

// A reshape that merges dims a permute moved apart is not a view of the fresh
// buffer %e. The loop kernel computing %n reads it in place through its layout;
// the returned %m must be a real tensor, so a copy loop kernel materializes the
// permuted tensor (the permute moves into it) and the reshape of the copy is a
// view. The reshape of the argument %x stays (its strides are only known at run
// time).
// CHECK-LABEL: func.func @reshape_that_moves_data
func.func @reshape_that_moves_data(%x: tensor<2x4x8xf32>) -> (tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>) {
  %e = graph.pointwise "exp"(%x) : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %t = graph.view "permute" %e perm array<i64: 1, 0, 2> : tensor<2x4x8xf32> -> tensor<4x2x8xf32>
  %m = graph.view "reshape" %t : tensor<4x2x8xf32> -> tensor<8x8xf32>
  %n = graph.pointwise "neg"(%m) : (tensor<8x8xf32>) -> tensor<8x8xf32>
  %v = graph.view "reshape" %x : tensor<2x4x8xf32> -> tensor<8x8xf32>
  func.return %m, %v, %n : tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>
}
// CHECK:         %[[E:.*]] = kernel.loop "loop0_exp" (%x)
// CHECK:         %[[C:.*]] = kernel.loop "loop1_copy" (%[[E]]) : (tensor<2x4x8xf32>) -> (tensor<4x2x8xf32>) {
// CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<2x4x8xf32>):
// CHECK-NEXT:      %[[T:.*]] = graph.view "permute" %[[A]]
// CHECK-NEXT:      %{{.*}} = graph.pointwise "copy"(%[[T]])
// CHECK:         %[[M:.*]] = graph.view "reshape" %[[C]] : tensor<4x2x8xf32> -> tensor<8x8xf32>
// CHECK-NEXT:    %[[N:.*]] = kernel.loop "loop2_neg" (%[[C]])
// CHECK:         %[[V:.*]] = graph.view "reshape" %x : tensor<2x4x8xf32> -> tensor<8x8xf32>
// CHECK-NEXT:    func.return %[[M]], %[[V]], %[[N]]

// A GEMM result read only head-split (reshape + permute) is stored head-major:
// the kernel yields the view chain (here up to the [B*H, S, D] merge its only
// user reads), written through the inverse layout into a contiguous buffer.
// Without the store layout that merge would be a copy.
// CHECK-LABEL: func.func @store_head_major
func.func @store_head_major(%x: tensor<16x32xf32>, %w: tensor<32x32xf32>) -> tensor<8x8x8xf32> {
  %0 = graph.matmul %x, %w : (tensor<16x32xf32>, tensor<32x32xf32>) -> tensor<16x32xf32>
  %1 = graph.view "reshape" %0 : tensor<16x32xf32> -> tensor<2x8x4x8xf32>
  %2 = graph.view "permute" %1 perm array<i64: 0, 2, 1, 3> : tensor<2x8x4x8xf32> -> tensor<2x4x8x8xf32>
  %3 = graph.view "reshape" %2 : tensor<2x4x8x8xf32> -> tensor<8x8x8xf32>
  func.return %3 : tensor<8x8x8xf32>
}
// CHECK:         %[[Q:.*]] = kernel.gemm "gemm0" (%x, %w) : (tensor<16x32xf32>, tensor<32x32xf32>) -> (tensor<8x8x8xf32>) {
// CHECK:           %[[G:.*]] = epilogue.gemm
// CHECK:           %[[S:.*]] = graph.view "reshape" %[[G]] : tensor<16x32xf32> -> tensor<2x8x4x8xf32>
// CHECK-NEXT:      %[[T:.*]] = graph.view "permute" %[[S]] perm array<i64: 0, 2, 1, 3>
// CHECK-NEXT:      %[[M:.*]] = graph.view "reshape" %[[T]] : tensor<2x4x8x8xf32> -> tensor<8x8x8xf32>
// CHECK-NEXT:      kernel.yield %[[M]] : tensor<8x8x8xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[Q]]

// CHECK-LABEL: func.func @rms_statistics
// RMSNorm is one loop kernel: rsqrt(mean(x^2) + eps) runs after the reduction's loop,
// and the normalization, which reads the reduction at every element, in a second pass
// over the rows (codegen) of the same kernel.
func.func @rms_statistics(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %0 = graph.pointwise "square"(%x) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %1 = graph.reduce "mean" %0 dims array<i64: 1> keepdim : tensor<4x8xf32> -> tensor<4x1xf32>
  %eps = graph.constant 1.000000e-06 : f32 -> tensor<f32>
  %2 = graph.pointwise "add"(%1, %eps) : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %3 = graph.pointwise "rsqrt"(%2) : (tensor<4x1xf32>) -> tensor<4x1xf32>
  %4 = graph.pointwise "mul"(%x, %3) : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  func.return %4 : tensor<4x8xf32>
}
// CHECK:         %[[R:.*]] = kernel.loop "loop0_square_mean_add_rsqrt" (%x) : (tensor<4x8xf32>) -> (tensor<4x8xf32>) {
// CHECK-NEXT:    ^bb0(%[[X:.*]]: tensor<4x8xf32>):
// CHECK-NEXT:      %[[E:.*]] = graph.constant 1.000000e-06
// CHECK-NEXT:      %[[Q:.*]] = graph.pointwise "square"(%[[X]])
// CHECK-NEXT:      %[[M:.*]] = graph.reduce "mean" %[[Q]]
// CHECK-NEXT:      %[[A:.*]] = graph.pointwise "add"(%[[M]], %[[E]])
// CHECK-NEXT:      %[[S:.*]] = graph.pointwise "rsqrt"(%[[A]])
// CHECK-NEXT:      %[[N:.*]] = graph.pointwise "mul"(%[[X]], %[[S]])
// CHECK-NEXT:      kernel.yield %[[N]] : tensor<4x8xf32>
// CHECK:         func.return %[[R]]

// CHECK-LABEL: func.func @rope
// x * cos + concat(x2, x1) * sign * sin: the concat starts a loop group (it reads its
// pieces at shifted indices), the `add` reading both groups merges them, the sign
// concat of constants joins: one kernel, reading %x through two slices in place.
func.func @rope(%x: tensor<2x8xf32>, %cos: tensor<8xf32>, %sin: tensor<8xf32>) -> tensor<2x8xf32> {
  %x1 = graph.view "slice" %x slice array<i64: 1, 0, 1> : tensor<2x8xf32> -> tensor<2x4xf32>
  %x2 = graph.view "slice" %x slice array<i64: 1, 4, 1> : tensor<2x8xf32> -> tensor<2x4xf32>
  %m = graph.constant -1.000000e+00 : f32 -> tensor<2x4xf32>
  %p = graph.constant 1.000000e+00 : f32 -> tensor<2x4xf32>
  %0 = graph.pointwise "mul"(%x, %cos) : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  %1 = graph.concat %x2, %x1 dim 1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  %2 = graph.concat %m, %p dim 1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  %3 = graph.pointwise "mul"(%1, %2) : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %4 = graph.pointwise "mul"(%3, %sin) : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  %5 = graph.pointwise "add"(%0, %4) : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  func.return %5 : tensor<2x8xf32>
}
// CHECK-NEXT:    %[[K:.*]] = kernel.loop "loop0_mul_concat_add" (%x, %cos, %sin)
// CHECK:           graph.view "slice"
// CHECK:           graph.view "slice"
// CHECK:           graph.pointwise "mul"
// CHECK-NEXT:      graph.concat
// CHECK-NEXT:      graph.concat
// CHECK-NEXT:      graph.pointwise "mul"
// CHECK-NEXT:      graph.pointwise "mul"
// CHECK-NEXT:      graph.pointwise "add"
// CHECK-NEXT:      kernel.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[K]]

// CHECK-LABEL: func.func @concat_of_computed
// A concat of values computed in loops reads them from memory: a group of its own.
func.func @concat_of_computed(%a: tensor<4xf32>, %b: tensor<4xf32>) -> tensor<8xf32> {
  %0 = graph.pointwise "exp"(%a) : (tensor<4xf32>) -> tensor<4xf32>
  %1 = graph.pointwise "exp"(%b) : (tensor<4xf32>) -> tensor<4xf32>
  %2 = graph.concat %0, %1 dim 0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<8xf32>
  func.return %2 : tensor<8xf32>
}
// CHECK-NEXT:    %[[E0:.*]] = kernel.loop "loop0_exp" (%a)
// CHECK:         %[[E1:.*]] = kernel.loop "loop1_exp" (%b)
// CHECK:         kernel.loop "loop2_concat" (%[[E0]], %[[E1]])

// CHECK-LABEL: func.func @sibling_sums
// Independent reductions over one shape and dims that read outputs of one GEMM (a
// LayerNorm backward's row sums) run as one loop kernel; the column sum has other
// reduced dims and stays apart; an unrelated row sum of a graph input stays apart too.
func.func @sibling_sums(%a: tensor<4x8xf32>, %b: tensor<8x8xf32>, %c: tensor<4x8xf32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<8xf32>, tensor<4xf32>) {
  %y = graph.matmul %a, %b : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
  %z = graph.pointwise "exp"(%y) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %0 = graph.reduce "sum" %y dims array<i64: 1> : tensor<4x8xf32> -> tensor<4xf32>
  %1 = graph.reduce "sum" %z dims array<i64: 1> : tensor<4x8xf32> -> tensor<4xf32>
  %2 = graph.reduce "sum" %y dims array<i64: 0> : tensor<4x8xf32> -> tensor<8xf32>
  %3 = graph.reduce "sum" %c dims array<i64: 1> : tensor<4x8xf32> -> tensor<4xf32>
  func.return %0, %1, %2, %3 : tensor<4xf32>, tensor<4xf32>, tensor<8xf32>, tensor<4xf32>
}
// CHECK:         %y, %z = kernel.gemm "gemm0_exp" (%a, %b)
// CHECK:         %[[S0:.*]], %[[S1:.*]] = kernel.loop "loop1_sum" (%y, %z) : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4xf32>, tensor<4xf32>)
// CHECK:         %[[C:.*]] = kernel.loop "loop2_sum" (%y) : (tensor<4x8xf32>) -> (tensor<8xf32>)
// CHECK:         %[[R:.*]] = kernel.loop "loop3_sum" (%c)
// CHECK:         func.return %[[S0]], %[[S1]], %[[C]], %[[R]]

// CHECK-LABEL: func.func @rms_norm_backward
// The input gradient of an RMSNorm is one loop kernel: the row sum, then the per-row
// factor -0.5 * sum * rstd^3 / N (rstd is a per-row operand read after the loop), then
// a second pass over the rows for the elementwise combination.
func.func @rms_norm_backward(%g: tensor<4x8xf32>, %x: tensor<4x8xf32>, %rstd: tensor<4x1xf32>, %gx: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %0 = graph.pointwise "mul"(%g, %x) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %1 = graph.reduce "sum" %0 dims array<i64: 1> keepdim : tensor<4x8xf32> -> tensor<4x1xf32>
  %half = graph.constant -5.000000e-01 : f32 -> tensor<f32>
  %2 = graph.pointwise "mul"(%1, %half) : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %3 = graph.pointwise "cube"(%rstd) : (tensor<4x1xf32>) -> tensor<4x1xf32>
  %4 = graph.pointwise "mul"(%2, %3) : (tensor<4x1xf32>, tensor<4x1xf32>) -> tensor<4x1xf32>
  %n = graph.constant 8.000000e+00 : f32 -> tensor<f32>
  %5 = graph.pointwise "div"(%4, %n) : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %6 = graph.pointwise "mul"(%5, %x) : (tensor<4x1xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %7 = graph.pointwise "add"(%gx, %6) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %7 : tensor<4x8xf32>
}
// CHECK:         %[[R:.*]] = kernel.loop "loop0_mul_sum_cube_div" (%g, %x, %rstd, %gx) : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x1xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>) {
// CHECK-NOT:     kernel.loop
// CHECK:         func.return %[[R]]

// CHECK-LABEL: func.func @recompute_in_consumer
// 2 * h is used only by the other kernel, which can read h (stored anyway, it is
// returned): it is recomputed there instead of stored and read back.
func.func @recompute_in_consumer(%x: tensor<4x8xf32>, %m: tensor<4x8xf32>, %g: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %h = graph.pointwise "add"(%x, %m) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %two = graph.constant 2.000000e+00 : f32 -> tensor<f32>
  %h2 = graph.pointwise "mul"(%h, %two) : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %s = graph.reduce "sum" %g dims array<i64: 1> keepdim : tensor<4x8xf32> -> tensor<4x1xf32>
  %o = graph.pointwise "mul"(%s, %h2) : (tensor<4x1xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %h, %o : tensor<4x8xf32>, tensor<4x8xf32>
}
// CHECK:         %[[H:.*]] = kernel.loop "loop0_add" (%x, %m) : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>) {
// CHECK:         %[[O:.*]] = kernel.loop "loop1_mul_sum" (%[[H]], %g) : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>) {
// CHECK:         func.return %[[H]], %[[O]]
