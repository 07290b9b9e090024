// RUN: not lowerc %s 2>&1 | filecheck %s
// A size is an integer polynomial in size names, read by walking its syntax tree: text
// that is code is a located parse error, never evaluated.

func.func @code(%a: tensor<?xf32, #graph.dims<"__import__('os').getcwd()">>) {
  func.return
}
// CHECK: graph_dims_syntax_invalid.mlir:5:46: error: size '__import__('os').getcwd()' is not a polynomial in sizes (+, -, *, **)
// CHECK-NOT: Traceback
