// RUN: lowerc %s -p canonicalize | filecheck %s

// CHECK-LABEL: func.func @views
// t(t(w)) is w; reshape chains collapse; identity views vanish.
func.func @views(%w: tensor<8x4xf32>, %x: tensor<2x3x4xf32>) -> (tensor<8x4xf32>, tensor<4x6xf32>, tensor<2x3x4xf32>) {
  %0 = graph.view "permute" %w perm array<i64: 1, 0> : tensor<8x4xf32> -> tensor<4x8xf32>
  %1 = graph.view "permute" %0 perm array<i64: 1, 0> : tensor<4x8xf32> -> tensor<8x4xf32>
  %2 = graph.view "reshape" %x : tensor<2x3x4xf32> -> tensor<6x4xf32>
  %3 = graph.view "reshape" %2 : tensor<6x4xf32> -> tensor<4x6xf32>
  %4 = graph.view "expand" %x : tensor<2x3x4xf32> -> tensor<2x3x4xf32>
  func.return %1, %3, %4 : tensor<8x4xf32>, tensor<4x6xf32>, tensor<2x3x4xf32>
}
// CHECK-NEXT:    %0 = graph.view "reshape" %x : tensor<2x3x4xf32> -> tensor<4x6xf32>
// CHECK-NEXT:    func.return %w, %0, %x : tensor<8x4xf32>, tensor<4x6xf32>, tensor<2x3x4xf32>

// CHECK-LABEL: func.func @permutes_compose
func.func @permutes_compose(%x: tensor<2x3x4xf32>) -> tensor<3x4x2xf32> {
  %0 = graph.view "permute" %x perm array<i64: 1, 0, 2> : tensor<2x3x4xf32> -> tensor<3x2x4xf32>
  %1 = graph.view "permute" %0 perm array<i64: 0, 2, 1> : tensor<3x2x4xf32> -> tensor<3x4x2xf32>
  func.return %1 : tensor<3x4x2xf32>
}
// CHECK-NEXT:    %0 = graph.view "permute" %x perm array<i64: 1, 2, 0> : tensor<2x3x4xf32> -> tensor<3x4x2xf32>
// CHECK-NEXT:    func.return %0

// CHECK-LABEL: func.func @copies
// A copy feeding an op disappears; a returned copy stays (it must not alias %x).
func.func @copies(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %0 = graph.pointwise "copy"(%x) : (tensor<4xf32>) -> tensor<4xf32>
  %1 = graph.pointwise "exp"(%0) : (tensor<4xf32>) -> tensor<4xf32>
  %2 = graph.pointwise "copy"(%x) : (tensor<4xf32>) -> tensor<4xf32>
  func.return %1, %2 : tensor<4xf32>, tensor<4xf32>
}
// CHECK-NEXT:    %0 = graph.pointwise "exp"(%x) : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %1 = graph.pointwise "copy"(%x) : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    func.return %0, %1

// CHECK-LABEL: func.func @fold_constants
// 0.5 * 3.0 folds to 1.5 with the torch reference; CSE merges the duplicate op.
func.func @fold_constants(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %a = graph.constant 5.000000e-01 : f32 -> tensor<f32>
  %b = graph.constant 3.000000e+00 : f32 -> tensor<f32>
  %c = graph.pointwise "mul"(%a, %b) : (tensor<f32>, tensor<f32>) -> tensor<f32>
  %0 = graph.pointwise "mul"(%x, %c) : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  %1 = graph.pointwise "mul"(%x, %c) : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  func.return %0, %1 : tensor<4xf32>, tensor<4xf32>
}
// CHECK-NEXT:    %c = graph.constant 1.500000e+00 : f32 -> tensor<f32>
// CHECK-NEXT:    %0 = graph.pointwise "mul"(%x, %c) : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
// CHECK-NEXT:    func.return %0, %0
