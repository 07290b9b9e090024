// RUN: lowerc %s -p fuse-epilogues,split-blocks | filecheck %s

// Attention after projections: q is split into heads from a GEMM result, k/v are one
// projection's halves broadcast over query-head groups (Hugging Face's repeat_kv:
// expand + reshape) and the mask is broadcast from [S, S]. Every view moves into the
// kernel.attention, which reads the tensors in place: no copy kernel, and the q and kv
// projections (one merged kernel) store their results head-major for it.
// CHECK-LABEL: func.func @attention
func.func @attention(%x: tensor<8x64xf32>, %wq: tensor<64x64xf32>, %wkv: tensor<64x64xf32>, %mask: tensor<8x8xf32>) -> tensor<1x4x8x16xf32> {
  %q2 = graph.matmul %x, %wq : (tensor<8x64xf32>, tensor<64x64xf32>) -> tensor<8x64xf32>
  %q3 = graph.view "reshape" %q2 : tensor<8x64xf32> -> tensor<1x8x4x16xf32>
  %q = graph.view "permute" %q3 perm array<i64: 0, 2, 1, 3> : tensor<1x8x4x16xf32> -> tensor<1x4x8x16xf32>
  %kv2 = graph.matmul %x, %wkv : (tensor<8x64xf32>, tensor<64x64xf32>) -> tensor<8x64xf32>
  %kv3 = graph.view "reshape" %kv2 : tensor<8x64xf32> -> tensor<1x8x4x16xf32>
  %kv = graph.view "permute" %kv3 perm array<i64: 0, 2, 1, 3> : tensor<1x8x4x16xf32> -> tensor<1x4x8x16xf32>
  %k1 = graph.view "slice" %kv slice array<i64: 1, 0, 1> : tensor<1x4x8x16xf32> -> tensor<1x2x8x16xf32>
  %k2 = graph.view "reshape" %k1 : tensor<1x2x8x16xf32> -> tensor<1x2x1x8x16xf32>
  %k3 = graph.view "expand" %k2 : tensor<1x2x1x8x16xf32> -> tensor<1x2x2x8x16xf32>
  %k = graph.view "reshape" %k3 : tensor<1x2x2x8x16xf32> -> tensor<1x4x8x16xf32>
  %v1 = graph.view "slice" %kv slice array<i64: 1, 2, 1> : tensor<1x4x8x16xf32> -> tensor<1x2x8x16xf32>
  %v2 = graph.view "reshape" %v1 : tensor<1x2x8x16xf32> -> tensor<1x2x1x8x16xf32>
  %v3 = graph.view "expand" %v2 : tensor<1x2x1x8x16xf32> -> tensor<1x2x2x8x16xf32>
  %v = graph.view "reshape" %v3 : tensor<1x2x2x8x16xf32> -> tensor<1x4x8x16xf32>
  %m1 = graph.view "reshape" %mask : tensor<8x8xf32> -> tensor<1x1x8x8xf32>
  %m = graph.view "expand" %m1 : tensor<1x1x8x8xf32> -> tensor<1x4x8x8xf32>
  %o, %lse = graph.attention %q, %k, %v mask %m scale 2.500000e-01 : f64 : (tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x8xf32>) -> (tensor<1x4x8x16xf32>, tensor<1x4x8xf32>)
  func.return %o : tensor<1x4x8x16xf32>
}
// CHECK-NEXT:    %q, %kv = kernel.gemm "gemm0" (%x, %wq, %wkv) : (tensor<8x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>) -> (tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>)
// CHECK-NOT:     kernel.loop
// CHECK:         %o, %lse = kernel.attention "attn1_mask" (%kv, %mask, %q) : (tensor<1x4x8x16xf32>, tensor<8x8xf32>, tensor<1x4x8x16xf32>) -> (tensor<1x4x8x16xf32>, tensor<1x4x8xf32>) {
// CHECK-NEXT:    ^bb0(%kv_1: tensor<1x4x8x16xf32>, %mask_1: tensor<8x8xf32>, %q_1: tensor<1x4x8x16xf32>):
// CHECK-NEXT:      %k1 = graph.view "slice" %kv_1 slice array<i64: 1, 0, 1>
// CHECK-NEXT:      %k2 = graph.view "reshape" %k1
// CHECK-NEXT:      %k3 = graph.view "expand" %k2 : tensor<1x2x1x8x16xf32> -> tensor<1x2x2x8x16xf32>
// CHECK-NEXT:      %k = graph.view "reshape" %k3 : tensor<1x2x2x8x16xf32> -> tensor<1x4x8x16xf32>
// CHECK-NEXT:      %v1 = graph.view "slice" %kv_1 slice array<i64: 1, 2, 1>
// CHECK-NEXT:      %v2 = graph.view "reshape" %v1
// CHECK-NEXT:      %v3 = graph.view "expand" %v2
// CHECK-NEXT:      %v = graph.view "reshape" %v3
// CHECK-NEXT:      %m1 = graph.view "reshape" %mask_1 : tensor<8x8xf32> -> tensor<1x1x8x8xf32>
// CHECK-NEXT:      %m = graph.view "expand" %m1 : tensor<1x1x8x8xf32> -> tensor<1x4x8x8xf32>
// CHECK-NEXT:      %o_1, %lse_1 = graph.attention %q_1, %k, %v mask %m scale 2.500000e-01 : f64
// CHECK-NEXT:      kernel.yield %o_1, %lse_1 : tensor<1x4x8x16xf32>, tensor<1x4x8xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %o : tensor<1x4x8x16xf32>

// Rotary tables reach the attention kernel through their views ([S, D] broadcast to
// [B, 1, S, D]), read in place; the label says the kernel rotates q and k.
// CHECK-LABEL: func.func @rotary
func.func @rotary(%q: tensor<2x4x8x16xf32>, %k: tensor<2x2x8x16xf32>, %v: tensor<2x2x8x16xf32>, %cos: tensor<8x16xf32>, %sin: tensor<8x16xf32>) -> tensor<2x4x8x16xf32> {
  %c1 = graph.view "reshape" %cos : tensor<8x16xf32> -> tensor<1x1x8x16xf32>
  %c = graph.view "expand" %c1 : tensor<1x1x8x16xf32> -> tensor<2x1x8x16xf32>
  %s1 = graph.view "reshape" %sin : tensor<8x16xf32> -> tensor<1x1x8x16xf32>
  %s = graph.view "expand" %s1 : tensor<1x1x8x16xf32> -> tensor<2x1x8x16xf32>
  %o, %lse = graph.attention %q, %k, %v rotary %c, %s causal scale 2.500000e-01 : f64 : (tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x1x8x16xf32>, tensor<2x1x8x16xf32>) -> (tensor<2x4x8x16xf32>, tensor<2x4x8xf32>)
  func.return %o : tensor<2x4x8x16xf32>
}
// CHECK:         %o, %lse = kernel.attention "attn0_causal_gqa_rotary" (%{{.*}}) : (tensor<{{.*}}) -> (tensor<2x4x8x16xf32>, tensor<2x4x8xf32>) {
// CHECK-NOT:     kernel.loop
// CHECK:           graph.attention %{{.*}}, %{{.*}}, %{{.*}} rotary %c, %s causal scale
