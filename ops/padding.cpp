// Padding: pad and its adjoint pad_fold, each the other's backward (as slice
// and unslice). Both check their arguments as PyTorch 1.13's F.pad does, fill
// one table per padded axis saying which input position each output position
// reads (the mode is only there), and run the loops of engine/kernels/pad.hpp.
#include "ops/padding.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "engine/core/op.hpp"
#include "engine/kernels/pad.hpp"

namespace tg {

const char* padding_mode_name(PaddingMode mode)
{
    switch (mode) {
    case PaddingMode::constant: return "constant";
    case PaddingMode::reflect: return "reflect";
    case PaddingMode::replicate: return "replicate";
    case PaddingMode::circular: return "circular";
    }
    return nullptr;
}

namespace {

// The output shape of padding `shape` by `pads` in `mode`, or the error
// PyTorch 1.13 raises (and one where it would copy overlapping memory).
shape_type padded_shape(const shape_type& shape, const axes_type& pads, PaddingMode mode, const char* op)
{
    const char* name = padding_mode_name(mode);
    TG_CHECK(name != nullptr, op, ": unknown padding mode ", int64_t(mode), " (constant, reflect, replicate or circular)");
    for (int64_t n : shape) TG_CHECK(n >= 0, op, ": negative size in input shape ", shape);
    const int64_t rank = int64_t(shape.size()), axes = int64_t(pads.size() / 2);
    TG_CHECK(pads.size() % 2 == 0, op, ": pads ", pads, " for input of shape ", shape,
             " are not (before, after) pairs: their number must be even");
    TG_CHECK(axes <= rank, op, ": pads ", pads, " pad ", axes, " axes, but the input of shape ", shape, " has ", rank);
    if (mode != PaddingMode::constant) {
        TG_CHECK(axes >= 1 && axes <= 3 && (rank == axes + 1 || rank == axes + 2), op, ": ", name,
                 " padding pads 1 axis of a 2-d or 3-d input, 2 of a 3-d or 4-d, or 3 of a 4-d or 5-d; got pads ",
                 pads, " for input of shape ", shape);
        TG_CHECK(mode != PaddingMode::circular || rank == axes + 2, op, ": circular padding of ", axes,
                 " axes takes a batched ", axes + 2, "-d input [N, C, ...], got shape ", shape, " (pads ", pads, ")");
        // PyTorch's kernels take an empty batch, no other empty axis: reflect
        // of 1 or 2 axes counts the first axis as the batch even unbatched.
        const bool batch_first = mode == PaddingMode::reflect ? axes <= 2 || rank == axes + 2 : rank == axes + 2;
        bool filled = true;
        for (int64_t d = mode == PaddingMode::circular ? rank : batch_first ? 1 : 0; d < rank; ++d)
            filled = filled && shape[size_t(d)] != 0;
        TG_CHECK(filled, op, ": ", name, " padding of input of shape ", shape, ": no axis ",
                 batch_first ? "but the first (the batch) " : "", "may be empty");
    }
    shape_type out = shape;
    bool pads_any = false;
    for (int64_t i = 0; i < axes; ++i) {
        const size_t axis = size_t(rank - 1 - i);
        const int64_t n = shape[axis], before = pads[size_t(2 * i)], after = pads[size_t(2 * i + 1)];
        pads_any = pads_any || before > 0 || after > 0;
        int64_t size = 0;
        TG_CHECK(!__builtin_add_overflow(n, before, &size) && !__builtin_add_overflow(size, after, &size), op,
                 ": pads (", before, ", ", after, ") of axis ", axis, " (size ", n, ") of input shape ", shape,
                 " overflow int64");
        switch (mode) {
        case PaddingMode::constant:
            TG_CHECK(before >= -n && after >= -n && n + std::min<int64_t>(before, 0) + std::min<int64_t>(after, 0) >= 0,
                     op, ": pads (", before, ", ", after, ") crop more than the ", n, " elements of axis ", axis,
                     " of input shape ", shape);
            break;
        case PaddingMode::reflect:
            TG_CHECK(before < n && after < n, op, ": reflect pads (", before, ", ", after, ") of axis ", axis,
                     " must be less than its size ", n, " (input shape ", shape, ")");
            TG_CHECK(size >= 0, op, ": pads (", before, ", ", after, ") leave axis ", axis, " of input shape ", shape,
                     " a negative size ", size);
            break;
        case PaddingMode::replicate:
            TG_CHECK(size >= 0, op, ": pads (", before, ", ", after, ") leave axis ", axis, " of input shape ", shape,
                     " a negative size ", size);
            break;
        case PaddingMode::circular:
            TG_CHECK(before <= n && after <= n, op, ": circular pads (", before, ", ", after, ") of axis ", axis,
                     " wrap around more than once: at most its size ", n, " (input shape ", shape, ")");
            TG_CHECK(size >= 0, op, ": pads (", before, ", ", after, ") leave axis ", axis, " of input shape ", shape,
                     " a negative size ", size);
            break;
        }
        out[axis] = size;
    }
    if (mode == PaddingMode::constant && pads_any)
        for (int64_t i = 0; i < axes; ++i)
            TG_CHECK(out[size_t(rank - 1 - i)] > 0, op, ": pads ", pads, " leave axis ", rank - 1 - i,
                     " of input shape ", shape, " empty; PyTorch refuses that when a pad is positive");
    if (mode == PaddingMode::reflect || mode == PaddingMode::replicate) {
        bool any = false;
        for (int64_t i = 0; i < axes; ++i) any = any || out[size_t(rank - 1 - i)] > 0;
        TG_CHECK(any, op, ": input of shape ", shape, " is too small for ", name, " pads ", pads,
                 ": every padded axis of the output ", out, " is empty");
    }
    if (mode == PaddingMode::circular && numel_of(out, op) > 0)
        // PyTorch copies the crop, then wraps the output onto itself: a pad
        // longer than what the crops leave would copy overlapping memory.
        for (int64_t i = 0; i < axes; ++i) {
            const int64_t n = shape[size_t(rank - 1 - i)], before = pads[size_t(2 * i)], after = pads[size_t(2 * i + 1)];
            const int64_t kept = n - std::max<int64_t>(-before, 0) - std::max<int64_t>(-after, 0);
            TG_CHECK(kept >= std::max<int64_t>({before, after, 1}), op, ": circular pads (", before, ", ", after,
                     ") of axis ", rank - 1 - i, " of input shape ", shape, " wrap around more than once the ",
                     std::max<int64_t>(kept, 0), " elements the crop leaves");
        }
    numel_of(out, op);
    return out;
}

// Which input position each output position of the padded axes reads, for
// shapes that both hold elements.
kernels::PadLayout pad_layout(const shape_type& shape, const shape_type& out, const axes_type& pads, PaddingMode mode)
{
    kernels::PadLayout p;
    const size_t rank = shape.size(), first = rank - pads.size() / 2;
    for (size_t d = 0; d < first; ++d) p.outer *= shape[d];
    for (size_t d = first; d < rank; ++d) {
        const size_t pair = 2 * (rank - 1 - d);
        kernels::PadAxis a{shape[d], out[d], pads[pair], {}};
        const int64_t n = a.in_size, after = pads[pair + 1];
        // Circular: the crops first, then the rest repeated from its start.
        const int64_t crop = std::max<int64_t>(-a.before, 0), lead = std::max<int64_t>(a.before, 0);
        const int64_t kept = mode == PaddingMode::circular ? n - crop - std::max<int64_t>(-after, 0) : n;
        a.source.resize(size_t(a.out_size));
        for (int64_t j = 0; j < a.out_size; ++j) {
            __int128 s = __int128(j) - a.before;  // a spoiled pad may be near ±2^63
            switch (mode) {
            case PaddingMode::constant: s = s >= 0 && s < n ? s : -1; break;
            case PaddingMode::reflect: s = s < 0 ? -s : s >= n ? 2 * (n - 1) - s : s; break;
            case PaddingMode::replicate: s = std::clamp<__int128>(s, 0, n - 1); break;
            case PaddingMode::circular: s = crop + ((j - lead) % kept + kept) % kept; break;
            }
            a.source[size_t(j)] = int64_t(s);
        }
        p.in_block *= a.in_size;
        p.out_block *= a.out_size;
        p.axes.push_back(std::move(a));
    }
    return p;
}

// The constant in x's dtype, refused where PyTorch refuses to convert it.
void check_value(double value, Dtype dtype)
{
    if (dtype == int64)
        TG_CHECK(value >= -0x1p63 && value < 0x1p63, "pad: value ", value, " does not fit an int64 input");
    if (dtype == float32)
        TG_CHECK(!std::isfinite(value) || std::abs(value) <= FLT_MAX, "pad: value ", value,
                 " overflows a float32 input");
}
}  // namespace

namespace {
struct Pad : Op<Pad> {
    static constexpr const char* name = "pad";
    struct Attrs {
        axes_type pads;
        PaddingMode mode = PaddingMode::constant;
        double value = 0;
    };
    // An output element is an input element or the constant: the replay finds
    // which by running the op on element numbers, where a constant other than
    // 0 would read as one.
    static ReplayForm replay_form(const Attrs& a)
    {
        return a.mode == PaddingMode::constant && a.value != 0 ? ReplayForm::dense : ReplayForm::index_map;
    }
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "pad: undefined input");
        const char* mode = padding_mode_name(a.mode);
        TG_CHECK(mode == nullptr || a.mode == PaddingMode::constant || a.value == 0, "pad: ", mode,
                 " padding takes no value, got ", a.value);
        const shape_type out_shape = padded_shape(x.shape(), a.pads, a.mode, "pad");
        TG_CHECK(is_floating(x.dtype()) || a.mode == PaddingMode::constant || a.mode == PaddingMode::circular,
                 "pad: ", mode, " padding takes a float32 or float64 input, got ", dtype_name(x.dtype()), " ",
                 x.shape());
        check_value(a.value, x.dtype());
        Tensor out = Tensor::empty(out_shape, x.dtype());
        if (out.numel() == 0) return out;
        TG_DISPATCH_ALL(x.dtype(), "pad", [&] {
            const scalar_t* src = x.data<scalar_t>();
            scalar_t* dst = out.data<scalar_t>();
            const auto value = scalar_t(a.value);
            if (x.numel() == 0) std::fill(dst, dst + out.numel(), value);  // constant: nothing but padding
            else if (a.pads.empty()) std::memcpy(dst, src, size_t(x.numel()) * sizeof(scalar_t));
            else kernels::pad_forward(pad_layout(x.shape(), out_shape, a.pads, a.mode), src, dst, value);
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {pad_fold(g.grad, g.input_shape(0), a.pads, a.mode)};
    }
    static std::vector<OpSample> samples();
};
TG_REGISTER_OP(Pad);
}  // namespace

Tensor pad(const Tensor& x, const axes_type& pads, PaddingMode mode, double value)
{
    return Pad::call({x}, {pads, mode, value});
}

namespace {
struct PadFold : Op<PadFold> {
    static constexpr const char* name = "pad_fold";
    struct Attrs {
        shape_type shape;  // pad's input
        axes_type pads;
        PaddingMode mode = PaddingMode::constant;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& g = in[0];
        TG_CHECK(g.defined(), "pad_fold: undefined gradient");
        TG_CHECK(is_floating(g.dtype()), "pad_fold: expected a float32 or float64 gradient, got ", dtype_name(g.dtype()));
        const shape_type padded = padded_shape(a.shape, a.pads, a.mode, "pad_fold");
        TG_CHECK(g.shape() == padded, "pad_fold: gradient of shape ", g.shape(), " for input shape ", a.shape,
                 " and ", padding_mode_name(a.mode), " pads ", a.pads, ", which make ", padded);
        numel_of(a.shape, "pad_fold");
        Tensor out = zeros(a.shape, g.dtype());
        if (g.numel() == 0 || out.numel() == 0) return out;
        TG_DISPATCH_FLOATING(g.dtype(), "pad_fold", [&] {
            const scalar_t* src = g.data<scalar_t>();
            scalar_t* dst = out.data<scalar_t>();
            if (a.pads.empty()) std::memcpy(dst, src, size_t(g.numel()) * sizeof(scalar_t));
            else kernels::pad_fold(pad_layout(a.shape, padded, a.pads, a.mode), src, dst);
        });
        return out;
    }
    static tensor_list backward(const BackwardArgs& b, const Attrs& a) { return {pad(b.grad, a.pads, a.mode)}; }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,3,8] onto [2,3,5], reflect (2, 1)", {real("g", {2, 3, 8})},
                       Attrs{{2, 3, 5}, {2, 1}, PaddingMode::reflect}),
                sample("[2,2,6,7] onto [2,2,4,5], replicate (1, 1, 2, 0)", {real("g", {2, 2, 6, 7})},
                       Attrs{{2, 2, 4, 5}, {1, 1, 2, 0}, PaddingMode::replicate}),
                sample("[1,2,7] onto [1,2,5], circular (-1, 3)", {real("g", {1, 2, 7})},
                       Attrs{{1, 2, 5}, {-1, 3}, PaddingMode::circular}),
                sample("[3,4] onto [3,5], constant (-2, 1)", {real("g", {3, 4})},
                       Attrs{{3, 5}, {-2, 1}, PaddingMode::constant})};
    }
};
TG_REGISTER_OP(PadFold);
}  // namespace

