// RUN: lowerc %s | filecheck %s
// RUN: lowerc %s --print-op-generic | lowerc | filecheck %s
// Symbolic sizes: a `?` dim's expression is in the type's #graph.dims encoding, kept
// expanded (so `2*(s0+1)` and `2*s0+2` are one size). The graph ops verify with them:
// a reshape keeps the symbolic element count, a concat adds symbolic extents.

func.func @block(%x: tensor<2x?x32xf32, #graph.dims<"s0">>, %w: tensor<64x32xf32>) -> tensor<?x64xf32, #graph.dims<"2*s0">> attributes {graph.size_hints = {s0 = 12 : i64}} {
  %flat = graph.view "reshape" %x : tensor<2x?x32xf32, #graph.dims<"s0">> -> tensor<?x32xf32, #graph.dims<"2*s0">>
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xf32> -> tensor<32x64xf32>
  %h = graph.matmul %flat, %wt : (tensor<?x32xf32, #graph.dims<"2*s0">>, tensor<32x64xf32>) -> tensor<?x64xf32, #graph.dims<"s0*2">>
  %sq = graph.pointwise "square"(%h) : (tensor<?x64xf32, #graph.dims<"2*s0">>) -> tensor<?x64xf32, #graph.dims<"2*s0">>
  %ms = graph.reduce "mean" %sq dims array<i64: 1> keepdim : tensor<?x64xf32, #graph.dims<"2*s0">> -> tensor<?x1xf32, #graph.dims<"2*s0">>
  %n = graph.pointwise "mul"(%h, %ms) : (tensor<?x64xf32, #graph.dims<"2*s0">>, tensor<?x1xf32, #graph.dims<"2*s0">>) -> tensor<?x64xf32, #graph.dims<"2*s0">>
  %col = graph.reduce "sum" %n dims array<i64: 0> : tensor<?x64xf32, #graph.dims<"2*s0">> -> tensor<64xf32>
  %cat = graph.concat %n, %h dim 0 : (tensor<?x64xf32, #graph.dims<"2*s0">>, tensor<?x64xf32, #graph.dims<"2*s0">>) -> tensor<?x64xf32, #graph.dims<"4*s0">>
  %pad = graph.view "reshape" %x : tensor<2x?x32xf32, #graph.dims<"s0">> -> tensor<?x16xf32, #graph.dims<"2*(2*s0 + 0)">>
  func.return %n : tensor<?x64xf32, #graph.dims<"2*s0">>
}

// CHECK-LABEL: func.func @block(%x: tensor<2x?x32xf32, #graph.dims<"s0">>, %w: tensor<64x32xf32>) -> tensor<?x64xf32, #graph.dims<"2*s0">> attributes {graph.size_hints = {s0 = 12 : i64}} {
// CHECK-NEXT:    %flat = graph.view "reshape" %x : tensor<2x?x32xf32, #graph.dims<"s0">> -> tensor<?x32xf32, #graph.dims<"2*s0">>
// CHECK:         %h = graph.matmul %flat, %wt : (tensor<?x32xf32, #graph.dims<"2*s0">>, tensor<32x64xf32>) -> tensor<?x64xf32, #graph.dims<"2*s0">>
// CHECK:         %ms = graph.reduce "mean" %sq dims array<i64: 1> keepdim : tensor<?x64xf32, #graph.dims<"2*s0">> -> tensor<?x1xf32, #graph.dims<"2*s0">>
// CHECK:         %col = graph.reduce "sum" %n dims array<i64: 0> : tensor<?x64xf32, #graph.dims<"2*s0">> -> tensor<64xf32>
// CHECK-NEXT:    %cat = graph.concat %n, %h dim 0 : {{.*}} -> tensor<?x64xf32, #graph.dims<"4*s0">>
// CHECK-NEXT:    %pad = graph.view "reshape" %x : tensor<2x?x32xf32, #graph.dims<"s0">> -> tensor<?x16xf32, #graph.dims<"4*s0">>

// Two sizes and a polynomial: attention scores of a batch b of s tokens.

func.func @two(%q: tensor<?x4x?x16xf32, #graph.dims<"b", "s">>, %k: tensor<?x4x?x16xf32, #graph.dims<"b", "s">>) {
  %kt = graph.view "permute" %k perm array<i64: 0, 1, 3, 2> : tensor<?x4x?x16xf32, #graph.dims<"b", "s">> -> tensor<?x4x16x?xf32, #graph.dims<"b", "s">>
  %s = graph.matmul %q, %kt : (tensor<?x4x?x16xf32, #graph.dims<"b", "s">>, tensor<?x4x16x?xf32, #graph.dims<"b", "s">>) -> tensor<?x4x?x?xf32, #graph.dims<"b", "s", "s">>
  %flat = graph.view "reshape" %s : tensor<?x4x?x?xf32, #graph.dims<"b", "s", "s">> -> tensor<?xf32, #graph.dims<"4*b*s**2">>
  func.return
}

// CHECK-LABEL: func.func @two
// CHECK:         -> tensor<?xf32, #graph.dims<"4*b*s**2">>
