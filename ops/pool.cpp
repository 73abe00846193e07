// Pooling: the op definitions (the loops are in engine/kernels/pool.cpp). Max
// pooling keeps the argmax of each window (int64) and its backward scatters
// to it; the scatter and the gather are each other's adjoint, so the gradient
// can be differentiated again. Average pooling and adaptive average pooling
// are linear: each op's backward is its adjoint, and the adjoint's backward is
// the op.
#include "ops/pool.hpp"

#include <algorithm>
#include <any>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "engine/core/op.hpp"
#include "engine/kernels/pool.hpp"
#include "ops/elementwise.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

void check_input(const char* op, const Tensor& x)
{
    TG_CHECK(x.defined(), op, ": undefined input");
    TG_CHECK(x.dim() == 4, op, ": expected input [N, C, H, W] (or [C, H, W]), got shape ", x.shape());
    TG_CHECK(is_floating(x.dtype()), op, ": input must be float32 or float64, got ", dtype_name(x.dtype()));
}

void check_input_shape(const char* op, const Tensor& grad, const shape_type& input_shape)
{
    TG_CHECK(grad.defined(), op, ": undefined gradient");
    TG_CHECK(is_floating(grad.dtype()), op, ": gradient must be float32 or float64, got ", dtype_name(grad.dtype()));
    TG_CHECK(input_shape.size() == 4 && grad.dim() == 4, op, ": expected a 4-d gradient and input shape, got ",
             grad.shape(), " and ", input_shape);
}

// An adaptive window always covers at least one element: a plane of height or
// width 0 has no average to take (PyTorch rejects it too).
void check_nonempty_plane(const char* op, const shape_type& input_shape)
{
    TG_CHECK(input_shape[2] >= 1 && input_shape[3] >= 1, op, ": input of shape ", input_shape,
             " has an empty plane: no window to average");
}

// Checks that grad has the shape of input_shape's pooled output.
void check_grad(const char* op, const Tensor& grad, const shape_type& input_shape, const shape_type& want)
{
    TG_CHECK(grad.shape() == want, op, ": gradient of shape ", grad.shape(), " for an input of shape ", input_shape,
             " whose pooled shape is ", want);
}

void check_indices(const char* op, const Tensor& indices, const shape_type& shape)
{
    TG_CHECK(indices.defined() && indices.dtype() == int64, op, ": indices must be an int64 tensor");
    TG_CHECK(indices.shape() == shape, op, ": indices of shape ", indices.shape(), " for values of shape ", shape);
}

// `bad`: -1, or the position of an index the kernel found outside its plane.
void check_in_plane(const char* op, int64_t bad, const Tensor& indices, const shape_type& input_shape)
{
    TG_CHECK(bad < 0, op, ": index ", indices.data<int64_t>()[bad], " outside the ", input_shape[2], "x",
             input_shape[3], " plane of input shape ", input_shape);
}

struct PoolParams {
    Int2 kernel, stride, padding, dilation = 1;
    bool ceil_mode = false;
};

// Checks kernel, stride, padding and dilation against the input size, as
// PyTorch; a stride not given is the kernel.
PoolParams pool_params(const char* op, const shape_type& input, Int2 kernel, Int2 stride, Int2 padding,
                       Int2 dilation = 1, bool ceil_mode = false)
{
    if (!stride.given()) stride = kernel;
    TG_CHECK(kernel.h >= 1 && kernel.w >= 1, op, ": kernel size (", kernel.h, ", ", kernel.w, ") must be positive");
    TG_CHECK(stride.h >= 1 && stride.w >= 1, op, ": stride (", stride.h, ", ", stride.w, ") must be positive");
    TG_CHECK(dilation.h >= 1 && dilation.w >= 1, op, ": dilation (", dilation.h, ", ", dilation.w,
             ") must be positive");
    // p <= k / 2 rather than 2·p <= k: a padding near 2^63 must not wrap. Half
    // the kernel, not of the dilated window, as PyTorch.
    TG_CHECK(padding.h >= 0 && padding.w >= 0 && padding.h <= kernel.h / 2 && padding.w <= kernel.w / 2, op,
             ": padding (", padding.h, ", ", padding.w, ") must be between 0 and half the kernel (", kernel.h, ", ",
             kernel.w, ")");
    const int64_t h = input[2], w = input[3];
    // As PyTorch: a batch or channels of 0 are fine, an empty plane is not (its
    // windows would hold padding only).
    TG_CHECK(h >= 1 && w >= 1, op, ": input of shape ", input, " has an empty plane");
    const int64_t ho = kernels::pool_out_size(h, kernel.h, stride.h, padding.h, dilation.h, ceil_mode);
    const int64_t wo = kernels::pool_out_size(w, kernel.w, stride.w, padding.w, dilation.w, ceil_mode);
    TG_CHECK(ho >= 1 && wo >= 1, op, ": kernel (", kernel.h, ", ", kernel.w, ") is larger than the input's plane (", h,
             ", ", w, ") with padding (", padding.h, ", ", padding.w, ") on each side, at dilation (", dilation.h, ", ",
             dilation.w, "): output size (", ho, ", ", wo, ") for input shape ", input);
    return {kernel, stride, padding, dilation, ceil_mode};
}

// The output shape [N, C, Ho, Wo], known before any window table is built.
shape_type pooled_shape(const shape_type& input, const PoolParams& p)
{
    return {input[0], input[1],
            kernels::pool_out_size(input[2], p.kernel.h, p.stride.h, p.padding.h, p.dilation.h, p.ceil_mode),
            kernels::pool_out_size(input[3], p.kernel.w, p.stride.w, p.padding.w, p.dilation.w, p.ceil_mode)};
}

kernels::PoolWindows pool_windows(const shape_type& input, const PoolParams& p, bool count_pad,
                                  int64_t divisor_override = 0)
{
    kernels::PoolWindows win =
        kernels::pool_windows(input[0] * input[1], input[2], input[3],
                              {p.kernel.h, p.kernel.w, p.stride.h, p.stride.w, p.padding.h, p.padding.w, p.dilation.h,
                               p.dilation.w, p.ceil_mode},
                              count_pad);
    win.divisor_override = double(divisor_override);
    return win;
}

kernels::PoolWindows adaptive_windows(const shape_type& input, Int2 out)
{
    return kernels::adaptive_windows(input[0] * input[1], input[2], input[3], out.h, out.w);
}

