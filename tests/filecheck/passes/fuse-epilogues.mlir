// RUN: lowerc %s -p fuse-epilogues | filecheck %s

// Bias (row), GELU and a residual (tile) fuse (the inputs are named after the tensors
// they read); the pre-activation is also used
// outside (saved for backward) so it is stored as a second result.
// CHECK-LABEL: func.func @bias_gelu_residual
func.func @bias_gelu_residual(%x: tensor<8x32xf32>, %w: tensor<64x32xf32>, %b: tensor<64xf32>, %r: tensor<8x64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xf32> -> tensor<32x64xf32>
  %0 = graph.matmul %x, %wt : (tensor<8x32xf32>, tensor<32x64xf32>) -> tensor<8x64xf32>
  %1 = graph.pointwise "add"(%0, %b) : (tensor<8x64xf32>, tensor<64xf32>) -> tensor<8x64xf32>
  %2 = graph.pointwise "gelu"(%1) : (tensor<8x64xf32>) -> tensor<8x64xf32>
  %3 = graph.pointwise "add"(%r, %2) : (tensor<8x64xf32>, tensor<8x64xf32>) -> tensor<8x64xf32>
  func.return %3, %1 : tensor<8x64xf32>, tensor<8x64xf32>
}
// CHECK-NEXT:    %wt = graph.view "permute" %w
// CHECK-NEXT:    %0, %1 = epilogue.gemm %x, %wt inputs(%b, %r) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>, tensor<8x64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %b_1: !epilogue.row<f32>, %r_1: !epilogue.tile<f32>):
// CHECK-NEXT:      %2 = epilogue.map "add"(%acc, %b_1) : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %3 = epilogue.map "gelu"(%2) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %4 = epilogue.accumulate %r_1, %3 : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      epilogue.store %2 : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:      epilogue.store %4 : !epilogue.tile<f32> -> result 1
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %1, %0

// A column vector is a row scale, a constant becomes an epilogue literal, and a
// cast to bf16 happens in the epilogue before the store.
// CHECK-LABEL: func.func @scales_and_cast
func.func @scales_and_cast(%x: tensor<8x16xf32>, %w: tensor<16x32xf32>, %s: tensor<8x1xf32>) -> tensor<8x32xbf16> {
  %0 = graph.matmul %x, %w : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
  %1 = graph.pointwise "mul"(%0, %s) : (tensor<8x32xf32>, tensor<8x1xf32>) -> tensor<8x32xf32>
  %c = graph.constant 2.000000e+00 : f32 -> tensor<f32>
  %2 = graph.pointwise "mul"(%c, %1) : (tensor<f32>, tensor<8x32xf32>) -> tensor<8x32xf32>
  %3 = graph.pointwise "cast"(%2) : (tensor<8x32xf32>) -> tensor<8x32xbf16>
  func.return %3 : tensor<8x32xbf16>
}
// CHECK:         %{{.*}} = epilogue.gemm %x, %w inputs(%s)
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %[[S:[a-z0-9_]+]]: !epilogue.col<f32>):
// CHECK-NEXT:      %[[A:.*]] = epilogue.scale %acc, %[[S]] : (!epilogue.tile<f32>, !epilogue.col<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %[[C:.*]] = epilogue.constant 2.000000e+00 : f32 -> !epilogue.scalar<f32>
// CHECK-NEXT:      %[[B:.*]] = epilogue.scale %[[A]], %[[C]]
// CHECK-NEXT:      %[[D:.*]] = epilogue.map "cast"(%[[B]]) : (!epilogue.tile<f32>) -> !epilogue.tile<bf16>
// CHECK-NEXT:      epilogue.store %[[D]] : !epilogue.tile<bf16> -> result 0

