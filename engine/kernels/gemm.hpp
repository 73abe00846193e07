// Row-major GEMM on raw buffers through OpenBLAS, split across tapegrad's
// thread pool (OpenBLAS itself runs single-threaded; see parallel.hpp).
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

}  // namespace tg::detail
