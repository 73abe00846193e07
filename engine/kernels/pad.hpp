// Padding's loops (ops/padding.cpp): every output position of a padded axis
// reads one input position, or the constant, through a table per axis that
// the op fills for its mode. The fold is the adjoint: each output position's
// gradient is added to the input position it read. Sizes are checked by the
// op; these only run.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../core/parallel.hpp"
#include "elementwise.hpp"

namespace tg::kernels {

// One padded axis: output position j reads input position source[j], or the
// constant where source[j] < 0. The positions j with source[j] = j − before
// are one run, copied whole.
struct PadAxis {
    int64_t in_size = 0, out_size = 0, before = 0;
    std::vector<int64_t> source;  // out_size entries
};

// The tensor as `outer` blocks (the axes not padded, merged), each block the
// padded axes in order, the last one contiguous. Both tensors hold elements.
struct PadLayout {
    int64_t outer = 1;
    std::vector<PadAxis> axes;  // the first padded axis to the last
    int64_t in_block = 1, out_block = 1;  // elements per block

    // The offset in an input block of the row that output row r of a block
    // reads (r numbers the rows of all padded axes but the last), or −1 for a
    // row of constants.
    int64_t source_row(int64_t r) const
    {
        int64_t offset = 0, stride = axes.back().in_size;
        for (size_t d = axes.size() - 1; d-- > 0;) {
            const PadAxis& a = axes[d];
            const int64_t s = a.source[size_t(r % a.out_size)];
            if (s < 0) return -1;
            offset += s * stride;
            stride *= a.in_size;
            r /= a.out_size;
        }
        return offset;
    }
    int64_t rows_per_block() const { return out_block / axes.back().out_size; }
    // The run of the last axis: output positions [lo, hi) read lo − before, ...
    int64_t run_begin() const { return std::clamp<int64_t>(axes.back().before, 0, axes.back().out_size); }
    int64_t run_end() const
    {
        const PadAxis& a = axes.back();
        return std::clamp<int64_t>(a.before + a.in_size, run_begin(), a.out_size);
    }
};

template <class T>
void pad_forward(const PadLayout& p, const T* in, T* out, T value)
{
    const PadAxis& last = p.axes.back();
    const int64_t width = last.out_size, per_block = p.rows_per_block();
    const int64_t lo = p.run_begin(), hi = p.run_end();
    const int64_t* source = last.source.data();
    parallel_for(p.outer * per_block, std::max<int64_t>(1, elementwise_grain / width), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            T* o = out + r * width;
            const int64_t row = p.source_row(r % per_block);
            if (row < 0) {
                std::fill(o, o + width, value);
                continue;
            }
            const T* i = in + r / per_block * p.in_block + row;
            for (int64_t j = 0; j < lo; ++j) o[j] = source[j] < 0 ? value : i[source[j]];
            if (hi > lo) std::memcpy(o + lo, i + (lo - last.before), size_t(hi - lo) * sizeof(T));
            for (int64_t j = hi; j < width; ++j) o[j] = source[j] < 0 ? value : i[source[j]];
        }
    });
}

// grad_in += the fold of grad_out; grad_in starts at zero. Blocks run in
// parallel; within one, output rows that read the same input row add to it
// in order, so the sums do not depend on the threads.
template <class T>
void pad_fold(const PadLayout& p, const T* grad_out, T* grad_in)
{
    const PadAxis& last = p.axes.back();
    const int64_t width = last.out_size, rows = p.rows_per_block();
    const int64_t lo = p.run_begin(), hi = p.run_end();
    const int64_t* source = last.source.data();
    parallel_for(p.outer, std::max<int64_t>(1, elementwise_grain / p.out_block), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t row = p.source_row(r);
                if (row < 0) continue;
                const T* g = grad_out + (b * rows + r) * width;
                T* d = grad_in + b * p.in_block + row;
                for (int64_t j = 0; j < lo; ++j)
                    if (source[j] >= 0) d[source[j]] += g[j];
                for (int64_t j = lo; j < hi; ++j) d[j - last.before] += g[j];
                for (int64_t j = hi; j < width; ++j)
                    if (source[j] >= 0) d[source[j]] += g[j];
            }
    });
}

}  // namespace tg::kernels