Tensor mean_forward(const char* op, const Tensor& x, const PoolParams& pp, bool count_pad, int64_t divisor_override)
{
    Tensor y = Tensor::empty(pooled_shape(x.shape(), pp), x.dtype(), op);  // first: it bounds the tables
    const kernels::PoolWindows win = pool_windows(x.shape(), pp, count_pad, divisor_override);
    TG_DISPATCH_FLOATING(x.dtype(), op, [&] { kernels::window_mean(x.data<scalar_t>(), y.data<scalar_t>(), win); });
    return y;
}

std::optional<int64_t> divisor_or_none(int64_t d) { return d ? std::optional<int64_t>(d) : std::nullopt; }

// Runs a 4-d op on an unbatched [C, H, W] input.
template <class F>
Tensor unbatched(const Tensor& x, F f)
{
    return squeeze(f(unsqueeze(x, 0)), 0);
}

// Replay of max pooling for a few changed inputs (engine/check/replay.hpp):
// the maximum again over each window that holds a changed element.
// What the rule keeps between runs (DeltaArgs::cache): the window tables, and
// per input row and column the windows whose span holds it, [lo, hi).
struct MaxPoolReplay {
    kernels::PoolWindows win;
    std::vector<int64_t> row_lo, row_hi, col_lo, col_hi;
};
void spans(const kernels::PoolAxis& axis, int64_t size, std::vector<int64_t>& lo, std::vector<int64_t>& hi)
{
    lo.assign(size_t(size), axis.size());
    hi.assign(size_t(size), 0);
    for (int64_t o = 0; o < int64_t(axis.begin.size()); ++o)  // (no tables for no planes)
        for (int64_t i = std::max<int64_t>(axis.begin[size_t(o)], 0); i < std::min(axis.end[size_t(o)], size); ++i) {
            lo[size_t(i)] = std::min(lo[size_t(i)], o);
            hi[size_t(i)] = o + 1;
        }
}

bool max_pool2d_delta(DeltaArgs& d, const PoolParams& pp)
{
    const ReplayInput& x = d.inputs[0];
    auto* cached = std::any_cast<MaxPoolReplay>(&d.cache());
    if (!cached) {
        MaxPoolReplay r{pool_windows(x.base->shape(), pp, true), {}, {}, {}, {}};
        spans(r.win.rows, r.win.h, r.row_lo, r.row_hi);
        spans(r.win.cols, r.win.w, r.col_lo, r.col_hi);
        cached = &d.cache().emplace<MaxPoolReplay>(std::move(r));
    }
    const MaxPoolReplay& r = *cached;
    const kernels::PoolWindows& win = r.win;
    const int64_t ho = win.ho(), wo = win.wo(), plane = win.h * win.w;
    const double* xv = x.data();
    for (int64_t f : *x.changed) {
        int64_t p = f / plane, ih = f % plane / win.w, iw = f % win.w;
        for (int64_t oh = r.row_lo[size_t(ih)]; oh < r.row_hi[size_t(ih)]; ++oh) {
            const int64_t r0 = win.rows.begin[size_t(oh)];
            if (ih < r0 || ih >= win.rows.end[size_t(oh)] || (ih - r0) % win.rows.step != 0) continue;
            for (int64_t ow = r.col_lo[size_t(iw)]; ow < r.col_hi[size_t(iw)]; ++ow) {
                const int64_t c0 = win.cols.begin[size_t(ow)];
                if (iw < c0 || iw >= win.cols.end[size_t(ow)] || (iw - c0) % win.cols.step != 0) continue;
                const double* xp = xv + p * plane;
                // As the forward's kernels: the first maximum, the last NaN.
                double v = xp[r0 * win.w + c0];
                for (int64_t rr = r0; rr < win.rows.end[size_t(oh)]; rr += win.rows.step)
                    for (int64_t c = c0; c < win.cols.end[size_t(ow)]; c += win.cols.step)
                        if (xp[rr * win.w + c] > v || std::isnan(xp[rr * win.w + c])) v = xp[rr * win.w + c];
                int64_t o = (p * ho + oh) * wo + ow;
                if (std::memcmp(&v, &d.out[o], sizeof v) == 0) continue;
                d.out[o] = v;
                d.touch(o);
            }
        }
    }
    return true;
}

// --- what the samples feed the kernels -------------------------------------------------------

// x [N, C, H, W] with each element repeated rh × rw times: [N, C, rh·H, rw·W]
// (a 2×2 window of repeat(x, 2, 2) holds one value four times: a tie).
Tensor repeat(const Tensor& x, int64_t rh, int64_t rw)
{
    TG_CHECK(x.defined() && x.dim() == 4, "repeat: expected a tensor [N, C, H, W]");
    const shape_type& s = x.shape();
    TG_CHECK(s[2] <= (int64_t(1) << 40) && s[3] <= (int64_t(1) << 40), "repeat: a plane of ", s[2], " x ", s[3],
             " is too large to repeat");
    Tensor t = broadcast_to(reshape(x, {s[0], s[1], s[2], 1, s[3], 1}), {s[0], s[1], s[2], rh, s[3], rw});
    return reshape(t, {s[0], s[1], rh * s[2], rw * s[3]});
}

// x with NaN at the flat positions `at` (x + c, c 0 elsewhere).
Tensor with_nan(const Tensor& x, const std::vector<int64_t>& at)
{
    TG_CHECK(x.defined(), "with_nan: undefined tensor");
    std::vector<double> c(size_t(x.numel()), 0.0);
    for (int64_t i : at) {
        // A sample's shape may be changed (the empty-tensor sweep makes it empty).
        TG_CHECK(i < x.numel(), "with_nan: position ", i, " is outside shape ", x.shape());
        c[size_t(i)] = std::nan("");
    }
    return x + from_values(c, x.shape(), x.dtype());
}

// y where it is a number, 0 where NaN, and so is its gradient (relu_backward
// with a 0/1 mask selects): what the gradient checker can compare.
Tensor zero_nan(const Tensor& y) { return relu_backward(y, eq(y, y)); }