Tensor pad_fold(const Tensor& g, const shape_type& input_shape, const axes_type& pads, PaddingMode mode)
{
    return PadFold::call({g}, {input_shape, pads, mode});
}

// Every mode, on odd sizes, with pads of 0, asymmetric pads, each rank a mode
// takes (unbatched and batched), pads as large as a mode allows, and crops.
std::vector<OpSample> Pad::samples()
{
    using enum PaddingMode;
    return {
        sample("[2,3,5] constant (1, 2), value 0.5", {real("x", {2, 3, 5})}, Attrs{{1, 2}, constant, 0.5}),
        sample("[2,3,4,5] constant (2, 0, 1, 3)", {real("x", {2, 3, 4, 5})}, Attrs{{2, 0, 1, 3}, constant, 0}),
        sample("[3,5] constant (-1, 2, 0, -1): crops and pads", {real("x", {3, 5})}, Attrs{{-1, 2, 0, -1}, constant, 0}),
        sample("[4,5] constant (-2, -1): a crop only", {real("x", {4, 5})}, Attrs{{-2, -1}, constant, 0}),
        sample("[2,3,3] constant on every axis (1, 0, 0, 1, 2, 1)", {real("x", {2, 3, 3})},
               Attrs{{1, 0, 0, 1, 2, 1}, constant, 0}),
        sample("[3,5] reflect (2, 3), unbatched", {real("x", {3, 5})}, Attrs{{2, 3}, reflect, 0}),
        sample("[2,3,5] reflect (4, 0): a pad one less than the axis", {real("x", {2, 3, 5})}, Attrs{{4, 0}, reflect, 0}),
        sample("[2,3,4,5] reflect (1, 2, 3, 0)", {real("x", {2, 3, 4, 5})}, Attrs{{1, 2, 3, 0}, reflect, 0}),
        sample("[3,4,5] reflect (0, 1, 2, 2), unbatched", {real("x", {3, 4, 5})}, Attrs{{0, 1, 2, 2}, reflect, 0}),
        sample("[1,2,3,4,3] reflect 3 axes (1, 1, 2, 0, 0, 2)", {real("x", {1, 2, 3, 4, 3})},
               Attrs{{1, 1, 2, 0, 0, 2}, reflect, 0}),
        sample("[2,1,3,5] reflect (-1, 2, 1, -1): crops", {real("x", {2, 1, 3, 5})}, Attrs{{-1, 2, 1, -1}, reflect, 0}),
        sample("[2,3,5] replicate (3, 6): pads beyond the axis", {real("x", {2, 3, 5})}, Attrs{{3, 6}, replicate, 0}),
        sample("[2,3,4,5] replicate (1, 0, 2, 2)", {real("x", {2, 3, 4, 5})}, Attrs{{1, 0, 2, 2}, replicate, 0}),
        sample("[2,3,3,4] replicate 3 axes, unbatched (1, 1, 0, 1, 1, 0)", {real("x", {2, 3, 3, 4})},
               Attrs{{1, 1, 0, 1, 1, 0}, replicate, 0}),
        sample("[2,1,3,5] replicate (-2, 1, 1, 0): a crop", {real("x", {2, 1, 3, 5})}, Attrs{{-2, 1, 1, 0}, replicate, 0}),
        sample("[2,2,5] circular (2, 5): a pad as long as the axis", {real("x", {2, 2, 5})}, Attrs{{2, 5}, circular, 0}),
        sample("[2,3,4,5] circular (1, 2, 3, 0)", {real("x", {2, 3, 4, 5})}, Attrs{{1, 2, 3, 0}, circular, 0}),
        sample("[1,2,3,4,3] circular 3 axes (1, 0, 2, 1, 1, 1)", {real("x", {1, 2, 3, 4, 3})},
               Attrs{{1, 0, 2, 1, 1, 1}, circular, 0}),
        sample("[1,2,3,5] circular (-1, 2, 2, -1): the crop wrapped", {real("x", {1, 2, 3, 5})},
               Attrs{{-1, 2, 2, -1}, circular, 0}),
    };
}

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_padding_ops() {}
}  // namespace detail

}  // namespace tg
