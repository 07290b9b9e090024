// RUN: lowerc %s -p "fuse-epilogues,split-blocks,quantize-operands{recipe=fp8-rowwise}" | filecheck %s
// RUN: lowerc %s -p "fuse-epilogues,split-blocks,quantize-operands{recipe=mxfp8}" | filecheck %s --check-prefix=MX

// Forward: x [24, 64] and nn.Linear's weight [40, 64] (read transposed) both become
// scaled e4m3 tensors with one f32 scale per row of K inside the kernel: the GEMM
// multiplies dequantize(quantize(x)) by the transpose of dequantize(quantize(w)); the
// transpose of the unquantized weight is gone.
// CHECK-LABEL: func.func @linear
// CHECK:       kernel.gemm "gemm0_bias" (%w, %x, %b)
// CHECK-NEXT:  ^bb0(%[[W:.*]]: tensor<40x64xf32>, %[[X:.*]]: tensor<24x64xf32>, %{{.*}}: tensor<40xf32>):
// CHECK-NEXT:    %[[QX:.*]] = lowp.quantize %[[X]] : tensor<24x64xf32> -> !lowp.scaled<tensor<24x64xf8E4M3FN>, row, f32, {{.*}}>
// CHECK-NEXT:    %[[DX:.*]] = lowp.dequantize %[[QX]] : {{.*}} -> tensor<24x64xf32>
// CHECK-NEXT:    %[[QW:.*]] = lowp.quantize %[[W]] : tensor<40x64xf32> -> !lowp.scaled<tensor<40x64xf8E4M3FN>, row, f32, {{.*}}>
// CHECK-NEXT:    %[[DW:.*]] = lowp.dequantize %[[QW]] : {{.*}} -> tensor<40x64xf32>
// CHECK-NEXT:    %[[WT:.*]] = graph.view "permute" %[[DW]] perm array<i64: 1, 0> : tensor<40x64xf32> -> tensor<64x40xf32>
// CHECK-NEXT:    epilogue.gemm %[[DX]], %[[WT]] inputs
// CHECK-NOT:   graph.view
// CHECK:       kernel.yield
// MX-LABEL:    func.func @linear
// MX:          lowp.quantize %{{.*}} : tensor<24x64xf32> -> !lowp.scaled<tensor<24x64xf8E4M3FN>, mx<32, floor>, f8E8M0FNU
// MX:          lowp.quantize %{{.*}} : tensor<40x64xf32> -> !lowp.scaled<tensor<40x64xf8E4M3FN>, mx<32, floor>, f8E8M0FNU
func.func @linear(%x: tensor<24x64xf32>, %w: tensor<40x64xf32>, %b: tensor<40xf32>) -> tensor<24x40xf32> {
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<40x64xf32> -> tensor<64x40xf32>
  %0 = graph.matmul %x, %wt : (tensor<24x64xf32>, tensor<64x40xf32>) -> tensor<24x40xf32>
  %1 = graph.pointwise "add"(%0, %b) : (tensor<24x40xf32>, tensor<40xf32>) -> tensor<24x40xf32>
  func.return %1 : tensor<24x40xf32>
}

// Input gradient dx = dy @ W: the right operand W [40, 64] is read as [K, N] as it is
// stored, so it is transposed to [N, K] = [64, 40] first (scales along K = 40), then
// read back transposed. The weight gradient dW = dyᵀ @ x contracts over the 24 tokens:
// dyᵀ is quantized along them (a view of dy), x through its transpose.
// CHECK-LABEL: func.func @backward
// CHECK:       kernel.gemm
// CHECK:         lowp.quantize %{{.*}} : tensor<24x40xf32> -> !lowp.scaled<tensor<24x40xf8E4M3FN>, row
// CHECK:         %[[T:.*]] = graph.view "permute" %{{.*}} perm array<i64: 1, 0> : tensor<40x64xf32> -> tensor<64x40xf32>
// CHECK-NEXT:    %[[Q:.*]] = lowp.quantize %[[T]] : tensor<64x40xf32> -> !lowp.scaled<tensor<64x40xf8E4M3FN>, row
// CHECK-NEXT:    %[[D:.*]] = lowp.dequantize %[[Q]]
// CHECK-NEXT:    %[[B:.*]] = graph.view "permute" %[[D]] perm array<i64: 1, 0> : tensor<64x40xf32> -> tensor<40x64xf32>
// CHECK-NEXT:    epilogue.gemm %{{.*}}, %[[B]]
// CHECK:       kernel.gemm
// CHECK:         lowp.quantize %{{.*}} : tensor<40x24xf32> -> !lowp.scaled<tensor<40x24xf8E4M3FN>, row
// CHECK:         lowp.quantize %{{.*}} : tensor<64x24xf32> -> !lowp.scaled<tensor<64x24xf8E4M3FN>, row
// An MX operand needs K to be a multiple of 32: the 40-wide dgrad and the 24-token
// wgrad stay in float32.
// MX-LABEL:    func.func @backward
// MX-NOT:      lowp.quantize
// MX:          func.return
func.func @backward(%dy: tensor<24x40xf32>, %w: tensor<40x64xf32>, %x: tensor<24x64xf32>) -> (tensor<24x64xf32>, tensor<40x64xf32>) {
  %dx = graph.matmul %dy, %w : (tensor<24x40xf32>, tensor<40x64xf32>) -> tensor<24x64xf32>
  %dyt = graph.view "permute" %dy perm array<i64: 1, 0> : tensor<24x40xf32> -> tensor<40x24xf32>
  %dw = graph.matmul %dyt, %x : (tensor<40x24xf32>, tensor<24x64xf32>) -> tensor<40x64xf32>
  func.return %dx, %dw : tensor<24x64xf32>, tensor<40x64xf32>
}
