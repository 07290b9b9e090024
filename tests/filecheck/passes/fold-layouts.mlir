// RUN: lowerc %s -p fold-layouts | filecheck %s
// Values are the worked examples of the CuTe documentation.

// CHECK-LABEL: func.func @compose
func.func @compose() -> !layout.layout {
  %a = layout.constant #layout.cute<(6,2):(8,2)>
  %b = layout.constant #layout.cute<(4,3):(3,1)>
  %0 = layout.compose %a, %b
  func.return %0 : !layout.layout
}
// CHECK-NEXT:    %0 = layout.constant #layout.cute<((2,2),3):((24,2),8)>
// CHECK-NEXT:    func.return %0

// CHECK-LABEL: func.func @divide_and_product
func.func @divide_and_product() -> (!layout.layout, !layout.layout, !layout.layout) {
  %a = layout.constant #layout.cute<(4,2,3):(2,1,8)>
  %t = layout.constant #layout.cute<4:2>
  %0 = layout.divide "logical" %a, %t
  %b = layout.constant #layout.cute<(2,2):(4,1)>
  %c = layout.constant #layout.cute<6:1>
  %1 = layout.product "logical" %b, %c
  %2 = layout.complement %t cotarget 24
  func.return %0, %1, %2 : !layout.layout, !layout.layout, !layout.layout
}
// CHECK-NEXT:    %0 = layout.constant #layout.cute<((2,2),(2,3)):((4,1),(2,8))>
// CHECK-NEXT:    %1 = layout.constant #layout.cute<((2,2),(2,3)):((4,1),(2,8))>
// CHECK-NEXT:    %2 = layout.constant #layout.cute<(2,3):(1,8)>
// CHECK-NEXT:    func.return %0, %1, %2

// A chain folds bottom-up: coalesce(right_inverse(L)).
// CHECK-LABEL: func.func @chain
func.func @chain() -> !layout.layout {
  %a = layout.constant #layout.cute<(2,(1,6)):(1,(6,2))>
  %0 = layout.coalesce %a
  %1 = layout.right_inverse %0
  func.return %1 : !layout.layout
}
// CHECK-NEXT:    %0 = layout.constant #layout.cute<12:1>
// CHECK-NEXT:    func.return %0

// An op on a non-constant layout stays.
// CHECK-LABEL: func.func @unknown_operand
func.func @unknown_operand(%l: !layout.layout) -> !layout.layout {
  %0 = layout.coalesce %l
  func.return %0 : !layout.layout
}
// CHECK-NEXT:    %0 = layout.coalesce %l
