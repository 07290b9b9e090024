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

// CHECK-LABEL: func.func @var_mean
// LayerNorm's var_mean as decomposed by prims: the reshapes after the sums put the
// reduced dim back, so they become keepdim reductions; sum / 64 over 64 elements is
// the mean, which CSE merges with the existing one; * (1/64) is exact, so also a mean.
func.func @var_mean(%x: tensor<2x4x64xf32>) -> (tensor<2x4x1xf32>, tensor<2x4x1xf32>, tensor<2x4x1xf32>) {
  %m = graph.reduce "mean" %x dims array<i64: 2> keepdim : tensor<2x4x64xf32> -> tensor<2x4x1xf32>
  %c = graph.pointwise "sub"(%x, %m) : (tensor<2x4x64xf32>, tensor<2x4x1xf32>) -> tensor<2x4x64xf32>
  %sq = graph.pointwise "square"(%c) : (tensor<2x4x64xf32>) -> tensor<2x4x64xf32>
  %ss = graph.reduce "sum" %sq dims array<i64: 2> : tensor<2x4x64xf32> -> tensor<2x4xf32>
  %inv = graph.constant 1.562500e-02 : f32 -> tensor<f32>
  %var = graph.pointwise "mul"(%ss, %inv) : (tensor<2x4xf32>, tensor<f32>) -> tensor<2x4xf32>
  %var1 = graph.view "reshape" %var : tensor<2x4xf32> -> tensor<2x4x1xf32>
  %s = graph.reduce "sum" %x dims array<i64: 2> : tensor<2x4x64xf32> -> tensor<2x4xf32>
  %s1 = graph.view "reshape" %s : tensor<2x4xf32> -> tensor<2x4x1xf32>
  %n = graph.constant 6.400000e+01 : f32 -> tensor<f32>
  %mean = graph.pointwise "div"(%s1, %n) : (tensor<2x4x1xf32>, tensor<f32>) -> tensor<2x4x1xf32>
  func.return %m, %var1, %mean : tensor<2x4x1xf32>, tensor<2x4x1xf32>, tensor<2x4x1xf32>
}
// CHECK-NEXT:    %m = graph.reduce "mean" %x dims array<i64: 2> keepdim : tensor<2x4x64xf32> -> tensor<2x4x1xf32>
// CHECK-NEXT:    %c = graph.pointwise "sub"(%x, %m)
// CHECK-NEXT:    %sq = graph.pointwise "square"(%c)
// CHECK-NEXT:    %var1 = graph.reduce "mean" %sq dims array<i64: 2> keepdim : tensor<2x4x64xf32> -> tensor<2x4x1xf32>
// CHECK-NEXT:    func.return %m, %var1, %m : tensor<2x4x1xf32>, tensor<2x4x1xf32>, tensor<2x4x1xf32>

// CHECK-LABEL: func.func @not_a_mean
// Dividing by anything but the count, or * 1/N with inexact 1/N, or a reshape that
// does not restore the reduced dim, stays as written.
func.func @not_a_mean(%x: tensor<3x6xf32>) -> (tensor<3xf32>, tensor<3xf32>, tensor<1x3xf32>) {
  %s = graph.reduce "sum" %x dims array<i64: 1> : tensor<3x6xf32> -> tensor<3xf32>
  %five = graph.constant 5.000000e+00 : f32 -> tensor<f32>
  %0 = graph.pointwise "div"(%s, %five) : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>
  %sixth = graph.constant 0.16666667 : f32 -> tensor<f32>
  %1 = graph.pointwise "mul"(%s, %sixth) : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>
  %2 = graph.view "reshape" %s : tensor<3xf32> -> tensor<1x3xf32>
  func.return %0, %1, %2 : tensor<3xf32>, tensor<3xf32>, tensor<1x3xf32>
}
// CHECK:         %0 = graph.pointwise "div"(%s, %five)
// CHECK:         %1 = graph.pointwise "mul"(%s, %sixth)
// CHECK:         %2 = graph.view "reshape" %s : tensor<3xf32> -> tensor<1x3xf32>
// CHECK-NOT:     "mean"

// CHECK-LABEL: func.func @rotate_half
// cat(-x2, x1): the negation moves out of the concat as a sign concat, so the pieces
// are plain slices of %x.
func.func @rotate_half(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %x1 = graph.view "slice" %x slice array<i64: 1, 0, 1> : tensor<2x8xf32> -> tensor<2x4xf32>
  %x2 = graph.view "slice" %x slice array<i64: 1, 4, 1> : tensor<2x8xf32> -> tensor<2x4xf32>
  %n = graph.pointwise "neg"(%x2) : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %r = graph.concat %n, %x1 dim 1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  func.return %r : tensor<2x8xf32>
}
// CHECK-NEXT:    %x1 = graph.view "slice" %x slice array<i64: 1, 0, 1>
// CHECK-NEXT:    %x2 = graph.view "slice" %x slice array<i64: 1, 4, 1>
// CHECK-NEXT:    %[[M:.*]] = graph.constant -1.000000e+00 : f32 -> tensor<2x4xf32>
// CHECK-NEXT:    %[[P:.*]] = graph.constant 1.000000e+00 : f32 -> tensor<2x4xf32>
// CHECK-NEXT:    %[[V:.*]] = graph.concat %x2, %x1 dim 1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:    %[[S:.*]] = graph.concat %[[M]], %[[P]] dim 1
// CHECK-NEXT:    %[[R:.*]] = graph.pointwise "mul"(%[[V]], %[[S]])
// CHECK-NEXT:    func.return %[[R]]

