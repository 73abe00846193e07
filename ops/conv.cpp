// Convolution: the op definitions of conv2d, im2col and col2im. conv2d is a
// primitive for speed: its forward and its ordinary first-order backward (grad
// mode off) run the blocked kernels of engine/kernels/conv.cpp; under
// create_graph it computes the same gradients with im2col, col2im and bmm, so
// they can be differentiated again.
#include "ops/conv.hpp"

#include <any>
#include <vector>

#include "engine/core/op.hpp"
#include "engine/kernels/conv.hpp"
#include "ops/matmul.hpp"
#include "ops/padding.hpp"
#include "ops/reduction.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

using kernels::ConvShape;
using kernels::Geometry;

kernels::Hw hw(Int2 v) { return {v.h, v.w}; }

Geometry geometry(const char* op, const shape_type& input, Int2 kernel, Int2 stride, Int2 padding, Int2 dilation)
{
    // As PyTorch: a batch or channels of 0 are fine, an empty plane is not
    // (the output would see padding only).
    TG_CHECK(input.size() != 4 || (input[2] >= 1 && input[3] >= 1), op, ": input of shape ", input,
             " has an empty plane; only a batch or channels of 0 are supported");
    return kernels::make_geometry(op, input, hw(kernel), hw(stride), hw(padding), hw(dilation));
}

// The same gradients from differentiable ops, for create_graph.
tensor_list conv_backward_composite(const BackwardArgs& a, const ConvShape& s, const shape_type& w_shape)
{
    const Geometry& g = s.g;
    const Tensor &x = a.input(0), &w = a.input(1);
    const int64_t n = g.n, groups = s.groups, og = s.og(), k = s.k(), cols = g.columns();
    const Int2 kernel{g.kh, g.kw}, stride{g.sh, g.sw}, padding{g.ph, g.pw}, dilation{g.dh, g.dw};
    Tensor gy = reshape(a.grad, {n * groups, og, cols});
    Tensor dx, dw, db;
    if (a.needs_grad(0)) {
        // dcols[n, grp] = w[grp]ᵀ · gy[n, grp]
        Tensor wg = groups == 1 ? reshape(w, {1, og, k})
                                : reshape(broadcast_to(reshape(w, {1, groups, og, k}), {n, groups, og, k}),
                                          {n * groups, og, k});
        Tensor dcols = bmm(wg, gy, true, false);
        dx = col2im(reshape(dcols, {n, groups * k, cols}), {g.h, g.w}, kernel, stride, padding, dilation);
    }
    if (a.needs_grad(1)) {
        // dw[grp] = Σ_n gy[n, grp] · cols[n, grp]ᵀ
        Tensor c = reshape(im2col(x, kernel, stride, padding, dilation), {n * groups, k, cols});
        Tensor per_image = reshape(bmm(gy, c, false, true), {n, s.out_channels, k});
        dw = reshape(sum(per_image, {0}), w_shape);
    }
    if (a.needs_grad(2)) db = sum(a.grad, {0, 2, 3});
    tensor_list grads{dx, dw, db};
    grads.resize(a.inputs());  // no bias: two inputs
    return grads;
}

