// Compiles the kernel body named by TG_SIMD_BODY (a quoted file name) once per
// instruction set, each copy in its own namespace with the vector helpers of
// simd_isa.inl: tg::kernels::sse2 (baseline x86-64) and tg::kernels::avx2
// (AVX2 and FMA). The file that includes this dispatches between them with
// kernels::isa() (cpu.hpp). Include <immintrin.h> and <cstring> first.

namespace tg::kernels::sse2 {
#define TG_SIMD_LANES 4
#include "simd_isa.inl"
#include TG_SIMD_BODY
#undef TG_SIMD_LANES
}  // namespace tg::kernels::sse2

#if defined(__clang__)  // clang has no "#pragma GCC target"
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace tg::kernels::avx2 {
#define TG_SIMD_LANES 8
#include "simd_isa.inl"
#include TG_SIMD_BODY
#undef TG_SIMD_LANES
}  // namespace tg::kernels::avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#undef TG_SIMD_BODY