// The indices of 2×2 stride-2 windows tiling [N, C, 2·Ho, 2·Wo] for outputs
// [N, C, Ho, Wo]: output o takes element k[o] of its window (k an index input
// in [0, 4): top left, top right, bottom left, bottom right); the outputs at
// the flat positions `foreign` take an index of the next window in their row
// (of the one before, for the last; rows of at least 2 windows), outside
// their own window.
Tensor window_indices(const Tensor& k, const std::vector<int64_t>& foreign = {})
{
    // A sample helper, but the bad-input sweep feeds it anything.
    TG_CHECK(k.defined() && k.dtype() == int64 && k.dim() == 4, "window_indices: k must be int64 [N, C, Ho, Wo]");
    TG_CHECK(k.shape()[2] <= (int64_t(1) << 40) && k.shape()[3] <= (int64_t(1) << 40),
             "window_indices: k of shape ", k.shape(), " is too large");
    const int64_t ho = k.shape()[2], wo = k.shape()[3], w = 2 * wo;
    Tensor idx = Tensor::empty(k.shape(), int64);
    const int64_t* kd = k.data<int64_t>();
    for (int64_t o = 0; o < k.numel(); ++o)
        TG_CHECK(kd[o] >= 0 && kd[o] < 4, "window_indices: k[", o, "] = ", kd[o], " is not a window position 0..3");
    int64_t* d = idx.data<int64_t>();
    auto at = [&](int64_t oh, int64_t ow, int64_t e) { return 2 * oh * w + 2 * ow + (e & 1) + (e >> 1) * w; };
    for (int64_t o = 0; o < k.numel(); ++o) d[o] = at(o / wo % ho, o % wo, kd[o]);
    for (int64_t o : foreign) {
        TG_CHECK(o < k.numel(), "window_indices: position ", o, " is outside shape ", k.shape());
        d[o] = at(o / wo % ho, o % wo + 1 < wo ? o % wo + 1 : o % wo - 1, kd[o]);
    }
    return idx;
}

}  // namespace

// --- max pooling ------------------------------------------------------------------------------

namespace {
struct MaxPool2d : Op<MaxPool2d> {
    static constexpr const char* name = "max_pool2d";
    struct Attrs {
        Int2 kernel, stride, padding;  // completed by forward (stride not given: the kernel)
        Int2 dilation = 1;
        bool ceil_mode = false;
    };
    // Keeps the argmax of each window in its plane (int64).
    static Tensor forward(TensorRefs in, Attrs& a, OpContext& ctx)
    {
        const Tensor& x = in[0];
        check_input("max_pool2d", x);
        PoolParams pp = pool_params("max_pool2d", x.shape(), a.kernel, a.stride, a.padding, a.dilation, a.ceil_mode);
        a = {pp.kernel, pp.stride, pp.padding, pp.dilation, pp.ceil_mode};
        // The outputs first: their size bounds the window tables'.
        Tensor y = Tensor::empty(pooled_shape(x.shape(), pp), x.dtype(), name);
        Tensor indices = Tensor::empty(y.shape(), int64, name);
        kernels::PoolWindows win = pool_windows(x.shape(), pp, true);
        // PyTorch gives such a window -inf and an index outside the plane.
        TG_CHECK(!kernels::has_empty_window(win), "max_pool2d: with dilation (", pp.dilation.h, ", ", pp.dilation.w,
                 ") and padding (", pp.padding.h, ", ", pp.padding.w, "), a window of kernel (", pp.kernel.h, ", ",
                 pp.kernel.w, ") holds no element of the input of shape ", x.shape(), ", only padding");
        TG_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
            kernels::window_max(x.data<scalar_t>(), y.data<scalar_t>(), indices.data<int64_t>(), win);
        });
        ctx.keep(indices);
        return y;
    }
    static tensor_list backward(const BackwardArgs& a) { return {max_pool2d_backward(a.grad, a.kept(0), a.input_shape(0))}; }
    static bool delta(DeltaArgs& d, const Attrs& a)
    {
        return max_pool2d_delta(d, {a.kernel, a.stride, a.padding, a.dilation, a.ceil_mode});
    }
    // Float64 runs the scalar loops, float32 (the sweep's float32 check) the
    // SIMD kernels of this CPU: 8 windows a step on AVX2, 4 on SSE2.
    static std::vector<OpSample> samples()
    {
        const Attrs k2{2, Int2(), 0};
        return {
            // The generic loop: padding, odd sizes, overlapping and non-square windows.
            sample("[2,2,5,5] k3 s2 p1 (odd size, padding)", {real("x", {2, 2, 5, 5})}, Attrs{3, 2, 1}),
            sample("[1,3,5,7] k(2,3) s(1,2) p(1,1) (overlapping, non-square)", {real("x", {1, 3, 5, 7})},
                   Attrs{{2, 3}, {1, 2}, {1, 1}}),
            tg::sample("[3,5,4] unbatched, k2 s1", {real("x", {3, 5, 4})},
                       [](const tensor_list& x) { return max_pool2d(x[0], 2, 1); }),
            // ceil_mode: last windows hanging over the padded input (rows 6 ->
            // 4 windows, not 3; columns 8 -> 5), a window of one element (k2
            // on odd sizes), and the rule that drops a last window starting
            // past the input and its left padding (5 with k3 s3 p1: 2, not 3).
            sample("[1,2,6,8] k3 s2 p1 ceil_mode (windows hang over)", {real("x", {1, 2, 6, 8})},
                   Attrs{3, 2, 1, 1, true}),
            sample("[2,2,5,7] k2 ceil_mode (the last row and column: windows of 1 and 2)", {real("x", {2, 2, 5, 7})},
                   Attrs{2, Int2(), 0, 1, true}),
            sample("[1,2,5,7] k3 s3 p1 ceil_mode (a last window past the padding dropped)", {real("x", {1, 2, 5, 7})},
                   Attrs{3, 3, 1, 1, true}),
            // Dilation: taps d apart, the first inside the input after padding.
            sample("[1,2,7,6] k3 s1 p1 dilation 2", {real("x", {1, 2, 7, 6})}, Attrs{3, 1, 1, 2}),
            sample("[1,2,7,9] k(2,3) s(2,1) p(1,1) dilation (2,3) ceil_mode (non-square everything)",
                   {real("x", {1, 2, 7, 9})}, Attrs{{2, 3}, {2, 1}, {1, 1}, {2, 3}, true}),
            tg::sample("[2,6,5] unbatched, k(3,2) s(2,1) p(1,0) dilation (1,2) ceil_mode", {real("x", {2, 6, 5})},
                       [](const tensor_list& x) { return max_pool2d(x[0], {3, 2}, {2, 1}, {1, 0}, {1, 2}, true); }),
            // As many windows as 2×2 stride-2 ones, but not those: 3 wide from
            // 2·o (rows and columns), and 2×2 rows with columns 3 wide, padded.
            sample("[1,2,5,5] k3 s2 (not 2x2: windows end past 2o + 2)", {real("x", {1, 2, 5, 5})}, Attrs{3, 2, 0}),
            sample("[1,2,4,6] k(2,3) s2 p(0,1) (2x2 rows, other columns)", {real("x", {1, 2, 4, 6})},
                   Attrs{{2, 3}, 2, {0, 1}}),
            // The 2×2 stride-2 kernels; the row widths pick their branches.
            sample("[2,2,4,32] k2: rows of 16 windows, whole vector steps", {real("x", {2, 2, 4, 32})}, k2),
            sample("[2,3,6,22] k2: rows of 11, a last vector step overlapping the one before",
                   {real("x", {2, 3, 6, 22})}, k2),
            sample("[1,3,4,12] k2: rows of 6 (on AVX2 narrower than a step: steps into the rows after, the last "
                   "rows scalar)",
                   {real("x", {1, 3, 4, 12})}, k2),
            sample("[2,2,4,4] k2 (stride = kernel): rows of 2, steps into the rows after, the last rows scalar",
                   {real("x", {2, 2, 4, 4})}, k2),
            sample("[2,2,5,19] k2: odd H and W, the last row and column in no window (the backward scatters)",
                   {real("x", {2, 2, 5, 19})}, k2),
            // Ties (values repeated): the first maximum in scan order takes the
            // gradient (the checker sees the sum over the copies;
            // tests/test_kernels_pool.cpp checks which copy).
            tg::sample("[2,2,4,22] k2 of x [2,2,2,11] repeated 2x2: every window a four-way tie",
                       {real("x", {2, 2, 2, 11})},
                       [](const tensor_list& x) { return max_pool2d(repeat(x[0], 2, 2), 2); }),
            tg::sample("[1,2,5,8] k3 s1 p1 of x [1,2,5,4] with columns repeated: ties in the generic loop",
                       {real("x", {1, 2, 5, 4})},
                       [](const tensor_list& x) { return max_pool2d(repeat(x[0], 1, 2), 3, 1, 1); }),
            // NaN wins its window (then zeroed here for the checker): first in
            // scan order, last after a maximum, two in a window (the last
            // wins), in the overlapping step; and in plane 1's first window.
            tg::sample("[2,2,4,20] k2 with NaN (windows (0,1) first, (0,3) last, (0,5) two, (1,9) overlap step)",
                       {real("x", {2, 2, 4, 20})},
                       [](const tensor_list& x) {
                           return zero_nan(max_pool2d(with_nan(x[0], {2, 27, 11, 30, 59, 81}), 2));
                       }),
            tg::sample("[1,2,5,5] k3 s2 p1 with NaN: the generic loop takes the last of a window",
                       {real("x", {1, 2, 5, 5})},
                       [](const tensor_list& x) {
                           return zero_nan(max_pool2d(with_nan(x[0], {0, 12, 19, 23}), 3, 2, 1));
                       }),
        };
    }
};
TG_REGISTER_OP(MaxPool2d);
}  // namespace

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding,
                                                  Int2 dilation, bool ceil_mode)
{
    if (x.defined() && x.dim() == 3) {
        auto [y, idx] = max_pool2d_with_indices(unsqueeze(x, 0), kernel, stride, padding, dilation, ceil_mode);
        return {squeeze(y, 0), squeeze(idx, 0)};
    }
    OpResult r = call_op_kept<MaxPool2d>({x}, {kernel, stride, padding, dilation, ceil_mode});
    return {r.output, r.kept[0]};
}