// The add reads %0 (GEMM 1's epilogue) and GEMM 2's output. Fusing it into GEMM 1
// would be a cycle (GEMM 2 reads GEMM 1's result), so it joins GEMM 2 as an
// accumulate -- the backward pattern of a residual connection.
// CHECK-LABEL: func.func @no_cycles
func.func @no_cycles(%dy: tensor<4x8xf32>, %w1: tensor<8x8xf32>, %w2: tensor<8x8xf32>, %z: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %m1 = graph.matmul %dy, %w1 : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
  %0 = graph.pointwise "silu_backward"(%m1, %z) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %m2 = graph.matmul %0, %w2 : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
  %1 = graph.pointwise "add"(%0, %m2) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %1 : tensor<4x8xf32>
}
// CHECK-NEXT:    %[[G1:.*]] = epilogue.gemm %dy, %w1 inputs(%z)
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %[[Z:.*]]: !epilogue.tile<f32>):
// CHECK-NEXT:      %[[D:.*]] = epilogue.map "silu_backward"(%acc, %[[Z]])
// CHECK-NEXT:      epilogue.store %[[D]] : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[G2:.*]] = epilogue.gemm %[[G1]], %w2 inputs(%[[G1]])
// CHECK-NEXT:    ^bb0(%[[ACC:.*]]: !epilogue.tile<f32>, %[[R:.*]]: !epilogue.tile<f32>):
// CHECK-NEXT:      %[[S:.*]] = epilogue.accumulate %[[R]], %[[ACC]]
// CHECK-NEXT:      epilogue.store %[[S]] : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[G2]]

