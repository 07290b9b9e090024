// RUN: lowerc %s --split-input-file --verify-diagnostics | filecheck %s
// Invalid layouts and invalid algebra, reported where they are written.

func.func @compose() {
  %a = layout.constant #layout.cute<(6,2):(8,2)>
  %b = layout.constant #layout.cute<4:5>
  %0 = layout.compose %a, %b
  func.return
}
// CHECK: layout_invalid.mlir:7:3: error: 'layout.compose' cannot compose (6,2):(8,2) with 4:5: stride 5 and mode shape 6 do not divide one another

// -----

func.func @divide() {
  %a = layout.constant #layout.cute<(6,2):(8,2)>
  %t = layout.constant #layout.cute<4:2>
  %0 = layout.divide "logical" %a, %t
  func.return
}
// CHECK: layout_invalid.mlir:17:3: error: 'layout.divide' cannot divide (6,2):(8,2) by 4:2

// -----

func.func @kind() {
  %a = layout.constant #layout.cute<8:1>
  %0 = layout.product "shuffled" %a, %a
  func.return
}
// CHECK: layout_invalid.mlir:26:3: error: 'layout.product' kind must be one of logical, blocked, raked, got "shuffled"

// -----

func.func @complement() {
  %a = layout.constant #layout.cute<(2,2):(1,1)>
  %0 = layout.complement %a cotarget 8
  func.return
}
// CHECK: layout_invalid.mlir:35:3: error: 'layout.complement' complement of (2,2):(1,1): the layout is not injective
