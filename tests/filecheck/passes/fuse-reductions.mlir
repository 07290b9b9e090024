// RUN: lowerc %s -p fuse-epilogues,fuse-reductions | filecheck %s

// The LM head of cross-entropy: logsumexp of the logits and the target logit, picked
// by a one-hot mask (iota == target) that fuses as well. Only reductions read the
// logits, so the GEMM writes two [8, 3] partials (320 columns / 32) and no [8, 320]
// result; a finalize of each kind combines the partials.
// CHECK-LABEL: func.func @lm_head_cross_entropy
func.func @lm_head_cross_entropy(%h: tensor<8x16xf32>, %w: tensor<16x320xf32>, %iota: tensor<1x320xi64>, %t: tensor<8x1xi64>) -> (tensor<8x1xf32>, tensor<8x1xf32>) {
  %logits = graph.matmul %h, %w : (tensor<8x16xf32>, tensor<16x320xf32>) -> tensor<8x320xf32>
  %lse = graph.reduce "logsumexp" %logits dims array<i64: 1> keepdim : tensor<8x320xf32> -> tensor<8x1xf32>
  %onehot = graph.pointwise "eq"(%iota, %t) : (tensor<1x320xi64>, tensor<8x1xi64>) -> tensor<8x320xi1>
  %zero = graph.constant 0.000000e+00 : f32 -> tensor<f32>
  %masked = graph.pointwise "where"(%onehot, %logits, %zero) : (tensor<8x320xi1>, tensor<8x320xf32>, tensor<f32>) -> tensor<8x320xf32>
  %picked = graph.reduce "sum" %masked dims array<i64: 1> keepdim : tensor<8x320xf32> -> tensor<8x1xf32>
  func.return %lse, %picked : tensor<8x1xf32>, tensor<8x1xf32>
}
// CHECK:         %[[LSE_P:.*]], %[[PICK_P:.*]] = epilogue.gemm %h, %w inputs(%iota, %t) : (tensor<8x16xf32>, tensor<16x320xf32>, tensor<1x320xi64>, tensor<8x1xi64>) -> (tensor<8x10xf32>, tensor<8x10xf32>) {
// Each partial reduction comes right after its tile, which need not stay live after it.
// CHECK-NEXT:      ^bb0(%acc: !epilogue.tile<f32>, %{{.*}}: !epilogue.row<i64>, %{{.*}}: !epilogue.col<i64>):
// CHECK-NEXT:      epilogue.reduce "logsumexp" %acc : !epilogue.tile<f32> -> result 0 columns 32
// CHECK-NEXT:      epilogue.map "eq"
// CHECK-NEXT:      epilogue.constant
// CHECK-NEXT:      %[[MASKED:.*]] = epilogue.map "where"
// CHECK-NEXT:      epilogue.reduce "sum" %[[MASKED]] : !epilogue.tile<f32> -> result 1 columns 32
// CHECK-NEXT:    }
// CHECK-DAG:     %{{.*}} = graph.reduce "sum" %[[PICK_P]] dims array<i64: 1> keepdim : tensor<8x10xf32> -> tensor<8x1xf32>
// CHECK-DAG:     %{{.*}} = graph.reduce "logsumexp" %[[LSE_P]] dims array<i64: 1> keepdim : tensor<8x10xf32> -> tensor<8x1xf32>

// A result read by something besides a reduction is written anyway: the loop kernel
// that reads it reduces it in the same pass, so nothing changes.
// CHECK-LABEL: func.func @also_read_elementwise
func.func @also_read_elementwise(%x: tensor<8x16xf32>, %w: tensor<16x320xf32>) -> (tensor<8x1xf32>, tensor<8x320xf32>) {
  %0 = graph.matmul %x, %w : (tensor<8x16xf32>, tensor<16x320xf32>) -> tensor<8x320xf32>
  %1 = graph.reduce "amax" %0 dims array<i64: 1> keepdim : tensor<8x320xf32> -> tensor<8x1xf32>
  %2 = graph.pointwise "sub"(%0, %1) : (tensor<8x320xf32>, tensor<8x1xf32>) -> tensor<8x320xf32>
  func.return %1, %2 : tensor<8x1xf32>, tensor<8x320xf32>
}
// CHECK-NOT:     epilogue.reduce
// CHECK:         graph.reduce "amax" %{{.*}} dims array<i64: 1> keepdim : tensor<8x320xf32> -> tensor<8x1xf32>

