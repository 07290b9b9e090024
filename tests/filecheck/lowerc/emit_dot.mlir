// RUN: lowerc %s --emit dot | filecheck %s
// RUN: lowerc %s --emit summary | filecheck %s --check-prefix=SUMMARY
// The kernel plan as a picture: a colored cluster per kernel with the ops it fused,
// attention marked apart from other torch fallbacks; edges are tensors between kernels.

func.func @kernels(%x: tensor<8x32xf32>, %w: tensor<64x32xf32>, %b: tensor<64xf32>) -> (tensor<8x64xf32>, tensor<64xf32>, tensor<8x64xf32>) {
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xf32> -> tensor<32x64xf32>
  %y, %pre = kernel.gemm "gemm0_bias_gelu" (%x, %wt, %b) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
  ^bb0(%a: tensor<8x32xf32>, %bt: tensor<32x64xf32>, %bias: tensor<64xf32>):
    %0, %1 = epilogue.gemm %a, %bt inputs(%bias) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
    ^bb0(%acc: !epilogue.tile<f32>, %row: !epilogue.row<f32>):
      %2 = epilogue.map "add"(%acc, %row) : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
      %3 = epilogue.map "gelu"(%2) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
      epilogue.store %3 : !epilogue.tile<f32> -> result 0
      epilogue.store %2 : !epilogue.tile<f32> -> result 1
    }
    kernel.yield %0, %1 : tensor<8x64xf32>, tensor<8x64xf32>
  }
  %s = kernel.loop "loop1_mul_sum" (%y) : (tensor<8x64xf32>) -> (tensor<64xf32>) {
  ^bb0(%t: tensor<8x64xf32>):
    %half = graph.constant 5.000000e-01 : f32 -> tensor<f32>
    %0 = graph.pointwise "mul"(%t, %half) : (tensor<8x64xf32>, tensor<f32>) -> tensor<8x64xf32>
    %1 = graph.reduce "sum" %0 dims array<i64: 0> : tensor<8x64xf32> -> tensor<64xf32>
    kernel.yield %1 : tensor<64xf32>
  }
  %q = kernel.fallback "torch2_attention" (%y) : (tensor<8x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%p: tensor<8x64xf32>):
    %0 = graph.opaque "aten._scaled_dot_product_flash_attention_for_cpu.default"(%p) args "{'args': [{'operand': 0}, {'operand': 0}, {'operand': 0}], 'kwargs': {}}" reason "attention runs in torch" : (tensor<8x64xf32>) -> tensor<8x64xf32>
    kernel.yield %0 : tensor<8x64xf32>
  }
  %c = kernel.fallback "torch3_cumsum" (%pre) : (tensor<8x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%p: tensor<8x64xf32>):
    %0 = graph.opaque "aten.cumsum.default"(%p) args "{'args': [{'operand': 0}, 1], 'kwargs': {}}" reason "no lowering rule" : (tensor<8x64xf32>) -> tensor<8x64xf32>
    kernel.yield %0 : tensor<8x64xf32>
  }
  func.return %q, %s, %c : tensor<8x64xf32>, tensor<64xf32>, tensor<8x64xf32>
}

// CHECK:       digraph "kernels" {
// CHECK:         kernels_in1 [shape=ellipse, label="input 1"];
// CHECK:         subgraph cluster_kernels_0 {
// CHECK-NEXT:      label="gemm0_bias_gelu (gemm)";
// CHECK-NEXT:      style=filled; fillcolor="#cfe2f3";
// CHECK-NEXT:      cluster_kernels_0_op0 [shape=box, label="gemm"];
// CHECK-NEXT:      cluster_kernels_0_op1 [shape=box, label="add"];
// CHECK-NEXT:      cluster_kernels_0_op2 [shape=box, label="gelu"];
// CHECK:         label="loop1_mul_sum (loop)";
// CHECK-NEXT:      style=filled; fillcolor="#fff2cc";
// CHECK:         label="torch2_attention (attention)";
// CHECK-NEXT:      style=filled; fillcolor="#d9d2e9";
// CHECK:         label="torch3_cumsum (fallback)";
// CHECK-NEXT:      style=filled; fillcolor="#f4cccc";
// The transposed weight is a view outside the kernel: its edge starts at the input.
// CHECK:         kernels_in1 -> cluster_kernels_0_op0;
// CHECK:         cluster_kernels_0_op2 -> cluster_kernels_2_op0;
// CHECK:         cluster_kernels_2_op0 -> kernels_out0;
// CHECK-NEXT:    cluster_kernels_1_op1 -> kernels_out1;
// CHECK:       }

// Re-splitting a split module keeps the kernel names; attention counts neither in nor out of epilogues.
// SUMMARY:     gemm0_bias_gelu   gemm 9472 4096  gemm add gelu
// SUMMARY:     4 launches (1 gemm, 2 torch fallback), 24064 bytes moved (static estimate), 2 of 5 memory-bound ops in GEMM epilogues
// SUMMARY:     memory-bound ops inside GEMM epilogues: 2 of 5 (40%)
