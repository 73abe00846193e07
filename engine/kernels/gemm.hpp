// Row-major GEMM on raw buffers through OpenBLAS, split across tapegrad's
// thread pool (OpenBLAS itself runs single-threaded; see parallel.hpp); and
// the small float32 GEMMs with a short side that BLAS is slow at.
#pragma once

#include <cstdint>

namespace tg::detail {

// C[m×n] = alpha · op(A) · op(B) + beta · C, row-major, where op(A) is m×k
// (A stored k×m when trans_a) and op(B) is k×n (B stored n×k when trans_b).
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// The same through xtensor-blas when A, B and C are whole matrices (each
// leading dimension its row length; gemm_xtensor_blas.cpp); false otherwise.
bool whole_matrix_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                       int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
bool whole_matrix_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                       int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

}  // namespace tg::detail

namespace tg::kernels {

// --- small float32 GEMMs with a short side (gemm_simd.inl) ----------------------------------
//
// BLAS spends most of a GEMM with a short side packing its operands; these read
// them in place. One variant per instruction set (cpu.hpp), dispatched on isa().

// Inner dimensions and row counts up to this are short.
inline constexpr int64_t short_side = 16;

// Both beat BLAS on either instruction set, so the conv products use them
// wherever they apply: measured against OpenBLAS's SSE3 kernels on the three
// products of a 3×3 convolution with 1-16 input channels (m 6-64, n 196-1024),
// the AVX2 variants take 0.25-0.5 of BLAS's time, the SSE2 ones 0.55-0.9.

// C[m × n] = A · B (+ bias[i] on row i when given) for a short inner dimension
// k, or few rows m; A element (i, p) at a[i·ars + p·acs], so A may be read transposed.
void short_k_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t ars, int64_t acs, const float* b,
                  int64_t ldb, float* c, int64_t ldc, const float* bias);

// C[m × n] += A[m × len] · B[n × len]ᵀ for few columns n (dot products of rows).
void dot_gemm(int64_t m, int64_t n, int64_t len, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc);

}  // namespace tg::kernels
