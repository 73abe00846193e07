// A whole-matrix GEMM through xtensor-blas. Kept apart from gemm.cpp because
// xtensor-blas declares the cblas functions itself and cannot share a
// translation unit with <cblas.h>.
#include <array>

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xadapt.hpp>

#include "engine/kernels/gemm.hpp"

namespace tg::detail {

namespace {

template <class T>
bool gemm_impl(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
               int64_t ldb, T beta, T* c, int64_t ldc)
{
    // xtensor-blas multiplies whole row-major matrices: each leading
    // dimension must be its matrix's row length. A block of a larger matrix
    // (a piece of a split GEMM) is not one without a copy.
    const size_t a_rows = size_t(ta ? k : m), a_cols = size_t(ta ? m : k);
    const size_t b_rows = size_t(tb ? n : k), b_cols = size_t(tb ? k : n);
    if (size_t(lda) != a_cols || size_t(ldb) != b_cols || ldc != n) return false;
    auto av = xt::adapt(a, a_rows * a_cols, xt::no_ownership(), std::array<size_t, 2>{a_rows, a_cols});
    auto bv = xt::adapt(b, b_rows * b_cols, xt::no_ownership(), std::array<size_t, 2>{b_rows, b_cols});
    auto cv = xt::adapt(c, size_t(m * n), xt::no_ownership(), std::array<size_t, 2>{size_t(m), size_t(n)});
    xt::blas::gemm(av, bv, cv, ta, tb, alpha, beta);
    return true;
}

}  // namespace

bool whole_matrix_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                       const float* b, int64_t ldb, float beta, float* c, int64_t ldc)
{
    return gemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
bool whole_matrix_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                       int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc)
{
    return gemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace tg::detail