// Replay of conv2d for a few changed elements (engine/replay.hpp). Conv is
// bilinear: y' − y = conv(x' − x, w') + conv(x, w' − w) + (b' − b), so a
// changed input pixel updates the outputs whose windows cover it, a changed
// weight one output channel, a changed bias one output plane.
bool conv2d_delta(DeltaArgs& d, const ConvShape& s)
{
    const Geometry& g = s.g;
    const ReplayInput &X = d.inputs[0], &W = d.inputs[1];
    const ReplayInput no_bias;  // a call without bias has two inputs
    const ReplayInput& B = d.inputs.size() > 2 ? d.inputs[2] : no_bias;
    const int64_t og = s.og(), cg = s.cg(), kk = g.kk(), plane = g.ho * g.wo;
    int64_t work = (X.unchanged() ? 0 : int64_t(X.changed->size()) * og * kk) +
                   (W.unchanged() ? 0 : int64_t(W.changed->size()) * g.n * plane) +
                   (B.unchanged() ? 0 : int64_t(B.changed->size()) * g.n * plane);
    if (work > g.n * s.out_channels * plane * s.k() / 4) return false;  // the GEMMs are cheaper
    const double *x0 = X.base_data(), *x1 = X.data(), *w0 = W.base_data(), *w1 = W.data();
    // A changed input element meets og weights kk·cg apart per tap: read them
    // from a copy laid out [cl][ky][kx][co], made once per replayer, when the
    // weight is as recorded (the copy is of the recorded value).
    const double* w_taps = nullptr;
    if (!X.unchanged() && W.unchanged()) {
        auto* cached = std::any_cast<std::vector<double>>(&d.cache());
        if (!cached) {
            std::vector<double> t(size_t(W.base->numel()));
            for (int64_t co = 0; co < s.out_channels; ++co)
                for (int64_t cl = 0; cl < cg; ++cl)
                    for (int64_t tap = 0; tap < kk; ++tap)
                        t[size_t((cl * kk + tap) * s.out_channels + co)] = w0[(co * cg + cl) * kk + tap];
            cached = &d.cache().emplace<std::vector<double>>(std::move(t));
        }
        w_taps = cached->data();
    }
    auto add = [&](int64_t n, int64_t co, int64_t oy, int64_t ox, double v) {
        int64_t o = ((n * s.out_channels + co) * g.ho + oy) * g.wo + ox;
        d.out[o] += v;
        d.touch(o);
    };
    if (!X.unchanged())
        for (int64_t f : *X.changed) {
            double dx = x1[f] - x0[f];
            int64_t ix = f % g.w, iy = f / g.w % g.h, ci = f / (g.w * g.h) % g.c, n = f / (g.w * g.h * g.c);
            int64_t group = ci / cg, cl = ci % cg;
            for (int64_t ky = 0; ky < g.kh; ++ky) {
                int64_t ty = iy + g.ph - ky * g.dh;  // = oy·sh
                if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.ho) continue;
                for (int64_t kx = 0; kx < g.kw; ++kx) {
                    int64_t tx = ix + g.pw - kx * g.dw;
                    if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.wo) continue;
                    // One output per channel of the group: a plane apart, their weights kk·cg apart.
                    const int64_t co0 = group * og;
                    const int64_t o0 = ((n * s.out_channels + co0) * g.ho + ty / g.sh) * g.wo + tx / g.sw;
                    if (w_taps) {
                        const double* w = w_taps + (cl * kk + ky * g.kw + kx) * s.out_channels + co0;
                        for (int64_t c = 0; c < og; ++c) {
                            d.out[o0 + c * plane] += dx * w[c];
                            d.touch(o0 + c * plane);
                        }
                    } else {
                        const double* w = w1 + ((co0 * cg + cl) * g.kh + ky) * g.kw + kx;
                        for (int64_t c = 0; c < og; ++c) {
                            d.out[o0 + c * plane] += dx * w[c * cg * kk];
                            d.touch(o0 + c * plane);
                        }
                    }
                }
            }
        }
    // The outputs o in [0, outputs) whose input o·stride + offset lies in [0, size).
    auto inside = [](int64_t outputs, int64_t stride, int64_t offset, int64_t size) {
        auto ceil_div = [](int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -(-a / b); };
        int64_t lo = std::max<int64_t>(0, ceil_div(-offset, stride));
        int64_t hi = std::min(outputs, ceil_div(size - offset, stride));
        return std::pair{lo, std::max(lo, hi)};
    };
    if (!W.unchanged())
        for (int64_t f : *W.changed) {
            double dw = w1[f] - w0[f];
            int64_t kx = f % g.kw, ky = f / g.kw % g.kh, cl = f / kk % cg, co = f / (kk * cg);
            int64_t ci = co / og * cg + cl;
            const int64_t y_off = ky * g.dh - g.ph, x_off = kx * g.dw - g.pw;
            auto [oy0, oy1] = inside(g.ho, g.sh, y_off, g.h);
            auto [ox0, ox1] = inside(g.wo, g.sw, x_off, g.w);
            for (int64_t n = 0; n < g.n; ++n)
                for (int64_t oy = oy0; oy < oy1; ++oy) {
                    const double* row = x0 + ((n * g.c + ci) * g.h + oy * g.sh + y_off) * g.w;
                    const int64_t o = ((n * s.out_channels + co) * g.ho + oy) * g.wo;
                    double* out = d.out + o;
                    for (int64_t ox = ox0; ox < ox1; ++ox) out[ox] += row[ox * g.sw + x_off] * dw;
                    for (int64_t ox = ox0; ox < ox1; ++ox) d.touch(o + ox);
                }
        }
    if (!B.unchanged())
        for (int64_t co : *B.changed) {
            double db = B.data()[co] - B.base_data()[co];
            for (int64_t n = 0; n < g.n; ++n)
                for (int64_t p = 0; p < plane; ++p) add(n, co, p / g.wo, p % g.wo, db);
        }
    return true;
}

}  // namespace

