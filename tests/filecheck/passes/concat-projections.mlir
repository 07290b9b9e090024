// RUN: lowerc %s -p concat-projections | filecheck %s
// RUN: lowerc %s -p concat-projections,fuse-epilogues,split-blocks | filecheck %s --check-prefix=KERNEL

// Grouped-query attention's projections: q is 64 wide, k and v 32. One GEMM over
// [Wq | Wk | Wv]; q, k and v are column slices of its [32, 128] result.
// CHECK-LABEL: func.func @gqa_projections
func.func @gqa_projections(%h: tensor<32x64xf32>, %wq: tensor<64x64xf32>, %wk: tensor<64x32xf32>, %wv: tensor<64x32xf32>) -> (tensor<32x64xf32>, tensor<32x32xf32>, tensor<32x32xf32>) {
  %q = graph.matmul %h, %wq : (tensor<32x64xf32>, tensor<64x64xf32>) -> tensor<32x64xf32>
  %k = graph.matmul %h, %wk : (tensor<32x64xf32>, tensor<64x32xf32>) -> tensor<32x32xf32>
  %v = graph.matmul %h, %wv : (tensor<32x64xf32>, tensor<64x32xf32>) -> tensor<32x32xf32>
  func.return %q, %k, %v : tensor<32x64xf32>, tensor<32x32xf32>, tensor<32x32xf32>
}
// CHECK:         %[[W:.*]] = graph.concat %wq, %wk, %wv dim 1 : (tensor<64x64xf32>, tensor<64x32xf32>, tensor<64x32xf32>) -> tensor<64x128xf32>
// CHECK-NEXT:    %[[QKV:.*]] = graph.matmul %h, %[[W]] : (tensor<32x64xf32>, tensor<64x128xf32>) -> tensor<32x128xf32>
// CHECK-NEXT:    %q = graph.view "slice" %[[QKV]] slice array<i64: 1, 0, 1> : tensor<32x128xf32> -> tensor<32x64xf32>
// CHECK-NEXT:    %k = graph.view "slice" %[[QKV]] slice array<i64: 1, 64, 1> : tensor<32x128xf32> -> tensor<32x32xf32>
// CHECK-NEXT:    %v = graph.view "slice" %[[QKV]] slice array<i64: 1, 96, 1> : tensor<32x128xf32> -> tensor<32x32xf32>

// The concatenation moves into the GEMM's kernel: no loop kernel copies the weights.
// KERNEL-LABEL: func.func @gqa_projections
// KERNEL-NOT:    kernel.loop
// KERNEL:        kernel.gemm "gemm0" (%wq, %wk, %wv, %h)
// KERNEL:          graph.concat
// KERNEL-NEXT:     epilogue.gemm
// KERNEL-NOT:    kernel.loop

// Their weight gradients share the rhs and differ in M: one GEMM over the lhs
// concatenated along M, the gradients are row slices of its result.
// CHECK-LABEL: func.func @gqa_weight_gradients
func.func @gqa_weight_gradients(%dqt: tensor<64x32xf32>, %dkt: tensor<32x32xf32>, %h: tensor<32x64xf32>) -> (tensor<64x64xf32>, tensor<32x64xf32>) {
  %dwq = graph.matmul %dqt, %h : (tensor<64x32xf32>, tensor<32x64xf32>) -> tensor<64x64xf32>
  %dwk = graph.matmul %dkt, %h : (tensor<32x32xf32>, tensor<32x64xf32>) -> tensor<32x64xf32>
  func.return %dwq, %dwk : tensor<64x64xf32>, tensor<32x64xf32>
}
// CHECK:         %[[D:.*]] = graph.concat %dqt, %dkt dim 0 : (tensor<64x32xf32>, tensor<32x32xf32>) -> tensor<96x32xf32>
// CHECK-NEXT:    %[[DW:.*]] = graph.matmul %[[D]], %h : (tensor<96x32xf32>, tensor<32x64xf32>) -> tensor<96x64xf32>
// CHECK-NEXT:    %dwq = graph.view "slice" %[[DW]] slice array<i64: 0, 0, 1> : tensor<96x64xf32> -> tensor<64x64xf32>
// CHECK-NEXT:    %dwk = graph.view "slice" %[[DW]] slice array<i64: 0, 64, 1> : tensor<96x64xf32> -> tensor<32x64xf32>

// A projection with an elementwise consumer (a bias) keeps its own GEMM, whose
// epilogue adds it; equal widths are left to fuse-epilogues.
// CHECK-LABEL: func.func @biased_projection_stays
func.func @biased_projection_stays(%h: tensor<32x64xf32>, %wq: tensor<64x64xf32>, %wk: tensor<64x32xf32>, %bk: tensor<32xf32>) -> (tensor<32x64xf32>, tensor<32x32xf32>) {
  %q = graph.matmul %h, %wq : (tensor<32x64xf32>, tensor<64x64xf32>) -> tensor<32x64xf32>
  %k = graph.matmul %h, %wk : (tensor<32x64xf32>, tensor<64x32xf32>) -> tensor<32x32xf32>
  %kb = graph.pointwise "add"(%k, %bk) : (tensor<32x32xf32>, tensor<32xf32>) -> tensor<32x32xf32>
  func.return %q, %kb : tensor<32x64xf32>, tensor<32x32xf32>
}
// CHECK-NOT:     graph.concat
// CHECK:         graph.matmul %h, %wq
// CHECK-NEXT:    graph.matmul %h, %wk
