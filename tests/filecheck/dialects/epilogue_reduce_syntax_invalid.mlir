// RUN: not lowerc %s 2>&1 | filecheck %s
// A partial reduction names what it groups: `columns` (row statistics) or `rows`
// (column sums); anything else is a located parse error.

func.func @partials_group_neither_rows_nor_columns(%x: tensor<4x8xf32>, %w: tensor<8x64xf32>) {
  %p = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x64xf32>) -> (tensor<4x2xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "sum" %acc : !epilogue.tile<f32> -> result 0 lanes 32
  }
  func.return
}
// CHECK: epilogue_reduce_syntax_invalid.mlir:8:66: error: expected 'columns' or 'rows' (what a partial groups)
// CHECK-NOT: Traceback