// --- im2col and col2im --------------------------------------------------------------------

namespace {
struct Im2col : Op<Im2col> {
    static constexpr const char* name = "im2col";
    static constexpr ReplayForm replay = ReplayForm::index_map;  // every column entry is an input pixel or 0
    struct Attrs {
        Int2 kernel, stride = 1, padding = 0, dilation = 1;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), "im2col: undefined input");
        TG_CHECK(x.dim() == 4, "im2col: expected a 4-d input [N, C, H, W], got shape ", x.shape());
        const Geometry g = geometry("im2col", x.shape(), a.kernel, a.stride, a.padding, a.dilation);
        Tensor out = Tensor::empty({g.n, g.c * g.kk(), g.columns()}, x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "im2col",
                             [&] { kernels::im2col(g, x.data<scalar_t>(), out.data<scalar_t>()); });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        const shape_type& xs = g.input_shape(0);
        return {col2im(g.grad, {xs[2], xs[3]}, a.kernel, a.stride, a.padding, a.dilation)};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,2,4,5] k3 p1", {real("x", {2, 2, 4, 5})}, Attrs{3, 1, 1, 1}),
                sample("[1,2,7,6] k(2,3) s(2,1) p(1,0) d(2,1)", {real("x", {1, 2, 7, 6})},
                       Attrs{{2, 3}, {2, 1}, {1, 0}, {2, 1}}),
                sample("[2,1,5,5] k2 s2 (edge windows dropped)", {real("x", {2, 1, 5, 5})}, Attrs{2, 2, 0, 1}),
                sample("[1,2,7,8] k2 s3", {real("x", {1, 2, 7, 8})}, Attrs{2, 3, 0, 1})};
    }
};
TG_REGISTER_OP(Im2col);
}  // namespace

Tensor im2col(const Tensor& x, Int2 kernel, Int2 stride, Int2 padding, Int2 dilation)
{
    return Im2col::call({x}, {kernel, stride, padding, dilation});
}

