// RUN: lowerc %s -p fuse-epilogues,split-blocks,chain-gemms | filecheck %s

// The MLP: the down projection (32 wide: one tile holds its rows) multiplies h as the
// up projection's epilogue computes it. h has no other reader, so it is never stored:
// the kernel yields y alone.
// CHECK-LABEL: func.func @mlp
// CHECK:         %y = kernel.gemm "gemm0_bias_gelu_chain" (%x, %w1, %b1, %w2)
// CHECK-SAME:      -> (tensor<64x32xf32>)
// CHECK:           %[[H:.*]] = epilogue.gemm %{{.*}}, %{{.*}} inputs(%{{.*}})
// CHECK:             epilogue.map "gelu"
// CHECK:             epilogue.store
// CHECK:           %[[Y:.*]] = epilogue.gemm %[[H]], %{{.*}} :
// CHECK:           kernel.yield %[[Y]] : tensor<64x32xf32>
// CHECK-NOT:     kernel.gemm
func.func @mlp(%x: tensor<64x32xf32>, %w1: tensor<32x128xf32>, %b1: tensor<128xf32>, %w2: tensor<128x32xf32>) -> tensor<64x32xf32> {
  %h0 = graph.matmul %x, %w1 : (tensor<64x32xf32>, tensor<32x128xf32>) -> tensor<64x128xf32>
  %h1 = graph.pointwise "add"(%h0, %b1) : (tensor<64x128xf32>, tensor<128xf32>) -> tensor<64x128xf32>
  %h = graph.pointwise "gelu"(%h1) : (tensor<64x128xf32>) -> tensor<64x128xf32>
  %y = graph.matmul %h, %w2 : (tensor<64x128xf32>, tensor<128x32xf32>) -> tensor<64x32xf32>
  func.return %y : tensor<64x32xf32>
}

// The SwiGLU backward: dx = dg @ Wg^T + du @ Wu^T reads both results of the gate/up
// kernel while they are on chip. dg is also returned, so the chain still stores it.
// CHECK-LABEL: func.func @swiglu_backward
// CHECK:         %dg, %dx = kernel.gemm "gemm0_mul_chain"
// CHECK:           %[[DU:.*]], %[[DG:.*]] = epilogue.gemm %{{.*}}, %{{.*}} | %{{.*}}, %{{.*}} inputs(%{{.*}})
// CHECK:           %[[DX:.*]] = epilogue.gemm %[[DG]], %{{.*}} + %[[DU]], %{{.*}} :
// CHECK:           kernel.yield %[[DG]], %[[DX]]
// CHECK-NOT:     kernel.gemm
func.func @swiglu_backward(%x: tensor<64x32xf32>, %wg: tensor<32x128xf32>, %wu: tensor<32x128xf32>, %da: tensor<64x128xf32>, %wgt: tensor<128x32xf32>, %wut: tensor<128x32xf32>) -> (tensor<64x32xf32>, tensor<64x128xf32>) {
  %g = graph.matmul %x, %wg : (tensor<64x32xf32>, tensor<32x128xf32>) -> tensor<64x128xf32>
  %u = graph.matmul %x, %wu : (tensor<64x32xf32>, tensor<32x128xf32>) -> tensor<64x128xf32>
  %du = graph.pointwise "mul"(%da, %g) : (tensor<64x128xf32>, tensor<64x128xf32>) -> tensor<64x128xf32>
  %dg = graph.pointwise "mul"(%da, %u) : (tensor<64x128xf32>, tensor<64x128xf32>) -> tensor<64x128xf32>
  %dx1 = graph.matmul %dg, %wgt : (tensor<64x128xf32>, tensor<128x32xf32>) -> tensor<64x32xf32>
  %dx2 = graph.matmul %du, %wut : (tensor<64x128xf32>, tensor<128x32xf32>) -> tensor<64x32xf32>
  %dx = graph.pointwise "add"(%dx1, %dx2) : (tensor<64x32xf32>, tensor<64x32xf32>) -> tensor<64x32xf32>
  func.return %dx, %dg : tensor<64x32xf32>, tensor<64x128xf32>
}

// The second GEMM's output is 512 wide, more than one program's rows hold
// (FULL_ROW_MAX): each column tile would recompute h, so the kernels stay apart.
// CHECK-LABEL: func.func @wide_output_stays
// CHECK-NOT:     chain
// CHECK:         kernel.gemm "gemm0"
// CHECK:         kernel.gemm "gemm1"
func.func @wide_output_stays(%x: tensor<64x32xf32>, %w1: tensor<32x128xf32>, %w2: tensor<128x512xf32>) -> tensor<64x512xf32> {
  %h = graph.matmul %x, %w1 : (tensor<64x32xf32>, tensor<32x128xf32>) -> tensor<64x128xf32>
  %y = graph.matmul %h, %w2 : (tensor<64x128xf32>, tensor<128x512xf32>) -> tensor<64x512xf32>
  func.return %y : tensor<64x512xf32>
}

// The second GEMM's epilogue also reads h (a residual): it would load memory that the
// same program stored moments before, which its threads need not see without a
// barrier. The kernels stay apart.
// CHECK-LABEL: func.func @epilogue_reads_h_stays
// CHECK-NOT:     chain
// CHECK:         kernel.gemm "gemm0"
// CHECK:         kernel.gemm "gemm1_residual"
func.func @epilogue_reads_h_stays(%x: tensor<64x32xf32>, %w1: tensor<32x64xf32>, %w2: tensor<64x64xf32>) -> tensor<64x64xf32> {
  %h = graph.matmul %x, %w1 : (tensor<64x32xf32>, tensor<32x64xf32>) -> tensor<64x64xf32>
  %z = graph.matmul %h, %w2 : (tensor<64x64xf32>, tensor<64x64xf32>) -> tensor<64x64xf32>
  %y = graph.pointwise "add"(%z, %h) : (tensor<64x64xf32>, tensor<64x64xf32>) -> tensor<64x64xf32>
  func.return %y : tensor<64x64xf32>
}

// h is the second GEMM's rhs, not its lhs: the second GEMM's rows are not h's rows.
// CHECK-LABEL: func.func @h_as_rhs_stays
// CHECK-NOT:     chain
// CHECK:         kernel.gemm "gemm0"
// CHECK:         kernel.gemm "gemm1"
func.func @h_as_rhs_stays(%x: tensor<32x32xf32>, %w1: tensor<32x32xf32>, %a: tensor<16x32xf32>) -> tensor<16x32xf32> {
  %h = graph.matmul %x, %w1 : (tensor<32x32xf32>, tensor<32x32xf32>) -> tensor<32x32xf32>
  %y = graph.matmul %a, %h : (tensor<16x32xf32>, tensor<32x32xf32>) -> tensor<16x32xf32>
  func.return %y : tensor<16x32xf32>
}
