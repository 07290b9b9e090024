// RUN: lowerc %s | filecheck %s
// RUN: lowerc %s --print-op-generic | lowerc | filecheck %s
// Round trip: the custom syntax prints back as written, also through generic form.

func.func @ops(%x: tensor<8x32xf32>, %w: tensor<64x32xf32>, %b: tensor<64xf32>) -> tensor<64xf32> {
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xf32> -> tensor<32x64xf32>
  %0 = graph.matmul %x, %wt : (tensor<8x32xf32>, tensor<32x64xf32>) -> tensor<8x64xf32>
  %1 = graph.pointwise "add"(%0, %b) : (tensor<8x64xf32>, tensor<64xf32>) -> tensor<8x64xf32>
  %c = graph.constant 5.000000e-01 : f32 -> tensor<f32>
  %2 = graph.pointwise "mul"(%1, %c) : (tensor<8x64xf32>, tensor<f32>) -> tensor<8x64xf32>
  %3 = graph.reduce "sum" %2 dims array<i64: 0> : tensor<8x64xf32> -> tensor<64xf32>
  %4 = graph.reduce "amax" %2 dims array<i64: 1> keepdim : tensor<8x64xf32> -> tensor<8x1xf32>
  %5 = graph.view "reshape" %4 : tensor<8x1xf32> -> tensor<8xf32>
  %6 = graph.view "expand" %4 : tensor<8x1xf32> -> tensor<8x64xf32>
  %7 = graph.opaque "aten.cumsum.default"(%2) args "{'args': [{'operand': 0}, 1], 'kwargs': {}}" reason "no lowering rule" : (tensor<8x64xf32>) -> tensor<8x64xf32>
  %8 = graph.pointwise "gt"(%2, %c) : (tensor<8x64xf32>, tensor<f32>) -> tensor<8x64xi1>
  %9 = graph.view "slice" %2 slice array<i64: 1, 1, 2> : tensor<8x64xf32> -> tensor<8x32xf32>
  %10 = graph.concat %9, %2 dim 1 : (tensor<8x32xf32>, tensor<8x64xf32>) -> tensor<8x96xf32>
  func.return %3 : tensor<64xf32>
}

// CHECK-LABEL: func.func @ops
// CHECK-NEXT:    %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xf32> -> tensor<32x64xf32>
// CHECK-NEXT:    %0 = graph.matmul %x, %wt : (tensor<8x32xf32>, tensor<32x64xf32>) -> tensor<8x64xf32>
// CHECK-NEXT:    %1 = graph.pointwise "add"(%0, %b) : (tensor<8x64xf32>, tensor<64xf32>) -> tensor<8x64xf32>
// CHECK-NEXT:    %c = graph.constant 5.000000e-01 : f32 -> tensor<f32>
// CHECK-NEXT:    %2 = graph.pointwise "mul"(%1, %c) : (tensor<8x64xf32>, tensor<f32>) -> tensor<8x64xf32>
// CHECK-NEXT:    %3 = graph.reduce "sum" %2 dims array<i64: 0> : tensor<8x64xf32> -> tensor<64xf32>
// CHECK-NEXT:    %4 = graph.reduce "amax" %2 dims array<i64: 1> keepdim : tensor<8x64xf32> -> tensor<8x1xf32>
// CHECK-NEXT:    %5 = graph.view "reshape" %4 : tensor<8x1xf32> -> tensor<8xf32>
// CHECK-NEXT:    %6 = graph.view "expand" %4 : tensor<8x1xf32> -> tensor<8x64xf32>
// CHECK-NEXT:    %7 = graph.opaque "aten.cumsum.default"(%2) args "{'args': [{'operand': 0}, 1], 'kwargs': {}}" reason "no lowering rule" : (tensor<8x64xf32>) -> tensor<8x64xf32>
// CHECK-NEXT:    %8 = graph.pointwise "gt"(%2, %c) : (tensor<8x64xf32>, tensor<f32>) -> tensor<8x64xi1>
// CHECK-NEXT:    %9 = graph.view "slice" %2 slice array<i64: 1, 1, 2> : tensor<8x64xf32> -> tensor<8x32xf32>
// CHECK-NEXT:    %10 = graph.concat %9, %2 dim 1 : (tensor<8x32xf32>, tensor<8x64xf32>) -> tensor<8x96xf32>
// CHECK-NEXT:    func.return %3 : tensor<64xf32>