// A reduction and an op of another shape are not epilogue work (yet): they stay.
// CHECK-LABEL: func.func @not_fused
func.func @not_fused(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>, %v: tensor<2x4x8xf32>) -> (tensor<8xf32>, tensor<2x4x8xf32>) {
  %0 = graph.matmul %x, %w : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
  %1 = graph.reduce "sum" %0 dims array<i64: 0> : tensor<4x8xf32> -> tensor<8xf32>
  %2 = graph.pointwise "add"(%0, %v) : (tensor<4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %1, %2 : tensor<8xf32>, tensor<2x4x8xf32>
}
// CHECK-NEXT:    %0 = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x8xf32>) -> (tensor<4x8xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>):
// CHECK-NEXT:      epilogue.store %acc : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    %1 = graph.reduce "sum" %0
// CHECK-NEXT:    %2 = graph.pointwise "add"(%0, %v)

// A Linear on a [B, S, D] input: the GEMM computes [B*S, N] and the graph views
// it as [B, S, N]. The reshape regroups rows (same tile), so the residual add,
// the per-token scale and the bias join the epilogue; the [B, S, N] operands are
// viewed in the output's shape (a column for the scale), and the result, used in
// the [B, S, N] shape, is reshaped after the GEMM. The value is stored once
// although it is used in both shapes.
// CHECK-LABEL: func.func @residual_through_reshape
func.func @residual_through_reshape(%x: tensor<6x16xf32>, %w: tensor<16x8xf32>, %b: tensor<8xf32>, %r: tensor<2x3x8xf32>, %s: tensor<2x3x1xf32>) -> (tensor<2x3x8xf32>, tensor<6x8xf32>) {
  %0 = graph.matmul %x, %w : (tensor<6x16xf32>, tensor<16x8xf32>) -> tensor<6x8xf32>
  %1 = graph.view "reshape" %0 : tensor<6x8xf32> -> tensor<2x3x8xf32>
  %2 = graph.pointwise "add"(%1, %b) : (tensor<2x3x8xf32>, tensor<8xf32>) -> tensor<2x3x8xf32>
  %3 = graph.pointwise "add"(%r, %2) : (tensor<2x3x8xf32>, tensor<2x3x8xf32>) -> tensor<2x3x8xf32>
  %4 = graph.pointwise "mul"(%3, %s) : (tensor<2x3x8xf32>, tensor<2x3x1xf32>) -> tensor<2x3x8xf32>
  %5 = graph.view "reshape" %4 : tensor<2x3x8xf32> -> tensor<6x8xf32>
  func.return %4, %5 : tensor<2x3x8xf32>, tensor<6x8xf32>
}
// CHECK-NEXT:    %[[R:.*]] = graph.view "reshape" %r : tensor<2x3x8xf32> -> tensor<6x8xf32>
// CHECK-NEXT:    %[[S:.*]] = graph.view "reshape" %s : tensor<2x3x1xf32> -> tensor<6x1xf32>
// CHECK-NEXT:    %[[G:.*]] = epilogue.gemm %x, %w inputs(%b, %[[R]], %[[S]]) : (tensor<6x16xf32>, tensor<16x8xf32>, tensor<8xf32>, tensor<6x8xf32>, tensor<6x1xf32>) -> (tensor<6x8xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %{{.*}}: !epilogue.row<f32>, %{{.*}}: !epilogue.tile<f32>, %{{.*}}: !epilogue.col<f32>):
// CHECK-NEXT:      %[[A:.*]] = epilogue.map "add"(%acc, %{{.*}})
// CHECK-NEXT:      %[[C:.*]] = epilogue.accumulate %{{.*}}, %[[A]]
// CHECK-NEXT:      %[[D:.*]] = epilogue.scale %[[C]], %{{.*}}
// CHECK-NEXT:      epilogue.store %[[D]] : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[V:.*]] = graph.view "reshape" %[[G]] : tensor<6x8xf32> -> tensor<2x3x8xf32>
// CHECK-NEXT:    func.return %[[V]], %[[G]] : tensor<2x3x8xf32>, tensor<6x8xf32>

// An elementwise producer whose only user is the epilogue runs in it, from its own
// operands: SwiGLU's backward reads silu(gate) -- recomputed from the gate it reads
// anyway -- instead of a kernel writing silu(gate) for the GEMM to read back.
// CHECK-LABEL: func.func @producer_runs_in_the_epilogue
func.func @producer_runs_in_the_epilogue(%dy: tensor<8x16xf32>, %w: tensor<16x32xf32>, %g: tensor<2x4x32xf32>, %u: tensor<8x32xf32>) -> (tensor<8x32xf32>, tensor<8x32xf32>) {
  %0 = graph.pointwise "silu"(%g) : (tensor<2x4x32xf32>) -> tensor<2x4x32xf32>
  %1 = graph.view "reshape" %0 : tensor<2x4x32xf32> -> tensor<8x32xf32>
  %2 = graph.view "reshape" %g : tensor<2x4x32xf32> -> tensor<8x32xf32>
  %dh = graph.matmul %dy, %w : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
  %du = graph.pointwise "mul"(%dh, %1) : (tensor<8x32xf32>, tensor<8x32xf32>) -> tensor<8x32xf32>
  %3 = graph.pointwise "mul"(%dh, %u) : (tensor<8x32xf32>, tensor<8x32xf32>) -> tensor<8x32xf32>
  %dg = graph.pointwise "silu_backward"(%3, %2) : (tensor<8x32xf32>, tensor<8x32xf32>) -> tensor<8x32xf32>
  func.return %du, %dg : tensor<8x32xf32>, tensor<8x32xf32>
}
// CHECK-NOT:     graph.pointwise
// CHECK:         %[[G:.*]] = graph.view "reshape" %g
// CHECK-NEXT:    epilogue.gemm %dy, %w inputs(%[[G]], %u)
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %[[GT:.*]]: !epilogue.tile<f32>, %[[U:.*]]: !epilogue.tile<f32>):
// CHECK-NEXT:      %[[S:.*]] = epilogue.map "silu"(%[[GT]])
// CHECK-NEXT:      %{{.*}} = epilogue.map "mul"(%acc, %[[S]])
// CHECK-NEXT:      %[[P:.*]] = epilogue.map "mul"(%acc, %[[U]])
// CHECK-NEXT:      %{{.*}} = epilogue.map "silu_backward"(%[[P]], %[[GT]])

