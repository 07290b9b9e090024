// RUN: lowerc %s -p expand-logsumexp | filecheck %s

// A logsumexp no epilogue computes becomes the max-shifted form a loop kernel runs
// (an all -inf row gives -inf: its max is replaced by 0 before the shift).
// CHECK-LABEL: func.func @row_logsumexp
func.func @row_logsumexp(%x: tensor<4x8xf32>) -> tensor<4xf32> {
  %0 = graph.reduce "logsumexp" %x dims array<i64: 1> : tensor<4x8xf32> -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}
// CHECK:         %[[MAX:.*]] = graph.reduce "amax" %x dims array<i64: 1> keepdim : tensor<4x8xf32> -> tensor<4x1xf32>
// CHECK-NEXT:    %[[INF:.*]] = graph.pointwise "eq"(%[[MAX]], %{{.*}}) : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xi1>
// CHECK-NEXT:    %[[SAFE:.*]] = graph.pointwise "where"(%[[INF]], %{{.*}}, %[[MAX]])
// CHECK-NEXT:    %[[SHIFT:.*]] = graph.pointwise "sub"(%x, %[[SAFE]])
// CHECK-NEXT:    %[[EXP:.*]] = graph.pointwise "exp"(%[[SHIFT]])
// CHECK-NEXT:    %[[SUM:.*]] = graph.reduce "sum" %[[EXP]] dims array<i64: 1> keepdim
// CHECK-NEXT:    %[[LOG:.*]] = graph.pointwise "log"(%[[SUM]])
// CHECK-NEXT:    %[[LSE:.*]] = graph.pointwise "add"(%[[LOG]], %[[SAFE]])
// CHECK-NEXT:    %{{.*}} = graph.view "reshape" %[[LSE]] : tensor<4x1xf32> -> tensor<4xf32>
// CHECK-NOT:     "logsumexp"