namespace {
struct Col2im : Op<Col2im> {
    static constexpr const char* name = "col2im";
    struct Attrs {
        Int2 input_hw, kernel, stride = 1, padding = 0, dilation = 1;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& cols = in[0];
        TG_CHECK(cols.defined(), "col2im: undefined input");
        TG_CHECK(cols.dim() == 3, "col2im: expected a 3-d input [N, C·kH·kW, L], got shape ", cols.shape());
        TG_CHECK(a.input_hw.h >= 1 && a.input_hw.w >= 1, "col2im: input size (", a.input_hw.h, ", ", a.input_hw.w,
                 ") must be positive");
        int64_t kk = 0;  // left 0, and refused, for a side below 1 or a product past int64
        const bool positive = a.kernel.h >= 1 && a.kernel.w >= 1;
        if (!positive || __builtin_mul_overflow(a.kernel.h, a.kernel.w, &kk)) kk = 0;
        TG_CHECK(kk > 0 && cols.shape()[1] % kk == 0, "col2im: ", cols.shape()[1], " rows in ", cols.shape(),
                 " are not a multiple of the kernel's ", a.kernel.h, "x", a.kernel.w, " = ", kk);
        const int64_t c = cols.shape()[1] / kk;
        const Geometry g = geometry("col2im", {cols.shape()[0], c, a.input_hw.h, a.input_hw.w}, a.kernel, a.stride,
                                    a.padding, a.dilation);
        TG_CHECK(cols.shape()[2] == g.columns(), "col2im: ", cols.shape()[2], " columns in ", cols.shape(),
                 " but the windows over (", g.h, ", ", g.w, ") make ", g.ho, "x", g.wo, " = ", g.columns());
        Tensor out = zeros({g.n, c, g.h, g.w}, cols.dtype());
        TG_DISPATCH_FLOATING(cols.dtype(), "col2im",
                             [&] { kernels::col2im(g, cols.data<scalar_t>(), out.data<scalar_t>()); });
        return out;
    }
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {im2col(g.grad, a.kernel, a.stride, a.padding, a.dilation)};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,18,20] into 4x5, k3 p1", {real("cols", {2, 18, 20})}, Attrs{{4, 5}, 3, 1, 1, 1}),
                sample("[1,12,16] into 7x6, k(2,3) s(2,1) p(1,0) d(2,1)", {real("cols", {1, 12, 16})},
                       Attrs{{7, 6}, {2, 3}, {2, 1}, {1, 0}, {2, 1}}),
                sample("[1,8,6] into 5x7, k2 s2", {real("cols", {1, 8, 6})}, Attrs{{5, 7}, 2, 2, 0, 1}),
                sample("[1,8,6] into 7x8, k2 s3", {real("cols", {1, 8, 6})}, Attrs{{7, 8}, 2, 3, 0, 1})};
    }
};
TG_REGISTER_OP(Col2im);
}  // namespace

Tensor col2im(const Tensor& cols, Int2 input_hw, Int2 kernel, Int2 stride, Int2 padding, Int2 dilation)
{
    return Col2im::call({cols}, {input_hw, kernel, stride, padding, dilation});
}

// --- conv2d ---------------------------------------------------------------------------------

