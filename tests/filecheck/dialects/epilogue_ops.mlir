// RUN: lowerc %s | filecheck %s
// RUN: lowerc %s --print-op-generic | lowerc | filecheck %s
// Round trip: the custom syntax prints back as written, also through generic form.

// Bias (row), constant, scalar scale, residual accumulate, two stores out of order.
func.func @bias_residual(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>, %b: tensor<64xf32>, %r: tensor<8x64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
  %y, %z = epilogue.gemm %x, %w inputs(%b, %r) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>, tensor<8x64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
  ^tile(%acc: !epilogue.tile<f32>, %bias: !epilogue.row<f32>, %res: !epilogue.tile<f32>):
    %pre = epilogue.map "add"(%acc, %bias) : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
    %act = epilogue.map "gelu"(%pre) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
    %c = epilogue.constant 2.000000e+00 : f32 -> !epilogue.scalar<f32>
    %s = epilogue.scale %act, %c : (!epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<f32>
    %out = epilogue.accumulate %s, %res : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
    epilogue.store %pre : !epilogue.tile<f32> -> result 1
    epilogue.store %out : !epilogue.tile<f32> -> result 0
  }
  func.return %y, %z : tensor<8x64xf32>, tensor<8x64xf32>
}

// CHECK-LABEL: func.func @bias_residual
// CHECK-NEXT:    %y, %z = epilogue.gemm %x, %w inputs(%b, %r) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<64xf32>, tensor<8x64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
// CHECK-NEXT:    ^tile(%acc: !epilogue.tile<f32>, %bias: !epilogue.row<f32>, %res: !epilogue.tile<f32>):
// CHECK-NEXT:      %pre = epilogue.map "add"(%acc, %bias) : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %act = epilogue.map "gelu"(%pre) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %c = epilogue.constant 2.000000e+00 : f32 -> !epilogue.scalar<f32>
// CHECK-NEXT:      %s = epilogue.scale %act, %c : (!epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %out = epilogue.accumulate %s, %res : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      epilogue.store %pre : !epilogue.tile<f32> -> result 1
// CHECK-NEXT:      epilogue.store %out : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y, %z : tensor<8x64xf32>, tensor<8x64xf32>
// CHECK-NEXT:  }

// Scale by a row ([1, N]), a column ([M, 1]) and scalars ([] and all-ones).
func.func @scales(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>, %row: tensor<1x64xf32>, %col: tensor<8x1xf32>, %s0: tensor<f32>, %s1: tensor<1x1xf32>) -> tensor<8x64xf32> {
  %y = epilogue.gemm %x, %w inputs(%row, %col, %s0, %s1) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<1x64xf32>, tensor<8x1xf32>, tensor<f32>, tensor<1x1xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>, %r: !epilogue.row<f32>, %c: !epilogue.col<f32>, %a: !epilogue.scalar<f32>, %b: !epilogue.scalar<f32>):
    %0 = epilogue.scale %acc, %r : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
    %1 = epilogue.scale %0, %c : (!epilogue.tile<f32>, !epilogue.col<f32>) -> !epilogue.tile<f32>
    %2 = epilogue.scale %1, %a : (!epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<f32>
    %ab = epilogue.map "mul"(%a, %b) : (!epilogue.scalar<f32>, !epilogue.scalar<f32>) -> !epilogue.scalar<f32>
    %rc = epilogue.map "add"(%r, %c) : (!epilogue.row<f32>, !epilogue.col<f32>) -> !epilogue.tile<f32>
    %3 = epilogue.scale %2, %ab : (!epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<f32>
    %4 = epilogue.accumulate %3, %rc : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
    epilogue.store %4 : !epilogue.tile<f32> -> result 0
  }
  func.return %y : tensor<8x64xf32>
}

