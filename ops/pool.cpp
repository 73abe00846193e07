// Pooling: the op definitions (the loops are in engine/kernels/pool.cpp). Max
// pooling keeps the argmax of each window (int64) and its backward scatters
// to it; the scatter and the gather are each other's adjoint, so the gradient
// can be differentiated again. Average pooling and adaptive average pooling
// are linear: each op's backward is its adjoint, and the adjoint's backward is
// the op.
#include "ops/pool.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/core/op.hpp"
#include "engine/kernels/pool.hpp"
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

// Checks that grad has the shape of input_shape's pooled output.
void check_grad(const char* op, const Tensor& grad, const shape_type& input_shape, const kernels::PoolWindows& win)
{
    shape_type want{input_shape[0], input_shape[1], win.ho(), win.wo()};
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
    Int2 kernel, stride, padding;
};

// Checks kernel, stride and padding against the input size; a stride not given is the kernel.
PoolParams pool_params(const char* op, const shape_type& input, Int2 kernel, Int2 stride, Int2 padding)
{
    if (!stride.given()) stride = kernel;
    TG_CHECK(kernel.h >= 1 && kernel.w >= 1, op, ": kernel size (", kernel.h, ", ", kernel.w, ") must be positive");
    TG_CHECK(stride.h >= 1 && stride.w >= 1, op, ": stride (", stride.h, ", ", stride.w, ") must be positive");
    TG_CHECK(padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w, op,
             ": padding (", padding.h, ", ", padding.w, ") must be between 0 and half the kernel (", kernel.h, ", ",
             kernel.w, ")");
    const int64_t h = input[2], w = input[3];
    TG_CHECK(kernel.h <= h + 2 * padding.h && kernel.w <= w + 2 * padding.w, op, ": kernel (", kernel.h, ", ",
             kernel.w, ") is larger than the padded input (", h + 2 * padding.h, ", ", w + 2 * padding.w,
             ") of input shape ", input, " with padding (", padding.h, ", ", padding.w, ")");
    return {kernel, stride, padding};
}

kernels::PoolWindows pool_windows(const shape_type& input, const PoolParams& p, bool count_pad)
{
    return kernels::pool_windows(input[0] * input[1], input[2], input[3],
                                 {p.kernel.h, p.kernel.w, p.stride.h, p.stride.w, p.padding.h, p.padding.w}, count_pad);
}

kernels::PoolWindows adaptive_windows(const shape_type& input, Int2 out)
{
    return kernels::adaptive_windows(input[0] * input[1], input[2], input[3], out.h, out.w);
}

Tensor mean_forward(const char* op, const Tensor& x, const kernels::PoolWindows& win)
{
    Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], win.ho(), win.wo()}, x.dtype());
    TG_DISPATCH_FLOATING(x.dtype(), op, [&] { kernels::window_mean(x.data<scalar_t>(), y.data<scalar_t>(), win); });
    return y;
}

// Runs a 4-d op on an unbatched [C, H, W] input.
template <class F>
Tensor unbatched(const Tensor& x, F f)
{
    return squeeze(f(unsqueeze(x, 0)), 0);
}

// Replay of max pooling for a few changed inputs (engine/check/replay.hpp):
// the maximum again over each window that holds a changed element.
bool max_pool2d_delta(DeltaArgs& d, const PoolParams& pp)
{
    const ReplayInput& x = d.inputs[0];
    const kernels::PoolWindows win = pool_windows(x.base->shape(), pp, true);
    const int64_t ho = win.ho(), wo = win.wo(), plane = win.h * win.w;
    const double* xv = x.data();
    for (int64_t f : *x.changed) {
        int64_t p = f / plane, ih = f % plane / win.w, iw = f % win.w;
        for (int64_t oh = 0; oh < ho; ++oh) {
            if (ih < win.rows.begin[size_t(oh)] || ih >= win.rows.end[size_t(oh)]) continue;
            for (int64_t ow = 0; ow < wo; ++ow) {
                if (iw < win.cols.begin[size_t(ow)] || iw >= win.cols.end[size_t(ow)]) continue;
                const double* xp = xv + p * plane;
                double v = xp[win.rows.begin[size_t(oh)] * win.w + win.cols.begin[size_t(ow)]];
                for (int64_t r = win.rows.begin[size_t(oh)]; r < win.rows.end[size_t(oh)] && !std::isnan(v); ++r)
                    for (int64_t c = win.cols.begin[size_t(ow)]; c < win.cols.end[size_t(ow)]; ++c)
                        if (xp[r * win.w + c] > v || std::isnan(xp[r * win.w + c])) v = xp[r * win.w + c];
                int64_t o = (p * ho + oh) * wo + ow;
                if (std::memcmp(&v, &d.out[o], sizeof v) == 0) continue;
                d.out[o] = v;
                d.touch(o);
            }
        }
    }
    return true;
}

}  // namespace

// --- max pooling ------------------------------------------------------------------------------