namespace {
struct Conv2d : Op<Conv2d> {
    static constexpr const char* name = "conv2d";
    static constexpr Saves saves = save_input(0) | save_input(1);
    struct Attrs {
        Int2 stride = 1, padding = 0, dilation = 1;
        int64_t groups = 1;
        // The bound on one column block: smaller in samples, so that small
        // shapes reach the kernels' channel- and column-blocked paths.
        int64_t block_bytes = kernels::default_block_bytes;
        ConvShape shape{};  // set by forward
    };
    // Inputs: x [N, C, H, W], weight, and optionally bias.
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        const Tensor& weight = in[1];
        const Tensor bias = in.size() > 2 ? in[2] : Tensor();
        TG_CHECK(x.defined(), "conv2d: undefined input");
        TG_CHECK(weight.defined(), "conv2d: undefined weight");
        TG_CHECK(x.dim() == 4, "conv2d: expected input [N, C, H, W] (or [C, H, W]), got shape ", x.shape());
        TG_CHECK(weight.dim() == 4, "conv2d: expected weight [out_channels, in_channels / groups, kH, kW], got shape ",
                 weight.shape(), " for input ", x.shape());
        TG_CHECK(is_floating(x.dtype()), "conv2d: input must be float32 or float64, got ", dtype_name(x.dtype()));
        TG_CHECK(weight.dtype() == x.dtype(), "conv2d: weight is ", dtype_name(weight.dtype()), " ", weight.shape(),
                 " but input is ", dtype_name(x.dtype()), " ", x.shape(), " (convert one with .to(dtype))");
        const int64_t cin = x.shape()[1], cout = weight.shape()[0], groups = a.groups;
        TG_CHECK(groups >= 1, "conv2d: groups must be positive, got ", groups);
        TG_CHECK(cin % groups == 0, "conv2d: input channels ", cin, " of input ", x.shape(),
                 " are not divisible by groups = ", groups);
        TG_CHECK(cout % groups == 0, "conv2d: output channels ", cout, " of weight ", weight.shape(),
                 " are not divisible by groups = ", groups);
        TG_CHECK(weight.shape()[1] == cin / groups, "conv2d: weight ", weight.shape(), " expects ",
                 weight.shape()[1], " input channels per group (groups = ", groups, ") but input ", x.shape(),
                 " has ", cin, " (", cin / groups, " per group)");
        if (bias.defined()) {
            TG_CHECK(bias.dtype() == x.dtype(), "conv2d: bias is ", dtype_name(bias.dtype()), " ", bias.shape(),
                     " but input is ", dtype_name(x.dtype()), " ", x.shape());
            TG_CHECK(bias.dim() == 1 && bias.shape()[0] == cout, "conv2d: bias of shape ", bias.shape(),
                     " for weight ", weight.shape(), "; expected [", cout, "]");
        }
        a.shape = ConvShape{geometry("conv2d", x.shape(), {weight.shape()[2], weight.shape()[3]}, a.stride, a.padding,
                                     a.dilation),
                            groups, cout, a.block_bytes};
        const ConvShape& s = a.shape;
        Tensor y = Tensor::empty({s.g.n, cout, s.g.ho, s.g.wo}, x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
            kernels::conv_forward<scalar_t>(s, x.data<scalar_t>(), weight.data<scalar_t>(),
                                            bias.defined() ? bias.data<scalar_t>() : nullptr, y.data<scalar_t>());
        });
        return y;
    }
    // The same gradients from differentiable ops (im2col, col2im, bmm).
    static tensor_list backward(const BackwardArgs& a, const Attrs& at)
    {
        return conv_backward_composite(a, at.shape, a.input(1).shape());
    }
    static tensor_list fused_backward(const BackwardArgs& a, const Attrs& at)
    {
        const ConvShape& s = at.shape;
        const Tensor &x = a.input(0), &w = a.input(1);
        Tensor dx = a.needs_grad(0) ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
        Tensor dw = a.needs_grad(1) ? Tensor::empty(w.shape(), x.dtype()) : Tensor();
        Tensor db = a.needs_grad(2) ? Tensor::empty({s.out_channels}, x.dtype()) : Tensor();
        const int64_t scratch = kernels::conv_backward_workspace(s, dx.defined(), dw.defined(), db.defined());
        Tensor workspace = scratch > 0 ? Tensor::empty({scratch}, x.dtype()) : Tensor();
        TG_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
            auto ptr = [](Tensor& t) { return t.defined() ? t.data<scalar_t>() : nullptr; };
            kernels::conv_backward<scalar_t>(s, x.data<scalar_t>(), w.data<scalar_t>(), a.grad.data<scalar_t>(),
                                             ptr(dx), ptr(dw), ptr(db), ptr(workspace));
        });
        tensor_list grads{dx, dw, db};
        grads.resize(a.inputs());  // no bias: two inputs
        return grads;
    }
    static bool delta(DeltaArgs& d, const Attrs& a) { return conv2d_delta(d, a.shape); }
    static std::vector<OpSample> samples();
};
TG_REGISTER_OP(Conv2d);
}  // namespace

