// RUN: lowerc %s -p fuse-rotary,canonicalize,fold-views | filecheck %s
// RUN: not lowerc %s -p canonicalize,fuse-epilogues 2>&1 | filecheck %s --check-prefix=PLANNING
// The graph stage (fuse-rotary, canonicalize, fold-views) takes symbolic sizes as they
// are: its rewrites compare dims as expressions and build the types they create from
// them, so a graph with varying sizes runs it once, not once per size. A planning pass
// still needs bind-sizes first.

// Rotation by [S, D] tables fused into attention: the tables are viewed [B, 1, S, D]
// with the sequence length symbolic.
// CHECK-LABEL: func.func @rotary
func.func @rotary(%q: tensor<2x4x?x16xf32, #graph.dims<"s0">>, %k: tensor<2x2x?x16xf32, #graph.dims<"s0">>, %v: tensor<2x2x?x16xf32, #graph.dims<"s0">>, %cos: tensor<?x16xf32, #graph.dims<"s0">>, %sin: tensor<?x16xf32, #graph.dims<"s0">>) -> tensor<2x4x?x16xf32, #graph.dims<"s0">> {
  %qr = graph.rotary %q, %cos, %sin : (tensor<2x4x?x16xf32, #graph.dims<"s0">>, tensor<?x16xf32, #graph.dims<"s0">>, tensor<?x16xf32, #graph.dims<"s0">>) -> tensor<2x4x?x16xf32, #graph.dims<"s0">>
  %kr = graph.rotary %k, %cos, %sin : (tensor<2x2x?x16xf32, #graph.dims<"s0">>, tensor<?x16xf32, #graph.dims<"s0">>, tensor<?x16xf32, #graph.dims<"s0">>) -> tensor<2x2x?x16xf32, #graph.dims<"s0">>
  %o, %lse = graph.attention %qr, %kr, %v causal scale 2.500000e-01 : f64 : (tensor<2x4x?x16xf32, #graph.dims<"s0">>, tensor<2x2x?x16xf32, #graph.dims<"s0">>, tensor<2x2x?x16xf32, #graph.dims<"s0">>) -> (tensor<2x4x?x16xf32, #graph.dims<"s0">>, tensor<2x4x?xf32, #graph.dims<"s0">>)
  func.return %o : tensor<2x4x?x16xf32, #graph.dims<"s0">>
}
// CHECK:         %[[C4:.*]] = graph.view "reshape" %cos : tensor<?x16xf32, #graph.dims<"s0">> -> tensor<1x1x?x16xf32, #graph.dims<"s0">>
// CHECK-NEXT:    %[[C:.*]] = graph.view "expand" %[[C4]] : tensor<1x1x?x16xf32, #graph.dims<"s0">> -> tensor<2x1x?x16xf32, #graph.dims<"s0">>
// CHECK:         graph.attention %q, %k, %v rotary %[[C]], %{{.*}} causal

// A rotation attention does not read is expanded: its halves split the static head dim.
// CHECK-LABEL: func.func @rotary_expanded
func.func @rotary_expanded(%x: tensor<?x8xf32, #graph.dims<"s0">>, %cos: tensor<?x8xf32, #graph.dims<"s0">>, %sin: tensor<?x8xf32, #graph.dims<"s0">>) -> tensor<?x8xf32, #graph.dims<"s0">> {
  %0 = graph.rotary %x, %cos, %sin : (tensor<?x8xf32, #graph.dims<"s0">>, tensor<?x8xf32, #graph.dims<"s0">>, tensor<?x8xf32, #graph.dims<"s0">>) -> tensor<?x8xf32, #graph.dims<"s0">>
  func.return %0 : tensor<?x8xf32, #graph.dims<"s0">>
}
// CHECK:         graph.view "slice" %x slice array<i64: 1, 4, 1> : tensor<?x8xf32, #graph.dims<"s0">> -> tensor<?x4xf32, #graph.dims<"s0">>
// CHECK:         graph.concat {{.*}} dim 1 : (tensor<?x4xf32, #graph.dims<"s0">>, tensor<?x4xf32, #graph.dims<"s0">>) -> tensor<?x8xf32, #graph.dims<"s0">>

// var_mean over a static dim of [B, S, 64] rows: the reshape after the sum becomes a
// keepdim reduction and sum / 64 the mean; an expand of a per-row value under a
// scalar op sinks below it, in the symbolic shapes.
// CHECK-LABEL: func.func @norm_rows
func.func @norm_rows(%x: tensor<2x?x64xf32, #graph.dims<"s0">>, %r: tensor<2x?x1xf32, #graph.dims<"s0">>) -> (tensor<2x?x1xf32, #graph.dims<"s0">>, tensor<2x?x64xf32, #graph.dims<"s0">>) {
  %s = graph.reduce "sum" %x dims array<i64: 2> : tensor<2x?x64xf32, #graph.dims<"s0">> -> tensor<2x?xf32, #graph.dims<"s0">>
  %s1 = graph.view "reshape" %s : tensor<2x?xf32, #graph.dims<"s0">> -> tensor<2x?x1xf32, #graph.dims<"s0">>
  %n = graph.constant 6.400000e+01 : f32 -> tensor<f32>
  %mean = graph.pointwise "div"(%s1, %n) : (tensor<2x?x1xf32, #graph.dims<"s0">>, tensor<f32>) -> tensor<2x?x1xf32, #graph.dims<"s0">>
  %e = graph.view "expand" %r : tensor<2x?x1xf32, #graph.dims<"s0">> -> tensor<2x?x64xf32, #graph.dims<"s0">>
  %d = graph.pointwise "div"(%e, %n) : (tensor<2x?x64xf32, #graph.dims<"s0">>, tensor<f32>) -> tensor<2x?x64xf32, #graph.dims<"s0">>
  %m = graph.pointwise "mul"(%d, %x) : (tensor<2x?x64xf32, #graph.dims<"s0">>, tensor<2x?x64xf32, #graph.dims<"s0">>) -> tensor<2x?x64xf32, #graph.dims<"s0">>
  func.return %mean, %m : tensor<2x?x1xf32, #graph.dims<"s0">>, tensor<2x?x64xf32, #graph.dims<"s0">>
}
// CHECK:         %[[MEAN:.*]] = graph.reduce "mean" %x dims array<i64: 2> keepdim : tensor<2x?x64xf32, #graph.dims<"s0">> -> tensor<2x?x1xf32, #graph.dims<"s0">>
// CHECK:         %[[D:.*]] = graph.pointwise "div"(%r, %n) : (tensor<2x?x1xf32, #graph.dims<"s0">>, tensor<f32>) -> tensor<2x?x1xf32, #graph.dims<"s0">>
// CHECK-NEXT:    %[[M:.*]] = graph.pointwise "mul"(%[[D]], %x) : (tensor<2x?x1xf32, #graph.dims<"s0">>, tensor<2x?x64xf32, #graph.dims<"s0">>) -> tensor<2x?x64xf32, #graph.dims<"s0">>
// CHECK-NEXT:    func.return %[[MEAN]], %[[M]]

// A sum over a symbolic dim divided by its size (a graph.size, as traced) is a mean,
// with the reshape after it a keepdim one, as at any bound size; divided by a constant
// it is not: the count varies.
// CHECK-LABEL: func.func @symbolic_count
func.func @symbolic_count(%x: tensor<3x?xf32, #graph.dims<"2*s0">>) -> (tensor<3x1xf32>, tensor<3xf32>) {
  %s = graph.reduce "sum" %x dims array<i64: 1> : tensor<3x?xf32, #graph.dims<"2*s0">> -> tensor<3xf32>
  %n = graph.size "2*s0" -> tensor<f32>
  %mean = graph.pointwise "div"(%s, %n) : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>
  %kept = graph.view "reshape" %mean : tensor<3xf32> -> tensor<3x1xf32>
  %c = graph.constant 8.000000e+00 : f32 -> tensor<f32>
  %not_mean = graph.pointwise "div"(%s, %c) : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>
  func.return %kept, %not_mean : tensor<3x1xf32>, tensor<3xf32>
}
// CHECK-DAG:     %[[S:.*]] = graph.reduce "sum" %x dims array<i64: 1> : tensor<3x?xf32, #graph.dims<"2*s0">> -> tensor<3xf32>
// CHECK-DAG:     %[[M:.*]] = graph.reduce "mean" %x dims array<i64: 1> keepdim : tensor<3x?xf32, #graph.dims<"2*s0">> -> tensor<3x1xf32>
// CHECK:         %[[NOT:.*]] = graph.pointwise "div"(%[[S]], %c)
// CHECK-NEXT:    func.return %[[M]], %[[NOT]]

// q @ k^T over a [B*H] merge of symbolic batch and static heads: folded, as static.
// CHECK-LABEL: func.func @head_split_scores
func.func @head_split_scores(%q: tensor<?x4x8x16xf32, #graph.dims<"s0">>, %k: tensor<?x4x16x8xf32, #graph.dims<"s0">>) -> tensor<?x8x8xf32, #graph.dims<"4*s0">> {
  %0 = graph.view "reshape" %q : tensor<?x4x8x16xf32, #graph.dims<"s0">> -> tensor<?x8x16xf32, #graph.dims<"4*s0">>
  %1 = graph.view "reshape" %k : tensor<?x4x16x8xf32, #graph.dims<"s0">> -> tensor<?x16x8xf32, #graph.dims<"4*s0">>
  %2 = graph.matmul %0, %1 : (tensor<?x8x16xf32, #graph.dims<"4*s0">>, tensor<?x16x8xf32, #graph.dims<"4*s0">>) -> tensor<?x8x8xf32, #graph.dims<"4*s0">>
  func.return %2 : tensor<?x8x8xf32, #graph.dims<"4*s0">>
}
// CHECK-NEXT:    %0 = graph.matmul %q, %k : (tensor<?x4x8x16xf32, #graph.dims<"s0">>, tensor<?x4x16x8xf32, #graph.dims<"s0">>) -> tensor<?x4x8x8xf32, #graph.dims<"s0">>
// CHECK-NEXT:    %1 = graph.view "reshape" %0 : tensor<?x4x8x8xf32, #graph.dims<"s0">> -> tensor<?x8x8xf32, #graph.dims<"4*s0">>
// CHECK-NEXT:    func.return %1

// PLANNING: lowerc: error: pass 'fuse-epilogues' needs static sizes: run bind-sizes first (%q: tensor<2x4x?x16xf32, #graph.dims<"s0">>)
