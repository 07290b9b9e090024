// RUN: lowerc %s -p fold-views | filecheck %s

// q @ k^T after a head split: the [B*H, S, D] reshapes would copy (B and H are
// strided apart), so the GEMM takes the [B, H, S, D] views and its result is reshaped.
// CHECK-LABEL: func.func @head_split_scores
func.func @head_split_scores(%q: tensor<2x4x8x16xf32>, %k: tensor<2x4x16x8xf32>) -> tensor<8x8x8xf32> {
  %0 = graph.view "reshape" %q : tensor<2x4x8x16xf32> -> tensor<8x8x16xf32>
  %1 = graph.view "reshape" %k : tensor<2x4x16x8xf32> -> tensor<8x16x8xf32>
  %2 = graph.matmul %0, %1 : (tensor<8x8x16xf32>, tensor<8x16x8xf32>) -> tensor<8x8x8xf32>
  func.return %2 : tensor<8x8x8xf32>
}
// CHECK-NEXT:    %0 = graph.matmul %q, %k : (tensor<2x4x8x16xf32>, tensor<2x4x16x8xf32>) -> tensor<2x4x8x8xf32>
// CHECK-NEXT:    %1 = graph.view "reshape" %0 : tensor<2x4x8x8xf32> -> tensor<8x8x8xf32>
// CHECK-NEXT:    func.return %1

// A reshape that changes the matrix dims is not a batch merge: left alone.
// CHECK-LABEL: func.func @not_a_batch_merge
func.func @not_a_batch_merge(%a: tensor<2x4x8xf32>, %b: tensor<8x4x8xf32>) -> tensor<8x4x16xf32> {
  %0 = graph.view "reshape" %a : tensor<2x4x8xf32> -> tensor<8x4x2xf32>
  %1 = graph.view "reshape" %b : tensor<8x4x8xf32> -> tensor<8x2x16xf32>
  %2 = graph.matmul %0, %1 : (tensor<8x4x2xf32>, tensor<8x2x16xf32>) -> tensor<8x4x16xf32>
  func.return %2 : tensor<8x4x16xf32>
}
// CHECK-NEXT:    %0 = graph.view "reshape" %a
// CHECK-NEXT:    %1 = graph.view "reshape" %b
// CHECK-NEXT:    %2 = graph.matmul %0, %1
