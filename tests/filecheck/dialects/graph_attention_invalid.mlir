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
  %dq, %dk, %dv = "graph.attention_backward"(%do, %q, %k, %k, %do, %l) <{scale = 5.000000e-01 : f64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 0, 0, 0>}> : (tensor<2x4x5x32xf32>, tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x32xf32>, tensor<2x4x5xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x4x7x32xf32>, tensor<2x2x7x32xf32>)
  func.return
}
// CHECK: error: 'graph.attention_backward' grad_key must be tensor<2x2x7x32xf32>, got tensor<2x4x7x32xf32>

// -----

func.func @grad_out(%do: tensor<2x4x5x16xf32>, %q: tensor<2x4x5x32xf32>, %k: tensor<2x2x7x32xf32>, %o: tensor<2x4x5x32xf32>, %l: tensor<2x4x5xf32>) {
  %dq, %dk, %dv = graph.attention_backward %do, %q, %k, %k, %o, %l scale 5.000000e-01 : f64 : (tensor<2x4x5x16xf32>, tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>, tensor<2x4x5x32xf32>, tensor<2x4x5xf32>) -> (tensor<2x4x5x32xf32>, tensor<2x2x7x32xf32>, tensor<2x2x7x32xf32>)
  func.return
}
// CHECK: error: 'graph.attention_backward' grad_out must be tensor<2x4x5x32xf32>, got tensor<2x4x5x16xf32>

// -----

func.func @rotary_tables_per_head(%q: tensor<2x4x8x16xf32>, %k: tensor<2x2x8x16xf32>, %c: tensor<2x4x8x16xf32>) {
  %o, %lse = graph.attention %q, %k, %k rotary %c, %c scale 2.500000e-01 : f64 : (tensor<2x4x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x2x8x16xf32>, tensor<2x4x8x16xf32>, tensor<2x4x8x16xf32>) -> (tensor<2x4x8x16xf32>, tensor<2x4x8xf32>)
  func.return
}
// CHECK: error: 'graph.attention' rotary cos must be [batch, 1, seq, head_dim] = [2, 1, 8, 16], got [2, 4, 8, 16] (broadcast it with views)

// -----

func.func @rotary_with_fewer_keys(%q: tensor<2x4x8x16xf32>, %k: tensor<2x2x6x16xf32>, %c: tensor<2x1x8x16xf32>) {
  %o, %lse = graph.attention %q, %k, %k rotary %c, %c scale 2.500000e-01 : f64 : (tensor<2x4x8x16xf32>, tensor<2x2x6x16xf32>, tensor<2x2x6x16xf32>, tensor<2x1x8x16xf32>, tensor<2x1x8x16xf32>) -> (tensor<2x4x8x16xf32>, tensor<2x4x8xf32>)
  func.return
}
// CHECK: error: 'graph.attention' rotary embeddings need as many keys as queries, got 8 and 6

// -----

func.func @rotary_odd_head_dim(%q: tensor<2x4x8x15xf32>, %k: tensor<2x2x8x15xf32>, %c: tensor<2x1x8x15xf32>) {
  %o, %lse = graph.attention %q, %k, %k rotary %c, %c scale 2.500000e-01 : f64 : (tensor<2x4x8x15xf32>, tensor<2x2x8x15xf32>, tensor<2x2x8x15xf32>, tensor<2x1x8x15xf32>, tensor<2x1x8x15xf32>) -> (tensor<2x4x8x15xf32>, tensor<2x4x8xf32>)
  func.return
}
// CHECK: error: 'graph.attention' rotary embeddings pair columns: odd head dim 15

// -----

func.func @rotary_table_type(%q: tensor<2x4x8x16xbf16>, %k: tensor<2x2x8x16xbf16>, %c: tensor<2x1x8x16xf32>) {
  %o, %lse = graph.attention %q, %k, %k rotary %c, %c scale 2.500000e-01 : f64 : (tensor<2x4x8x16xbf16>, tensor<2x2x8x16xbf16>, tensor<2x2x8x16xbf16>, tensor<2x1x8x16xf32>, tensor<2x1x8x16xf32>) -> (tensor<2x4x8x16xbf16>, tensor<2x4x8xf32>)
  func.return
}
// CHECK: error: 'graph.attention' rotary cos must be bf16 like the query, got f32

// -----

func.func @rotary_odd_columns(%x: tensor<4x7xf32>, %c: tensor<4x7xf32>) {
  %r = graph.rotary %x, %c, %c : (tensor<4x7xf32>, tensor<4x7xf32>, tensor<4x7xf32>) -> tensor<4x7xf32>
  func.return
}
// CHECK: error: 'graph.rotary' pairs the columns of the last dim: [4, 7] has no even last dim

// -----

func.func @rotary_table_does_not_broadcast(%x: tensor<4x8xf32>, %c: tensor<3x8xf32>) {
  %r = graph.rotary %x, %c, %c : (tensor<4x8xf32>, tensor<3x8xf32>, tensor<3x8xf32>) -> tensor<4x8xf32>
  func.return
}
// CHECK: error: 'graph.rotary' cos [3, 8] does not broadcast to [4, 8]
