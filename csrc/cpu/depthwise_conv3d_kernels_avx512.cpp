// The depthwise kernels for AVX-512, used when the CPU has it.
#define VID3D_ISA_NAMESPACE avx512
#define VID3D_VECTOR_BYTES 64
#define VID3D_CPU_TARGET "avx512f,avx512bw,avx512vl,avx2,fma,f16c"
#include "compile_for_isa.h"
