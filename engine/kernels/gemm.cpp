#include "engine/kernels/gemm.hpp"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/core/parallel.hpp"
#include "engine/kernels/cpu.hpp"

extern "C" void openblas_set_num_threads(int);

namespace tg::detail {

// OpenBLAS runs on one thread: large GEMMs are split across tapegrad's own
// pool, so the two never compete for the cores. Set when the library loads.
const bool blas_single_threaded = [] {
    openblas_set_num_threads(1);
    return true;
}();

namespace {

// Whole matrices go through xtensor-blas; blocks of a split GEMM straight to cblas.
void call_blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc)
{
    if (whole_matrix_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
void call_blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
               int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc)
{
    if (whole_matrix_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

// Below this many multiply-adds a GEMM is not worth splitting.
constexpr double split_threshold = 1 << 18;

template <class T>
void gemm_impl(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
               int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc)
{
    if (m == 0 || n == 0) return;  // before the size check: an empty [2^40, 0] C is fine
    TG_CHECK(m < INT_MAX && n < INT_MAX && k < INT_MAX && lda < INT_MAX && ldb < INT_MAX &&
                 ldc < INT_MAX,
             "matmul: dimensions ", m, "x", k, " by ", k, "x", n, " exceed BLAS's 32-bit sizes");
    if (k == 0) {
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
        return;
    }
    int threads = num_threads();
    double work = double(m) * double(n) * double(k);
    if (threads == 1 || in_parallel_region() || work < split_threshold) {
        call_blas(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    // Split the larger side of C across the threads, in blocks that keep
    // OpenBLAS's micro-kernels full, one piece per thread: each call packs
    // the whole other operand again (a Linear layer's 64x3136 input was
    // packed eight times when split in pieces of 16 columns).
    const int64_t block = 16;
    if (std::max(m, n) >= block * threads) {
        if (n >= m) {
            const int64_t blocks = (n + block - 1) / block;
            parallel_for(threads, 1, [&](int64_t t0, int64_t t1) {
                const int64_t b0 = blocks * t0 / threads, b1 = blocks * t1 / threads;
                if (b1 == b0) return;
                int64_t j0 = b0 * block, j1 = std::min(n, b1 * block);
                const T* bp = tb ? b + j0 * ldb : b + j0;
                call_blas(ta, tb, m, j1 - j0, k, alpha, a, lda, bp, ldb, beta, c + j0, ldc);
            });
        } else {
            const int64_t blocks = (m + block - 1) / block;
            parallel_for(threads, 1, [&](int64_t t0, int64_t t1) {
                const int64_t b0 = blocks * t0 / threads, b1 = blocks * t1 / threads;
                if (b1 == b0) return;
                int64_t i0 = b0 * block, i1 = std::min(m, b1 * block);
                const T* ap = ta ? a + i0 : a + i0 * lda;
                call_blas(ta, tb, i1 - i0, n, k, alpha, ap, lda, b, ldb, beta, c + i0 * ldc, ldc);
            });
        }
        return;
    }
    // A small C with a long inner dimension (a weight gradient): split k and
    // add the partial products.
    std::vector<std::vector<T>> partial(size_t(threads), std::vector<T>(size_t(m * n), T(0)));
    parallel_for(threads, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            int64_t p0 = k * t / threads, p1 = k * (t + 1) / threads;
            if (p1 == p0) continue;
            const T* ap = ta ? a + p0 * lda : a + p0;
            const T* bp = tb ? b + p0 : b + p0 * ldb;
            call_blas(ta, tb, m, n, p1 - p0, alpha, ap, lda, bp, ldb, T(0), partial[size_t(t)].data(), n);
        }
    });
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            T s = beta == T(0) ? T(0) : beta * c[i * ldc + j];
            for (int t = 0; t < threads; ++t) s += partial[size_t(t)][size_t(i * n + j)];
            c[i * ldc + j] = s;
        }
}

}  // namespace

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc)
{
    gemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc)
{
    gemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace tg::detail

// 8-lane vectors only ever live inside the AVX2 functions (everything is
// inlined there), so the ABI note about passing them does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#define TG_SIMD_BODY "engine/kernels/gemm_simd.inl"
#include "engine/kernels/simd_regions.inl"

namespace tg::kernels {

void short_k_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t ars, int64_t acs, const float* b,
                  int64_t ldb, float* c, int64_t ldc, const float* bias)
{
    if (isa() == Isa::avx2) avx2::short_k_gemm(m, n, k, a, ars, acs, b, ldb, c, ldc, bias);
    else sse2::short_k_gemm(m, n, k, a, ars, acs, b, ldb, c, ldc, bias);
}

void dot_gemm(int64_t m, int64_t n, int64_t len, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc)
{
    if (isa() == Isa::avx2) avx2::dot_gemm(m, n, len, a, lda, b, ldb, c, ldc);
    else sse2::dot_gemm(m, n, len, a, lda, b, ldb, c, ldc);
}

}  // namespace tg::kernels
