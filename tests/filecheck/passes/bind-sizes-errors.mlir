// RUN: not lowerc %s -p 'bind-sizes{sizes="s0=3"}' 2>&1 | filecheck %s
// RUN: not lowerc %s -p 'bind-sizes{sizes="s0=3,s1=-2"}' 2>&1 | filecheck %s --check-prefix=SYNTAX
// RUN: not lowerc %s -p 'bind-sizes{sizes="s0=3,s1=2"}' 2>&1 | filecheck %s --check-prefix=NEGATIVE
// RUN: not lowerc %s -p fuse-epilogues 2>&1 | filecheck %s --check-prefix=UNBOUND
// A binding that leaves a size out, makes a dim negative or does not parse is one
// error line naming the value; a pass that plans never sees a symbolic size.

func.func @f(%x: tensor<?x4xf32, #graph.dims<"s0">>, %y: tensor<?x4xf32, #graph.dims<"s1 - 3">>) {
  func.return
}

// CHECK: lowerc: error: bind-sizes: %y: no value for size s1 (in tensor<?x4xf32, #graph.dims<"s1-3">>)
// SYNTAX: lowerc: error: bind-sizes: 's1=-2' is not NAME=INTEGER
// NEGATIVE: lowerc: error: bind-sizes: %y: size s1 - 3 is -1 for s0=3, s1=2 (in tensor<?x4xf32, #graph.dims<"s1-3">>)
// UNBOUND: lowerc: error: pass 'fuse-epilogues' needs static sizes: run bind-sizes first (%x: tensor<?x4xf32, #graph.dims<"s0">>)
// CHECK-NOT: Traceback