// RMSNorm's backward: the row sum of dy * w * x and the norm weight's gradient, a
// column sum over every token, both of GEMM results seen through a reshape to
// [batch, seq, hidden]. Row partials [32, 10], column partials [1, 320]; each finalize
// reduces its partials viewed in the reduction's own shape, so the per-row work after
// it runs in its loop kernel, and neither [32, 320] result is written. (Rows of at most
// epilogue.FULL_ROW_MAX columns are reduced whole in the epilogue instead: the
// outputs here are 320 wide.)
// CHECK-LABEL: func.func @norm_backward_sums
func.func @norm_backward_sums(%dz: tensor<32x16xf32>, %w: tensor<16x320xf32>, %x: tensor<32x320xf32>) -> (tensor<2x16x1xf32>, tensor<1x1x320xf32>) {
  %g = graph.matmul %dz, %w : (tensor<32x16xf32>, tensor<16x320xf32>) -> tensor<32x320xf32>
  %gx = graph.pointwise "mul"(%g, %x) : (tensor<32x320xf32>, tensor<32x320xf32>) -> tensor<32x320xf32>
  %gx3 = graph.view "reshape" %gx : tensor<32x320xf32> -> tensor<2x16x320xf32>
  %row = graph.reduce "sum" %gx3 dims array<i64: 2> keepdim : tensor<2x16x320xf32> -> tensor<2x16x1xf32>
  %g3 = graph.view "reshape" %g : tensor<32x320xf32> -> tensor<2x16x320xf32>
  %col = graph.reduce "sum" %g3 dims array<i64: 0, 1> keepdim : tensor<2x16x320xf32> -> tensor<1x1x320xf32>
  func.return %row, %col : tensor<2x16x1xf32>, tensor<1x1x320xf32>
}
// CHECK:         %row_partials, %col_partials = epilogue.gemm %dz, %w inputs(%x) : (tensor<32x16xf32>, tensor<16x320xf32>, tensor<32x320xf32>) -> (tensor<32x10xf32>, tensor<1x320xf32>) {
// CHECK-NOT:       epilogue.store
// CHECK:           epilogue.reduce "sum" %acc : !epilogue.tile<f32> -> result 1 rows 32
// CHECK-NEXT:      %[[GX:.*]] = epilogue.map "mul"(%acc, %{{.*}})
// CHECK-NEXT:      epilogue.reduce "sum" %[[GX]] : !epilogue.tile<f32> -> result 0 columns 32
// CHECK-NEXT:    }
// CHECK-DAG:     %[[R:.*]] = graph.view "reshape" %row_partials : tensor<32x10xf32> -> tensor<2x16x10xf32>
// CHECK-DAG:     graph.reduce "sum" %[[R]] dims array<i64: 2> keepdim : tensor<2x16x10xf32> -> tensor<2x16x1xf32>
// 32 tokens are one group of rows: the column partials are the whole sums already,
// and no finalize runs for them.
// CHECK-DAG:     %col = graph.view "reshape" %col_partials : tensor<1x320xf32> -> tensor<1x1x320xf32>

// GPT-2's pre-GELU gradient: two GEMMs read it (the input and the weight gradient,
// the latter through a transpose), and its column sum is the bias gradient. It is
// written for the GEMMs, and the sum is a side output of row-group partials instead of
// another pass over it.
// CHECK-LABEL: func.func @bias_gradient_beside_gemm_operand
func.func @bias_gradient_beside_gemm_operand(%dy: tensor<64x16xf32>, %w: tensor<16x64xf32>, %w2: tensor<64x16xf32>, %x: tensor<64x8xf32>) -> (tensor<1x64xf32>, tensor<64x16xf32>, tensor<64x8xf32>) {
  %g = graph.matmul %dy, %w : (tensor<64x16xf32>, tensor<16x64xf32>) -> tensor<64x64xf32>
  %db = graph.reduce "sum" %g dims array<i64: 0> keepdim : tensor<64x64xf32> -> tensor<1x64xf32>
  %dx = graph.matmul %g, %w2 : (tensor<64x64xf32>, tensor<64x16xf32>) -> tensor<64x16xf32>
  %gt = graph.view "permute" %g perm array<i64: 1, 0> : tensor<64x64xf32> -> tensor<64x64xf32>
  %dw = graph.matmul %gt, %x : (tensor<64x64xf32>, tensor<64x8xf32>) -> tensor<64x8xf32>
  func.return %db, %dx, %dw : tensor<1x64xf32>, tensor<64x16xf32>, tensor<64x8xf32>
}
// CHECK:         %[[G:.*]], %[[P:.*]] = epilogue.gemm %dy, %w : (tensor<64x16xf32>, tensor<16x64xf32>) -> (tensor<64x64xf32>, tensor<2x64xf32>) {
// CHECK:           epilogue.reduce "sum" %acc : !epilogue.tile<f32> -> result 1 rows 32
// CHECK-NEXT:      epilogue.store %acc : !epilogue.tile<f32> -> result 0
// CHECK:         graph.reduce "sum" %[[P]] dims array<i64: 0> keepdim : tensor<2x64xf32> -> tensor<1x64xf32>
// CHECK:         epilogue.gemm %[[G]], %w2

// A bf16 RMSNorm's statistic of a GEMM output wider than one program's rows: float32
// sum-of-squares partials in the epilogue, their sum over the count in float32, and one
// rounding to bf16 at the end (as eager's mean rounds once).
// CHECK-LABEL: func.func @bf16_mean_of_squares
// CHECK:         epilogue.reduce "sumsq" %{{.*}} : !epilogue.tile<bf16> -> result 1 columns 32
// CHECK:         %[[SUM:.*]] = graph.reduce "sum" %{{.*}} dims array<i64: 1> keepdim : tensor<16x16xf32> -> tensor<16x1xf32>
// CHECK:         %[[MEAN:.*]] = graph.pointwise "div"(%[[SUM]], %{{.*}}) : (tensor<16x1xf32>, tensor<f32>) -> tensor<16x1xf32>
// CHECK:         %ms = graph.pointwise "cast"(%[[MEAN]]) : (tensor<16x1xf32>) -> tensor<16x1xbf16>
func.func @bf16_mean_of_squares(%x: tensor<16x64xbf16>, %w: tensor<64x512xbf16>, %r: tensor<16x512xbf16>) -> (tensor<16x512xbf16>, tensor<16x1xbf16>) {
  %y = graph.matmul %x, %w : (tensor<16x64xbf16>, tensor<64x512xbf16>) -> tensor<16x512xbf16>
  %h = graph.pointwise "add"(%r, %y) : (tensor<16x512xbf16>, tensor<16x512xbf16>) -> tensor<16x512xbf16>
  %sq = graph.pointwise "square"(%h) : (tensor<16x512xbf16>) -> tensor<16x512xbf16>
  %ms = graph.reduce "mean" %sq dims array<i64: 1> keepdim : tensor<16x512xbf16> -> tensor<16x1xbf16>
  func.return %h, %ms : tensor<16x512xbf16>, tensor<16x1xbf16>
}
