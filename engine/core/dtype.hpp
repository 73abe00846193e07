// Element types. Floating tensors are float32 or float64, chosen at run time;
// int64 holds class indices and argmax results and is never differentiable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "error.hpp"

namespace tg {

enum class Dtype : uint8_t { float32, float64, int64 };

inline constexpr Dtype float32 = Dtype::float32;
inline constexpr Dtype float64 = Dtype::float64;
inline constexpr Dtype int64 = Dtype::int64;

inline const char* dtype_name(Dtype d)
{
    switch (d) {
    case Dtype::float32: return "float32";
    case Dtype::float64: return "float64";
    case Dtype::int64: return "int64";
    }
    return "?";
}

inline size_t dtype_size(Dtype d) { return d == Dtype::float32 ? 4 : 8; }
inline bool is_floating(Dtype d) { return d != Dtype::int64; }

template <class T> constexpr Dtype dtype_of();
template <> constexpr Dtype dtype_of<float>() { return Dtype::float32; }
template <> constexpr Dtype dtype_of<double>() { return Dtype::float64; }
template <> constexpr Dtype dtype_of<int64_t>() { return Dtype::int64; }

}  // namespace tg

// Runs the statement with `scalar_t` bound to the C++ type of a floating dtype.
#define TG_DISPATCH_FLOATING(dtype, op_name, ...)                                        \
    [&] {                                                                                \
        switch (dtype) {                                                                 \
        case ::tg::Dtype::float32: { using scalar_t = float; return __VA_ARGS__(); }      \
        case ::tg::Dtype::float64: { using scalar_t = double; return __VA_ARGS__(); }     \
        default:                                                                         \
            ::tg::fail(op_name, ": expected a float32 or float64 tensor, got ",          \
                       ::tg::dtype_name(dtype));                                         \
        }                                                                                \
    }()

// Same, for every dtype including int64.
#define TG_DISPATCH_ALL(dtype, op_name, ...)                                             \
    [&] {                                                                                \
        switch (dtype) {                                                                 \
        case ::tg::Dtype::float32: { using scalar_t = float; return __VA_ARGS__(); }      \
        case ::tg::Dtype::float64: { using scalar_t = double; return __VA_ARGS__(); }     \
        case ::tg::Dtype::int64: { using scalar_t = int64_t; return __VA_ARGS__(); }      \
        }                                                                                \
        ::tg::fail(op_name, ": unknown dtype");                                          \
    }()
