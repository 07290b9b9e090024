// RUN: lowerc --model mlp --inference --precision w4a16 --emit kernel | filecheck %s --check-prefix=W4
// `--precision` on a captured model, as options={"precision": ...} would compile it.
// A weight-only policy packs the captured model's parameters (inference only).
// W4:      func.func @inference({{.*}}lowp.weight{{.*}}) {{.*}} {
// W4:      kernel.gemm "gemm0_bias_gelu"
// W4:        lowp.assemble {{.*}} -> !lowp.scaled<tensor<64x32xsi4>, block<1x32>
// W4-NEXT:   lowp.dequantize
