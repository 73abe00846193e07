// The option types the op families share.
#pragma once

#include <cstdint>

namespace tg {

// A (height, width) pair; one number means the same for both, as in PyTorch:
// conv2d(x, w, b, 2, {1, 0}) is stride (2, 2), padding (1, 0). Int2() is
// "not given" (PyTorch's None), for the pools' stride.
struct Int2 {
    int64_t h = -1, w = -1;
    constexpr Int2() = default;
    constexpr Int2(int64_t v) : h(v), w(v) {}
    constexpr Int2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
    constexpr bool operator==(const Int2&) const = default;
    constexpr bool given() const { return h != -1 || w != -1; }
};

// How a loss combines the losses of its elements (or targets).
enum class Reduction {
    none,       // one loss per element (per target)
    mean,       // the average (class targets: the weighted average over the targets that are not ignored)
    sum,
    batchmean,  // kl_div only: the sum divided by the batch size (the first axis), as PyTorch's "batchmean"
};

}  // namespace tg
