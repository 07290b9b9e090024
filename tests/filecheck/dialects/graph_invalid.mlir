// RUN: lowerc %s --split-input-file --verify-diagnostics | filecheck %s
// Verifier messages of the graph dialect, each with the location of the bad op.

func.func @contraction(%a: tensor<4x8xf32>, %b: tensor<16x4xf32>) {
  %0 = graph.matmul %a, %b : (tensor<4x8xf32>, tensor<16x4xf32>) -> tensor<4x4xf32>
  func.return
}
// CHECK: graph_invalid.mlir:5:3: error: 'graph.matmul' contraction dims differ: lhs has 8, rhs has 16

// -----

func.func @unknown_fn(%a: tensor<4xf32>) {
  %0 = graph.pointwise "frobnicate"(%a) : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: graph_invalid.mlir:13:3: error: 'graph.pointwise' has unknown function "frobnicate"

// -----

func.func @arity(%a: tensor<4xf32>) {
  %0 = graph.pointwise "add"(%a) : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: error: 'graph.pointwise' "add" takes 2 operand(s), got 1

// -----

func.func @broadcast(%a: tensor<4x8xf32>, %b: tensor<3xf32>) {
  %0 = graph.pointwise "add"(%a, %b) : (tensor<4x8xf32>, tensor<3xf32>) -> tensor<4x8xf32>
  func.return
}
// CHECK: error: 'graph.pointwise' result shape [4, 8] is not the broadcast of its operand shapes [[4, 8], [3]]

// -----

func.func @reduce_shape(%a: tensor<4x8xf32>) {
  %0 = graph.reduce "sum" %a dims array<i64: 1> : tensor<4x8xf32> -> tensor<8xf32>
  func.return
}
// CHECK: error: 'graph.reduce' result shape [8] does not match reducing [4, 8] over [1] (expected [4])

// -----

func.func @reduce_kind(%a: tensor<4x8xf32>) {
  %0 = graph.reduce "median" %a dims array<i64: 1> : tensor<4x8xf32> -> tensor<4xf32>
  func.return
}
// CHECK: error: 'graph.reduce' kind must be one of sum, mean, amax, amin, logsumexp, got "median"

// -----

func.func @perm(%a: tensor<4x8xf32>) {
  %0 = graph.view "permute" %a perm array<i64: 0, 0> : tensor<4x8xf32> -> tensor<4x8xf32>
  func.return
}
// CHECK: error: 'graph.view' perm [0, 0] is not a permutation of 2 dims

// -----

func.func @reshape(%a: tensor<4x8xf32>) {
  %0 = graph.view "reshape" %a : tensor<4x8xf32> -> tensor<30xf32>
  func.return
}
// CHECK: error: 'graph.view' reshape changes the element count: [4, 8] -> [30]

// -----

func.func @constant(%a: tensor<4xf32>) {
  %0 = graph.constant 1.000000e+00 : f16 -> tensor<4xf32>
  func.return
}
// CHECK: error: 'graph.constant' value type f16 does not match the element type f32

// -----

func.func @opaque(%a: tensor<4xf32>) {
  %0 = graph.opaque "aten.cumsum.default"(%a) args "not a literal(" : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: error: 'graph.opaque' args are not a Python literal

// -----

func.func @slice(%a: tensor<4x8xf32>) {
  %0 = graph.view "slice" %a slice array<i64: 1, 1, 2> : tensor<4x8xf32> -> tensor<4x5xf32>
  func.return
}
// CHECK: error: 'graph.view' slice of [4, 8] along dim 1 from 1 by 2 cannot give [4, 5]

// -----

func.func @concat_sizes(%a: tensor<4x8xf32>, %b: tensor<4x2xf32>) {
  %0 = graph.concat %a, %b dim 1 : (tensor<4x8xf32>, tensor<4x2xf32>) -> tensor<4x12xf32>
  func.return
}
// CHECK: error: 'graph.concat' inputs add up to 10 along dim 1, the result has 12

// -----

func.func @concat_shapes(%a: tensor<4x8xf32>, %b: tensor<3x2xf32>) {
  %0 = graph.concat %a, %b dim 1 : (tensor<4x8xf32>, tensor<3x2xf32>) -> tensor<4x10xf32>
  func.return
}
// CHECK: error: 'graph.concat' input 1 of shape [3, 2] does not fit [4, 10] along dim 1

// -----

func.func @concat_dim(%a: tensor<4x8xf32>) {
  %0 = graph.concat %a dim 2 : (tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return
}
// CHECK: error: 'graph.concat' dim 2 is out of range for [4, 8]

// -----

func.func @concat_types(%a: tensor<4x8xf32>, %b: tensor<4x8xf16>) {
  %0 = graph.concat %a, %b dim 0 : (tensor<4x8xf32>, tensor<4x8xf16>) -> tensor<8x8xf32>
  func.return
}
// CHECK: error: 'graph.concat' input 1 has element type f16, the result f32