Tensor max_pool2d(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding, Int2 dilation, bool ceil_mode)
{
    return max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil_mode).first;
}

namespace {
// Inputs: the gradient of the pooled output and the argmax indices.
struct MaxPool2dBackward : Op<MaxPool2dBackward> {
    static constexpr const char* name = "max_pool2d_backward";
    static constexpr Saves saves = save_input(1);
    struct Attrs {
        shape_type input_shape;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor &grad = in[0], &indices = in[1];
        const shape_type& s = a.input_shape;
        check_input_shape("max_pool2d_backward", grad, s);
        check_indices("max_pool2d_backward", indices, grad.shape());
        TG_CHECK(grad.shape()[0] == s[0] && grad.shape()[1] == s[1], "max_pool2d_backward: gradient of shape ",
                 grad.shape(), " for an input of shape ", s);
        Tensor dx = Tensor::empty(s, grad.dtype());
        const int64_t bad = TG_DISPATCH_FLOATING(grad.dtype(), "max_pool2d_backward", [&] {
            return kernels::max_pool_backward(grad.data<scalar_t>(), indices.data<int64_t>(), dx.data<scalar_t>(),
                                              s[0] * s[1], s[2], s[3], grad.shape()[2], grad.shape()[3]);
        });
        check_in_plane("max_pool2d_backward", bad, indices, s);
        return dx;
    }
    static tensor_list backward(const BackwardArgs& a) { return {max_pool2d_gather(a.grad, a.input(1)), Tensor()}; }
    // Float64 scatters; float32 writes 2×2 stride-2 windows tiling the plane
    // densely with the SIMD kernel, when each index is in its own window.
    static std::vector<OpSample> samples()
    {
        auto tiled = [](std::string label, shape_type g, std::vector<int64_t> foreign = {}) {
            shape_type x{g[0], g[1], 2 * g[2], 2 * g[3]};
            return tg::sample(std::move(label), {real("g", g), index("k", g, 4)},
                              [x, foreign](const tensor_list& in) {
                                  return max_pool2d_backward(in[0], window_indices(in[1], foreign), x);
                              });
        };
        return {
            sample("[2,2,3,3] into [2,2,5,5] (any indices, repeats add up: the scatter)",
                   {real("g", {2, 2, 3, 3}), index("indices", {2, 2, 3, 3}, 25)}, Attrs{{2, 2, 5, 5}}),
            // Each side of the dense test in float32: W odd, Ho != H/2, Wo != W/2 scatter.
            sample("[1,2,2,2] into [1,2,4,5] (W odd)", {real("g", {1, 2, 2, 2}), index("indices", {1, 2, 2, 2}, 20)},
                   Attrs{{1, 2, 4, 5}}),
            sample("[1,2,3,2] into [1,2,4,4] (Ho != H/2)",
                   {real("g", {1, 2, 3, 2}), index("indices", {1, 2, 3, 2}, 16)}, Attrs{{1, 2, 4, 4}}),
            sample("[1,2,2,3] into [1,2,4,4] (Wo != W/2)",
                   {real("g", {1, 2, 2, 3}), index("indices", {1, 2, 2, 3}, 16)}, Attrs{{1, 2, 4, 4}}),
            tiled("[1,2,3,16] into [1,2,6,32], own windows: dense, whole vector steps", {1, 2, 3, 16}),
            tiled("[2,3,4,11] into [2,3,8,22], own windows: dense, a last step overlapping", {2, 3, 4, 11}),
            // Some planes hold an index of another window: the dense kernel
            // gives up on them and they are scattered; the others stay dense.
            tiled("[2,2,4,11] into [2,2,8,22], planes 0 and 2 with a foreign index (whole step, overlapping step)",
                  {2, 2, 4, 11}, {3, 2 * 44 + 11 + 10}),
            tiled("[2,2,2,6] into [2,2,4,12], plane 1 with a foreign index (rows of 6: on AVX2 steps into the rows "
                  "after)",
                  {2, 2, 2, 6}, {12 + 6 + 5}),
            tiled("[2,2,3,3] into [2,2,6,6], rows of 3: planes 1, 2 dense; a foreign index in a step into the rows "
                  "after (plane 0) and in a last, scalar row (plane 3)",
                  {2, 2, 3, 3}, {1, 27 + 6 + 1}),
        };
    }
};
TG_REGISTER_OP(MaxPool2dBackward);

// Inputs: the values and the argmax indices; the adjoint of max_pool2d_backward.
struct MaxPool2dGather : Op<MaxPool2dGather> {
    static constexpr const char* name = "max_pool2d_gather";
    static constexpr Saves saves = save_input(1);
    static constexpr ReplayForm replay = ReplayForm::index_map;
    static Tensor forward(TensorRefs in)
    {
        const Tensor &x = in[0], &indices = in[1];
        check_input("max_pool2d_gather", x);
        TG_CHECK(indices.defined() && indices.dtype() == int64 && indices.dim() == 4 &&
                     indices.shape()[0] == x.shape()[0] && indices.shape()[1] == x.shape()[1],
                 "max_pool2d_gather: indices must be int64 [N, C, Ho, Wo] for input ", x.shape(), ", got ",
                 indices.defined() ? dtype_name(indices.dtype()) : "undefined", " ",
                 indices.defined() ? indices.shape() : shape_type{});
        const shape_type& s = x.shape();
        Tensor y = Tensor::empty(indices.shape(), x.dtype());
        const int64_t bad = TG_DISPATCH_FLOATING(x.dtype(), "max_pool2d_gather", [&] {
            return kernels::max_pool_gather(x.data<scalar_t>(), indices.data<int64_t>(), y.data<scalar_t>(),
                                            s[0] * s[1], s[2] * s[3], indices.shape()[2] * indices.shape()[3]);
        });
        check_in_plane("max_pool2d_gather", bad, indices, s);
        return y;
    }
    static tensor_list backward(const BackwardArgs& a)
    {
        return {max_pool2d_backward(a.grad, a.input(1), a.input_shape(0)), Tensor()};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,5,5] at [2,2,3,3]", {real("x", {2, 2, 5, 5}), index("indices", {2, 2, 3, 3}, 25)})};
    }
};
TG_REGISTER_OP(MaxPool2dGather);
}  // namespace

Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const shape_type& input_shape)
{
    return MaxPool2dBackward::call({grad, indices}, {input_shape});
}