// CHECK-LABEL: func.func @neg_used_twice
// A negation something else also reads stays.
func.func @neg_used_twice(%a: tensor<4xf32>, %b: tensor<4xf32>) -> (tensor<8xf32>, tensor<4xf32>) {
  %n = graph.pointwise "neg"(%a) : (tensor<4xf32>) -> tensor<4xf32>
  %r = graph.concat %n, %b dim 0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<8xf32>
  func.return %r, %n : tensor<8xf32>, tensor<4xf32>
}
// CHECK-NEXT:    %n = graph.pointwise "neg"(%a)
// CHECK-NEXT:    %r = graph.concat %n, %b dim 0

// CHECK-LABEL: func.func @expands
// An expand feeding a pointwise op that broadcasts anyway is dropped; one under a
// pointwise op of expanded values and scalars moves below it, so the division runs on
// one value per row (a norm backward's per-row factor).
func.func @expands(%r: tensor<4x1xf32>, %x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %e = graph.view "expand" %r : tensor<4x1xf32> -> tensor<4x8xf32>
  %c = graph.constant 8.000000e+00 : f32 -> tensor<f32>
  %d = graph.pointwise "div"(%e, %c) : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %m = graph.pointwise "mul"(%d, %x) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %m : tensor<4x8xf32>
}
// CHECK-NEXT:    %c = graph.constant 8.000000e+00
// CHECK-NEXT:    %[[D:.*]] = graph.pointwise "div"(%r, %c) : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
// CHECK-NEXT:    %[[M:.*]] = graph.pointwise "mul"(%[[D]], %x) : (tensor<4x1xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:    func.return %[[M]]

// CHECK-LABEL: func.func @expand_that_sets_the_shape
// The only tensor operand is expanded and the expand is returned too: it stays (its
// input alone would not give the result's shape), the op runs on the small shape.
func.func @expand_that_sets_the_shape(%r: tensor<4x1xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %e = graph.view "expand" %r : tensor<4x1xf32> -> tensor<4x8xf32>
  %n = graph.pointwise "neg"(%e) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %n, %e : tensor<4x8xf32>, tensor<4x8xf32>
}
// CHECK-NEXT:    %e = graph.view "expand" %r
// CHECK-NEXT:    %[[N:.*]] = graph.pointwise "neg"(%r) : (tensor<4x1xf32>) -> tensor<4x1xf32>
// CHECK-NEXT:    %[[E:.*]] = graph.view "expand" %[[N]] : tensor<4x1xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    func.return %[[E]], %e

// CHECK-LABEL: func.func @rotate_half_of_a_product
// rotate-half of dq * sin (RoPE's backward) rearranges dq and sin instead: the
// concatenation then reads tensors that exist, and the table is rearranged in the full
// shape so that the concat iterates like its users.
func.func @rotate_half_of_a_product(%dq: tensor<2x8xf32>, %sin: tensor<8xf32>) -> tensor<2x8xf32> {
  %p = graph.pointwise "mul"(%dq, %sin) : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  %hi = graph.view "slice" %p slice array<i64: 1, 4, 1> : tensor<2x8xf32> -> tensor<2x4xf32>
  %lo = graph.view "slice" %p slice array<i64: 1, 0, 1> : tensor<2x8xf32> -> tensor<2x4xf32>
  %r = graph.concat %hi, %lo dim 1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  func.return %r : tensor<2x8xf32>
}
// CHECK-DAG:     %[[A:.*]] = graph.view "slice" %dq slice array<i64: 1, 4, 1>
// CHECK-DAG:     %[[B:.*]] = graph.view "slice" %dq slice array<i64: 1, 0, 1>
// CHECK-DAG:     %[[D:.*]] = graph.concat %[[A]], %[[B]] dim 1
// CHECK-DAG:     %[[E:.*]] = graph.view "expand" %sin : tensor<8xf32> -> tensor<2x8xf32>
// CHECK-DAG:     %[[S1:.*]] = graph.view "slice" %[[E]] slice array<i64: 1, 4, 1>
// CHECK-DAG:     %[[S2:.*]] = graph.view "slice" %[[E]] slice array<i64: 1, 0, 1>
// CHECK-DAG:     %[[T:.*]] = graph.concat %[[S1]], %[[S2]] dim 1
// CHECK:         %[[R:.*]] = graph.pointwise "mul"(%[[D]], %[[T]])
// CHECK-NEXT:    func.return %[[R]]

// A reduction over size-1 dims is its input (reshaped when the dims are dropped).
// CHECK-LABEL: func.func @reduce_over_unit_dims
func.func @reduce_over_unit_dims(%x: tensor<3x1xf32>) -> (tensor<3x1xf32>, tensor<3xf32>) {
  %m = graph.reduce "amax" %x dims array<i64: 1> keepdim : tensor<3x1xf32> -> tensor<3x1xf32>
  %s = graph.reduce "sum" %m dims array<i64: 1> : tensor<3x1xf32> -> tensor<3xf32>
  func.return %m, %s : tensor<3x1xf32>, tensor<3xf32>
}
// CHECK-NEXT:    %s = graph.view "reshape" %x : tensor<3x1xf32> -> tensor<3xf32>
// CHECK-NEXT:    func.return %x, %s : tensor<3x1xf32>, tensor<3xf32>
