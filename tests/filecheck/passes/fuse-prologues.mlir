// RUN: lowerc %s -p fuse-prologues | filecheck %s
// RUN: lowerc %s -p fuse-prologues,fuse-epilogues,split-blocks | filecheck %s --check-prefix=KERNEL

// RMSNorm before two projections: hn = w * (x * rstd) is read only by the GEMMs, through
// a reshape to [tokens, hidden]. The chain is rebuilt once in that shape (both GEMMs
// read it the same way): x, rstd and w are broadcast to [2, 4, 16] and reshaped like
// the operand, and the old chain is gone.
// CHECK-LABEL: func.func @rmsnorm_projections
func.func @rmsnorm_projections(%x: tensor<2x4x16xf32>, %rstd: tensor<2x4x1xf32>, %w: tensor<16xf32>, %wq: tensor<16x16xf32>, %wk: tensor<16x16xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>) {
  %t = graph.pointwise "mul"(%x, %rstd) : (tensor<2x4x16xf32>, tensor<2x4x1xf32>) -> tensor<2x4x16xf32>
  %hn = graph.pointwise "mul"(%w, %t) : (tensor<16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  %h2 = graph.view "reshape" %hn : tensor<2x4x16xf32> -> tensor<8x16xf32>
  %q = graph.matmul %h2, %wq : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  %k = graph.matmul %h2, %wk : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  func.return %q, %k : tensor<8x16xf32>, tensor<8x16xf32>
}
// CHECK:         %[[X:.*]] = graph.view "reshape" %x : tensor<2x4x16xf32> -> tensor<8x16xf32>
// CHECK:         %[[RE:.*]] = graph.view "expand" %rstd : tensor<2x4x1xf32> -> tensor<2x4x16xf32>
// CHECK-NEXT:    %[[R:.*]] = graph.view "reshape" %[[RE]] : tensor<2x4x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:    %[[WE:.*]] = graph.view "expand" %w : tensor<16xf32> -> tensor<2x4x16xf32>
// CHECK-NEXT:    %[[W:.*]] = graph.view "reshape" %[[WE]] : tensor<2x4x16xf32> -> tensor<8x16xf32>
// CHECK-NEXT:    %[[T:.*]] = graph.pointwise "mul"(%[[X]], %[[R]]) : (tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<8x16xf32>
// CHECK-NEXT:    %[[HN:.*]] = graph.pointwise "mul"(%[[W]], %[[T]]) : (tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<8x16xf32>
// CHECK-NEXT:    graph.matmul %[[HN]], %wq
// CHECK-NEXT:    graph.matmul %[[HN]], %wk
// CHECK-NOT:     tensor<2x4x16xf32>) -> tensor<2x4x16xf32>

// After fuse-epilogues merges the two GEMMs (they share hn), split-blocks moves the
// chain and its views into the kernel: nothing writes hn.
// KERNEL-LABEL: func.func @rmsnorm_projections
// KERNEL-NOT:    kernel.loop
// KERNEL:        kernel.gemm "gemm0"
// KERNEL:          graph.pointwise "mul"
// KERNEL-NEXT:     graph.pointwise "mul"
// KERNEL-NEXT:     epilogue.gemm %{{.*}}, %{{.*}} | %{{.*}}, %{{.*}}

// The normalized value is also returned (saved for a backward): it is written anyway,
// so the GEMM reads it and nothing changes.
// CHECK-LABEL: func.func @also_returned
func.func @also_returned(%x: tensor<8x16xf32>, %rstd: tensor<8x1xf32>, %wq: tensor<16x16xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>) {
  %hn = graph.pointwise "mul"(%x, %rstd) : (tensor<8x16xf32>, tensor<8x1xf32>) -> tensor<8x16xf32>
  %q = graph.matmul %hn, %wq : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  func.return %q, %hn : tensor<8x16xf32>, tensor<8x16xf32>
}
// CHECK:         %hn = graph.pointwise "mul"(%x, %rstd) : (tensor<8x16xf32>, tensor<8x1xf32>) -> tensor<8x16xf32>
// CHECK-NEXT:    graph.matmul %hn, %wq

// A full-size leaf that elementwise work computes (silu of a GEMM result) would have to
// be written for the prologue's sake; fuse-epilogues fuses the product into the GEMM
// that computes the gate instead.
// CHECK-LABEL: func.func @elementwise_leaf
func.func @elementwise_leaf(%x: tensor<8x16xf32>, %wg: tensor<16x16xf32>, %u: tensor<8x16xf32>, %wd: tensor<16x16xf32>) -> tensor<8x16xf32> {
  %g = graph.matmul %x, %wg : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  %s = graph.pointwise "silu"(%g) : (tensor<8x16xf32>) -> tensor<8x16xf32>
  %p = graph.pointwise "mul"(%s, %u) : (tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<8x16xf32>
  %y = graph.matmul %p, %wd : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  func.return %y : tensor<8x16xf32>
}
// CHECK:         %p = graph.pointwise "mul"(%s, %u)
// CHECK-NEXT:    graph.matmul %p, %wd

// The residual stream h = x + o, stored anyway (returned), is a leaf: an op with two
// full-size inputs that others read too is not recomputed per tile.
// CHECK-LABEL: func.func @residual_stream_leaf
func.func @residual_stream_leaf(%x: tensor<8x16xf32>, %o: tensor<8x16xf32>, %rstd: tensor<8x1xf32>, %w: tensor<16x16xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>) {
  %h = graph.pointwise "add"(%x, %o) : (tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<8x16xf32>
  %hn = graph.pointwise "mul"(%h, %rstd) : (tensor<8x16xf32>, tensor<8x1xf32>) -> tensor<8x16xf32>
  %y = graph.matmul %hn, %w : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  func.return %y, %h : tensor<8x16xf32>, tensor<8x16xf32>
}
// CHECK:         %h = graph.pointwise "add"(%x, %o)
// CHECK-NEXT:    %[[R:.*]] = graph.view "expand" %rstd : tensor<8x1xf32> -> tensor<8x16xf32>
// CHECK-NEXT:    %[[HN:.*]] = graph.pointwise "mul"(%h, %[[R]])
// CHECK-NEXT:    graph.matmul %[[HN]], %w