PaddingSides conv2d_padding_sides(ConvPadding padding, Int2 kernel, Int2 dilation, const char* op)
{
    switch (padding.kind) {
    case ConvPadding::Kind::sizes: return {padding.sizes, padding.sizes};
    case ConvPadding::Kind::valid: return {0, 0};
    case ConvPadding::Kind::same: break;
    }
    TG_CHECK(padding.kind == ConvPadding::Kind::same, op, ": unknown padding kind ", int64_t(padding.kind));
    TG_CHECK(kernel.h >= 1 && kernel.w >= 1 && dilation.h >= 1 && dilation.w >= 1, op, ": padding=same for kernel (",
             kernel.h, ", ", kernel.w, ") and dilation (", dilation.h, ", ", dilation.w, "): both must be positive");
    int64_t total_h = 0, total_w = 0;
    TG_CHECK(!__builtin_mul_overflow(dilation.h, kernel.h - 1, &total_h) &&
                 !__builtin_mul_overflow(dilation.w, kernel.w - 1, &total_w),
             op, ": padding=same for kernel (", kernel.h, ", ", kernel.w, ") at dilation (", dilation.h, ", ",
             dilation.w, ") overflows int64");
    return {{total_h / 2, total_w / 2}, {total_h - total_h / 2, total_w - total_w / 2}};
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Int2 stride, ConvPadding padding,
              Int2 dilation, int64_t groups)
{
    TG_CHECK(x.defined(), "conv2d: undefined input");
    if (x.dim() == 3)  // unbatched [C, H, W], as in PyTorch
        return squeeze(conv2d(unsqueeze(x, 0), weight, bias, stride, padding, dilation, groups), 0);
    if (padding.kind != ConvPadding::Kind::sizes) {
        TG_CHECK(padding.kind != ConvPadding::Kind::same || stride == Int2(1), "conv2d: padding=same is not supported",
                 " for strided convolutions, got stride (", stride.h, ", ", stride.w, ")");
        TG_CHECK(weight.defined(), "conv2d: undefined weight");
        TG_CHECK(weight.dim() == 4, "conv2d: expected weight [out_channels, in_channels / groups, kH, kW], got shape ",
                 weight.shape());
        const auto [before, after] =
            conv2d_padding_sides(padding, {weight.shape()[2], weight.shape()[3]}, dilation, "conv2d");
        // An odd overhang: the extra row and column padded first, the rest by the kernel.
        const Tensor padded = after == before || x.dim() != 4
                                  ? x
                                  : pad(x, {0, after.w - before.w, 0, after.h - before.h}, PaddingMode::constant);
        return conv2d(padded, weight, bias, stride, before, dilation, groups);
    }
    Conv2d::Attrs a{stride, padding.sizes, dilation, groups};
    return bias.defined() ? Conv2d::call({x, weight, bias}, a) : Conv2d::call({x, weight}, a);
}

