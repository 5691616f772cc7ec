// The depthwise kernels for the baseline instruction set of the build.
#define VID3D_CPU_ISA generic
#include "compile_for_isa.h"
