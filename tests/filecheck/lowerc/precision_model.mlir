// RUN: lowerc --model mlp --precision mxfp8-act --emit epilogue | filecheck %s
// RUN: lowerc --model mlp --precision mxfp8-act --emit kernel | filecheck %s --check-prefix=KERNEL
// RUN: lowerc --model mlp --inference --precision w4a16 --emit kernel | filecheck %s --check-prefix=W4
// RUN: lowerc --model mlp --precision mxfp8 --emit epilogue | filecheck %s
// RUN: lowerc --model mlp --precision mxfp8 --emit kernel | filecheck %s --check-prefix=MXFP8
// `--precision` on a captured model, as options={"precision": ...} would compile it.
// The first GEMM's epilogue quantizes gelu(fc1(x)) to MX e4m3 while the tile is on
// chip (codes + E8M0 scales as two more results); fc2 reads it through a dequantize.

// CHECK:      func.func @forward
// CHECK:      epilogue.gemm %primals_2, %{{.*}} inputs(%primals_1)
// CHECK-SAME:   -> (tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xui8>, tensor<8x2xui8>)
// CHECK:        %[[GELU:.*]] = epilogue.map "gelu"
// CHECK:        lowp.store_quantized %[[GELU]] : !epilogue.tile<f32> -> results(2, 3) as !lowp.scaled<tensor<8x64xf8E4M3FN>, mx<32, floor>, f8E8M0FNU
// CHECK:      %[[Q:.*]] = lowp.assemble %q_codes, %q_scales
// CHECK-NEXT: %[[D:.*]] = lowp.dequantize %[[Q]]
// CHECK:      epilogue.gemm %[[D]], %{{.*}} inputs(%primals_4, %{{.*}})
// CHECK:      func.func @backward
// CHECK:      lowp.store_quantized

// After split-blocks the dequantize is part of the consuming kernel: fc2's kernel
// takes the codes and scales fc1's kernel wrote, not a float32 activation.
// KERNEL:      %{{.*}}, %[[H:.*]], %q_codes, %q_scales = kernel.gemm "gemm0_bias_gelu"
// KERNEL:        lowp.store_quantized
// KERNEL:      kernel.gemm "gemm1_bias_silu_residual_relu" (%primals_3, %primals_4, %[[H]], %q_codes, %q_scales)
// KERNEL:        %[[A:.*]] = lowp.assemble
// KERNEL-NEXT:   %[[DQ:.*]] = lowp.dequantize %[[A]]
// KERNEL:        epilogue.gemm %[[DQ]],

// A weight-only policy packs the captured model's parameters (inference only).
// W4:      func.func @inference({{.*}}lowp.weight{{.*}}) {{.*}} {
// W4:      kernel.gemm "gemm0_bias_gelu"
// W4:        lowp.assemble {{.*}} -> !lowp.scaled<tensor<64x32xsi4>, block<1x32>
// W4-NEXT:   lowp.dequantize

// The full MXFP8 recipe: as above for the activations between GEMMs, and every other
// GEMM operand (the input x, the weights) quantized as the consuming mainloop loads it.
// MXFP8:      kernel.gemm "gemm0_bias_gelu"
// MXFP8:        lowp.quantize %{{.*}} : tensor<8x32xf32> -> !lowp.scaled<tensor<8x32xf8E4M3FN>, mx<32, floor>
// MXFP8:        lowp.quantize %{{.*}} : tensor<64x32xf32> -> !lowp.scaled<tensor<64x32xf8E4M3FN>, mx<32, floor>
// MXFP8:        lowp.store_quantized
// MXFP8:      kernel.gemm "gemm1_bias_silu_residual_relu" (%primals_3, %primals_4, %{{.*}}, %q_codes, %q_scales)
// MXFP8:        %[[A:.*]] = lowp.assemble
// MXFP8-NEXT:   %[[D:.*]] = lowp.dequantize %[[A]]
// MXFP8-NEXT:   lowp.quantize %{{.*}} : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf8E4M3FN>, mx<32, floor>
// MXFP8:        epilogue.gemm %[[D]],
