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

// How pad fills the positions outside the input (torch.nn.functional.pad's
// modes; Conv2d's padding_mode calls the constant mode zeros, as PyTorch does).
enum class PaddingMode : uint8_t {
    constant,          // a constant value (0 unless given)
    zeros = constant,  // Conv2d's name for it
    reflect,           // the input mirrored about its edge, the edge not repeated: 2 1 | 0 1 2 3 | 2 1
    replicate,         // the edge element repeated: 0 0 | 0 1 2 3 | 3 3
    circular,          // the input repeated periodically: 2 3 | 0 1 2 3 | 0 1
};

// conv2d's padding: sizes ({.padding = 1}, {.padding = {1, 0}}), or one of
// PyTorch's two strings: tg::same (the output as large as the input, stride 1
// only; when dilation·(kernel − 1) is odd the extra row and column go to the
// bottom and right) and tg::valid (no padding).
struct ConvPadding {
    enum class Kind : uint8_t { sizes, same, valid };
    Kind kind = Kind::sizes;
    Int2 sizes = 0;  // for Kind::sizes
    constexpr ConvPadding() = default;
    constexpr ConvPadding(int64_t v) : sizes(v) {}
    constexpr ConvPadding(int64_t h, int64_t w) : sizes(h, w) {}
    constexpr ConvPadding(Int2 v) : sizes(v) {}
    constexpr explicit ConvPadding(Kind k) : kind(k) {}
    constexpr bool operator==(const ConvPadding&) const = default;
};
inline constexpr ConvPadding same{ConvPadding::Kind::same};
inline constexpr ConvPadding valid{ConvPadding::Kind::valid};

// How a loss combines the losses of its elements (or targets).
enum class Reduction {
    none,       // one loss per element (per target)
    mean,       // the average (class targets: the weighted average over the targets that are not ignored)
    sum,
    batchmean,  // kl_div only: the sum divided by the batch size (the first axis), as PyTorch's "batchmean"
};

}  // namespace tg
