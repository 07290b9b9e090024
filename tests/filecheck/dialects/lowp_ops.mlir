// RUN: lowerc %s | filecheck %s
// RUN: lowerc %s --print-op-generic | lowerc | filecheck %s
// Round trip of the lowp dialect: every granularity, element format and scale layout.

func.func @formats(%x: tensor<64x256xf32>, %w: tensor<128x256xf32>) {
  // CHECK: %0 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf8E4M3FN>, tensor, f32, #layout.cute<((256,1),(64,1)):((0,1),(0,1))>>
  %0 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf8E4M3FN>, tensor, f32>
  // CHECK-NEXT: %1 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf8E5M2>, row, f32, #layout.cute<((256,1),(1,64)):((0,1),(0,1))>>
  %1 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf8E5M2>, row, f32>
  // CHECK-NEXT: %2 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf8E4M3FN>, block<1x128>, f32, #layout.cute<((128,2),(1,64)):((0,1),(0,2))>>
  %2 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf8E4M3FN>, block<1x128>, f32>
  // CHECK-NEXT: %3 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xf8E4M3FN>, block<128x128>, f32, #layout.cute<((128,2),(128,1)):((0,1),(0,2))>>
  %3 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xf8E4M3FN>, block<128x128>, f32>
  // CHECK-NEXT: %4 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf8E4M3FN>, mx<32, floor>, f8E8M0FNU, #layout.cute<((32,8),(1,64)):((0,1),(0,8))>>
  %4 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf8E4M3FN>, mx<32, floor>, f8E8M0FNU>
  // CHECK-NEXT: %5 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf6E3M2FN>, mx<32, rceil>, f8E8M0FNU, {{.*}}>
  %5 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf6E3M2FN>, mx<32, rceil>, f8E8M0FNU>
  // CHECK-NEXT: %6 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf6E2M3FN>, mx<32, floor>, f8E8M0FNU, {{.*}}>
  %6 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf6E2M3FN>, mx<32, floor>, f8E8M0FNU>
  // CHECK-NEXT: %7 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf4E2M1FN>, mx<32, floor>, f8E8M0FNU, {{.*}}>
  %7 = lowp.quantize %x : tensor<64x256xf32> -> !lowp.scaled<tensor<64x256xf4E2M1FN>, mx<32, floor>, f8E8M0FNU>
  // CHECK-NEXT: %8 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xf4E2M1FN>, nvfp4, f8E4M3FN, #layout.cute<((16,16),(1,128)):((0,1),(0,16))>>
  %8 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xf4E2M1FN>, nvfp4, f8E4M3FN>
  // any width 1..8, signed or unsigned, grouped along K
  // CHECK-NEXT: %9 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xsi3>, block<1x32>, f32, {{.*}}>
  %9 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xsi3>, block<1x32>, f32>
  // CHECK-NEXT: %10 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xsi4>, block<1x128>, bf16, {{.*}}>
  %10 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xsi4>, block<1x128>, bf16>
  // CHECK-NEXT: %11 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xui1>, row, f16, {{.*}}>
  %11 = lowp.quantize %w : tensor<128x256xf32> -> !lowp.scaled<tensor<128x256xui1>, row, f16>
  // CHECK-NEXT: %12 = lowp.dequantize %4 : !lowp.scaled<tensor<64x256xf8E4M3FN>, mx<32, floor>, f8E8M0FNU, {{.*}}> -> tensor<64x256xf32>
  %12 = lowp.dequantize %4 : !lowp.scaled<tensor<64x256xf8E4M3FN>, mx<32, floor>, f8E8M0FNU> -> tensor<64x256xf32>
  // CHECK-NEXT: %13 = lowp.dequantize %9 : {{.*}} -> tensor<128x256xbf16>
  %13 = lowp.dequantize %9 : !lowp.scaled<tensor<128x256xsi3>, block<1x32>, f32> -> tensor<128x256xbf16>
  func.return
}

// A scale layout other than row-major: the tensor-core 128x4 swizzle of MX scales
// (an affine layout of size M*K and cosize M*K/32) is kept as written.
func.func @swizzled(%x: tensor<128x128xf32>) {
  // CHECK: lowp.quantize %x : tensor<128x128xf32> -> !lowp.scaled<tensor<128x128xf8E4M3FN>, mx<32, floor>, f8E8M0FNU, #layout.cute<((32,4),(32,4)):((0,1),(16,4))>>
  %0 = lowp.quantize %x : tensor<128x128xf32> -> !lowp.scaled<tensor<128x128xf8E4M3FN>, mx<32, floor>, f8E8M0FNU, #layout.cute<((32,4),(32,4)):((0,1),(16,4))>>
  func.return
}

// Quantize in the epilogue: the tile's codes and MX scales go to results 1 and 2.
// CHECK-LABEL: func.func @epilogue_quantize
// CHECK: lowp.store_quantized %{{.*}} : !epilogue.tile<f32> -> results(1, 2) as !lowp.scaled<tensor<16x64xf8E4M3FN>, mx<32, floor>, f8E8M0FNU, #layout.cute<((32,2),(1,16)):((0,1),(0,2))>>
func.func @epilogue_quantize(%x: tensor<16x32xf32>, %w: tensor<32x64xf32>) {
  %y, %c, %s = epilogue.gemm %x, %w : (tensor<16x32xf32>, tensor<32x64xf32>) -> (tensor<16x64xf32>, tensor<16x64xui8>, tensor<16x2xui8>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
    lowp.store_quantized %acc : !epilogue.tile<f32> -> results(1, 2) as !lowp.scaled<tensor<16x64xf8E4M3FN>, mx<32, floor>, f8E8M0FNU>
  }
  func.return
}
