// Loops that move elements by position along one axis: running sums, gather
// and its adjoint scatter_add. Shapes and indices are checked by the ops
// (ops/reduction.cpp, ops/indexing.cpp); these only run.
#pragma once

#include <cstdint>
#include <vector>

namespace tg::kernels {

// out = running sums of x along an axis of length n, the tensor seen as
// [outer, n, inner] (numel elements in all); from the back when reverse.
template <class T, class Acc>
void cumsum(const T* x, T* out, int64_t numel, int64_t n, int64_t inner, bool reverse)
{
    if (numel == 0) return;
    const int64_t outer = numel / (n * inner);
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < inner; ++k) {
            const int64_t base = o * n * inner + k;
            Acc acc = 0;
            for (int64_t i = 0; i < n; ++i) {
                const int64_t at = base + (reverse ? n - 1 - i : i) * inner;
                acc += Acc(x[at]);
                out[at] = T(acc);
            }
        }
}

// The row-major strides of a shape.
inline std::vector<int64_t> strides_of(const std::vector<int64_t>& shape)
{
    std::vector<int64_t> st(shape.size(), 1);
    for (size_t d = shape.size(); d-- > 1;) st[d - 1] = st[d] * shape[d];
    return st;
}

// Calls f(offset_in_index, offset_in_x) for every element of `index` (shape
// index_shape), where the x offset has the index's coordinates except along
// `axis`, where it has the index value: the addressing of gather and scatter.
template <class F>
void for_each_indexed(const std::vector<int64_t>& index_shape, const std::vector<int64_t>& x_shape, int64_t axis,
                      const int64_t* index, F f)
{
    for (int64_t d : index_shape)
        if (d == 0) return;  // nothing to do, and the other sizes may multiply past int64
    int64_t count = 1;  // fits: the index holds this many elements
    for (int64_t d : index_shape) count *= d;
    const std::vector<int64_t> xs = strides_of(x_shape);
    const size_t rank = index_shape.size();
    std::vector<int64_t> coord(rank, 0);
    int64_t x_base = 0;  // the x offset of coord, the axis coordinate left out
    for (int64_t i = 0; i < count; ++i) {
        f(i, rank == 0 ? index[i] : x_base + index[i] * xs[size_t(axis)]);
        for (size_t d = rank; d-- > 0;) {  // the next coordinate, last axis fastest
            if (++coord[d] < index_shape[d]) {
                if (int64_t(d) != axis) x_base += xs[d];
                break;
            }
            if (int64_t(d) != axis) x_base -= (index_shape[d] - 1) * xs[d];
            coord[d] = 0;
        }
    }
}

}  // namespace tg::kernels
