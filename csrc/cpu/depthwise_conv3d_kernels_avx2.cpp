// The depthwise kernels for AVX2 + FMA, used when the CPU has them.
#define VID3D_ISA_NAMESPACE avx2
#define VID3D_VECTOR_BYTES 32
#define VID3D_CPU_TARGET "avx2,fma,f16c"
#include "compile_for_isa.h"