Tensor max_pool2d_gather(const Tensor& x, const Tensor& indices) { return MaxPool2dGather::call({x, indices}); }
// --- average pooling -------------------------------------------------------------------------

namespace {
struct AvgPool2d : Op<AvgPool2d> {
    static constexpr const char* name = "avg_pool2d";
    struct Attrs {
        Int2 kernel, stride, padding;  // completed by forward
        bool count_include_pad;
        bool ceil_mode = false;
        int64_t divisor_override = 0;  // 0: none (PyTorch's None; avg_pool2d rejects a 0 given)
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        check_input("avg_pool2d", x);
        PoolParams pp = pool_params("avg_pool2d", x.shape(), a.kernel, a.stride, a.padding, 1, a.ceil_mode);
        a.kernel = pp.kernel, a.stride = pp.stride, a.padding = pp.padding;
        return mean_forward("avg_pool2d", x, pp, a.count_include_pad, a.divisor_override);
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {avg_pool2d_backward(g.grad, g.input_shape(0), a.kernel, a.stride, a.padding, a.count_include_pad,
                                    a.ceil_mode, divisor_or_none(a.divisor_override))};
    }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[2,2,4,4] k2", {real("x", {2, 2, 4, 4})}, Attrs{2, Int2(), 0, true}),
            sample("[2,2,5,5] k3 s2 p1, count_include_pad", {real("x", {2, 2, 5, 5})}, Attrs{3, 2, 1, true}),
            sample("[2,2,5,5] k3 s2 p1, padding not counted", {real("x", {2, 2, 5, 5})}, Attrs{3, 2, 1, false}),
            sample("[1,3,5,7] k(2,3) s(1,2) p(1,1), padding not counted", {real("x", {1, 3, 5, 7})},
                   Attrs{{2, 3}, {1, 2}, {1, 1}, false}),
            tg::sample("[3,5,4] unbatched, k2 s1", {real("x", {3, 5, 4})},
                       [](const tensor_list& x) { return avg_pool2d(x[0], 2, 1); }),
            // ceil_mode: a window hanging over the padded input divides by
            // its part inside it (count_include_pad) or by its input elements.
            sample("[1,2,6,8] k3 s2 p1 ceil_mode, count_include_pad (windows hang over)", {real("x", {1, 2, 6, 8})},
                   Attrs{3, 2, 1, true, true}),
            sample("[1,2,6,8] k3 s2 p1 ceil_mode, padding not counted", {real("x", {1, 2, 6, 8})},
                   Attrs{3, 2, 1, false, true}),
            sample("[2,2,5,7] k2 ceil_mode (last windows of 1 and 2 elements)", {real("x", {2, 2, 5, 7})},
                   Attrs{2, Int2(), 0, true, true}),
            sample("[1,2,5,7] k3 s3 p1 ceil_mode (a last window past the padding dropped)", {real("x", {1, 2, 5, 7})},
                   Attrs{3, 3, 1, true, true}),
            // divisor_override replaces every divisor, also of clipped windows.
            sample("[1,2,5,7] k(3,2) s(2,3) p(1,1) ceil_mode, divisor_override 5", {real("x", {1, 2, 5, 7})},
                   Attrs{{3, 2}, {2, 3}, {1, 1}, false, true, 5}),
            sample("[2,1,4,5] k2 s1, divisor_override -3", {real("x", {2, 1, 4, 5})}, Attrs{2, 1, 0, true, false, -3}),
            tg::sample("[2,5,6] unbatched, k3 s2 p1 ceil_mode, padding not counted, divisor_override 2",
                       {real("x", {2, 5, 6})},
                       [](const tensor_list& x) { return avg_pool2d(x[0], 3, 2, 1, false, true, 2); }),
        };
    }
};
TG_REGISTER_OP(AvgPool2d);

