// RUN: lowerc %s | filecheck %s
// RUN: lowerc %s --print-op-generic | lowerc | filecheck %s
// Round trip of graph.attention and graph.attention_backward: causal, masked, grouped-query.

func.func @attention(%q: tensor<2x4x5x32xf32>, %k: tensor<2x2x7x32xf32>, %v: tensor<2x2x7x32xf32>, %m: tensor<2x4x5x7xf32>, %do: tensor<2x4x5x32xf32>) {
  %o, %lse = graph.attention %q, %k, %v causal scale 0.17677669529663687 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
  %o2, %lse2 = graph.attention %q, %k, %v mask %m scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
  %dq, %dk, %dv = graph.attention_backward %do, %q, %k, %v, %o2, %lse2 mask %m causal scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x32xf32>, tensor<2x4x5xf32>, tensor<2x4x5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>)
  func.return
}
// CHECK-LABEL: func.func @attention
// CHECK-NEXT:    %o, %lse = graph.attention %q, %k, %v causal scale 0.17677669529663687 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
// CHECK-NEXT:    %o2, %lse2 = graph.attention %q, %k, %v mask %m scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
// CHECK-NEXT:    %dq, %dk, %dv = graph.attention_backward %do, %q, %k, %v, %o2, %lse2 mask %m causal scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x32xf32>, tensor<2x4x5xf32>, tensor<2x4x5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>)
// CHECK-NEXT:    func.return

// Rotary embeddings inside attention: q and k are read before the rotation.
func.func @rotary(%q: tensor<2x4x8x16xf32>, %k: tensor<2x2x8x16xf32>, %v: tensor<2x2x8x16xf32>, %c: tensor<2x1x8x16xf32>, %s: tensor<2x1x8x16xf32>, %do: tensor<2x4x8x16xf32>) {
  %o, %lse = graph.attention %q, %k, %v rotary %c, %s causal scale 2.500000e-01 : f64 : (tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x1x8x16xf32>, tensor<2x1x8x16xf32>) -> (tensor<2x4x8x16xf32>, tensor<2x4x8xf32>)
  %dq, %dk, %dv = graph.attention_backward %do, %q, %k, %v, %o, %lse rotary %c, %s causal scale 2.500000e-01 : f64 : (tensor<2x4x8x16xf32>, tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x4x8x16xf32>, tensor<2x4x8xf32>, tensor<2x1x8x16xf32>, tensor<2x1x8x16xf32>) -> (tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>)
  func.return
}
// CHECK-LABEL: func.func @rotary
// CHECK-NEXT:    %o, %lse = graph.attention %q, %k, %v rotary %c, %s causal scale 2.500000e-01 : f64 : (tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x1x8x16xf32>, tensor<2x1x8x16xf32>) -> (tensor<2x4x8x16xf32>, tensor<2x4x8xf32>)
// CHECK-NEXT:    %dq, %dk, %dv = graph.attention_backward %do, %q, %k, %v, %o, %lse rotary %c, %s causal scale 2.500000e-01 : f64 : (tensor<2x4x8x16xf32>, tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x4x8x16xf32>, tensor<2x4x8xf32>, tensor<2x1x8x16xf32>, tensor<2x1x8x16xf32>) -> (tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>)

// The rotation itself, and its transpose (the backward); tables broadcast to x.
func.func @rotary_op(%x: tensor<2x4x8x16xf32>, %c: tensor<8x16xf32>, %s: tensor<8x16xf32>) -> tensor<2x4x8x16xf32> {
  %r = graph.rotary %x, %c, %s : (tensor<2x4x8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8x16xf32>
  %t = graph.rotary %r, %c, %s transpose : (tensor<2x4x8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8x16xf32>
  func.return %t : tensor<2x4x8x16xf32>
}
// CHECK-LABEL: func.func @rotary_op
// CHECK-NEXT:    %r = graph.rotary %x, %c, %s : (tensor<2x4x8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8x16xf32>
// CHECK-NEXT:    %t = graph.rotary %r, %c, %s transpose : (tensor<2x4x8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8x16xf32>
