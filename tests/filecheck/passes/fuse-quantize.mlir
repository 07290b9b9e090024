// RUN: lowerc %s --emit epilogue | filecheck %s
// RUN: lowerc %s --emit kernel | filecheck %s --check-prefix=KERNEL

// MX activations between two GEMMs: the default pipeline quantizes in the epilogue
// that produces them and dequantizes in the mainloop of the GEMM that reads them.
// CHECK-LABEL: func.func @mlp
// CHECK-NEXT:    %a_codes, %a_scales = epilogue.gemm %x, %w1 : (tensor<32x64xf32>, tensor<64x128xf32>) -> (tensor<32x128xui8>, tensor<32x4xui8>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>):
// CHECK-NEXT:      %0 = epilogue.map "relu"(%acc)
// CHECK-NEXT:      lowp.store_quantized %0 : !epilogue.tile<f32> -> results(0, 1) as !lowp.scaled<tensor<32x128xf8E4M3FN>, mx<32, floor>, f8E8M0FNU, #layout.cute<((32,4),(1,32)):((0,1),(0,4))>>
// CHECK-NEXT:    }
// CHECK-NEXT:    %q = lowp.assemble %a_codes, %a_scales
// CHECK-NEXT:    %d = lowp.dequantize %q
// CHECK-NEXT:    %y = epilogue.gemm %d, %w2
// The high-precision tile is stored only while something else reads it:
// CHECK-LABEL: func.func @kept
// CHECK:         %h, %h_codes, %h_scales = epilogue.gemm %x, %w1 : {{.*}} -> (tensor<32x128xf32>, tensor<32x128xui8>, tensor<32x1xf32>)
// CHECK:           epilogue.store %acc : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:      lowp.store_quantized %acc : !epilogue.tile<f32> -> results(1, 2) as !lowp.scaled<tensor<32x128xf8E4M3FN>, block<1x128>, f32
// Row-wise scales need the whole row first: that quantize is not fused.
// CHECK:         lowp.quantize %h : tensor<32x128xf32> -> !lowp.scaled<tensor<32x128xf8E5M2>, row, f32

// KERNEL-LABEL: func.func @mlp
// KERNEL:         kernel.gemm "gemm1" (%w2, %a_codes, %a_scales)
// KERNEL-NEXT:    ^bb0(%{{.*}}: tensor<128x48xf32>, %[[C:.*]]: tensor<32x128xui8>, %[[S:.*]]: tensor<32x4xui8>):
// KERNEL-NEXT:      %[[Q:.*]] = lowp.assemble %[[C]], %[[S]]
// KERNEL-NEXT:      %[[D:.*]] = lowp.dequantize %[[Q]]
// KERNEL-NEXT:      epilogue.gemm %[[D]], %{{.*}}
func.func @mlp(%x: tensor<32x64xf32>, %w1: tensor<64x128xf32>, %w2: tensor<128x48xf32>) -> tensor<32x48xf32> {
  %h = graph.matmul %x, %w1 : (tensor<32x64xf32>, tensor<64x128xf32>) -> tensor<32x128xf32>
  %a = graph.pointwise "relu"(%h) : (tensor<32x128xf32>) -> tensor<32x128xf32>
  %q = lowp.quantize %a : tensor<32x128xf32> -> !lowp.scaled<tensor<32x128xf8E4M3FN>, mx<32, floor>, f8E8M0FNU>
  %d = lowp.dequantize %q : !lowp.scaled<tensor<32x128xf8E4M3FN>, mx<32, floor>, f8E8M0FNU> -> tensor<32x128xf32>
  %y = graph.matmul %d, %w2 : (tensor<32x128xf32>, tensor<128x48xf32>) -> tensor<32x48xf32>
  func.return %y : tensor<32x48xf32>
}

func.func @kept(%x: tensor<32x64xf32>, %w1: tensor<64x128xf32>) -> (tensor<32x128xf32>, !lowp.scaled<tensor<32x128xf8E4M3FN>, block<1x128>, f32>, !lowp.scaled<tensor<32x128xf8E5M2>, row, f32>) {
  %h = graph.matmul %x, %w1 : (tensor<32x64xf32>, tensor<64x128xf32>) -> tensor<32x128xf32>
  %q = lowp.quantize %h : tensor<32x128xf32> -> !lowp.scaled<tensor<32x128xf8E4M3FN>, block<1x128>, f32>
  %r = lowp.quantize %h : tensor<32x128xf32> -> !lowp.scaled<tensor<32x128xf8E5M2>, row, f32>
  func.return %h, %q, %r : tensor<32x128xf32>, !lowp.scaled<tensor<32x128xf8E4M3FN>, block<1x128>, f32>, !lowp.scaled<tensor<32x128xf8E5M2>, row, f32>
}
