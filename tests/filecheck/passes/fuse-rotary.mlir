// RUN: lowerc %s -p fuse-rotary | filecheck %s

// The forward: q and k rotated by the same [S, D] tables feed attention. The tables
// are viewed as [B, 1, S, D] and the attention reads q and k before the rotation.
// CHECK-LABEL: func.func @forward
func.func @forward(%q: tensor<2x4x8x16xf32>, %k: tensor<2x2x8x16xf32>, %v: tensor<2x2x8x16xf32>, %cos: tensor<8x16xf32>, %sin: tensor<8x16xf32>) -> tensor<2x4x8x16xf32> {
  %qr = graph.rotary %q, %cos, %sin : (tensor<2x4x8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8x16xf32>
  %kr = graph.rotary %k, %cos, %sin : (tensor<2x2x8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<2x2x8x16xf32>
  %o, %lse = graph.attention %qr, %kr, %v causal scale 2.500000e-01 : f64 : (tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>) -> (tensor<2x4x8x16xf32>, tensor<2x4x8xf32>)
  func.return %o : tensor<2x4x8x16xf32>
}
// CHECK-NOT:     graph.rotary
// CHECK:         %[[C4:.*]] = graph.view "reshape" %cos : tensor<8x16xf32> -> tensor<1x1x8x16xf32>
// CHECK-NEXT:    %[[C:.*]] = graph.view "expand" %[[C4]] : tensor<1x1x8x16xf32> -> tensor<2x1x8x16xf32>
// CHECK-NEXT:    %[[S4:.*]] = graph.view "reshape" %sin : tensor<8x16xf32> -> tensor<1x1x8x16xf32>
// CHECK-NEXT:    %[[S:.*]] = graph.view "expand" %[[S4]] : tensor<1x1x8x16xf32> -> tensor<2x1x8x16xf32>
// CHECK-NEXT:    %o, %lse = graph.attention %q, %k, %v rotary %[[C]], %[[S]] causal scale
// CHECK-NOT:     graph.rotary

// The backward: attention_backward of rotated q and k whose dq' and dk' only the
// transposed rotation reads returns the gradients before the rotation itself.
// CHECK-LABEL: func.func @backward
func.func @backward(%do: tensor<1x2x8x16xf32>, %q: tensor<1x2x8x16xf32>, %k: tensor<1x2x8x16xf32>, %v: tensor<1x2x8x16xf32>, %o: tensor<1x2x8x16xf32>, %lse: tensor<1x2x8xf32>, %cos: tensor<1x1x8x16xf32>, %sin: tensor<1x1x8x16xf32>) -> (tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>) {
  %qr = graph.rotary %q, %cos, %sin : (tensor<1x2x8x16xf32>, tensor<1x1x8x16xf32>, tensor<1x1x8x16xf32>) -> tensor<1x2x8x16xf32>
  %kr = graph.rotary %k, %cos, %sin : (tensor<1x2x8x16xf32>, tensor<1x1x8x16xf32>, tensor<1x1x8x16xf32>) -> tensor<1x2x8x16xf32>
  %dqr, %dkr, %dv = graph.attention_backward %do, %qr, %kr, %v, %o, %lse scale 2.500000e-01 : f64 : (tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8xf32>) -> (tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>)
  %dq = graph.rotary %dqr, %cos, %sin transpose : (tensor<1x2x8x16xf32>, tensor<1x1x8x16xf32>, tensor<1x1x8x16xf32>) -> tensor<1x2x8x16xf32>
  %dk = graph.rotary %dkr, %cos, %sin transpose : (tensor<1x2x8x16xf32>, tensor<1x1x8x16xf32>, tensor<1x1x8x16xf32>) -> tensor<1x2x8x16xf32>
  func.return %dq, %dk, %dv : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>
}
// CHECK-NOT:     graph.rotary
// CHECK:         %[[DQ:.*]], %[[DK:.*]], %dv = graph.attention_backward %do, %q, %k, %v, %o, %lse rotary %cos, %sin scale
// CHECK-NEXT:    func.return %[[DQ]], %[[DK]], %dv

// A head dim of 8 is narrower than the kernels' smallest tile (they swap the halves of
// a head on chip): the rotations are expanded into the ops a loop kernel runs, and
// attention reads their results.
// CHECK-LABEL: func.func @narrow_heads
func.func @narrow_heads(%q: tensor<1x2x4x8xf32>, %v: tensor<1x2x4x8xf32>, %cos: tensor<4x8xf32>, %sin: tensor<4x8xf32>) -> tensor<1x2x4x8xf32> {
  %qr = graph.rotary %q, %cos, %sin : (tensor<1x2x4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<1x2x4x8xf32>
  %o, %lse = graph.attention %qr, %qr, %v scale 2.500000e-01 : f64 : (tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>) -> (tensor<1x2x4x8xf32>, tensor<1x2x4xf32>)
  func.return %o : tensor<1x2x4x8xf32>
}
// CHECK:         %[[QC:.*]] = graph.pointwise "mul"(%q, %cos)
// CHECK-NEXT:    %[[LO:.*]] = graph.view "slice" %q slice array<i64: 3, 0, 1> : tensor<1x2x4x8xf32> -> tensor<1x2x4x4xf32>
// CHECK-NEXT:    %[[HI:.*]] = graph.view "slice" %q slice array<i64: 3, 4, 1> : tensor<1x2x4x8xf32> -> tensor<1x2x4x4xf32>
// CHECK-NEXT:    %[[NEG:.*]] = graph.pointwise "neg"(%[[HI]])
// CHECK-NEXT:    %[[ROT:.*]] = graph.concat %[[NEG]], %[[LO]] dim 3
// CHECK-NEXT:    %[[RS:.*]] = graph.pointwise "mul"(%[[ROT]], %sin)
// CHECK-NEXT:    %[[QR:.*]] = graph.pointwise "add"(%[[QC]], %[[RS]])
// CHECK-NEXT:    graph.attention %[[QR]], %[[QR]], %v scale

// The transposed rotation outside attention: x * cos + cat(z_hi, -z_lo), z = x * sin.
// CHECK-LABEL: func.func @transposed
func.func @transposed(%g: tensor<4x8xf32>, %cos: tensor<4x8xf32>, %sin: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %0 = graph.rotary %g, %cos, %sin transpose : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %0 : tensor<4x8xf32>
}
// CHECK:         %[[GC:.*]] = graph.pointwise "mul"(%g, %cos)
// CHECK-NEXT:    %[[Z:.*]] = graph.pointwise "mul"(%g, %sin)
// CHECK-NEXT:    %[[LO:.*]] = graph.view "slice" %[[Z]] slice array<i64: 1, 0, 1>
// CHECK-NEXT:    %[[HI:.*]] = graph.view "slice" %[[Z]] slice array<i64: 1, 4, 1>
// CHECK-NEXT:    %[[NEG:.*]] = graph.pointwise "neg"(%[[LO]])
// CHECK-NEXT:    %[[ROT:.*]] = graph.concat %[[HI]], %[[NEG]] dim 1
// CHECK-NEXT:    %{{.*}} = graph.pointwise "add"(%[[GC]], %[[ROT]])

// dq' has another reader besides the transposed rotation: the backward keeps reading
// q' and k' (expanded rotations) and returns their gradients.
// CHECK-LABEL: func.func @rotated_gradient_read
func.func @rotated_gradient_read(%do: tensor<1x2x8x16xf32>, %q: tensor<1x2x8x16xf32>, %v: tensor<1x2x8x16xf32>, %o: tensor<1x2x8x16xf32>, %lse: tensor<1x2x8xf32>, %cos: tensor<1x1x8x16xf32>, %sin: tensor<1x1x8x16xf32>) -> (tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>) {
  %qr = graph.rotary %q, %cos, %sin : (tensor<1x2x8x16xf32>, tensor<1x1x8x16xf32>, tensor<1x1x8x16xf32>) -> tensor<1x2x8x16xf32>
  %dqr, %dkr, %dv = graph.attention_backward %do, %qr, %qr, %v, %o, %lse scale 2.500000e-01 : f64 : (tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8xf32>) -> (tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>)
  %dq = graph.rotary %dqr, %cos, %sin transpose : (tensor<1x2x8x16xf32>, tensor<1x1x8x16xf32>, tensor<1x1x8x16xf32>) -> tensor<1x2x8x16xf32>
  func.return %dq, %dqr : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>
}
// CHECK:         %[[QR:.*]] = graph.pointwise "add"
// CHECK:         graph.attention_backward %do, %[[QR]], %[[QR]], %v, %o, %lse scale
// CHECK-NOT:     rotary %cos
