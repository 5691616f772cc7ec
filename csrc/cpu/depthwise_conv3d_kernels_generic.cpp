// The depthwise kernels for the baseline instruction set of the build.
#define VID3D_ISA_NAMESPACE generic
#define VID3D_VECTOR_BYTES 16
#include "compile_for_isa.h"