struct AvgPool2dBackward : Op<AvgPool2dBackward> {
    static constexpr const char* name = "avg_pool2d_backward";
    struct Attrs {
        shape_type input_shape;
        Int2 kernel, stride, padding;
        bool count_include_pad;
        bool ceil_mode = false;
        int64_t divisor_override = 0;  // 0: none
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& grad = in[0];
        check_input_shape("avg_pool2d_backward", grad, a.input_shape);
        PoolParams pp =
            pool_params("avg_pool2d_backward", a.input_shape, a.kernel, a.stride, a.padding, 1, a.ceil_mode);
        a.kernel = pp.kernel, a.stride = pp.stride, a.padding = pp.padding;
        check_grad("avg_pool2d_backward", grad, a.input_shape, pooled_shape(a.input_shape, pp));
        Tensor dx = Tensor::empty(a.input_shape, grad.dtype(), name);
        kernels::PoolWindows win = pool_windows(a.input_shape, pp, a.count_include_pad, a.divisor_override);
        TG_DISPATCH_FLOATING(grad.dtype(), "avg_pool2d_backward", [&] {
            kernels::window_mean_adjoint(grad.data<scalar_t>(), dx.data<scalar_t>(), win);
        });
        return dx;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {avg_pool2d(g.grad, a.kernel, a.stride, a.padding, a.count_include_pad, a.ceil_mode,
                           divisor_or_none(a.divisor_override))};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,3,3] into [2,2,5,5] k3 s2 p1, count_include_pad", {real("g", {2, 2, 3, 3})},
                       Attrs{{2, 2, 5, 5}, 3, 2, 1, true}),
                sample("[2,2,3,3] into [2,2,5,5] k3 s2 p1, padding not counted", {real("g", {2, 2, 3, 3})},
                       Attrs{{2, 2, 5, 5}, 3, 2, 1, false}),
                sample("[1,2,4,5] into [1,2,6,8] k3 s2 p1 ceil_mode, count_include_pad", {real("g", {1, 2, 4, 5})},
                       Attrs{{1, 2, 6, 8}, 3, 2, 1, true, true}),
                sample("[1,2,3,4] into [1,2,5,7] k2 ceil_mode, divisor_override 3", {real("g", {1, 2, 3, 4})},
                       Attrs{{1, 2, 5, 7}, 2, Int2(), 0, false, true, 3})};
    }
};
TG_REGISTER_OP(AvgPool2dBackward);
}  // namespace

Tensor avg_pool2d(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding, bool count_include_pad, bool ceil_mode,
                  std::optional<int64_t> divisor_override)
{
    TG_CHECK(!divisor_override || *divisor_override != 0, "avg_pool2d: divisor_override must not be 0");
    if (x.defined() && x.dim() == 3)
        return unbatched(x, [&](const Tensor& t) {
            return avg_pool2d(t, kernel, stride, padding, count_include_pad, ceil_mode, divisor_override);
        });
    return AvgPool2d::call({x}, {kernel, stride, padding, count_include_pad, ceil_mode, divisor_override.value_or(0)});
}

Tensor avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape, Int2 kernel, Int2 stride,
                           Int2 padding, bool count_include_pad, bool ceil_mode,
                           std::optional<int64_t> divisor_override)
{
    TG_CHECK(!divisor_override || *divisor_override != 0, "avg_pool2d_backward: divisor_override must not be 0");
    return AvgPool2dBackward::call(
        {grad}, {input_shape, kernel, stride, padding, count_include_pad, ceil_mode, divisor_override.value_or(0)});
}

// --- adaptive average pooling -----------------------------------------------------------------

namespace {
struct AdaptiveAvgPool2d : Op<AdaptiveAvgPool2d> {
    static constexpr const char* name = "adaptive_avg_pool2d";
    struct Attrs {
        Int2 output_size;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& x = in[0];
        check_input("adaptive_avg_pool2d", x);
        TG_CHECK(a.output_size.h >= 1 && a.output_size.w >= 1, "adaptive_avg_pool2d: output size (", a.output_size.h,
                 ", ", a.output_size.w, ") must be positive");
        check_nonempty_plane(name, x.shape());
        // The result first: an output too large to allocate is an error before
        // window tables of its size are built.
        Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], a.output_size.h, a.output_size.w}, x.dtype(), name);
        const kernels::PoolWindows win = adaptive_windows(x.shape(), a.output_size);
        TG_DISPATCH_FLOATING(x.dtype(), name, [&] { kernels::window_mean(x.data<scalar_t>(), y.data<scalar_t>(), win); });
        return y;
    }
    static tensor_list backward(const BackwardArgs& g) { return {adaptive_avg_pool2d_backward(g.grad, g.input_shape(0))}; }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[2,3,5,5] -> 1x1 (global average)", {real("x", {2, 3, 5, 5})}, Attrs{1}),
            sample("[2,2,7,5] -> 3x2 (uneven windows)", {real("x", {2, 2, 7, 5})}, Attrs{{3, 2}}),
            sample("[1,2,3,4] -> 4x6 (windows repeat)", {real("x", {1, 2, 3, 4})}, Attrs{{4, 6}}),
        };
    }
};
TG_REGISTER_OP(AdaptiveAvgPool2d);

