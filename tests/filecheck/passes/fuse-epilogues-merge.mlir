// RUN: lowerc %s -p fuse-epilogues | filecheck %s

// GEMMs that share the output tile and an operand in the same role merge into one
// kernel with one accumulator each: q, k and v of the same rows read %x once.
// CHECK-LABEL: func.func @qkv
func.func @qkv(%x: tensor<8x32xf32>, %wq: tensor<32x16xf32>, %wk: tensor<32x16xf32>, %wv: tensor<32x16xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) {
  %q = graph.matmul %x, %wq : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
  %k = graph.matmul %x, %wk : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
  %v = graph.matmul %x, %wv : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
  func.return %q, %k, %v : tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>
}
// CHECK-NEXT:    %q, %k, %v = epilogue.gemm %x, %wq | %x, %wk | %x, %wv : (tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x32xf32>, tensor<32x16xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %acc_1: !epilogue.tile<f32>, %acc_2: !epilogue.tile<f32>):
// CHECK-NEXT:      epilogue.store %acc : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:      epilogue.store %acc_1 : !epilogue.tile<f32> -> result 1
// CHECK-NEXT:      epilogue.store %acc_2 : !epilogue.tile<f32> -> result 2
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %q, %k, %v

// SwiGLU: gate and up share %x, and their epilogue combines both accumulators, so
// neither pre-activation is written for the other to read back.
// CHECK-LABEL: func.func @swiglu
func.func @swiglu(%x: tensor<8x32xf32>, %wg: tensor<32x48xf32>, %wu: tensor<32x48xf32>) -> tensor<8x48xf32> {
  %g = graph.matmul %x, %wg : (tensor<8x32xf32>, tensor<32x48xf32>) -> tensor<8x48xf32>
  %u = graph.matmul %x, %wu : (tensor<8x32xf32>, tensor<32x48xf32>) -> tensor<8x48xf32>
  %s = graph.pointwise "silu"(%g) : (tensor<8x48xf32>) -> tensor<8x48xf32>
  %h = graph.pointwise "mul"(%s, %u) : (tensor<8x48xf32>, tensor<8x48xf32>) -> tensor<8x48xf32>
  func.return %h : tensor<8x48xf32>
}
// CHECK-NEXT:    %h = epilogue.gemm %x, %wg | %x, %wu : {{.*}} -> (tensor<8x48xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %acc_1: !epilogue.tile<f32>):
// CHECK-NEXT:      %0 = epilogue.map "silu"(%acc)
// CHECK-NEXT:      %1 = epilogue.map "mul"(%0, %acc_1)
// CHECK-NEXT:      epilogue.store %1 : !epilogue.tile<f32> -> result 0

// The input gradient of projections that share an input is a sum of GEMMs with
// different K: one accumulator over the concatenated K, seen through the reshape
// of the rows to [B, S, N], with the residual gradient added in the epilogue.
// CHECK-LABEL: func.func @input_gradient
func.func @input_gradient(%dq: tensor<8x32xf32>, %wq: tensor<32x16xf32>, %dkv: tensor<8x24xf32>, %wkv: tensor<24x16xf32>, %r: tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  %0 = graph.matmul %dq, %wq : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
  %1 = graph.matmul %dkv, %wkv : (tensor<8x24xf32>, tensor<24x16xf32>) -> tensor<8x16xf32>
  %2 = graph.view "reshape" %0 : tensor<8x16xf32> -> tensor<2x4x16xf32>
  %3 = graph.view "reshape" %1 : tensor<8x16xf32> -> tensor<2x4x16xf32>
  %4 = graph.pointwise "add"(%2, %3) : (tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  %5 = graph.pointwise "add"(%r, %4) : (tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  func.return %5 : tensor<2x4x16xf32>
}
// CHECK:         %{{.*}} = epilogue.gemm %dq, %wq + %dkv, %wkv inputs(%{{.*}}) : (tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x24xf32>, tensor<24x16xf32>, tensor<8x16xf32>) -> (tensor<8x16xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %[[R:.*]]: !epilogue.tile<f32>):
// CHECK-NEXT:      %[[S:.*]] = epilogue.accumulate %[[R]], %acc
// CHECK-NEXT:      epilogue.store %[[S]] : !epilogue.tile<f32> -> result 0

// A sum whose terms are used elsewhere keeps one accumulator per GEMM (each term is
// stored), and the add is an epilogue op.
// CHECK-LABEL: func.func @sum_of_used_terms
func.func @sum_of_used_terms(%a: tensor<8x32xf32>, %w1: tensor<32x16xf32>, %b: tensor<8x32xf32>, %w2: tensor<32x16xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>) {
  %0 = graph.matmul %a, %w1 : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
  %1 = graph.matmul %b, %w2 : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
  %2 = graph.pointwise "add"(%0, %1) : (tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<8x16xf32>
  func.return %2, %0 : tensor<8x16xf32>, tensor<8x16xf32>
}
// CHECK-NEXT:    %{{.*}}, %{{.*}} = epilogue.gemm %a, %w1 | %b, %w2
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %acc_1: !epilogue.tile<f32>):
// CHECK-NEXT:      %[[S:.*]] = epilogue.accumulate %acc, %acc_1
// CHECK-NEXT:      epilogue.store %acc : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:      epilogue.store %[[S]] : !epilogue.tile<f32> -> result 1

// No merge: the second GEMM reads the first one's result (a chain, not siblings), and
// GEMMs of different output shapes never share a tile.
// CHECK-LABEL: func.func @no_merge
func.func @no_merge(%x: tensor<8x16xf32>, %w1: tensor<16x16xf32>, %w2: tensor<16x24xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x24xf32>) {
  %0 = graph.matmul %x, %w1 : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  %1 = graph.matmul %0, %w1 : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  %2 = graph.matmul %x, %w2 : (tensor<8x16xf32>, tensor<16x24xf32>) -> tensor<8x24xf32>
  func.return %0, %1, %2 : tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x24xf32>
}
// CHECK-NEXT:    %{{.*}} = epilogue.gemm %x, %w1 :
// CHECK:         %{{.*}} = epilogue.gemm %{{.*}}, %w1 :
// CHECK:         %{{.*}} = epilogue.gemm %x, %w2 :