// A producer that feeds a mainloop operand stays outside: the mainloop reads memory.
// CHECK-LABEL: func.func @producer_of_an_operand_stays
func.func @producer_of_an_operand_stays(%p: tensor<8x8xf32>, %x: tensor<8x16xf32>, %c: tensor<8x16xf32>) -> tensor<8x16xf32> {
  %0 = graph.pointwise "mul"(%x, %c) : (tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<8x16xf32>
  %1 = graph.matmul %p, %0 : (tensor<8x8xf32>, tensor<8x16xf32>) -> tensor<8x16xf32>
  func.return %1 : tensor<8x16xf32>
}
// CHECK-NEXT:    %[[M:.*]] = graph.pointwise "mul"(%x, %c)
// CHECK-NEXT:    %{{.*}} = epilogue.gemm %p, %[[M]] :

// h^2, read only by a reduction, stays outside: the epilogue stores h anyway and the
// reduction's loop kernel squares it there, instead of the epilogue writing h^2 too.
// (The output is 320 wide: rows of at most epilogue.FULL_ROW_MAX columns are reduced
// whole in the epilogue, see fuse-epilogues-rows.mlir.)
// CHECK-LABEL: func.func @square_for_a_reduction_stays_outside
func.func @square_for_a_reduction_stays_outside(%x: tensor<8x16xf32>, %w: tensor<16x320xf32>, %r: tensor<8x320xf32>) -> (tensor<8x320xf32>, tensor<8x1xf32>) {
  %0 = graph.matmul %x, %w : (tensor<8x16xf32>, tensor<16x320xf32>) -> tensor<8x320xf32>
  %h = graph.pointwise "add"(%r, %0) : (tensor<8x320xf32>, tensor<8x320xf32>) -> tensor<8x320xf32>
  %sq = graph.pointwise "square"(%h) : (tensor<8x320xf32>) -> tensor<8x320xf32>
  %m = graph.reduce "mean" %sq dims array<i64: 1> keepdim : tensor<8x320xf32> -> tensor<8x1xf32>
  func.return %h, %m : tensor<8x320xf32>, tensor<8x1xf32>
}
// CHECK-NEXT:    %h = epilogue.gemm %x, %w inputs(%r)
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %[[R:.*]]: !epilogue.tile<f32>):
// CHECK-NEXT:      %[[H:.*]] = epilogue.accumulate %[[R]], %acc
// CHECK-NEXT:      epilogue.store %[[H]] : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    %sq = graph.pointwise "square"(%h)

// Cross-entropy backward on the recomputed logits: (exp(logits - lse) - onehot) * scale.
// The one-hot mask is built from a row (iota) and a column (targets) only: it joins
// the epilogue through the ops that use it, so no [8, 96] mask is ever written.
// CHECK-LABEL: func.func @softmax_minus_onehot
func.func @softmax_minus_onehot(%h: tensor<8x16xf32>, %w: tensor<16x96xf32>, %lse: tensor<8x1xf32>, %iota: tensor<1x96xi64>, %t: tensor<8x1xi64>, %s: tensor<8x1xf32>) -> tensor<8x96xf32> {
  %logits = graph.matmul %h, %w : (tensor<8x16xf32>, tensor<16x96xf32>) -> tensor<8x96xf32>
  %0 = graph.pointwise "sub"(%logits, %lse) : (tensor<8x96xf32>, tensor<8x1xf32>) -> tensor<8x96xf32>
  %1 = graph.pointwise "exp"(%0) : (tensor<8x96xf32>) -> tensor<8x96xf32>
  %onehot = graph.pointwise "eq"(%iota, %t) : (tensor<1x96xi64>, tensor<8x1xi64>) -> tensor<8x96xi1>
  %one = graph.constant 1.000000e+00 : f32 -> tensor<f32>
  %zero = graph.constant 0.000000e+00 : f32 -> tensor<f32>
  %2 = graph.pointwise "where"(%onehot, %one, %zero) : (tensor<8x96xi1>, tensor<f32>, tensor<f32>) -> tensor<8x96xf32>
  %3 = graph.pointwise "sub"(%1, %2) : (tensor<8x96xf32>, tensor<8x96xf32>) -> tensor<8x96xf32>
  %4 = graph.pointwise "mul"(%3, %s) : (tensor<8x96xf32>, tensor<8x1xf32>) -> tensor<8x96xf32>
  func.return %4 : tensor<8x96xf32>
}
// CHECK:         %{{.*}} = epilogue.gemm %h, %w inputs(%lse, %iota, %t, %s) : (tensor<8x16xf32>, tensor<16x96xf32>, tensor<8x1xf32>, tensor<1x96xi64>, tensor<8x1xi64>, tensor<8x1xf32>) -> (tensor<8x96xf32>) {
// CHECK:           epilogue.map "eq"(%{{.*}}, %{{.*}}) : (!epilogue.row<i64>, !epilogue.col<i64>) -> !epilogue.tile<i1>
// CHECK:           epilogue.map "where"
// CHECK:           epilogue.scale
// CHECK-NEXT:      epilogue.store %{{.*}} : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NOT:     graph.pointwise
