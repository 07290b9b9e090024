// RUN: lowerc %s --split-input-file --verify-diagnostics --parsing-diagnostics | filecheck %s
// Invalid lowp types and ops, reported where they are written.

func.func @mx_block_does_not_divide_k(%x: tensor<64x48xf32>) {
  %0 = lowp.quantize %x : tensor<64x48xf32> -> !lowp.scaled<tensor<64x48xf8E4M3FN>, mx<32, floor>, f8E8M0FNU>
  func.return
}
// CHECK: lowp_invalid.mlir:5:61
// CHECK: 'lowp.scaled' mx scaling: block 1x32 does not divide the reduction dim 48 of 64x48

// -----

func.func @block_does_not_divide_rows(%w: tensor<100x256xf32>) {
  %0 = lowp.quantize %w : tensor<100x256xf32> -> !lowp.scaled<tensor<100x256xf8E4M3FN>, block<128x128>, f32>
  func.return
}
// CHECK: lowp_invalid.mlir:14:63
// CHECK: 'lowp.scaled' block scaling: block 128x128 does not divide the rows 100 of 100x256

// -----

func.func @mx_scale_type(%x: tensor<64x64xf32>) {
  %0 = lowp.quantize %x : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf8E4M3FN>, mx<32, floor>, f32>
  func.return
}
// CHECK: lowp_invalid.mlir:23:61
// CHECK: 'lowp.scaled' mx scales are f8E8M0FNU, got f32

// -----

func.func @mx_rule(%x: tensor<64x64xf32>) {
  %0 = lowp.quantize %x : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf8E4M3FN>, mx<32, nearest>, f8E8M0FNU>
  func.return
}
// CHECK: lowp_invalid.mlir:32:61
// CHECK: 'lowp.scaled' mx rule must be floor or rceil, got nearest

// -----

func.func @mx_block_size(%x: tensor<64x64xf32>) {
  %0 = lowp.quantize %x : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf8E4M3FN>, mx<16, floor>, f8E8M0FNU>
  func.return
}
// CHECK: lowp_invalid.mlir:41:61
// CHECK: 'lowp.scaled' mx blocks are 1x32, got 1x16

// -----

func.func @nvfp4_element(%x: tensor<64x64xf32>) {
  %0 = lowp.quantize %x : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf8E4M3FN>, nvfp4, f8E4M3FN>
  func.return
}
// CHECK: lowp_invalid.mlir:50:61
// CHECK: 'lowp.scaled' nvfp4 elements are f4E2M1FN, got f8E4M3FN

// -----

func.func @int_width(%w: tensor<64x64xf32>) {
  %0 = lowp.quantize %w : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xsi9>, row, f32>
  func.return
}
// CHECK: lowp_invalid.mlir:59:61
// CHECK: 'lowp.scaled' integer elements are 1 to 8 bits wide, got si9

// -----

func.func @signless_int(%w: tensor<64x64xf32>) {
  %0 = lowp.quantize %w : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xi4>, row, f32>
  func.return
}
// CHECK: lowp_invalid.mlir:68:61
// CHECK: 'lowp.scaled' row scaling takes fp8 or integer (si/ui 1..8) elements, got i4

// -----

func.func @fp4_rowwise(%w: tensor<64x64xf32>) {
  %0 = lowp.quantize %w : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf4E2M1FN>, tensor, f32>
  func.return
}
// CHECK: lowp_invalid.mlir:77:61
// CHECK: 'lowp.scaled' tensor scaling takes fp8 or integer (si/ui 1..8) elements, got f4E2M1FN

// -----

func.func @granularity(%w: tensor<64x64xf32>) {
  %0 = lowp.quantize %w : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf8E4M3FN>, column, f32>
  func.return
}
// CHECK: lowp_invalid.mlir:86:85
// CHECK: 'lowp.scaled' granularity must be one of tensor, row, block, mx, nvfp4, got column

// -----

func.func @scale_layout_cosize(%x: tensor<64x64xf32>) {
  %0 = lowp.quantize %x : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf8E4M3FN>, mx<32, floor>, f8E8M0FNU, #layout.cute<((32,2),(1,64)):((0,1),(0,4))>>
  func.return
}
// CHECK: lowp_invalid.mlir:95:61
// CHECK: 'lowp.scaled' scale layout ((32,2),(1,64)):((0,1),(0,4)) must map 4096 elements onto 128 scales, it has size 4096 and cosize 254

// -----

func.func @shape_mismatch(%x: tensor<64x32xf32>) {
  %0 = lowp.quantize %x : tensor<64x32xf32> -> !lowp.scaled<tensor<32x64xf8E4M3FN>, row, f32>
  func.return
}
// CHECK: lowp_invalid.mlir:104:3: error: 'lowp.quantize' shapes differ: [64, 32] and [32, 64]

// -----

func.func @dequantize_to_int(%x: tensor<64x32xf32>) {
  %0 = lowp.quantize %x : tensor<64x32xf32> -> !lowp.scaled<tensor<64x32xf8E4M3FN>, row, f32>
  %1 = lowp.dequantize %0 : !lowp.scaled<tensor<64x32xf8E4M3FN>, row, f32> -> tensor<64x32xi32>
  func.return
}
// CHECK: lowp_invalid.mlir:113:3: error: 'lowp.dequantize' high-precision side must be float, got tensor<64x32xi32>

// -----

func.func @store_quantized_scales(%x: tensor<16x32xf32>, %w: tensor<32x64xf32>) {
  %y, %c, %s = epilogue.gemm %x, %w : (tensor<16x32xf32>, tensor<32x64xf32>) -> (tensor<16x64xf32>, tensor<16x64xui8>, tensor<16x2xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
    lowp.store_quantized %acc : !epilogue.tile<f32> -> results(1, 2) as !lowp.scaled<tensor<16x64xf8E4M3FN>, mx<32, floor>, f8E8M0FNU>
  }
  func.return
}
// CHECK: lowp_invalid.mlir:124:5: error: 'lowp.store_quantized' result 2 must be tensor<16x2xui8>, got tensor<16x2xf32>

// -----

func.func @store_quantized_rowwise(%x: tensor<16x32xf32>, %w: tensor<32x64xf32>) {
  %y, %c, %s = epilogue.gemm %x, %w : (tensor<16x32xf32>, tensor<32x64xf32>) -> (tensor<16x64xf32>, tensor<16x64xui8>, tensor<16x1xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
    lowp.store_quantized %acc : !epilogue.tile<f32> -> results(1, 2) as !lowp.scaled<tensor<16x64xf8E4M3FN>, row, f32>
  }
  func.return
}
// CHECK: lowp_invalid.mlir:136:5: error: 'lowp.store_quantized' quantizes blocks within a row (mx, nvfp4, block<1xB>), not row 1x64
