// RUN: lowerc %s | filecheck %s
// RUN: lowerc %s --print-op-generic | lowerc | filecheck %s
// Round trip of graph.attention and graph.attention_backward: causal, masked, grouped-query.

func.func @attention(%q: tensor<2x4x5x32xf32>, %k: tensor<2x2x7x32xf32>, %v: tensor<2x2x7x32xf32>, %m: tensor<2x4x5x7xf32>, %do: tensor<2x4x5x32xf32>) {
  %o, %lse = graph.attention %q, %k, %v causal scale 0.17677669529663687 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
  %o2, %lse2 = graph.attention %q, %k, %v mask %m scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
  %dq, %dk, %dv = graph.attention_backward %do, %q, %k, %v, %o2, %lse2 mask %m causal scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x32xf32>, tensor<2x4x5xf32>, tensor<2x4x5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>)
  func.return
}
// CHECK-LABEL: func.func @attention
// CHECK-NEXT:    %o, %lse = graph.attention %q, %k, %v causal scale 0.17677669529663687 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
// CHECK-NEXT:    %o2, %lse2 = graph.attention %q, %k, %v mask %m scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
// CHECK-NEXT:    %dq, %dk, %dv = graph.attention_backward %do, %q, %k, %v, %o2, %lse2 mask %m causal scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x32xf32>, tensor<2x4x5xf32>, tensor<2x4x5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>)
// CHECK-NEXT:    func.return
