// RUN: lowerc %s | filecheck %s
// RUN: lowerc %s --print-op-generic | lowerc | filecheck %s
// Round trip of the layout dialect's syntax (nothing is folded without -p).

func.func @ops() {
  %a = layout.constant #layout.cute<(6,2):(8,2)>
  %b = layout.constant #layout.cute<(4,3):(3,1)>
  %t = layout.constant #layout.cute<4:2>
  %d = layout.constant #layout.cute<(4,2,3):(2,1,8)>
  %0 = layout.compose %a, %b
  %1 = layout.divide "logical" %d, %t
  %2 = layout.divide "zipped" %d, %t
  %3 = layout.product "blocked" %b, %t
  %4 = layout.complement %t cotarget 24
  %5 = layout.coalesce %a
  %6 = layout.right_inverse %b
  %7 = layout.left_inverse %t
  %n = layout.constant #layout.cute<(4,(2,8)):(16,(8,1))>
  func.return
}
// CHECK-LABEL: func.func @ops
// CHECK-NEXT:    %a = layout.constant #layout.cute<(6,2):(8,2)>
// CHECK-NEXT:    %b = layout.constant #layout.cute<(4,3):(3,1)>
// CHECK-NEXT:    %t = layout.constant #layout.cute<4:2>
// CHECK-NEXT:    %d = layout.constant #layout.cute<(4,2,3):(2,1,8)>
  %d = layout.constant #layout.cute<(4,2,3):(2,1,8)>
// CHECK-NEXT:    %0 = layout.compose %a, %b
// CHECK-NEXT:    %1 = layout.divide "logical" %d, %t
// CHECK-NEXT:    %2 = layout.divide "zipped" %d, %t
// CHECK-NEXT:    %3 = layout.product "blocked" %b, %t
// CHECK-NEXT:    %4 = layout.complement %t cotarget 24
// CHECK-NEXT:    %5 = layout.coalesce %a
// CHECK-NEXT:    %6 = layout.right_inverse %b
// CHECK-NEXT:    %7 = layout.left_inverse %t
// CHECK-NEXT:    %n = layout.constant #layout.cute<(4,(2,8)):(16,(8,1))>
