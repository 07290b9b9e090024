// RUN: lowerc %s --split-input-file --verify-diagnostics | filecheck %s
// Regression: epilogue value types compare their element types
// (!epilogue.tile<bf16> != !epilogue.tile<f32>), so these must not verify.



func.func @accumulator_type(%x: tensor<8x32xbf16>, %w: tensor<32x64xbf16>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xbf16>, tensor<32x64xbf16>) -> (tensor<8x64xbf16>) {
  ^bb0(%acc: !epilogue.tile<bf16>):
    epilogue.store %acc : !epilogue.tile<bf16> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid_element_types.mlir:8:3: error: 'epilogue.gemm' accumulator must be !epilogue.tile<f32>, got !epilogue.tile<bf16>

// -----

// The block argument keeps the input's element type.
func.func @input_element_type(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>, %s: tensor<8x1xbf16>) {
  %y = epilogue.gemm %x, %w inputs(%s) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<8x1xbf16>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>, %scale: !epilogue.col<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid_element_types.mlir:20:3: error: 'epilogue.gemm' input 0 of shape [8, 1] over a [8, 64] output must be !epilogue.col<bf16>, block argument is !epilogue.col<f32>