// CHECK-LABEL: func.func @scales
// CHECK-NEXT:    %y = epilogue.gemm %x, %w inputs(%row, %col, %s0, %s1) : (tensor<8x32xf32>, tensor<32x64xf32>, tensor<1x64xf32>, tensor<8x1xf32>, tensor<f32>, tensor<1x1xf32>) -> (tensor<8x64xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %r: !epilogue.row<f32>, %c: !epilogue.col<f32>, %a: !epilogue.scalar<f32>, %b: !epilogue.scalar<f32>):
// CHECK-NEXT:      %0 = epilogue.scale %acc, %r : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %1 = epilogue.scale %0, %c : (!epilogue.tile<f32>, !epilogue.col<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %2 = epilogue.scale %1, %a : (!epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %ab = epilogue.map "mul"(%a, %b) : (!epilogue.scalar<f32>, !epilogue.scalar<f32>) -> !epilogue.scalar<f32>
// CHECK-NEXT:      %rc = epilogue.map "add"(%r, %c) : (!epilogue.row<f32>, !epilogue.col<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %3 = epilogue.scale %2, %ab : (!epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %4 = epilogue.accumulate %3, %rc : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      epilogue.store %4 : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y : tensor<8x64xf32>
// CHECK-NEXT:  }

// A predicate (an i1 tile) selecting with `where`: a ReLU.
func.func @predicate(%x: tensor<8x32xf32>, %w: tensor<32x64xf32>) -> tensor<8x64xf32> {
  %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %zero = epilogue.constant 0.000000e+00 : f32 -> !epilogue.scalar<f32>
    %pos = epilogue.map "gt"(%acc, %zero) : (!epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<i1>
    %relu = epilogue.map "where"(%pos, %acc, %zero) : (!epilogue.tile<i1>, !epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<f32>
    epilogue.store %relu : !epilogue.tile<f32> -> result 0
  }
  func.return %y : tensor<8x64xf32>
}

// CHECK-LABEL: func.func @predicate
// CHECK-NEXT:    %y = epilogue.gemm %x, %w : (tensor<8x32xf32>, tensor<32x64xf32>) -> (tensor<8x64xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>):
// CHECK-NEXT:      %zero = epilogue.constant 0.000000e+00 : f32 -> !epilogue.scalar<f32>
// CHECK-NEXT:      %pos = epilogue.map "gt"(%acc, %zero) : (!epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<i1>
// CHECK-NEXT:      %relu = epilogue.map "where"(%pos, %acc, %zero) : (!epilogue.tile<i1>, !epilogue.tile<f32>, !epilogue.scalar<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      epilogue.store %relu : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y : tensor<8x64xf32>
// CHECK-NEXT:  }

// bf16 operands and result: the f32 accumulator is cast before the store; a second
// result keeps f32.
func.func @cast_bf16(%x: tensor<8x32xbf16>, %w: tensor<32x64xbf16>) -> (tensor<8x64xbf16>, tensor<8x64xf32>) {
  %y, %f = epilogue.gemm %x, %w : (tensor<8x32xbf16>, tensor<32x64xbf16>) -> (tensor<8x64xbf16>, tensor<8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    %h = epilogue.map "cast"(%acc) : (!epilogue.tile<f32>) -> !epilogue.tile<bf16>
    epilogue.store %h : !epilogue.tile<bf16> -> result 0
    epilogue.store %acc : !epilogue.tile<f32> -> result 1
  }
  func.return %y, %f : tensor<8x64xbf16>, tensor<8x64xf32>
}

// CHECK-LABEL: func.func @cast_bf16
// CHECK-NEXT:    %y, %f = epilogue.gemm %x, %w : (tensor<8x32xbf16>, tensor<32x64xbf16>) -> (tensor<8x64xbf16>, tensor<8x64xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>):
// CHECK-NEXT:      %h = epilogue.map "cast"(%acc) : (!epilogue.tile<f32>) -> !epilogue.tile<bf16>
// CHECK-NEXT:      epilogue.store %h : !epilogue.tile<bf16> -> result 0
// CHECK-NEXT:      epilogue.store %acc : !epilogue.tile<f32> -> result 1
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y, %f : tensor<8x64xbf16>, tensor<8x64xf32>
// CHECK-NEXT:  }

// Batched: the rhs has batch 1 and broadcasts; inputs are a full tile, a row and a
// column shared by every batch.
func.func @batched(%x: tensor<2x8x32xf32>, %w: tensor<1x32x64xf32>, %t: tensor<2x8x64xf32>, %row: tensor<1x1x64xf32>, %col: tensor<8x1xf32>) -> tensor<2x8x64xf32> {
  %y = epilogue.gemm %x, %w inputs(%t, %row, %col) : (tensor<2x8x32xf32>, tensor<1x32x64xf32>, tensor<2x8x64xf32>, tensor<1x1x64xf32>, tensor<8x1xf32>) -> (tensor<2x8x64xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>, %a: !epilogue.tile<f32>, %r: !epilogue.row<f32>, %c: !epilogue.col<f32>):
    %0 = epilogue.map "silu_backward"(%acc, %a) : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
    %1 = epilogue.map "sub"(%0, %r) : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
    %2 = epilogue.scale %1, %c : (!epilogue.tile<f32>, !epilogue.col<f32>) -> !epilogue.tile<f32>
    epilogue.store %2 : !epilogue.tile<f32> -> result 0
  }
  func.return %y : tensor<2x8x64xf32>
}

