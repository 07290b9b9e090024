// RUN: lowerc %s --split-input-file --verify-diagnostics | filecheck %s
// Verifier messages of the kernel dialect, each with the location of the bad op.

func.func @block_arg_count(%a: tensor<4xf32>, %b: tensor<4xf32>) {
  %0 = kernel.loop "loop0_add" (%a, %b) : (tensor<4xf32>, tensor<4xf32>) -> (tensor<4xf32>) {
  ^bb0(%x: tensor<4xf32>):
    kernel.yield %x : tensor<4xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:5:3: error: 'kernel.loop' block arguments must match its operand types one to one

// -----

func.func @block_arg_type(%a: tensor<4xf32>) {
  %0 = kernel.fallback "torch0_copy" (%a) : (tensor<4xf32>) -> (tensor<4xf32>) {
  ^bb0(%x: tensor<4xbf16>):
    %1 = graph.opaque "aten.clone.default"(%x) args "{'args': [{'operand': 0}], 'kwargs': {}}" : (tensor<4xbf16>) -> tensor<4xf32>
    kernel.yield %1 : tensor<4xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:16:3: error: 'kernel.fallback' block arguments must match its operand types one to one

// -----

func.func @missing_yield(%a: tensor<4xf32>) {
  %0 = kernel.loop "loop0_exp" (%a) : (tensor<4xf32>) -> (tensor<4xf32>) {
  ^bb0(%x: tensor<4xf32>):
    %1 = graph.pointwise "exp"(%x) : (tensor<4xf32>) -> tensor<4xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:28:3: error: 'kernel.loop' body must end in kernel.yield

// -----

func.func @empty_block() {
  kernel.fallback "torch0_noop" () : () -> () {
  ^bb0:
  }
  func.return
}
// CHECK: kernel_invalid.mlir:39:3: error: 'kernel.fallback' body must end in kernel.yield

// -----

func.func @yield_types(%a: tensor<4xf32>) {
  %0 = kernel.loop "loop0_exp" (%a) : (tensor<4xf32>) -> (tensor<4xf32>) {
  ^bb0(%x: tensor<4xf32>):
    %1 = graph.pointwise "gt"(%x, %x) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xi1>
    kernel.yield %1 : tensor<4xi1>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:49:3: error: 'kernel.loop' yields (tensor<4xi1>) but declares results (tensor<4xf32>)

// -----

func.func @yield_count(%a: tensor<4xf32>) {
  %0, %1 = kernel.loop "loop0_exp" (%a) : (tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  ^bb0(%x: tensor<4xf32>):
    %2 = graph.pointwise "exp"(%x) : (tensor<4xf32>) -> tensor<4xf32>
    kernel.yield %2 : tensor<4xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:61:3: error: 'kernel.loop' yields (tensor<4xf32>) but declares results (tensor<4xf32>, tensor<4xf32>)

// -----

// A kernel.gemm without its epilogue.gemm (a graph.matmul is not enough).
func.func @gemm_without_epilogue(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>) {
  %0 = kernel.gemm "gemm0" (%a, %b) : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>) {
  ^bb0(%x: tensor<4x8xf32>, %y: tensor<8x16xf32>):
    %1 = graph.matmul %x, %y : (tensor<4x8xf32>, tensor<8x16xf32>) -> tensor<4x16xf32>
    kernel.yield %1 : tensor<4x16xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:74:3: error: 'kernel.gemm' must contain one epilogue.gemm, or two chained (the second reading the first's results as its lhs), found 0

// -----

func.func @gemm_two_epilogues(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>) {
  %0, %1 = kernel.gemm "gemm0" (%a, %b) : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>) {
  ^bb0(%x: tensor<4x8xf32>, %y: tensor<8x16xf32>):
    %2 = epilogue.gemm %x, %y : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>) {
    ^bb0(%acc: !epilogue.tile<f32>):
      epilogue.store %acc : !epilogue.tile<f32> -> result 0
    }
    %3 = epilogue.gemm %x, %y : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>) {
    ^bb0(%acc: !epilogue.tile<f32>):
      epilogue.store %acc : !epilogue.tile<f32> -> result 0
    }
    kernel.yield %2, %3 : tensor<4x16xf32>, tensor<4x16xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:86:3: error: 'kernel.gemm' with two epilogue.gemm ops: every product of the second must multiply a result of the first (a chain)

// -----

func.func @loop_with_matmul(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>) {
  %0 = kernel.loop "loop0" (%a, %b) : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>) {
  ^bb0(%x: tensor<4x8xf32>, %y: tensor<8x16xf32>):
    %1 = graph.matmul %x, %y : (tensor<4x8xf32>, tensor<8x16xf32>) -> tensor<4x16xf32>
    %2 = graph.pointwise "relu"(%1) : (tensor<4x16xf32>) -> tensor<4x16xf32>
    kernel.yield %2 : tensor<4x16xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:105:3: error: 'kernel.loop' cannot contain 'graph.matmul'

// -----

// A view inside a loop kernel only addresses an operand; yielding one would be a store.
func.func @loop_with_view(%a: tensor<4x8xf32>) {
  %0 = kernel.loop "loop0" (%a) : (tensor<4x8xf32>) -> (tensor<32xf32>) {
  ^bb0(%x: tensor<4x8xf32>):
    %1 = graph.view "reshape" %x : tensor<4x8xf32> -> tensor<32xf32>
    kernel.yield %1 : tensor<32xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:119:3: error: 'kernel.loop' cannot yield a view: views inside a loop kernel only address its operands

// -----

func.func @loop_with_opaque(%a: tensor<4x8xf32>) {
  %0 = kernel.loop "loop0" (%a) : (tensor<4x8xf32>) -> (tensor<4x8xf32>) {
  ^bb0(%x: tensor<4x8xf32>):
    %1 = graph.opaque "aten.cumsum.default"(%x) args "{'args': [{'operand': 0}, 1], 'kwargs': {}}" : (tensor<4x8xf32>) -> tensor<4x8xf32>
    kernel.yield %1 : tensor<4x8xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:131:3: error: 'kernel.loop' cannot contain 'graph.opaque'

// -----

// Kernels are isolated from above: values come in as operands and block arguments.
func.func @isolated(%a: tensor<4xf32>) {
  %0 = kernel.loop "loop0_exp" () : () -> (tensor<4xf32>) {
    %1 = graph.pointwise "exp"(%a) : (tensor<4xf32>) -> tensor<4xf32>
    kernel.yield %1 : tensor<4xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:144:3: error: Operation using value defined out of its IsolatedFromAbove parent

// -----

// A GEMM kernel may store a result in another layout through reshapes and permutes
// (invertible), not through a slice.
func.func @gemm_yields_a_slice(%x: tensor<4x8xf32>, %w: tensor<8x4xf32>) {
  %0 = kernel.gemm "gemm0" (%x, %w) : (tensor<4x8xf32>, tensor<8x4xf32>) -> (tensor<2x4xf32>) {
  ^bb0(%a: tensor<4x8xf32>, %b: tensor<8x4xf32>):
    %1 = epilogue.gemm %a, %b : (tensor<4x8xf32>, tensor<8x4xf32>) -> (tensor<4x4xf32>) {
    ^bb0(%acc: !epilogue.tile<f32>):
      epilogue.store %acc : !epilogue.tile<f32> -> result 0
    }
    %2 = graph.view "slice" %1 slice array<i64: 0, 0, 2> : tensor<4x4xf32> -> tensor<2x4xf32>
    kernel.yield %2 : tensor<2x4xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:{{[0-9]+}}:3: error: 'kernel.gemm' can yield its results through reshape and permute views only (a store in another layout), not through a slice view

// -----

// A chain whose second GEMM also reads the first's result in its epilogue.
func.func @chain_result_read_by_epilogue(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>, %c: tensor<16x16xf32>) {
  %0 = kernel.gemm "gemm0_chain" (%a, %b, %c) : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x16xf32>) -> (tensor<4x16xf32>) {
  ^bb0(%x: tensor<4x8xf32>, %y: tensor<8x16xf32>, %z: tensor<16x16xf32>):
    %1 = epilogue.gemm %x, %y : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>) {
    ^bb0(%acc: !epilogue.tile<f32>):
      epilogue.store %acc : !epilogue.tile<f32> -> result 0
    }
    %2 = epilogue.gemm %1, %z inputs(%1) : (tensor<4x16xf32>, tensor<16x16xf32>, tensor<4x16xf32>) -> (tensor<4x16xf32>) {
    ^bb0(%acc: !epilogue.tile<f32>, %h: !epilogue.tile<f32>):
      %3 = epilogue.accumulate %acc, %h : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
      epilogue.store %3 : !epilogue.tile<f32> -> result 0
    }
    kernel.yield %2 : tensor<4x16xf32>
  }
  func.return
}
// CHECK: kernel_invalid.mlir:174:3: error: 'kernel.gemm' chain: the first epilogue.gemm's results may only be the second's lhs operands or yielded, not read by 'epilogue.gemm'