struct AdaptiveAvgPool2dBackward : Op<AdaptiveAvgPool2dBackward> {
    static constexpr const char* name = "adaptive_avg_pool2d_backward";
    struct Attrs {
        shape_type input_shape;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& grad = in[0];
        const shape_type& input_shape = a.input_shape;
        check_input_shape("adaptive_avg_pool2d_backward", grad, input_shape);
        check_nonempty_plane(name, input_shape);
        TG_CHECK(grad.shape()[0] == input_shape[0] && grad.shape()[1] == input_shape[1] && grad.shape()[2] >= 1 &&
                     grad.shape()[3] >= 1,
                 "adaptive_avg_pool2d_backward: gradient of shape ", grad.shape(), " for an input of shape ",
                 input_shape);
        Tensor dx = Tensor::empty(input_shape, grad.dtype(), name);
        kernels::PoolWindows win = adaptive_windows(input_shape, {grad.shape()[2], grad.shape()[3]});
        TG_DISPATCH_FLOATING(grad.dtype(), "adaptive_avg_pool2d_backward", [&] {
            kernels::window_mean_adjoint(grad.data<scalar_t>(), dx.data<scalar_t>(), win);
        });
        return dx;
    }
    static tensor_list backward(const BackwardArgs& g)
    {
        const shape_type& gs = g.input_shape(0);
        return {adaptive_avg_pool2d(g.grad, {gs[2], gs[3]})};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,3,2] into [2,2,7,5]", {real("g", {2, 2, 3, 2})}, Attrs{{2, 2, 7, 5}})};
    }
};
TG_REGISTER_OP(AdaptiveAvgPool2dBackward);
}  // namespace

Tensor adaptive_avg_pool2d(const Tensor& x, Int2 output_size)
{
    if (x.defined() && x.dim() == 3)
        return unbatched(x, [&](const Tensor& t) { return adaptive_avg_pool2d(t, output_size); });
    return AdaptiveAvgPool2d::call({x}, {output_size});
}

Tensor adaptive_avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape)
{
    return AdaptiveAvgPool2dBackward::call({grad}, {input_shape});
}

// --- adaptive max pooling ---------------------------------------------------------------------

namespace {
struct AdaptiveMaxPool2d : Op<AdaptiveMaxPool2d> {
    static constexpr const char* name = "adaptive_max_pool2d";
    struct Attrs {
        Int2 output_size;
    };
    // Keeps the argmax of each window in its plane (int64), as max_pool2d.
    static Tensor forward(TensorRefs in, const Attrs& a, OpContext& ctx)
    {
        const Tensor& x = in[0];
        check_input(name, x);
        // An output size of 0 is an empty output, as PyTorch.
        TG_CHECK(a.output_size.h >= 0 && a.output_size.w >= 0, "adaptive_max_pool2d: output size (",
                 a.output_size.h, ", ", a.output_size.w, ") must not be negative");
        check_nonempty_plane(name, x.shape());
        Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], a.output_size.h, a.output_size.w}, x.dtype(), name);
        Tensor indices = Tensor::empty(y.shape(), int64, name);
        const kernels::PoolWindows win = adaptive_windows(x.shape(), a.output_size);
        TG_DISPATCH_FLOATING(x.dtype(), name, [&] {
            kernels::window_max(x.data<scalar_t>(), y.data<scalar_t>(), indices.data<int64_t>(), win);
        });
        ctx.keep(indices);
        return y;
    }
    static tensor_list backward(const BackwardArgs& a) { return {max_pool2d_backward(a.grad, a.kept(0), a.input_shape(0))}; }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[2,3,5,5] -> 1x1 (global maximum)", {real("x", {2, 3, 5, 5})}, Attrs{1}),
            sample("[2,2,7,5] -> 3x2 (uneven windows, overlapping)", {real("x", {2, 2, 7, 5})}, Attrs{{3, 2}}),
            sample("[1,2,3,4] -> 4x6 (more windows than rows: windows repeat)", {real("x", {1, 2, 3, 4})},
                   Attrs{{4, 6}}),
            sample("[1,2,8,6] -> 4x3 (2x2 windows tiling the plane: the 2x2 kernels)", {real("x", {1, 2, 8, 6})},
                   Attrs{{4, 3}}),
            tg::sample("[3,5,4] unbatched -> (2,3)", {real("x", {3, 5, 4})},
                       [](const tensor_list& x) { return adaptive_max_pool2d(x[0], {2, 3}); }),
            tg::sample("[1,2,6,8] -> 3x5 of x [1,2,3,4] repeated 2x2: ties", {real("x", {1, 2, 3, 4})},
                       [](const tensor_list& x) { return adaptive_max_pool2d(repeat(x[0], 2, 2), {3, 5}); }),
            tg::sample("[1,2,5,7] -> 2x3 with NaN (the last NaN of a window wins)", {real("x", {1, 2, 5, 7})},
                       [](const tensor_list& x) {
                           return zero_nan(adaptive_max_pool2d(with_nan(x[0], {1, 8, 20, 44, 47}), {2, 3}));
                       }),
        };
    }
};
TG_REGISTER_OP(AdaptiveMaxPool2d);
}  // namespace

std::pair<Tensor, Tensor> adaptive_max_pool2d_with_indices(const Tensor& x, Int2 output_size)
{
    if (x.defined() && x.dim() == 3) {
        auto [y, idx] = adaptive_max_pool2d_with_indices(unsqueeze(x, 0), output_size);
        return {squeeze(y, 0), squeeze(idx, 0)};
    }
    OpResult r = call_op_kept<AdaptiveMaxPool2d>({x}, {output_size});
    return {r.output, r.kept[0]};
}

Tensor adaptive_max_pool2d(const Tensor& x, Int2 output_size)
{
    return adaptive_max_pool2d_with_indices(x, output_size).first;
}

// --- max unpooling ----------------------------------------------------------------------------

