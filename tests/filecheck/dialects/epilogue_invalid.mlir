// RUN: lowerc %s --split-input-file --verify-diagnostics | filecheck %s
// Verifier messages of the epilogue dialect, each with the location of the bad op.
// A bad store points at the store; what only the whole region shows (block
// arguments, a result stored twice or never) points at the epilogue.gemm.

func.func @not_a_matmul(%x: tensor<8x32xf32>, %w: tensor<16x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<16x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:7:3: error: 'epilogue.gemm' operands [8, 32] x [16, 64] are not a (batched) matrix product

// -----

func.func @rank_mismatch(%x: tensor<2x8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<2x8x32xf32>, tensor<32x64xf32>) -> (tensor<2x8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:18:3: error: 'epilogue.gemm' operands [2, 8, 32] x [32, 64] are not a (batched) matrix product

// -----

func.func @batch_mismatch(%x: tensor<2x8x32xf32>, %w: tensor<3x32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<2x8x32xf32>, tensor<3x32x64xf32>) -> (tensor<2x8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:29:3: error: 'epilogue.gemm' operands [2, 8, 32] x [3, 32, 64] are not a (batched) matrix product

// -----

func.func @block_arg_count(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>, %b: tensor<64xf32>) {
  %y = epilogue.gemm %x, %w inputs(%b) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:40:3: error: 'epilogue.gemm' region takes 1 accumulator(s) and 1 input(s), so 2 block arguments, got 1

// -----

func.func @accumulator_kind(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.row<f32>):
    %t = epilogue.map "add"(%acc, %acc) : (!epilogue.row<f32>, !epilogue.row<f32>) -> !epilogue.row<f32>
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:51:3: error: 'epilogue.gemm' accumulator must be !epilogue.tile<f32>, got !epilogue.row<f32>

// -----

// A bias of shape [N] broadcasts as a row, not a column.
func.func @input_kind(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>, %b: tensor<64xf32>) {
  %y = epilogue.gemm %x, %w inputs(%b) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>, %bias: !epilogue.col<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:63:3: error: 'epilogue.gemm' input 0 of shape [64] over a [8, 64] output must be !epilogue.row<f32>, block argument is !epilogue.col<f32>

// -----

// Varying along the batch but not along rows: no epilogue kind fits.
func.func @input_no_kind(%x: tensor<2x8x32xf32>, %w: tensor<2x32x64xf32>, %b: tensor<2x1x64xf32>) {
  %y = epilogue.gemm %x, %w inputs(%b) : (tensor<2x8x32xf32>, tensor<2x32x64xf32>, tensor<2x1x64xf32>) -> (tensor<2x8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>, %bias: !epilogue.row<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:75:3: error: 'epilogue.gemm' input 0 of shape [2, 1, 64] over a [2, 8, 64] output must be a tile, row, col or scalar, block argument is !epilogue.row<f32>

// -----

func.func @result_shape(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<64x8xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:86:3: error: 'epilogue.gemm' result 0 has shape [64, 8], the output tile covers [8, 64]

// -----

func.func @store_missing_result(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
    epilogue.store %acc : !epilogue.tile<f32> -> result 1
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:100:5: error: 'epilogue.store' to result 1, but the gemm has 1 result(s)

// -----

func.func @stored_twice(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y, %z = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %0 = epilogue.map "relu"(%acc) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
    epilogue.store %0 : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:109:3: error: 'epilogue.gemm' result 0 is stored twice

// -----

func.func @never_stored(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y, %z, %u = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 1
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:122:3: error: 'epilogue.gemm' results [0, 2] are never stored

// -----

// A bf16 result needs an explicit epilogue.map "cast" before the store.
func.func @store_needs_cast(%x: tensor<8x32xbf16>, %w: tensor<32x64xbf16>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xbf16>, tensor<32x64xbf16>) -> (tensor<8x64xbf16>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:136:5: error: 'epilogue.store' of !epilogue.tile<f32> to result 0 of element type bf16: insert a cast

// -----

func.func @map_unknown_fn(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %0 = epilogue.map "frobnicate"(%acc) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
    epilogue.store %0 : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:147:5: error: 'epilogue.map' has unknown function "frobnicate"

// -----

func.func @map_arity(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %0 = epilogue.map "where"(%acc, %acc) : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
    epilogue.store %0 : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:159:5: error: 'epilogue.map' "where" takes 3 operand(s), got 2

// -----

// A tile combined with a row is a tile.
func.func @map_result_kind(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>, %b: tensor<64xf32>) {
  %y = epilogue.gemm %x, %w inputs(%b) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>, %bias: !epilogue.row<f32>):
    %0 = epilogue.map "add"(%acc, %bias) : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.row<f32>
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:172:5: error: 'epilogue.map' result must be !epilogue.tile for these operands, got !epilogue.row<f32>

// -----

// A row and a column broadcast against each other to a full tile.
func.func @map_row_col_kind(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>, %b: tensor<64xf32>, %s: tensor<8x1xf32>) {
  %y = epilogue.gemm %x, %w inputs(%b, %s) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>, tensor<8x1xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>, %bias: !epilogue.row<f32>, %scale: !epilogue.col<f32>):
    %0 = epilogue.map "mul"(%bias, %scale) : (!epilogue.row<f32>, !epilogue.col<f32>) -> !epilogue.col<f32>
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:185:5: error: 'epilogue.map' result must be !epilogue.tile for these operands, got !epilogue.col<f32>

// -----

// Scalars stay scalars.
func.func @map_scalar_kind(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %c = epilogue.constant 1.000000e+00 : f32 -> !epilogue.scalar<f32>
    %0 = epilogue.map "exp"(%c) : (!epilogue.scalar<f32>) -> !epilogue.tile<f32>
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:199:5: error: 'epilogue.map' result must be !epilogue.scalar for these operands, got !epilogue.tile<f32>

// -----

func.func @predicate_not_i1(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    %0 = epilogue.map "gt"(%acc, %acc) : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
    epilogue.store %0 : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: error: 'epilogue.map' "gt" must produce i1

// -----

func.func @constant_type(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    %c = epilogue.constant 1.000000e+00 : f16 -> !epilogue.scalar<f32>
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: error: 'epilogue.constant' value type f16 does not match the element type f32

// -----

func.func @scale_changes_type(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>, %s: tensor<64xf32>) {
  %y = epilogue.gemm %x, %w inputs(%s) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>) -> (tensor<8x64xf32>) {
  ^tile(%acc: !epilogue.tile<f32>, %r: !epilogue.row<f32>):
    %0 = epilogue.scale %acc, %r : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<bf16>
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: error: 'epilogue.scale' result type !epilogue.tile<bf16> must be the tile's type !epilogue.tile<f32>

// -----

func.func @store_outside_gemm(%t: !epilogue.tile<f32>) {
  epilogue.store %t : !epilogue.tile<f32> -> result 0
  func.return
}
// CHECK: error: 'epilogue.store' expects parent op 'epilogue.gemm'

// -----

func.func @merged_tiles_differ(%x: tensor<8x32xf32>, %w1: tensor<32x16xf32>, %w2: tensor<32x24xf32>) {
  %y = epilogue.gemm %x, %w1 | %x, %w2 : (tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x32xf32>, tensor<32x24xf32>) -> (tensor<8x16xf32>) {
  ^tile(%a: !epilogue.tile<f32>, %b: !epilogue.tile<f32>):
    epilogue.store %a : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: error: 'epilogue.gemm' products must share the output tile: [8, 32] x [32, 24] gives [8, 24], the first product [8, 16]

// -----

func.func @merged_accumulator_count(%x: tensor<8x32xf32>, %w1: tensor<32x16xf32>, %w2: tensor<32x16xf32>) {
  %y = epilogue.gemm %x, %w1 | %x, %w2 : (tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x32xf32>, tensor<32x16xf32>) -> (tensor<8x16xf32>) {
  ^tile(%a: !epilogue.tile<f32>):
    epilogue.store %a : !epilogue.tile<f32> -> result 0
  }
  func.return
}
// CHECK: error: 'epilogue.gemm' region takes 2 accumulator(s) and 0 input(s), so 2 block arguments, got 1

// -----

func.func @sums_do_not_match_products(%x: tensor<8x32xf32>, %w: tensor<32x16xf32>) {
  %y = "epilogue.gemm"(%x, %w) <{sums = array<i64: 2>, operandSegmentSizes = array<i32: 2, 0>}> ({
  ^tile(%a: !epilogue.tile<f32>):
    epilogue.store %a : !epilogue.tile<f32> -> result 0
  }) : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
  func.return
}
// CHECK: error: 'epilogue.gemm' sums [2] do not describe its 2 product operands (two per product, at least one product per accumulator)

// -----

func.func @partials_of_the_wrong_shape(%x: tensor<4x8xf32>, %w: tensor<8x70xf32>) {
  %p = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x70xf32>) -> (tensor<4x2xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "sum" %acc : !epilogue.tile<f32> -> result 0 columns 32
  }
  func.return
}
// CHECK: error: 'epilogue.gemm' result 0 has shape [4, 2], its partials cover [4, 3]

// -----

func.func @unknown_partial_kind(%x: tensor<4x8xf32>, %w: tensor<8x64xf32>) {
  %p = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x64xf32>) -> (tensor<4x2xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "mean" %acc : !epilogue.tile<f32> -> result 0 columns 32
  }
  func.return
}
// CHECK: error: 'epilogue.reduce' kind must be one of sum, max, sumsq, logsumexp, got "mean"

// -----

func.func @columns_not_a_power_of_two(%x: tensor<4x8xf32>, %w: tensor<8x64xf32>) {
  %p = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x64xf32>) -> (tensor<4x3xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "sum" %acc : !epilogue.tile<f32> -> result 0 columns 24
  }
  func.return
}
// CHECK: error: 'epilogue.reduce' columns must be a power of two, got 24

// -----

func.func @partials_not_f32(%x: tensor<4x8xf32>, %w: tensor<8x64xf32>) {
  %p = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x64xf32>) -> (tensor<4x2xbf16>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "max" %acc : !epilogue.tile<f32> -> result 0 columns 32
  }
  func.return
}
// CHECK: error: 'epilogue.reduce' partials are f32, result 0 is tensor<4x2xbf16>

// -----

func.func @column_partials_of_the_wrong_shape(%x: tensor<70x8xf32>, %w: tensor<8x16xf32>) {
  %p = epilogue.gemm %x, %w : (tensor<70x8xf32>, tensor<8x16xf32>) -> (tensor<70x1xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "sum" %acc : !epilogue.tile<f32> -> result 0 rows 32
  }
  func.return
}
// CHECK: error: 'epilogue.gemm' result 0 has shape [70, 1], its partials cover [3, 16]

// -----

func.func @logsumexp_over_rows(%x: tensor<70x8xf32>, %w: tensor<8x16xf32>) {
  %p = epilogue.gemm %x, %w : (tensor<70x8xf32>, tensor<8x16xf32>) -> (tensor<3x16xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "logsumexp" %acc : !epilogue.tile<f32> -> result 0 rows 32
  }
  func.return
}
// CHECK: error: 'epilogue.reduce' over rows: sum, sumsq or max, got "logsumexp"


// -----

func.func @row_reduce_kind(%x: tensor<4x8xf32>, %w: tensor<8x16xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x1xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %s = epilogue.row_reduce "mean" %acc : !epilogue.tile<f32> -> !epilogue.col<f32>
    epilogue.store %s : !epilogue.col<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:[[# @LINE - 5]]:5: error: 'epilogue.row_reduce' kind must be one of sum, sumsq, max, logsumexp, got "mean"

// -----

func.func @row_reduce_too_wide(%x: tensor<4x8xf32>, %w: tensor<8x300xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x300xf32>) -> (tensor<4x1xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %s = epilogue.row_reduce "sum" %acc : !epilogue.tile<f32> -> !epilogue.col<f32>
    epilogue.store %s : !epilogue.col<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:[[# @LINE - 7]]:3: error: 'epilogue.gemm' reduces whole rows of 300 columns: at most 256 fit one program (reduce wider rows in partials)

// -----

func.func @column_stored_as_tile(%x: tensor<4x8xf32>, %w: tensor<8x16xf32>) {
  %y = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %s = epilogue.row_reduce "sum" %acc : !epilogue.tile<f32> -> !epilogue.col<f32>
    epilogue.store %s : !epilogue.col<f32> -> result 0
  }
  func.return
}
// CHECK: epilogue_invalid.mlir:[[# @LINE - 7]]:3: error: 'epilogue.gemm' result 0 has shape [4, 16], the stored column covers [4, 1]
