// RUN: lowerc %s -p 'bind-sizes{sizes="s0=5"}' | filecheck %s
// RUN: lowerc %s -p bind-sizes | filecheck %s --check-prefix=TRACED
// RUN: lowerc %s --emit kernel | filecheck %s --check-prefix=PIPELINE
// bind-sizes substitutes one call's sizes into every type (arguments, results, the
// signature) and drops the traced sizes; without `sizes` it binds those. The default
// pipeline starts with it, so a symbolic graph lowers at the sizes it was traced at.

func.func @block(%x: tensor<2x?x32xf32, #graph.dims<"s0">>, %w: tensor<64x32xf32>) -> tensor<?x64xf32, #graph.dims<"2*s0">> attributes {graph.size_hints = {s0 = 12 : i64}} {
  %flat = graph.view "reshape" %x : tensor<2x?x32xf32, #graph.dims<"s0">> -> tensor<?x32xf32, #graph.dims<"2*s0">>
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xf32> -> tensor<32x64xf32>
  %h = graph.matmul %flat, %wt : (tensor<?x32xf32, #graph.dims<"2*s0">>, tensor<32x64xf32>) -> tensor<?x64xf32, #graph.dims<"2*s0">>
  %g = graph.pointwise "gelu"(%h) : (tensor<?x64xf32, #graph.dims<"2*s0">>) -> tensor<?x64xf32, #graph.dims<"2*s0">>
  func.return %g : tensor<?x64xf32, #graph.dims<"2*s0">>
}

// CHECK:      func.func @block(%x: tensor<2x5x32xf32>, %w: tensor<64x32xf32>) -> tensor<10x64xf32> {
// CHECK-NEXT:   %flat = graph.view "reshape" %x : tensor<2x5x32xf32> -> tensor<10x32xf32>
// CHECK-NEXT:   %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xf32> -> tensor<32x64xf32>
// CHECK-NEXT:   %h = graph.matmul %flat, %wt : (tensor<10x32xf32>, tensor<32x64xf32>) -> tensor<10x64xf32>
// CHECK-NEXT:   %g = graph.pointwise "gelu"(%h) : (tensor<10x64xf32>) -> tensor<10x64xf32>
// CHECK-NEXT:   func.return %g : tensor<10x64xf32>

// TRACED:     func.func @block(%x: tensor<2x12x32xf32>, %w: tensor<64x32xf32>) -> tensor<24x64xf32> {
// TRACED-NOT: graph.size_hints

// A size used as a value (a mean over a symbolic dim divides by it) becomes a constant.
func.func @mean(%x: tensor<?x8xf32, #graph.dims<"s0">>) -> tensor<8xf32> attributes {graph.size_hints = {s0 = 3 : i64}} {
  %sum = graph.reduce "sum" %x dims array<i64: 0> : tensor<?x8xf32, #graph.dims<"s0">> -> tensor<8xf32>
  %n = graph.size "s0 - 1" -> tensor<f32>
  %var = graph.pointwise "div"(%sum, %n) : (tensor<8xf32>, tensor<f32>) -> tensor<8xf32>
  func.return %var : tensor<8xf32>
}

// CHECK-LABEL: func.func @mean(%x: tensor<5x8xf32>) -> tensor<8xf32> {
// CHECK-NEXT:    %sum = graph.reduce "sum" %x dims array<i64: 0> : tensor<5x8xf32> -> tensor<8xf32>
// CHECK-NEXT:    %n = graph.constant 4.000000e+00 : f32 -> tensor<f32>
// CHECK-NEXT:    %var = graph.pointwise "div"(%sum, %n) : (tensor<8xf32>, tensor<f32>) -> tensor<8xf32>

// PIPELINE:   func.func @block(%x: tensor<2x12x32xf32>, %w: tensor<64x32xf32>) -> tensor<24x64xf32> {
// PIPELINE:   kernel.gemm "gemm0_gelu" (%x, %w) : (tensor<2x12x32xf32>, tensor<64x32xf32>) -> (tensor<24x64xf32>)
