// Compiles the depthwise kernels for one instruction set. The including file defines
// VID3D_ISA_NAMESPACE, VID3D_VECTOR_BYTES (the SIMD width) and, except for the baseline build,
// VID3D_CPU_TARGET (a GCC/Clang target string). Library headers come first so that they keep
// the default target and only vid3d's kernels are retargeted; the glue picks a build at run time.
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#define VID3D_PRAGMA_(text) _Pragma(#text)
#define VID3D_PRAGMA(text) VID3D_PRAGMA_(text)

#if defined(VID3D_CPU_TARGET)
#if defined(__x86_64__) && defined(__GNUC__)
#if defined(__clang__)
VID3D_PRAGMA(clang attribute push(__attribute__((target(VID3D_CPU_TARGET))), apply_to = function))
#else
VID3D_PRAGMA(GCC target(VID3D_CPU_TARGET))
#endif
#include "depthwise_conv3d_kernels.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
#else
#include "depthwise_conv3d_kernels.h"
#endif
