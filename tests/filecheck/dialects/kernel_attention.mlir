// RUN: lowerc %s --split-input-file --verify-diagnostics 2>&1 | filecheck %s
// kernel.attention round trip (its k/v reached through a GQA broadcast view), then its
// verifier messages.

func.func @attention(%q: tensor<1x4x8x32xf32>, %kv: tensor<1x2x8x32xf32>) -> tensor<1x4x8x32xf32> {
  %o, %lse = kernel.attention "attn0_gqa" (%q, %kv) : (tensor<1x4x8x32xf32>, tensor<1x2x8x32xf32>) -> (tensor<1x4x8x32xf32>, tensor<1x4x8xf32>) {
  ^bb0(%a: tensor<1x4x8x32xf32>, %b: tensor<1x2x8x32xf32>):
    %0 = graph.view "reshape" %b : tensor<1x2x8x32xf32> -> tensor<1x2x1x8x32xf32>
    %1 = graph.view "expand" %0 : tensor<1x2x1x8x32xf32> -> tensor<1x2x2x8x32xf32>
    %2 = graph.view "reshape" %1 : tensor<1x2x2x8x32xf32> -> tensor<1x4x8x32xf32>
    %3, %4 = graph.attention %a, %2, %2 scale 5.000000e-01 : f64 : (tensor<1x4x8x32xf32>, tensor<1x4x8x32xf32>, tensor<1x4x8x32xf32>) -> (tensor<1x4x8x32xf32>, tensor<1x4x8xf32>)
    kernel.yield %3, %4 : tensor<1x4x8x32xf32>, tensor<1x4x8xf32>
  }
  func.return %o : tensor<1x4x8x32xf32>
}
// CHECK-LABEL: func.func @attention
// CHECK-NEXT:    %o, %lse = kernel.attention "attn0_gqa" (%q, %kv) : (tensor<1x4x8x32xf32>, tensor<1x2x8x32xf32>) -> (tensor<1x4x8x32xf32>, tensor<1x4x8xf32>) {
// CHECK-NEXT:    ^bb0(%a: tensor<1x4x8x32xf32>, %b: tensor<1x2x8x32xf32>):
// CHECK-NEXT:      %0 = graph.view "reshape" %b
// CHECK-NEXT:      %1 = graph.view "expand" %0
// CHECK-NEXT:      %2 = graph.view "reshape" %1
// CHECK-NEXT:      %3, %4 = graph.attention %a, %2, %2 scale 5.000000e-01 : f64
// CHECK-NEXT:      kernel.yield %3, %4 : tensor<1x4x8x32xf32>, tensor<1x4x8xf32>
// CHECK-NEXT:    }

// -----

func.func @no_attention(%x: tensor<4xf32>) {
  %0 = kernel.attention "attn0" (%x) : (tensor<4xf32>) -> (tensor<4xf32>) {
  ^bb0(%a: tensor<4xf32>):
    kernel.yield %a : tensor<4xf32>
  }
  func.return
}
// CHECK: kernel_attention.mlir:29:3: error: 'kernel.attention' must contain exactly one graph.attention or graph.attention_backward, found 0

// -----

func.func @extra_op(%q: tensor<1x1x8x32xf32>) {
  %o, %lse = kernel.attention "attn0" (%q) : (tensor<1x1x8x32xf32>) -> (tensor<1x1x8x32xf32>, tensor<1x1x8xf32>) {
  ^bb0(%a: tensor<1x1x8x32xf32>):
    %0 = graph.pointwise "exp"(%a) : (tensor<1x1x8x32xf32>) -> tensor<1x1x8x32xf32>
    %1, %2 = graph.attention %0, %a, %a scale 5.000000e-01 : f64 : (tensor<1x1x8x32xf32>, tensor<1x1x8x32xf32>, tensor<1x1x8x32xf32>) -> (tensor<1x1x8x32xf32>, tensor<1x1x8xf32>)
    kernel.yield %1, %2 : tensor<1x1x8x32xf32>, tensor<1x1x8xf32>
  }
  func.return
}
// CHECK: kernel_attention.mlir:40:3: error: 'kernel.attention' cannot contain 'graph.pointwise': only the attention op and the views it reads its operands through
