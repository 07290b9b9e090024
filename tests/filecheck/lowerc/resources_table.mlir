// RUN: lowerc %s --target cuda:sm_90a --emit resources | filecheck %s
// The per-kernel resources table of a bf16 plan compiled ahead of time: a GEMM with a
// bias + GELU epilogue (tensor-core mainloop) and a column-sum loop kernel.

func.func @linear(%x: tensor<64x32xbf16>, %w: tensor<64x32xbf16>, %b: tensor<64xbf16>) -> (tensor<64x64xbf16>, tensor<64xbf16>) {
  %wt = graph.view "permute" %w perm array<i64: 1, 0> : tensor<64x32xbf16> -> tensor<32x64xbf16>
  %y = graph.matmul %x, %wt : (tensor<64x32xbf16>, tensor<32x64xbf16>) -> tensor<64x64xbf16>
  %z = graph.pointwise "add"(%y, %b) : (tensor<64x64xbf16>, tensor<64xbf16>) -> tensor<64x64xbf16>
  %g = graph.pointwise "gelu"(%z) : (tensor<64x64xbf16>) -> tensor<64x64xbf16>
  %s = graph.reduce "sum" %x dims array<i64: 1> : tensor<64x32xbf16> -> tensor<64xbf16>
  func.return %g, %s : tensor<64x64xbf16>, tensor<64xbf16>
}

// CHECK:      # cuda:sm_90a (H100): budgets 255 registers per thread, 232448 bytes shared memory
// CHECK:      @linear
// CHECK-NEXT:   kernel {{ +}}kind {{ +}}regs {{ +}}spill B {{ +}}shared B {{ +}}stack B  tensor cores {{ +}}loads stores  config
// CHECK-NEXT:   ---
// CHECK-DAG:    gemm{{[0-9]+}}_bias_gelu {{ +}}gemm {{ +}}{{[0-9]+}} {{ +}}0 {{ +}}{{[0-9]+}} {{ +}}0  wgmma.mma_async {{ +}}{{[0-9]+ +[0-9]+}}  BLOCK 128x128x64, 8 warps, 3 stages
// CHECK-DAG:    loop{{[0-9]+}}_sum {{ +}}loop {{ +}}{{[0-9]+}} {{ +}}0 {{ +}}{{[0-9]+}} {{ +}}0  - {{ +}}{{[0-9]+ +[0-9]+}}  BLOCK 1024 elements, 8 warps
// CHECK:        2 kernels, 2 clean
// CHECK-NOT:  coda: kernel

