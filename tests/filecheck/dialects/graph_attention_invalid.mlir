// RUN: lowerc %s --split-input-file --verify-diagnostics | filecheck %s
// Verifier messages of graph.attention and graph.attention_backward.

func.func @rank(%q: tensor<4x5x32xf32>, %k: tensor<2x2x7x32xf32>) {
  %o, %l = graph.attention %q, %k, %k scale 5.000000e-01 : f64 : (tensor<4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>) -> (tensor<4x5x32xf32>, tensor<4x5xf32>)
  func.return
}
// CHECK: graph_attention_invalid.mlir:5:3: error: 'graph.attention' query must be [batch, heads, seq, head_dim], got [4, 5, 32]

// -----

func.func @groups(%q: tensor<2x3x5x32xf32>, %k: tensor<2x2x7x32xf32>) {
  %o, %l = graph.attention %q, %k, %k scale 5.000000e-01 : f64 : (tensor<2x3x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>) -> (tensor<2x3x5x32xf32>, tensor<2x3x5xf32>)
  func.return
}
// CHECK: error: 'graph.attention' query heads (3) must be a multiple of key/value heads (2)

// -----

func.func @head_dim(%q: tensor<2x4x5x32xf32>, %k: tensor<2x2x7x16xf32>) {
  %o, %l = graph.attention %q, %k, %k scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x16xf32>, tensor<2x2x7x16xf32>) -> (tensor<2x4x5x16xf32>, tensor<2x4x5xf32>)
  func.return
}
// CHECK: error: 'graph.attention' key [2, 2, 7, 16] and value [2, 2, 7, 16] do not fit query [2, 4, 5, 32]

// -----

func.func @mask_shape(%q: tensor<2x4x5x32xf32>, %k: tensor<2x2x7x32xf32>, %m: tensor<5x7xf32>) {
  %o, %l = graph.attention %q, %k, %k mask %m scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<5x7xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
  func.return
}
// CHECK: error: 'graph.attention' mask must have the score shape [2, 4, 5, 7], got [5, 7] (broadcast it with views)

// -----

func.func @bool_mask(%q: tensor<2x4x5x32xf32>, %k: tensor<2x2x7x32xf32>, %m: tensor<2x4x5x7xi1>) {
  %o, %l = graph.attention %q, %k, %k mask %m scale 5.000000e-01 : f64 : (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x7xi1>) -> (tensor<2x4x5x32xf32>, tensor<2x4x5xf32>)
  func.return
}
// CHECK: error: 'graph.attention' mask must be additive (a float tensor)

// -----

func.func @lse_type(%q: tensor<2x4x5x32xbf16>, %k: tensor<2x2x7x32xbf16>) {
  %o, %l = graph.attention %q, %k, %k scale 5.000000e-01 : f64 : (tensor<2x4x5x32xbf16>, tensor<2x2x7x32xbf16>, tensor<2x2x7x32xbf16>) -> (tensor<2x4x5x32xbf16>, tensor<2x4x5xbf16>)
  func.return
}
// CHECK: error: 'graph.attention' lse must be tensor<2x4x5xf32>, got tensor<2x4x5xbf16>

// -----

func.func @mixed_types(%q: tensor<2x4x5x32xbf16>, %k: tensor<2x2x7x32xf32>) {
  %o, %l = graph.attention %q, %k, %k scale 5.000000e-01 : f64 : (tensor<2x4x5x32xbf16>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>) -> (tensor<2x4x5x32xbf16>, tensor<2x4x5xf32>)
  func.return
}
// CHECK: error: 'graph.attention' query, key and value must have one element type

// -----

func.func @grad_key(%do: tensor<2x4x5x32xf32>, %q: tensor<2x4x5x32xf32>, %k: tensor<2x2x7x32xf32>, %l: tensor<2x4x5xf32>) {
  %dq, %dk, %dv = "graph.attention_backward"(%do, %q, %k, %k, %do, %l) <{scale = 5.000000e-01 : f64}> : (tensor<2x4x5x32xf32>, tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x32xf32>, tensor<2x4x5xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x7x32xf32>, tensor<2x2x7x32xf32>)
  func.return
}
// CHECK: error: 'graph.attention_backward' grad_key must be tensor<2x2x7x32xf32>, got tensor<2x4x7x32xf32>

// -----

func.func @grad_out(%do: tensor<2x4x5x16xf32>, %q: tensor<2x4x5x32xf32>, %k: tensor<2x2x7x32xf32>, %o: tensor<2x4x5x32xf32>, %l: tensor<2x4x5xf32>) {
  %dq, %dk, %dv = graph.attention_backward %do, %q, %k, %k, %o, %l scale 5.000000e-01 : f64 : (tensor<2x4x5x16xf32>, tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x32xf32>, tensor<2x4x5xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>)
  func.return
}
// CHECK: error: 'graph.attention_backward' grad_out must be tensor<2x4x5x32xf32>, got tensor<2x4x5x16xf32>
