// RUN: lowerc --model mlp --precision mxfp8 --emit epilogue | filecheck %s
// RUN: lowerc --model mlp --precision mxfp8 --emit kernel | filecheck %s --check-prefix=MXFP8
// `--precision` on a captured model, as options={"precision": ...} would compile it.

// The activation between the GEMMs is quantized in fc1's epilogue as with mxfp8-act.
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

// The full MXFP8 recipe: the activations between GEMMs as mxfp8-act quantizes them,
// and every other GEMM operand (the input x, the weights) quantized as the consuming
// mainloop loads it.
// MXFP8:      kernel.gemm "gemm0_bias_gelu"
// MXFP8:        lowp.quantize %{{.*}} : tensor<8x32xf32> -> !lowp.scaled<tensor<8x32xf8E4M3FN>, mx<32, floor>
// MXFP8:        lowp.quantize %{{.*}} : tensor<64x32xf32> -> !lowp.scaled<tensor<64x32xf8E4M3FN>, mx<32, floor>
// MXFP8:        lowp.store_quantized
// MXFP8:      kernel.gemm "gemm1_bias_silu_residual_relu" (%primals_3, %primals_4, %{{.*}}, %q_codes, %q_scales)
// MXFP8:        %[[A:.*]] = lowp.assemble
// MXFP8-NEXT:   %[[D:.*]] = lowp.dequantize %[[A]]
// MXFP8-NEXT:   lowp.quantize %{{.*}} : tensor<64x64xf32> -> !lowp.scaled<tensor<64x64xf8E4M3FN>, mx<32, floor>
// MXFP8:        epilogue.gemm %[[D]],
