// RUN: not lowerc %s 2>&1 | filecheck %s
// A malformed layout attribute is a located parse error.

func.func @not_congruent() {
  %a = layout.constant #layout.cute<(4,2):(1,2,8)>
  func.return
}
// CHECK: bad_layout.mlir:5:37: error: shape (4,2) and stride (1,2,8) are not congruent
// CHECK-NEXT: %a = layout.constant #layout.cute<(4,2):(1,2,8)>
