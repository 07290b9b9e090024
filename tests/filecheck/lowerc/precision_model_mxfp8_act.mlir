// RUN: lowerc --model mlp --precision mxfp8-act --emit epilogue | filecheck %s
// RUN: lowerc --model mlp --precision mxfp8-act --emit kernel | filecheck %s --check-prefix=KERNEL
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
