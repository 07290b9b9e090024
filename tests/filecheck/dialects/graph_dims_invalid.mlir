// RUN: lowerc %s --split-input-file --verify-diagnostics | filecheck %s
// Symbolic sizes that do not verify: the verifiers compare expanded expressions.

func.func @reshape_count(%x: tensor<?x32xf32, #graph.dims<"2*s0">>) {
  %0 = graph.view "reshape" %x : tensor<?x32xf32, #graph.dims<"2*s0">> -> tensor<?x32xf32, #graph.dims<"s0">>
  func.return
}
// CHECK: graph_dims_invalid.mlir:5:3: error: 'graph.view' reshape changes the element count: [2*s0, 32] -> [s0, 32]

// -----

func.func @contraction(%a: tensor<4x?xf32, #graph.dims<"s0">>, %b: tensor<?x8xf32, #graph.dims<"s0 + 1">>) {
  %0 = graph.matmul %a, %b : (tensor<4x?xf32, #graph.dims<"s0">>, tensor<?x8xf32, #graph.dims<"s0 + 1">>) -> tensor<4x8xf32>
  func.return
}
// CHECK: graph_dims_invalid.mlir:13:3: error: 'graph.matmul' contraction dims differ: lhs has s0, rhs has s0 + 1

// -----

func.func @concat_extent(%a: tensor<?x4xf32, #graph.dims<"s0">>) {
  %0 = graph.concat %a, %a dim 0 : (tensor<?x4xf32, #graph.dims<"s0">>, tensor<?x4xf32, #graph.dims<"s0">>) -> tensor<?x4xf32, #graph.dims<"s0">>
  func.return
}
// CHECK: error: 'graph.concat' inputs add up to 2*s0 along dim 0, the result has s0

// -----

func.func @missing_encoding(%a: tensor<?x4xf32>) {
  %0 = graph.pointwise "neg"(%a) : (tensor<?x4xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: error: tensor<?x4xf32> has a '?' dim but no #graph.dims encoding

// -----

func.func @too_many_sizes(%a: tensor<?x4xf32, #graph.dims<"s0", "s1">>) {
  %0 = graph.pointwise "neg"(%a) : (tensor<?x4xf32, #graph.dims<"s0", "s1">>) -> tensor<?x4xf32, #graph.dims<"s0", "s1">>
  func.return
}
// CHECK: error: tensor<?x4xf32, #graph.dims<"s0", "s1">> has fewer '?' dims than #graph.dims sizes