// CHECK-LABEL: func.func @batched
// CHECK-NEXT:    %y = epilogue.gemm %x, %w inputs(%t, %row, %col) : (tensor<2x8x32xf32>, tensor<1x32x64xf32>, tensor<2x8x64xf32>, tensor<1x1x64xf32>, tensor<8x1xf32>) -> (tensor<2x8x64xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>, %a: !epilogue.tile<f32>, %r: !epilogue.row<f32>, %c: !epilogue.col<f32>):
// CHECK-NEXT:      %0 = epilogue.map "silu_backward"(%acc, %a) : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %1 = epilogue.map "sub"(%0, %r) : (!epilogue.tile<f32>, !epilogue.row<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      %2 = epilogue.scale %1, %c : (!epilogue.tile<f32>, !epilogue.col<f32>) -> !epilogue.tile<f32>
// CHECK-NEXT:      epilogue.store %2 : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y : tensor<2x8x64xf32>
// CHECK-NEXT:  }

// No extra inputs: the accumulator is stored as is.
func.func @plain(%x: tensor<4x8xf32>, %w: tensor<8x16xf32>) -> tensor<4x16xf32> {
  %y = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>) {
  ^bb0(%acc: !epilogue.tile<f32>):
    epilogue.store %acc : !epilogue.tile<f32> -> result 0
  }
  func.return %y : tensor<4x16xf32>
}

// CHECK-LABEL: func.func @plain
// CHECK-NEXT:    %y = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x16xf32>) -> (tensor<4x16xf32>) {
// CHECK-NEXT:    ^bb0(%acc: !epilogue.tile<f32>):
// CHECK-NEXT:      epilogue.store %acc : !epilogue.tile<f32> -> result 0
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %y : tensor<4x16xf32>
// CHECK-NEXT:  }

// Horizontally merged GEMMs: two accumulators (`|`), the second summing two products
// over different K (`+`).
func.func @merged(%x: tensor<8x32xf32>, %wg: tensor<32x16xf32>, %wu: tensor<32x16xf32>, %d: tensor<8x24xf32>, %wd: tensor<24x16xf32>) -> (tensor<8x16xf32>) {
  %h = epilogue.gemm %x, %wg | %x, %wu + %d, %wd : (tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x24xf32>, tensor<24x16xf32>) -> (tensor<8x16xf32>) {
  ^tile(%gate: !epilogue.tile<f32>, %up: !epilogue.tile<f32>):
    %s = epilogue.map "silu"(%gate) : (!epilogue.tile<f32>) -> !epilogue.tile<f32>
    %p = epilogue.map "mul"(%s, %up) : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
    epilogue.store %p : !epilogue.tile<f32> -> result 0
  }
  func.return %h : tensor<8x16xf32>
}

// CHECK-LABEL: func.func @merged
// CHECK-NEXT:    %h = epilogue.gemm %x, %wg | %x, %wu + %d, %wd : (tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x32xf32>, tensor<32x16xf32>, tensor<8x24xf32>, tensor<24x16xf32>) -> (tensor<8x16xf32>) {
// CHECK-NEXT:    ^tile(%gate: !epilogue.tile<f32>, %up: !epilogue.tile<f32>):