namespace {
struct MaxPool2d : Op<MaxPool2d> {
    static constexpr const char* name = "max_pool2d";
    struct Attrs {
        Int2 kernel, stride, padding;  // completed by forward (stride not given: the kernel)
    };
    // Keeps the argmax of each window in its plane (int64).
    static Tensor forward(TensorRefs in, Attrs& a, OpContext& ctx)
    {
        const Tensor& x = in[0];
        check_input("max_pool2d", x);
        PoolParams pp = pool_params("max_pool2d", x.shape(), a.kernel, a.stride, a.padding);
        a = {pp.kernel, pp.stride, pp.padding};
        kernels::PoolWindows win = pool_windows(x.shape(), pp, true);
        Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], win.ho(), win.wo()}, x.dtype());
        Tensor indices = Tensor::empty(y.shape(), int64);
        TG_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
            kernels::window_max(x.data<scalar_t>(), y.data<scalar_t>(), indices.data<int64_t>(), win);
        });
        ctx.keep(indices);
        return y;
    }
    static tensor_list backward(const BackwardArgs& a) { return {max_pool2d_backward(a.grad, a.kept(0), a.input_shape(0))}; }
    static bool delta(DeltaArgs& d, const Attrs& a) { return max_pool2d_delta(d, {a.kernel, a.stride, a.padding}); }
    static std::vector<OpSample> samples()
    {
        return {
            sample("[2,2,4,4] k2 (stride = kernel)", {real("x", {2, 2, 4, 4})}, Attrs{2, Int2(), 0}),
            sample("[2,2,5,5] k3 s2 p1 (odd size, padding)", {real("x", {2, 2, 5, 5})}, Attrs{3, 2, 1}),
            sample("[1,3,5,7] k(2,3) s(1,2) p(1,1) (overlapping, non-square)", {real("x", {1, 3, 5, 7})},
                   Attrs{{2, 3}, {1, 2}, {1, 1}}),
            tg::sample("[3,5,4] unbatched, k2 s1", {real("x", {3, 5, 4})},
                       [](const tensor_list& x) { return max_pool2d(x[0], 2, 1); }),
        };
    }
};
TG_REGISTER_OP(MaxPool2d);
}  // namespace

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding)
{
    if (x.defined() && x.dim() == 3) {
        auto [y, idx] = max_pool2d_with_indices(unsqueeze(x, 0), kernel, stride, padding);
        return {squeeze(y, 0), squeeze(idx, 0)};
    }
    OpResult r = call_op_kept<MaxPool2d>({x}, {kernel, stride, padding});
    return {r.output, r.kept[0]};
}

Tensor max_pool2d(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding)
{
    return max_pool2d_with_indices(x, kernel, stride, padding).first;
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
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,3,3] into [2,2,5,5] (repeated indices add up)",
                       {real("g", {2, 2, 3, 3}), index("indices", {2, 2, 3, 3}, 25)}, Attrs{{2, 2, 5, 5}})};
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
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        check_input("avg_pool2d", x);
        PoolParams pp = pool_params("avg_pool2d", x.shape(), a.kernel, a.stride, a.padding);
        a = {pp.kernel, pp.stride, pp.padding, a.count_include_pad};
        return mean_forward("avg_pool2d", x, pool_windows(x.shape(), pp, a.count_include_pad));
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {avg_pool2d_backward(g.grad, g.input_shape(0), a.kernel, a.stride, a.padding, a.count_include_pad)};
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
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& grad = in[0];
        check_input_shape("avg_pool2d_backward", grad, a.input_shape);
        PoolParams pp = pool_params("avg_pool2d_backward", a.input_shape, a.kernel, a.stride, a.padding);
        a.kernel = pp.kernel, a.stride = pp.stride, a.padding = pp.padding;
        kernels::PoolWindows win = pool_windows(a.input_shape, pp, a.count_include_pad);
        check_grad("avg_pool2d_backward", grad, a.input_shape, win);
        Tensor dx = Tensor::empty(a.input_shape, grad.dtype());
        TG_DISPATCH_FLOATING(grad.dtype(), "avg_pool2d_backward", [&] {
            kernels::window_mean_adjoint(grad.data<scalar_t>(), dx.data<scalar_t>(), win);
        });
        return dx;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {avg_pool2d(g.grad, a.kernel, a.stride, a.padding, a.count_include_pad)};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,3,3] into [2,2,5,5] k3 s2 p1, count_include_pad", {real("g", {2, 2, 3, 3})},
                       Attrs{{2, 2, 5, 5}, 3, 2, 1, true}),
                sample("[2,2,3,3] into [2,2,5,5] k3 s2 p1, padding not counted", {real("g", {2, 2, 3, 3})},
                       Attrs{{2, 2, 5, 5}, 3, 2, 1, false})};
    }
};
TG_REGISTER_OP(AvgPool2dBackward);
}  // namespace

Tensor avg_pool2d(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding, bool count_include_pad)
{
    if (x.defined() && x.dim() == 3)
        return unbatched(x, [&](const Tensor& t) { return avg_pool2d(t, kernel, stride, padding, count_include_pad); });
    return AvgPool2d::call({x}, {kernel, stride, padding, count_include_pad});
}

Tensor avg_pool2d_backward(const Tensor& grad, const shape_type& input_shape, Int2 kernel, Int2 stride,
                           Int2 padding, bool count_include_pad)
{
    return AvgPool2dBackward::call({grad}, {input_shape, kernel, stride, padding, count_include_pad});
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
        return mean_forward("adaptive_avg_pool2d", x, adaptive_windows(x.shape(), a.output_size));
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
        TG_CHECK(grad.shape()[0] == input_shape[0] && grad.shape()[1] == input_shape[1] && grad.shape()[2] >= 1 &&
                     grad.shape()[3] >= 1,
                 "adaptive_avg_pool2d_backward: gradient of shape ", grad.shape(), " for an input of shape ",
                 input_shape);
        kernels::PoolWindows win = adaptive_windows(input_shape, {grad.shape()[2], grad.shape()[3]});
        Tensor dx = Tensor::empty(input_shape, grad.dtype());
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

}  // namespace tg