// The samples reach every branch of the kernels (engine/kernels/conv.cpp):
// the im2col forms (shifted, stride 1, stride 2, other strides, kernels wider
// than 16 taps), the pointwise path, both input gradients (col2im, and the
// transposed convolution for stride 1 with cg >= 8 >= og), the short-side
// kernels (inner sizes <= 16, float32: the float32 pass; every row remainder
// of the 6-row tile, column ends by an overlapping tile or partial vectors,
// the 4x3 dot tiles and their edges) and BLAS, groups, and blocks of channels
// and of columns (a small block_bytes). Comments name what a sample adds.
std::vector<OpSample> Conv2d::samples()
{
    auto opts = [](Int2 stride, Int2 padding, Int2 dilation, int64_t groups, int64_t block_bytes = 0) {
        return Attrs{stride, padding, dilation, groups, block_bytes > 0 ? block_bytes : kernels::default_block_bytes};
    };
    return {
        // im2col by output rows, stride 1; BLAS (k = 18); dx by col2im.
        sample("[2,2,5,5] * [3,2,3,3] + b", {real("x", {2, 2, 5, 5}), real("w", {3, 2, 3, 3}), real("b", {3})},
               opts(1, 0, 1, 1)),
        // Rows with stride 2, zero rows above and below.
        sample("stride 2, padding 1, odd 7x5", {real("x", {2, 2, 7, 5}), real("w", {3, 2, 3, 3}), real("b", {3})},
               opts(2, 1, 1, 1)),
        // Shifted planes (stride 1, output as wide as the input), dilated.
        sample("dilation 2, padding 2", {real("x", {1, 2, 7, 6}), real("w", {2, 2, 3, 3}), real("b", {2})},
               opts(1, 2, 2, 1)),
        sample("groups 2", {real("x", {2, 4, 5, 4}), real("w", {4, 2, 3, 3}), real("b", {4})}, opts(1, 1, 1, 2)),
        // Short side k = 9 per group; 2-row tiles; dot edges only.
        sample("depthwise (groups = Cin = 3), 2 outputs per channel",
               {real("x", {2, 3, 5, 5}), real("w", {6, 1, 3, 3}), real("b", {6})}, opts(1, 1, 1, 3)),
        // k = 12; 20 columns: a 16-column tile, then a vector overlapping it (AVX2).
        sample("kernel 2x3, stride (2,1), padding (1,0)",
               {real("x", {2, 2, 6, 7}), real("w", {3, 2, 2, 3}), real("b", {3})}, opts({2, 1}, {1, 0}, 1, 1)),
        sample("kernel 3x1, stride (1,2), padding (0,1), dilation (1,2), no bias",
               {real("x", {2, 2, 5, 7}), real("w", {2, 2, 3, 1})}, opts({1, 2}, {0, 1}, {1, 2}, 1)),
        // Pointwise: the planes are the column matrix; short side 3; 12 columns: partial vectors.
        sample("1x1 conv", {real("x", {2, 3, 4, 3}), real("w", {4, 3, 1, 1}), real("b", {4})}, opts(1, 0, 1, 1)),
        // Pointwise with 20 channels: BLAS for all three products.
        sample("1x1 conv, 20 channels", {real("x", {2, 20, 3, 3}), real("w", {3, 20, 1, 1}), real("b", {3})},
               opts(1, 0, 1, 1)),
        // Pointwise, one channel: 1-row tiles in dx = wᵀ·gy; 24 columns: a vector after a tile (AVX2).
        sample("1x1 conv, 1 channel, 4x6", {real("x", {2, 1, 4, 6}), real("w", {5, 1, 1, 1}), real("b", {5})},
               opts(1, 0, 1, 1)),
        sample("1x1 conv, stride 2, padding 1, no bias", {real("x", {2, 3, 5, 4}), real("w", {2, 3, 1, 1})},
               opts(2, 1, 1, 1)),
        sample("1x1 output (kernel = input)", {real("x", {3, 2, 3, 3}), real("w", {4, 2, 3, 3}), real("b", {4})},
               opts(1, 0, 1, 1)),
        // k = 9, 4 outputs: the 4x3 dot tiles of dw.
        sample("batch 1, Cin 1, padding 1", {real("x", {1, 1, 6, 5}), real("w", {4, 1, 3, 3}), real("b", {4})},
               opts(1, 1, 1, 1)),
        // 11 outputs: tiles of 6 rows then 5, dot tiles then edges; 63 columns: an overlapping tile.
        sample("Cin 1, 11 outputs, 7x9", {real("x", {1, 1, 7, 9}), real("w", {11, 1, 3, 3}), real("b", {11})},
               opts(1, 1, 1, 1)),
        // Stride 3: the generic-stride im2col and col2im; 6 columns: one partial vector.
        sample("no bias, stride 3 uneven", {real("x", {2, 2, 8, 7}), real("w", {3, 2, 2, 2})}, opts(3, 0, 1, 1)),
        sample("kernel 2x17 (more than 16 taps)", {real("x", {2, 1, 3, 19}), real("w", {2, 1, 2, 17}), real("b", {2})},
               opts(1, {0, 1}, 1, 1)),
        // dx as the transposed convolution: gy's planes shifted (padding 1), BLAS.
        sample("transposed input gradient, 8 -> 3 channels, padding 1",
               {real("x", {2, 8, 5, 4}), real("w", {3, 8, 3, 3}), real("b", {3})}, opts(1, 1, 1, 1)),
        // The transposed convolution by rows (no padding), one output: short side 9 in float32.
        sample("transposed input gradient, 9 -> 1 channel, no padding",
               {real("x", {1, 9, 6, 5}), real("w", {1, 9, 3, 3}), real("b", {1})}, opts(1, 0, 1, 1)),
        sample("transposed input gradient, groups 2", {real("x", {1, 16, 4, 4}), real("w", {6, 8, 3, 3})},
               opts(1, 1, 1, 2)),
        // 1000-byte blocks: one channel per block in float32 (short side, then
        // BLAS accumulating), 16-column blocks of shifted rows in float64.
        sample("blocks of channels or columns, col2im",
               {real("x", {2, 4, 5, 5}), real("w", {3, 4, 3, 3}), real("b", {3})}, opts(1, 1, 1, 1, 1000)),
        // The same for the forward by rows and for the transposed input gradient.
        sample("blocks of channels or columns, transposed",
               {real("x", {1, 8, 6, 5}), real("w", {4, 8, 3, 3}), real("b", {4})}, opts(1, 0, 1, 1, 1000)),
        // Each side of pointwise() (conv.hpp): 1x1 but strided along w, or
        // padded along h or w; and a 1-row kernel that is not 1 wide.
        sample("1x1, stride (1,2)", {real("x", {1, 2, 3, 4}), real("w", {2, 2, 1, 1})}, opts({1, 2}, 0, 1, 1)),
        sample("1x1, padding (1,0)", {real("x", {1, 2, 2, 3}), real("w", {2, 2, 1, 1})}, opts(1, {1, 0}, 1, 1)),
        sample("1x1, padding (0,1)", {real("x", {1, 2, 3, 2}), real("w", {2, 2, 1, 1})}, opts(1, {0, 1}, 1, 1)),
        // Each side of transposed_input_gradient's padding tests, with 8
        // channels so that only the padding decides: padding beyond dil·(k − 1)
        // along h (kernel 1x3), then along w (kernel 3x1): dx by col2im.
        sample("kernel 1x3, padding (1,1), 8 -> 2 channels",
               {real("x", {1, 8, 2, 3}), real("w", {2, 8, 1, 3})}, opts(1, 1, 1, 1)),
        sample("kernel 3x1, padding (0,1), 8 -> 2 channels",
               {real("x", {1, 8, 3, 2}), real("w", {2, 8, 3, 1})}, opts(1, {0, 1}, 1, 1)),
        // Shifted rows whose vertical offset leaves the plane for every output
        // row, and taps that never read it (5x5 over 2x2, padding 2).
        sample("kernel 5x5 over 2x2, padding 2", {real("x", {1, 1, 2, 2}), real("w", {1, 1, 5, 5}), real("b", {1})},
               opts(1, 2, 1, 1)),
        // 16-column blocks of shifted rows (6x6, kernel 5, padding 2): the
        // last block lies past every position the lowest kernel rows read.
        sample("kernel 5x5 over 6x6, padding 2, 16-column blocks",
               {real("x", {1, 1, 6, 6}), real("w", {1, 1, 5, 5})}, opts(1, 2, 1, 1, 1000)),
        // The public function's unbatched form.
        tg::sample("unbatched [2,5,5] * [3,2,3,3] + b", {real("x", {2, 5, 5}), real("w", {3, 2, 3, 3}), real("b", {3})},
                   [](const tensor_list& x) { return conv2d(x[0], x[1], x[2], 1, 1); }),
        // padding=same: an odd kernel pads both sides alike; an even one (or
        // an odd dil·(k − 1)) pads the extra row and column first (pad).
        tg::sample("padding same, kernel 3, odd 5x6", {real("x", {2, 2, 5, 6}), real("w", {3, 2, 3, 3}), real("b", {3})},
                   [](const tensor_list& x) { return conv2d(x[0], x[1], x[2], 1, same); }),
        tg::sample("padding same, kernel 2x4 (even: the extra after)",
                   {real("x", {2, 2, 5, 6}), real("w", {2, 2, 2, 4}), real("b", {2})},
                   [](const tensor_list& x) { return conv2d(x[0], x[1], x[2], 1, same); }),
        tg::sample("padding same, kernel 3 at dilation 2", {real("x", {1, 2, 5, 7}), real("w", {2, 2, 3, 3})},
                   [](const tensor_list& x) { return conv2d(x[0], x[1], Tensor(), 1, same, 2); }),
        tg::sample("padding same, kernel (2, 3) at dilation (3, 1), groups 2",
                   {real("x", {2, 4, 4, 5}), real("w", {4, 2, 2, 3}), real("b", {4})},
                   [](const tensor_list& x) { return conv2d(x[0], x[1], x[2], 1, same, {3, 1}, 2); }),
        tg::sample("padding same, unbatched, kernel 4", {real("x", {2, 5, 5}), real("w", {2, 2, 4, 4})},
                   [](const tensor_list& x) { return conv2d(x[0], x[1], Tensor(), 1, same); }),
        tg::sample("padding valid, stride 2", {real("x", {1, 2, 6, 5}), real("w", {3, 2, 3, 2}), real("b", {3})},
                   [](const tensor_list& x) { return conv2d(x[0], x[1], x[2], 2, valid); }),
    };
}

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_conv_ops() {}
}  // namespace detail

}  // namespace tg
