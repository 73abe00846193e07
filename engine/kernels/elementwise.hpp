// Loops shared by the op families: broadcasting elementwise maps and
// single-axis reductions on raw buffers. Internal to tapegrad's ops.
#pragma once

#include <algorithm>
#include <cstring>

#include "../core/parallel.hpp"
#include "../core/tensor.hpp"

namespace tg::kernels {

// Elements per parallel chunk for cheap elementwise loops.
inline constexpr int64_t elementwise_grain = 1 << 15;

// NumPy broadcasting of two shapes; `op` names the op in the error.
shape_type broadcast_shapes(const shape_type& a, const shape_type& b, const char* op);

// Whether `from` broadcasts to `to` unchanged: each trailing axis equal or 1.
inline bool broadcasts_to(const shape_type& from, const shape_type& to)
{
    if (from.size() > to.size()) return false;
    const size_t lead = to.size() - from.size();
    for (size_t i = 0; i < from.size(); ++i)
        if (from[i] != 1 && from[i] != to[lead + i]) return false;
    return true;
}

// Strides of `shape` (row-major) seen from an output of rank `rank`, with 0
// on the axes where `shape` is broadcast.
std::vector<int64_t> broadcast_strides(const shape_type& shape, const shape_type& out_shape);
// The same into strides[0, out_shape.size()), for loops that must not allocate.
void broadcast_strides(const shape_type& shape, const shape_type& out_shape, int64_t* strides);

// out[i] = f(x[i]).
template <class T, class U, class F>
void map_unary(const T* x, U* out, int64_t n, F f)
{
    parallel_for(n, elementwise_grain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) out[i] = f(x[i]);
    });
}

// out = f(a, b) with broadcasting; out has shape `out_shape`.
template <class T, class U, class F>
void map_binary(const T* a, const shape_type& a_shape, const T* b, const shape_type& b_shape,
                U* out, const shape_type& out_shape, F f)
{
    int64_t n = numel_of(out_shape);
    if (n == 0) return;  // the row walk below divides by the last axis
    int64_t na = numel_of(a_shape), nb = numel_of(b_shape);
    if (na == n && nb == n) {
        parallel_for(n, elementwise_grain, [&](int64_t s, int64_t e) {
            for (int64_t i = s; i < e; ++i) out[i] = f(a[i], b[i]);
        });
        return;
    }
    if (nb == 1 && na == n) {
        T bv = b[0];
        parallel_for(n, elementwise_grain, [&](int64_t s, int64_t e) {
            for (int64_t i = s; i < e; ++i) out[i] = f(a[i], bv);
        });
        return;
    }
    if (na == 1 && nb == n) {
        T av = a[0];
        parallel_for(n, elementwise_grain, [&](int64_t s, int64_t e) {
            for (int64_t i = s; i < e; ++i) out[i] = f(av, b[i]);
        });
        return;
    }
    // General case: merge axes where both operands keep the same layout, then
    // walk the rows of the last axis.
    std::vector<int64_t> sa = broadcast_strides(a_shape, out_shape);
    std::vector<int64_t> sb = broadcast_strides(b_shape, out_shape);
    std::vector<int64_t> dims, da, db;
    for (size_t i = 0; i < out_shape.size(); ++i) {
        if (out_shape[i] == 1) continue;
        if (!dims.empty() && da.back() == sa[i] * out_shape[i] && db.back() == sb[i] * out_shape[i]) {
            dims.back() *= out_shape[i];
            da.back() = sa[i];
            db.back() = sb[i];
        } else {
            dims.push_back(out_shape[i]);
            da.push_back(sa[i]);
            db.push_back(sb[i]);
        }
    }
    if (dims.empty()) {
        if (n == 1) out[0] = f(a[0], b[0]);
        return;
    }
    int64_t inner = dims.back(), ia = da.back(), ib = db.back();
    int64_t rows = n / inner;
    size_t outer_rank = dims.size() - 1;
    parallel_for(rows, std::max<int64_t>(1, elementwise_grain / inner), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            int64_t oa = 0, ob = 0, rem = r;
            for (size_t d = outer_rank; d-- > 0;) {
                int64_t k = rem % dims[d];
                rem /= dims[d];
                oa += k * da[d];
                ob += k * db[d];
            }
            const T* pa = a + oa;
            const T* pb = b + ob;
            U* po = out + r * inner;
            if (ia == 1 && ib == 1)
                for (int64_t i = 0; i < inner; ++i) po[i] = f(pa[i], pb[i]);
            else if (ia == 1 && ib == 0)
                for (int64_t i = 0; i < inner; ++i) po[i] = f(pa[i], *pb);
            else if (ia == 0 && ib == 1)
                for (int64_t i = 0; i < inner; ++i) po[i] = f(*pa, pb[i]);
            else
                for (int64_t i = 0; i < inner; ++i) po[i] = f(pa[i * ia], pb[i * ib]);
        }
    });
}

// Views a reduction over `axis` of `shape` as [outer, n, inner].
struct AxisSplit {
    int64_t outer = 1, n = 1, inner = 1;
    // No element on either side: loops over outer must not run (outer may be 2^40).
    bool empty() const { return outer == 0 || n == 0; }
};
inline AxisSplit split_at(const shape_type& shape, int64_t axis)
{
    AxisSplit s;
    for (int64_t i = 0; i < int64_t(shape.size()); ++i)
        if (i != axis && shape[size_t(i)] == 0) {
            // The other axes of an empty shape may multiply past int64.
            s.outer = s.inner = 0;
            if (axis < int64_t(shape.size())) s.n = shape[size_t(axis)];
            return s;
        }
    for (int64_t i = 0; i < int64_t(shape.size()); ++i) {
        if (i < axis) s.outer *= shape[size_t(i)];
        else if (i == axis) s.n = shape[size_t(i)];
        else s.inner *= shape[size_t(i)];
    }
    return s;
}

}  // namespace tg::kernels
