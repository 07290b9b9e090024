// RUN: lowerc %s -p "fuse-epilogues,split-blocks,precision{policy=w3a16}" | filecheck %s
// RUN: lowerc %s -p "fuse-epilogues,split-blocks,precision{policy=nvfp4}" | filecheck %s --check-prefix=NVFP4

// A Linear weight marked {lowp.weight} becomes packed storage appended to the function
// (codes at 3 bits: 64 * 3 / 8 = 24 bytes a row; one f32 scale per 32) and the kernel
// dequantizes it where it read the weight; the f32 argument stays, unread.
// CHECK-LABEL: func.func @linear
// CHECK-SAME: %w: tensor<40x64xf32> {lowp.weight}
// CHECK-SAME: %w_codes: tensor<40x24xui8> {lowp.packs = 1 : i64, lowp.part = "codes", lowp.format = !lowp.scaled<tensor<40x64xsi3>, block<1x32>, f32, #layout.cute<((32,2),(1,40)):((0,1),(0,2))>>}
// CHECK-SAME: %w_scale: tensor<40x2xf32> {lowp.packs = 1 : i64, lowp.part = "scale"
// CHECK-NEXT:  kernel.gemm "gemm0_bias" (%x, %b, %w_codes, %w_scale)
// CHECK-NEXT:  ^bb0(%{{.*}}: tensor<24x64xf32>, %{{.*}}: tensor<40xf32>, %[[C:.*]]: tensor<40x24xui8>, %[[S:.*]]: tensor<40x2xf32>):
// CHECK-NEXT:    %[[Q:.*]] = lowp.assemble %[[C]], %[[S]] : (tensor<40x24xui8>, tensor<40x2xf32>) -> !lowp.scaled<tensor<40x64xsi3>, block<1x32>, f32
// CHECK-NEXT:    %[[W:.*]] = lowp.dequantize %[[Q]] : !lowp.scaled<tensor<40x64xsi3>, block<1x32>, f32, {{.*}}> -> tensor<40x64xf32>
// CHECK-NEXT:    %[[WT:.*]] = graph.view "permute" %[[W]] perm array<i64: 1, 0> : tensor<40x64xf32> -> tensor<64x40xf32>
// CHECK-NEXT:    epilogue.gemm %{{.*}}, %[[WT]] inputs
// NVFP4-LABEL: func.func @linear
// NVFP4-SAME: %w_codes: tensor<40x32xui8> {lowp.packs = 1 : i64, lowp.part = "codes", lowp.format = !lowp.scaled<tensor<40x64xf4E2M1FN>, nvfp4, f8E4M3FN
// NVFP4-SAME: %w_scale: tensor<40x4xui8>
// NVFP4-SAME: %w_gscale: tensor<1xf32>
// NVFP4: lowp.assemble %{{.*}}, %{{.*}}, %{{.*}} : (tensor<40x32xui8>, tensor<40x4xui8>, tensor<1xf32>) -> !lowp.scaled<tensor<40x64xf4E2M1FN>, nvfp4, f8E4M3FN
func.func @linear(%x: tensor<24x64xf32>, %w: tensor<40x64xf32> {lowp.weight}, %b: tensor<40xf32>) -> tensor<24x40xf32> {
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<40x64xf32> -> tensor<64x40xf32>
  %0 = graph.matmul %x, %wt : (tensor<24x64xf32>, tensor<64x40xf32>) -> tensor<24x40xf32>
  %1 = graph.pointwise "add"(%0, %b) : (tensor<24x40xf32>, tensor<40xf32>) -> tensor<24x40xf32>
  func.return %1 : tensor<24x40xf32>
}

// Left in full precision: an unmarked weight, a weight something else reads too (here
// as the left operand of a second GEMM), and one whose K is not a multiple of the group.
// CHECK-LABEL: func.func @kept
// CHECK-SAME: (%x: tensor<8x64xf32>, %u: tensor<16x64xf32>, %v: tensor<16x64xf32> {lowp.weight}, %y: tensor<8x48xf32>, %k: tensor<16x48xf32> {lowp.weight}, %z: tensor<64x4xf32>)
// CHECK-NOT: lowp.
// CHECK: func.return
func.func @kept(%x: tensor<8x64xf32>, %u: tensor<16x64xf32>, %v: tensor<16x64xf32> {lowp.weight}, %y: tensor<8x48xf32>, %k: tensor<16x48xf32> {lowp.weight}, %z: tensor<64x4xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>, tensor<16x4xf32>, tensor<8x16xf32>) {
  %ut = graph.view "permute" %u perm array<i64: 1, 0> : tensor<16x64xf32> -> tensor<64x16xf32>
  %0 = graph.matmul %x, %ut : (tensor<8x64xf32>, tensor<64x16xf32>) -> tensor<8x16xf32>
  %vt = graph.view "permute" %v perm array<i64: 1, 0> : tensor<16x64xf32> -> tensor<64x16xf32>
  %1 = graph.matmul %x, %vt : (tensor<8x64xf32>, tensor<64x16xf32>) -> tensor<8x16xf32>
  %2 = graph.matmul %v, %z : (tensor<16x64xf32>, tensor<64x4xf32>) -> tensor<16x4xf32>
  %kt = graph.view "permute" %k perm array<i64: 1, 0> : tensor<16x48xf32> -> tensor<48x16xf32>
  %3 = graph.matmul %y, %kt : (tensor<8x48xf32>, tensor<48x16xf32>) -> tensor<8x16xf32>
  func.return %0, %1, %2, %3 : tensor<8x16xf32>, tensor<8x16xf32>, tensor<16x4xf32>, tensor<8x16xf32>
}
