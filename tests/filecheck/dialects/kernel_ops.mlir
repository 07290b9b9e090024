// RUN: lowerc %s | filecheck %s
// RUN: lowerc %s --print-op-generic | lowerc | filecheck %s
// Round trip: the custom syntax prints back as written, also through generic form.

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
  %c = kernel.fallback "torch2_cumsum" (%pre) attributes {note = "kept"} : (tensor<8x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%p: tensor<8x64xf32>):
    %0 = graph.opaque "aten.cumsum.default"(%p) args "{'args': [{'operand': 0}, 1], 'kwargs': {}}" reason "no lowering rule" : (tensor<8x64xf32>) -> tensor<8x64xf32>
    kernel.yield %0 : tensor<8x64xf32>
  }
  func.return %y, %s, %c : tensor<8x64xf32>, tensor<64xf32>, tensor<8x64xf32>
}

// CHECK-LABEL: func.func @kernels
// CHECK-NEXT:    %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xf32> -> tensor<32x64xf32>
// CHECK-NEXT:    %y, %pre = kernel.gemm "gemm0_bias_gelu" (%x, %wt, %b) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
// CHECK-NEXT:    ^bb0(%a: tensor<8x32xf32>, %bt: tensor<32x64xf32>, %bias: tensor<64xf32>):
// CHECK-NEXT:      %0, %1 = epilogue.gemm %a, %bt inputs(%bias) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
// CHECK-NEXT:      ^bb0(%acc: !epilogue.tile<f32>, %row: !epilogue.row<f32>):
// CHECK-NEXT:        %2 = epilogue.map "add"(%acc, %row) : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:        %3 = epilogue.map "gelu"(%2) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:        epilogue.store %3 : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:        epilogue.store %2 : !epilogue.tile<f32> -> result 1
// CHECK-NEXT:      }
// CHECK-NEXT:      kernel.yield %0, %1 : tensor<8x64xf32>, tensor<8x64xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %s = kernel.loop "loop1_mul_sum" (%y) : (tensor<8x64xf32>) -> (tensor<64xf32>) {
// CHECK-NEXT:    ^bb0(%t: tensor<8x64xf32>):
// CHECK-NEXT:      %half = graph.constant 5.000000e-01 : f32 -> tensor<f32>
// CHECK-NEXT:      %0 = graph.pointwise "mul"(%t, %half) : (tensor<8x64xf32>, tensor<f32>) -> tensor<8x64xf32>
// CHECK-NEXT:      %1 = graph.reduce "sum" %0 dims array<i64: 0> : tensor<8x64xf32> -> tensor<64xf32>
// CHECK-NEXT:      kernel.yield %1 : tensor<64xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %c = kernel.fallback "torch2_cumsum" (%pre) attributes {note = "kept"} : (tensor<8x64xf32>) -> (tensor<8x64xf32>) {
// CHECK-NEXT:    ^bb0(%p: tensor<8x64xf32>):
// CHECK-NEXT:      %0 = graph.opaque "aten.cumsum.default"(%p) args "{'args': [{'operand': 0}, 1], 'kwargs': {}}" reason "no lowering rule" : (tensor<8x64xf32>) -> tensor<8x64xf32>
// CHECK-NEXT:      kernel.yield %0 : tensor<8x64xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y, %s, %c : tensor<8x64xf32>, tensor<64xf32>, tensor<8x64xf32>
// CHECK-NEXT:  }

// A kernel with no operands or results is still well formed.
func.func @empty() {
  kernel.fallback "torch0_noop" () : () -> () {
    kernel.yield
  }
  func.return
}

// CHECK-LABEL: func.func @empty
// CHECK-NEXT:    kernel.fallback "torch0_noop" () : () -> () {
// CHECK-NEXT:      kernel.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return
// CHECK-NEXT:  }

// A chain (chain-gemms): the second GEMM's lhs is the first's result.
func.func @chain(%x: tensor<8x32xf32>, %w1: tensor<32x64xf32>, %w2: tensor<64x16xf32>) -> tensor<8x16xf32> {
  %y = kernel.gemm "gemm0_chain" (%x, %w1, %w2) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64x16xf32>) -> (tensor<8x16xf32>) {
  ^bb0(%a: tensor<8x32xf32>, %b: tensor<32x64xf32>, %c: tensor<64x16xf32>):
    %h = epilogue.gemm %a, %b : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
    ^bb0(%acc: !epilogue.tile<f32>):
      %0 = epilogue.map "relu"(%acc) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
      epilogue.store %0 : !epilogue.tile<f32> -> result 0
    }
    %out = epilogue.gemm %h, %c : (tensor<8x64xf32>, tensor<64x16xf32>) -> (tensor<8x16xf32>) {
    ^bb0(%acc_1: !epilogue.tile<f32>):
      epilogue.store %acc_1 : !epilogue.tile<f32> -> result 0
    }
    kernel.yield %out : tensor<8x16xf32>
  }
  func.return %y : tensor<8x16xf32>
}

// CHECK-LABEL: func.func @chain
// CHECK-NEXT:    %y = kernel.gemm "gemm0_chain" (%x, %w1, %w2) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64x16xf32>) -> (tensor<8x16xf32>) {
// CHECK-NEXT:    ^bb0(%a: tensor<8x32xf32>, %b: tensor<32x64xf32>, %c: tensor<64x16xf32>):
// CHECK-NEXT:      %h = epilogue.gemm %a, %b : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
// CHECK-NEXT:      ^bb0(%acc: !epilogue.tile<f32>):
// CHECK-NEXT:        %0 = epilogue.map "relu"(%acc) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:        epilogue.store %0 : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:      }
// CHECK-NEXT:      %out = epilogue.gemm %h, %c : (tensor<8x64xf32>, tensor<64x16xf32>) -> (tensor<8x16xf32>) {
// CHECK-NEXT:      ^bb0(%acc_1: !epilogue.tile<f32>):
// CHECK-NEXT:        epilogue.store %acc_1 : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:      }
// CHECK-NEXT:      kernel.yield %out : tensor<8x16xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y : tensor<8x16xf32>
// CHECK-NEXT:  }
