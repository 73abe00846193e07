// Row reductions with several partial results, so they vectorise without
// reassociating floating-point sums behind the compiler's back; one summation
// order for every kernel that sums a row.
#pragma once

#include <cmath>
#include <cstdint>

namespace tg::kernels {

inline constexpr int reduce_lanes = 8;

// Σ f(k) for k in [0, n): eight partial sums over full groups, the tail, then the partials.
template <class T, class F>
[[gnu::always_inline]] inline T sum_of(int64_t n, F f)
{
    T acc[reduce_lanes] = {};
    int64_t k = 0;
    for (; k + reduce_lanes <= n; k += reduce_lanes)
        for (int j = 0; j < reduce_lanes; ++j) acc[j] += f(k + j);
    T s = 0;
    for (; k < n; ++k) s += f(k);
    for (int j = 0; j < reduce_lanes; ++j) s += acc[j];
    return s;
}

template <class T>
T sum_row(const T* x, int64_t n)
{
    return sum_of<T>(n, [x](int64_t k) { return x[k]; });
}

template <class T>
T dot_row(const T* x, const T* y, int64_t n)
{
    return sum_of<T>(n, [x, y](int64_t k) { return x[k] * y[k]; });
}

// The maximum (-inf for an empty row; a NaN is skipped).
template <class T>
T max_row(const T* x, int64_t n)
{
    T acc[reduce_lanes];
    for (int j = 0; j < reduce_lanes; ++j) acc[j] = -INFINITY;
    int64_t k = 0;
    for (; k + reduce_lanes <= n; k += reduce_lanes)
        for (int j = 0; j < reduce_lanes; ++j) acc[j] = acc[j] < x[k + j] ? x[k + j] : acc[j];
    T m = -INFINITY;
    for (; k < n; ++k) m = m < x[k] ? x[k] : m;
    for (int j = 0; j < reduce_lanes; ++j) m = m < acc[j] ? acc[j] : m;
    return m;
}

}  // namespace tg::kernels