// Partial row reductions: each writes [M, ceil(N / columns)] partials, here 70 / 32 -> 3.
func.func @partials(%x: tensor<4x8xf32>, %w: tensor<8x70xf32>) -> (tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x70xf32>) {
  %s, %l, %y = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x70xf32>) -> (tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x70xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "sumsq" %acc : !epilogue.tile<f32> -> result 0 columns 32
    epilogue.reduce "logsumexp" %acc : !epilogue.tile<f32> -> result 1 columns 32
    epilogue.store %acc : !epilogue.tile<f32> -> result 2
  }
  func.return %s, %l, %y : tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x70xf32>
}

// CHECK-LABEL: func.func @partials
// CHECK-NEXT:    %s, %l, %y = epilogue.gemm %x, %w : (tensor<4x8xf32>, tensor<8x70xf32>) -> (tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x70xf32>) {
// CHECK-NEXT:    ^tile(%acc: !epilogue.tile<f32>):
// CHECK-NEXT:      epilogue.reduce "sumsq" %acc : !epilogue.tile<f32> -> result 0 columns 32
// CHECK-NEXT:      epilogue.reduce "logsumexp" %acc : !epilogue.tile<f32> -> result 1 columns 32
// CHECK-NEXT:      epilogue.store %acc : !epilogue.tile<f32> -> result 2
// CHECK-NEXT:    }

// Column partials (a bias or norm-weight gradient): each column reduced over groups of
// 32 rows, [ceil(M / rows), N] partials, here 70 / 32 -> 3.
func.func @column_partials(%x: tensor<70x8xf32>, %w: tensor<8x16xf32>) -> tensor<3x16xf32> {
  %s = epilogue.gemm %x, %w : (tensor<70x8xf32>, tensor<8x16xf32>) -> (tensor<3x16xf32>) {
  ^tile(%acc: !epilogue.tile<f32>):
    epilogue.reduce "sum" %acc : !epilogue.tile<f32> -> result 0 rows 32
  }
  func.return %s : tensor<3x16xf32>
}

// CHECK-LABEL: func.func @column_partials
// CHECK:           epilogue.reduce "sum" %acc : !epilogue.tile<f32> -> result 0 rows 32

// Whole-row statistics: RMSNorm of a residual stream, the output 48 columns wide (one
// program holds whole rows). rstd is a column, stored as a [M, 1] result.
func.func @row_reduce(%x: tensor<4x8xf32>, %w: tensor<8x48xf32>, %r: tensor<4x48xf32>) -> (tensor<4x48xf32>, tensor<4x1xf32>) {
  %h, %rstd = epilogue.gemm %x, %w inputs(%r) : (tensor<4x8xf32>, tensor<8x48xf32>, tensor<4x48xf32>) -> (tensor<4x48xf32>, tensor<4x1xf32>) {
  ^tile(%acc: !epilogue.tile<f32>, %res: !epilogue.tile<f32>):
    %0 = epilogue.accumulate %acc, %res : (!epilogue.tile<f32>, !epilogue.tile<f32>) -> !epilogue.tile<f32>
    %1 = epilogue.row_reduce "sumsq" %0 : !epilogue.tile<f32> -> !epilogue.col<f32>
    %2 = epilogue.row_reduce "max" %0 : !epilogue.tile<f32> -> !epilogue.col<f32>
    %n = epilogue.constant 4.800000e+01 : f32 -> !epilogue.scalar<f32>
    %3 = epilogue.map "div"(%1, %n) : (!epilogue.col<f32>, !epilogue.scalar<f32>) -> !epilogue.col<f32>
    %4 = epilogue.map "rsqrt"(%3) : (!epilogue.col<f32>) -> !epilogue.col<f32>
    epilogue.store %0 : !epilogue.tile<f32> -> result 0
    epilogue.store %4 : !epilogue.col<f32> -> result 1
  }
  func.return %h, %rstd : tensor<4x48xf32>, tensor<4x1xf32>
}

// CHECK-LABEL: func.func @row_reduce
// CHECK:           %1 = epilogue.row_reduce "sumsq" %0 : !epilogue.tile<f32> -> !epilogue.col<f32>
// CHECK-NEXT:      %2 = epilogue.row_reduce "max" %0 : !epilogue.tile<f32> -> !epilogue.col<f32>
// CHECK:           epilogue.store %4 : !epilogue.col<f32> -> result 1