namespace {
// Distinct indices into planes of `plane` elements for values of `shape`
// (o·7 + 3 mod plane in each plane; plane coprime to 7 and at least the
// values' plane): the registry's unpool samples, whose gradient (a gather)
// is the forward's adjoint only when no index repeats.
Tensor distinct_indices(const shape_type& shape, int64_t plane)
{
    TG_CHECK(shape.size() == 4 || shape.size() == 3, "distinct_indices: values of shape ", shape);
    Tensor idx = Tensor::empty(shape, int64);
    if (idx.numel() == 0) return idx;  // (the plane's size may not fit int64 then)
    const int64_t in = shape[shape.size() - 2] * shape[shape.size() - 1];
    TG_CHECK(in <= plane && plane % 7 != 0 && plane < (int64_t(1) << 40), "distinct_indices: ", in,
             " values in a plane of ", plane);
    int64_t* d = idx.data<int64_t>();
    for (int64_t i = 0; i < idx.numel(); ++i) d[i] = (i % in * 7 + 3) % plane;
    return idx;
}

// Inputs: the values and their indices in the output planes.
struct MaxUnpool2d : Op<MaxUnpool2d> {
    static constexpr const char* name = "max_unpool2d";
    static constexpr Saves saves = save_input(1);
    struct Attrs {
        Int2 output_size;  // the output plane (the wrapper derives it from kernel, stride, padding)
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor &x = in[0], &indices = in[1];
        check_input(name, x);
        check_indices(name, indices, x.shape());
        TG_CHECK(a.output_size.h >= 0 && a.output_size.w >= 0, "max_unpool2d: output size (", a.output_size.h, ", ",
                 a.output_size.w, ") must not be negative");
        const shape_type& s = x.shape();
        Tensor y = Tensor::empty({s[0], s[1], a.output_size.h, a.output_size.w}, x.dtype(), name);
        // No value, no index to write: zeros (the planes' sizes may not fit int64 then).
        if (x.numel() == 0) return zeros(y.shape(), x.dtype());
        const int64_t bad = TG_DISPATCH_FLOATING(x.dtype(), name, [&] {
            return kernels::max_unpool(x.data<scalar_t>(), indices.data<int64_t>(), y.data<scalar_t>(), s[0] * s[1],
                                       s[2] * s[3], a.output_size.h * a.output_size.w);
        });
        TG_CHECK(bad < 0, "max_unpool2d: index ", bad < 0 ? 0 : indices.data<int64_t>()[bad], " (at ", bad,
                 " in indices of shape ", indices.shape(), ") outside the ", a.output_size.h, "x", a.output_size.w,
                 " output plane");
        return y;
    }
    // The gather at the indices: the adjoint when no index repeats. With
    // repeats PyTorch's forward keeps the last value and its gradient still
    // gathers to every one; so does this.
    static tensor_list backward(const BackwardArgs& a) { return {max_pool2d_gather(a.grad, a.input(1)), Tensor()}; }
    static std::vector<OpSample> samples()
    {
        return {
            tg::sample("[2,2,3,4] k2 -> [2,2,6,8] (the indices of 2x2 windows)",
                       {real("x", {2, 2, 3, 4}), index("k", {2, 2, 3, 4}, 4)},
                       [](const tensor_list& in) { return max_unpool2d(in[0], window_indices(in[1]), 2); }),
            tg::sample("[1,3,3,4] k2 -> output_size (7, 9)", {real("x", {1, 3, 3, 4}), index("k", {1, 3, 3, 4}, 4)},
                       [](const tensor_list& in) {
                           return max_unpool2d(in[0], window_indices(in[1]), 2, Int2(), 0, {7, 9});
                       }),
            tg::sample("[2,3,3] unbatched k3 s2 p1 -> [2,5,5]", {real("x", {2, 3, 3})}, [](const tensor_list& in) {
                return max_unpool2d(in[0], distinct_indices(in[0].shape(), 25), 3, 2, 1);
            }),
            tg::sample("[1,2,3,2] k(3,2) s(2,3) p(1,0) -> output_size [1,2,6,4]", {real("x", {1, 2, 3, 2})},
                       [](const tensor_list& in) {
                           return max_unpool2d(in[0], distinct_indices(in[0].shape(), 24), {3, 2}, {2, 3}, {1, 0},
                                               {1, 2, 6, 4});
                       }),
        };
    }
};
TG_REGISTER_OP(MaxUnpool2d);
}  // namespace

Tensor max_unpool2d(const Tensor& x, const Tensor& indices, Int2 kernel, Int2 stride, Int2 padding,
                    const shape_type& output_size)
{
    TG_CHECK(x.defined(), "max_unpool2d: undefined input");
    TG_CHECK(x.dim() == 4 || x.dim() == 3, "max_unpool2d: expected input [N, C, H, W] (or [C, H, W]), got shape ",
             x.shape());
    if (!stride.given()) stride = kernel;
    TG_CHECK(kernel.h >= 1 && kernel.w >= 1, "max_unpool2d: kernel size (", kernel.h, ", ", kernel.w,
             ") must be positive");
    TG_CHECK(stride.h >= 1 && stride.w >= 1, "max_unpool2d: stride (", stride.h, ", ", stride.w, ") must be positive");
    TG_CHECK(padding.h >= 0 && padding.w >= 0, "max_unpool2d: padding (", padding.h, ", ", padding.w,
             ") must not be negative");
    const int64_t h = x.shape()[size_t(x.dim() - 2)], w = x.shape()[size_t(x.dim() - 1)];
    // PyTorch's default: (in - 1)·s - 2p + k; in 128 bits, for huge attributes.
    auto default_size = [](int64_t in, int64_t k, int64_t s, int64_t p) {
        return (__int128(in) - 1) * s - 2 * __int128(p) + k;
    };
    const __int128 dh = default_size(h, kernel.h, stride.h, padding.h), dw = default_size(w, kernel.w, stride.w, padding.w);
    Int2 out;
    if (output_size.empty()) {
        constexpr __int128 limit = int64_t(1) << 62;
        TG_CHECK(dh >= 0 && dw >= 0 && dh <= limit && dw <= limit, "max_unpool2d: kernel (", kernel.h, ", ",
                 kernel.w, "), stride (", stride.h, ", ", stride.w, ") and padding (", padding.h, ", ", padding.w,
                 ") give no valid output size for input shape ", x.shape());
        out = {int64_t(dh), int64_t(dw)};
    } else {
        TG_CHECK(output_size.size() == 2 || output_size.size() == 4, "max_unpool2d: output_size ", output_size,
                 " must have 2 elements (H, W) or 4 (N, C, H, W)");
        out = {output_size[output_size.size() - 2], output_size[output_size.size() - 1]};
        // As PyTorch: strictly between the default size minus and plus the stride.
        TG_CHECK(out.h > dh - stride.h && out.h < dh + stride.h && out.w > dw - stride.w && out.w < dw + stride.w,
                 "max_unpool2d: output_size ", output_size, " is inconsistent with input shape ", x.shape(),
                 ", kernel (", kernel.h, ", ", kernel.w, "), stride (", stride.h, ", ", stride.w, ") and padding (",
                 padding.h, ", ", padding.w, "): height must be in (", int64_t(dh - stride.h), ", ",
                 int64_t(dh + stride.h), "), width in (", int64_t(dw - stride.w), ", ", int64_t(dw + stride.w),
                 ")");
    }
    if (x.dim() == 3) {
        TG_CHECK(indices.defined() && indices.dim() == 3, "max_unpool2d: indices of shape ",
                 indices.defined() ? indices.shape() : shape_type{}, " for an input of shape ", x.shape());
        return squeeze(MaxUnpool2d::call({unsqueeze(x, 0), unsqueeze(indices, 0)}, {out}), 0);
    }
    return MaxUnpool2d::call({x, indices}, {out});
}

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_pool_ops() {}
}  // namespace detail

}  // namespace tg
