// Convolution and pooling: conv2d (forward and both backward paths) against a
// direct-loop reference, im2col and col2im as an adjoint pair, the pools
// against direct loops, ties in max pooling, the registry samples, and the
// errors.
#include <doctest/doctest.h>

#include "helpers.hpp"
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {


void check_close(const Values& got, const Values& want, double tol, const std::string& what)
{
    REQUIRE(got.size() == want.size());
    double scale = 0;
    for (double v : want) scale = std::max(scale, std::abs(v));
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        double err = std::abs(got[i] - want[i]) / std::max(1.0, scale);
        if (err > worst) worst = err, at = i;
    }
    INFO(what, ": worst element ", at, " ", got[at], " vs ", want[at], " (relative error ", worst, ")");
    CHECK(worst <= tol);
}

struct ConvCase {
    const char* label;
    tg::shape_type x, w;
    bool bias;
    tg::Int2 stride, padding, dilation;
    int64_t groups;
};

// Direct loops over the definition: y[n,o,oh,ow] = b[o] + Σ w[o,c,i,j] x[n, g·Cg + c, ih, iw].
struct Reference {
    Values y, dx, dw, db;
};

Reference reference_conv(const ConvCase& c, const Values& x, const Values& w, const Values& b, const Values& gy)
{
    const int64_t N = c.x[0], C = c.x[1], H = c.x[2], W = c.x[3];
    const int64_t O = c.w[0], Cg = c.w[1], KH = c.w[2], KW = c.w[3], G = c.groups, Og = O / G;
    const int64_t Ho = (H + 2 * c.padding.h - c.dilation.h * (KH - 1) - 1) / c.stride.h + 1;
    const int64_t Wo = (W + 2 * c.padding.w - c.dilation.w * (KW - 1) - 1) / c.stride.w + 1;
    Reference r;
    r.y.assign(size_t(N * O * Ho * Wo), 0.0);
    r.dx.assign(x.size(), 0.0);
    r.dw.assign(w.size(), 0.0);
    r.db.assign(size_t(O), 0.0);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o)
            for (int64_t oh = 0; oh < Ho; ++oh)
                for (int64_t ow = 0; ow < Wo; ++ow) {
                    const size_t yi = size_t(((n * O + o) * Ho + oh) * Wo + ow);
                    double s = b.empty() ? 0.0 : b[size_t(o)];
                    const double g = gy.empty() ? 0.0 : gy[yi];
                    r.db[size_t(o)] += g;
                    for (int64_t cc = 0; cc < Cg; ++cc)
                        for (int64_t i = 0; i < KH; ++i)
                            for (int64_t j = 0; j < KW; ++j) {
                                const int64_t ih = oh * c.stride.h - c.padding.h + i * c.dilation.h;
                                const int64_t iw = ow * c.stride.w - c.padding.w + j * c.dilation.w;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                const int64_t ch = (o / Og) * Cg + cc;
                                const size_t xi = size_t(((n * C + ch) * H + ih) * W + iw);
                                const size_t wi = size_t(((o * Cg + cc) * KH + i) * KW + j);
                                s += w[wi] * x[xi];
                                r.dx[xi] += w[wi] * g;
                                r.dw[wi] += x[xi] * g;
                            }
                    r.y[yi] = s;
                }
    return r;
}

tg::Tensor conv_of(const ConvCase& c, const tg::Tensor& x, const tg::Tensor& w, const tg::Tensor& b)
{
    return tg::conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups);
}

const std::vector<ConvCase>& conv_cases()
{
    static const std::vector<ConvCase> cases = {
        {"3x3", {2, 3, 6, 5}, {4, 3, 3, 3}, true, 1, 0, 1, 1},
        {"3x3 padding 1 (same size)", {2, 3, 6, 5}, {4, 3, 3, 3}, true, 1, 1, 1, 1},
        {"stride 2, padding 1", {2, 2, 7, 8}, {3, 2, 3, 3}, true, 2, 1, 1, 1},
        {"dilation 2, padding 2", {1, 2, 9, 7}, {3, 2, 3, 3}, true, 1, 2, 2, 1},
        {"groups 2", {2, 4, 6, 6}, {6, 2, 3, 3}, true, 1, 1, 1, 2},
        {"depthwise", {2, 3, 7, 5}, {3, 1, 3, 3}, true, 1, 1, 1, 3},
        {"depthwise x2 outputs, stride 2", {2, 3, 7, 5}, {6, 1, 3, 3}, false, 2, 1, 1, 3},
        {"kernel 2x3, stride (2,1), padding (1,0)", {2, 2, 7, 6}, {3, 2, 2, 3}, true, {2, 1}, {1, 0}, 1, 1},
        {"kernel 3x1, stride (1,3), padding (0,2), dilation (2,1)", {2, 2, 8, 7}, {2, 2, 3, 1}, false, {1, 3}, {0, 2}, {2, 1}, 1},
        {"1x1", {2, 5, 4, 3}, {3, 5, 1, 1}, true, 1, 0, 1, 1},
        {"1x1, groups 5", {2, 5, 4, 3}, {5, 1, 1, 1}, true, 1, 0, 1, 5},
        {"1x1 stride 2 padding 1", {2, 3, 5, 4}, {2, 3, 1, 1}, true, 2, 1, 1, 1},
        {"1x1 output", {3, 2, 3, 3}, {4, 2, 3, 3}, true, 1, 0, 1, 1},
        {"batch 1, Cin 1", {1, 1, 7, 6}, {4, 1, 3, 3}, true, 1, 1, 1, 1},
        {"no bias, kernel 5 on 5x5 padded by 2", {2, 2, 5, 5}, {3, 2, 5, 5}, false, 1, 2, 1, 1},
        // Column matrices larger than one GEMM block: blocks that split output rows.
        {"64 channels, 13x12, padding 1 (several column blocks)", {2, 64, 13, 12}, {8, 64, 3, 3}, true, 1, 1, 1, 1},
        {"64 channels, 15x15, stride 2 (several column blocks)", {2, 64, 21, 15}, {4, 64, 3, 3}, true, 2, 1, 1, 1},
        {"48 channels, groups 2, dilation 2, 16x14", {3, 48, 16, 14}, {6, 24, 3, 3}, true, 1, 2, 2, 2},
    };
    return cases;
}

}  // namespace

// --- conv2d against the direct loops -------------------------------------------------------

TEST_CASE("conv2d: forward and first-order gradients match direct loops (float64 and float32)")
{
    for (const ConvCase& c : conv_cases()) {
        for (tg::Dtype dt : {tg::float64, tg::float32}) {
            INFO(c.label, " ", tg::dtype_name(dt));
            tg::Generator gen(7);
            tg::Tensor x = tg::randn(c.x, dt, &gen).requires_grad_();
            tg::Tensor w = tg::randn(c.w, dt, &gen).requires_grad_();
            tg::Tensor b = c.bias ? tg::randn({c.w[0]}, dt, &gen).requires_grad_() : tg::Tensor();
            tg::Tensor y = conv_of(c, x, w, b);
            tg::Tensor gy = tg::randn(y.shape(), dt, &gen);
            Reference r = reference_conv(c, x.to_vector(), w.to_vector(), c.bias ? b.to_vector() : Values{},
                                         gy.to_vector());
            const double tol = dt == tg::float64 ? 1e-12 : 2e-5;
            CHECK(y.shape()[0] == c.x[0]);
            CHECK(y.shape()[1] == c.w[0]);
            check_close(y.to_vector(), r.y, tol, "output");
            tg::tensor_list wrt = {x, w};
            if (c.bias) wrt.push_back(b);
            tg::tensor_list g = tg::grad({y}, wrt, {gy});
            check_close(g[0].to_vector(), r.dx, tol, "dx");
            check_close(g[1].to_vector(), r.dw, tol, "dw");
            if (c.bias) check_close(g[2].to_vector(), r.db, tol, "db");
        }
    }
}

TEST_CASE("conv2d: the fast first-order backward and the differentiable one agree to 1e-12")
{
    for (const ConvCase& c : conv_cases()) {
        INFO(c.label);
        tg::Generator gen(11);
        tg::Tensor x = tg::randn(c.x, tg::float64, &gen).requires_grad_();
        tg::Tensor w = tg::randn(c.w, tg::float64, &gen).requires_grad_();
        tg::Tensor b = c.bias ? tg::randn({c.w[0]}, tg::float64, &gen).requires_grad_() : tg::Tensor();
        tg::tensor_list wrt = {x, w};
        if (c.bias) wrt.push_back(b);
        tg::Tensor y = conv_of(c, x, w, b);
        // The upstream gradient requires grad too, so every composite gradient is recorded.
        tg::Tensor gy = tg::randn(y.shape(), tg::float64, &gen).requires_grad_();
        tg::tensor_list fast = tg::grad({y}, wrt, {gy}, {.create_graph = false, .retain_graph = true});
        tg::tensor_list composite = tg::grad({y}, wrt, {gy}, {.create_graph = true, .retain_graph = true});
        REQUIRE(fast.size() == composite.size());
        for (size_t i = 0; i < fast.size(); ++i) {
            CHECK_FALSE(fast[i].requires_grad());
            CHECK(composite[i].requires_grad());  // recorded: the composite path ran
            check_close(fast[i].to_vector(), composite[i].detach().to_vector(), 1e-12, "gradient " + std::to_string(i));
        }
    }
}

TEST_CASE("conv2d: gradients of only some inputs, and an unbatched input")
{
    tg::Generator gen(3);
    tg::Tensor x = tg::randn({2, 3, 6, 6}, tg::float64, &gen);
    tg::Tensor w = tg::randn({4, 3, 3, 3}, tg::float64, &gen).requires_grad_();
    tg::Tensor b = tg::randn({4}, tg::float64, &gen);
    ConvCase c{"", {2, 3, 6, 6}, {4, 3, 3, 3}, true, 2, 1, 1, 1};
    tg::Tensor y = conv_of(c, x, w, b);
    tg::Tensor gy = tg::randn(y.shape(), tg::float64, &gen);
    Reference r = reference_conv(c, x.to_vector(), w.to_vector(), b.to_vector(), gy.to_vector());
    check_close(tg::grad({y}, {w}, {gy})[0].to_vector(), r.dw, 1e-12, "dw alone");

    // [C, H, W] is one image, as in PyTorch.
    tg::Tensor x3 = tg::reshape(tg::slice(x, 0, 0, 1), {3, 6, 6});
    tg::Tensor y3 = tg::conv2d(x3, w, b, 2, 1);
    CHECK(y3.shape() == tg::shape_type{4, 3, 3});
    check_close(y3.to_vector(), Values(r.y.begin(), r.y.begin() + 36), 1e-12, "unbatched");
}

TEST_CASE("conv2d: the benchmark's layer shapes match direct loops in float32")
{
    // Shapes of the reference CNN at batch 2 (the kernels' paths for Cin = 1 and
    // for large column blocks), and the stride-2 layer.
    std::vector<ConvCase> cases = {
        {"1x28x28 -> 32", {2, 1, 28, 28}, {32, 1, 3, 3}, true, 1, 1, 1, 1},
        {"32x14x14 -> 64", {2, 32, 14, 14}, {64, 32, 3, 3}, true, 1, 1, 1, 1},
        {"64x32x32 -> 16, stride 2", {1, 64, 32, 32}, {16, 64, 3, 3}, true, 2, 1, 1, 1},
    };
    for (const ConvCase& c : cases) {
        INFO(c.label);
        tg::Generator gen(5);
        tg::Tensor x = tg::randn(c.x, tg::float32, &gen).requires_grad_();
        tg::Tensor w = (tg::randn(c.w, tg::float32, &gen) * 0.1).detach().requires_grad_();
        tg::Tensor b = tg::randn({c.w[0]}, tg::float32, &gen).requires_grad_();
        tg::Tensor y = conv_of(c, x, w, b);
        tg::Tensor gy = tg::randn(y.shape(), tg::float32, &gen);
        Reference r = reference_conv(c, x.to_vector(), w.to_vector(), b.to_vector(), gy.to_vector());
        tg::tensor_list g = tg::grad({y}, {x, w, b}, {gy});
        check_close(y.to_vector(), r.y, 2e-5, "output");
        check_close(g[0].to_vector(), r.dx, 2e-5, "dx");
        check_close(g[1].to_vector(), r.dw, 2e-5, "dw");
        check_close(g[2].to_vector(), r.db, 2e-5, "db");
    }
}

TEST_CASE("conv2d: column matrices larger than one block (split by channels, or by columns)")
{
    // The per-thread column buffer is capped at 8 MB: 128 channels of 40x40 in
    // float64 (15 MB) take two channel blocks; one 3x3 channel of 342x342
    // (8.4 MB) takes column blocks.
    std::vector<ConvCase> cases = {
        {"128 channels 40x40", {1, 128, 40, 40}, {2, 128, 3, 3}, true, 1, 1, 1, 1},
        {"1 channel 342x342", {1, 1, 342, 342}, {2, 1, 3, 3}, true, 1, 1, 1, 1},
    };
    for (const ConvCase& c : cases)
        for (tg::Dtype dt : {tg::float64, tg::float32}) {
            INFO(c.label, " ", tg::dtype_name(dt));
            tg::Generator gen(9);
            tg::Tensor x = tg::randn(c.x, dt, &gen).requires_grad_();
            tg::Tensor w = tg::randn(c.w, dt, &gen).requires_grad_();
            tg::Tensor b = tg::randn({c.w[0]}, dt, &gen).requires_grad_();
            tg::Tensor y = conv_of(c, x, w, b);
            tg::Tensor gy = tg::randn(y.shape(), dt, &gen);
            Reference r = reference_conv(c, x.to_vector(), w.to_vector(), b.to_vector(), gy.to_vector());
            tg::tensor_list g = tg::grad({y}, {x, w, b}, {gy});
            const double tol = dt == tg::float64 ? 1e-12 : 1e-4;
            check_close(y.to_vector(), r.y, tol, "output");
            check_close(g[0].to_vector(), r.dx, tol, "dx");
            check_close(g[1].to_vector(), r.dw, tol, "dw");
            check_close(g[2].to_vector(), r.db, tol, "db");
        }
}

// --- im2col and col2im ------------------------------------------------------------------------

TEST_CASE("im2col and col2im are adjoint: <im2col(x), c> == <x, col2im(c)>")
{
    struct Opts {
        tg::shape_type x;
        tg::Int2 kernel, stride, padding, dilation;
    };
    std::vector<Opts> sets = {
        {{2, 3, 5, 6}, 3, 1, 1, 1},        {{1, 2, 7, 7}, 3, 2, 1, 1},       {{2, 2, 9, 8}, 3, 1, 2, 2},
        {{1, 3, 6, 9}, {2, 3}, {2, 1}, {1, 0}, 1}, {{2, 1, 5, 5}, 2, 2, 0, 1}, {{1, 2, 4, 4}, 1, 1, 0, 1},
        {{1, 2, 6, 5}, {3, 2}, {1, 3}, {0, 1}, {2, 1}},
    };
    for (const Opts& o : sets) {
        tg::Generator gen(1);
        tg::Tensor x = tg::randn(o.x, tg::float64, &gen);
        tg::Tensor cols = tg::im2col(x, o.kernel, o.stride, o.padding, o.dilation);
        tg::Tensor c = tg::randn(cols.shape(), tg::float64, &gen);
        tg::Tensor back = tg::col2im(c, {o.x[2], o.x[3]}, o.kernel, o.stride, o.padding, o.dilation);
        CHECK(back.shape() == o.x);
        double lhs = tg::sum(cols * c).item(), rhs = tg::sum(x * back).item();
        INFO("x ", o.x, ": ", lhs, " vs ", rhs);
        CHECK(std::abs(lhs - rhs) <= 1e-12 * std::max(1.0, std::abs(lhs)));
    }
}

TEST_CASE("im2col: layout of rows (c, i, j) and columns (oh, ow), zeros in the padding")
{
    // One 3x3 channel, kernel 2, padding 1, stride 2: output 2x2.
    tg::Tensor x = tg::reshape(tg::arange(1, 10, 1, tg::float64), {1, 1, 3, 3});
    tg::Tensor cols = tg::im2col(x, 2, 2, 1);
    REQUIRE(cols.shape() == tg::shape_type{1, 4, 4});
    // Row (i, j) holds x[2·oh − 1 + i, 2·ow − 1 + j] for (oh, ow) = (0,0), (0,1), (1,0), (1,1).
    CHECK(cols.to_vector() == Values{0, 0, 0, 5, 0, 0, 4, 6, 0, 2, 0, 8, 1, 3, 7, 9});
}

// --- pooling ----------------------------------------------------------------------------------

namespace {

struct PoolRef {
    Values y, dx;
    std::vector<int64_t> idx;
};

// mode: 0 max, 1 avg counting padding, 2 avg without padding.
PoolRef reference_pool(const tg::shape_type& s, const Values& x, const Values& gy, int mode, tg::Int2 k, tg::Int2 st,
                       tg::Int2 p)
{
    const int64_t P = s[0] * s[1], H = s[2], W = s[3];
    const int64_t Ho = (H + 2 * p.h - k.h) / st.h + 1, Wo = (W + 2 * p.w - k.w) / st.w + 1;
    PoolRef r;
    r.y.assign(size_t(P * Ho * Wo), 0.0);
    r.idx.assign(r.y.size(), -1);
    r.dx.assign(x.size(), 0.0);
    for (int64_t pl = 0; pl < P; ++pl)
        for (int64_t oh = 0; oh < Ho; ++oh)
            for (int64_t ow = 0; ow < Wo; ++ow) {
                const size_t o = size_t((pl * Ho + oh) * Wo + ow);
                double best = -std::numeric_limits<double>::infinity(), sum = 0;
                int64_t arg = -1, count = 0;
                for (int64_t i = 0; i < k.h; ++i)
                    for (int64_t j = 0; j < k.w; ++j) {
                        const int64_t ih = oh * st.h - p.h + i, iw = ow * st.w - p.w + j;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        const double v = x[size_t(pl * H * W + ih * W + iw)];
                        if (arg < 0 || v > best) best = v, arg = ih * W + iw;
                        sum += v;
                        ++count;
                    }
                const double div = mode == 1 ? double(k.h * k.w) : double(count);
                if (mode == 0) {
                    r.y[o] = best;
                    r.idx[o] = arg;
                    r.dx[size_t(pl * H * W + arg)] += gy[o];
                } else {
                    r.y[o] = sum / div;
                    for (int64_t i = 0; i < k.h; ++i)
                        for (int64_t j = 0; j < k.w; ++j) {
                            const int64_t ih = oh * st.h - p.h + i, iw = ow * st.w - p.w + j;
                            if (ih >= 0 && ih < H && iw >= 0 && iw < W) r.dx[size_t(pl * H * W + ih * W + iw)] += gy[o] / div;
                        }
                }
            }
    return r;
}

struct PoolCase {
    tg::shape_type x;
    tg::Int2 kernel, stride, padding;
};

const std::vector<PoolCase>& pool_cases()
{
    static const std::vector<PoolCase> cases = {
        {{2, 3, 4, 4}, 2, 2, 0},          {{2, 2, 5, 5}, 3, 2, 1},         {{1, 3, 5, 7}, {2, 3}, {1, 2}, {1, 1}},
        {{2, 2, 7, 6}, 3, 1, 1},          {{1, 2, 9, 9}, 3, 3, 0},         {{3, 1, 6, 5}, {3, 2}, {2, 3}, {1, 1}},
        {{2, 4, 28, 28}, 2, 2, 0},        {{1, 2, 7, 37}, 2, 2, 0},
    };
    return cases;
}

}  // namespace

TEST_CASE("max_pool2d: values, argmax indices and gradient match direct loops")
{
    for (const PoolCase& c : pool_cases())
        for (tg::Dtype dt : {tg::float64, tg::float32}) {
            INFO("x ", c.x, " ", tg::dtype_name(dt));
            tg::Generator gen(2);
            tg::Tensor x = tg::randn(c.x, dt, &gen).requires_grad_();
            auto [y, idx] = tg::max_pool2d_with_indices(x, c.kernel, c.stride, c.padding);
            tg::Tensor gy = tg::randn(y.shape(), dt, &gen);
            PoolRef r = reference_pool(c.x, x.to_vector(), gy.to_vector(), 0, c.kernel, c.stride, c.padding);
            check_close(y.to_vector(), r.y, 0, "values");
            CHECK(idx.dtype() == tg::int64);
            Values want_idx(r.idx.begin(), r.idx.end());
            CHECK(idx.to_vector() == want_idx);
            check_close(tg::grad({y}, {x}, {gy})[0].to_vector(), r.dx, 1e-6, "dx");
        }
}

TEST_CASE("max_pool2d: ties go to the first maximum in scan order, and padding never wins")
{
    // All equal: each window's first element (row-major) takes the gradient.
    tg::Tensor x = tg::full({1, 1, 4, 4}, -3.0, tg::float64).requires_grad_();
    auto [y, idx] = tg::max_pool2d_with_indices(x, 3, 1, 1);
    // Window (oh, ow) starts at input (oh − 1, ow − 1) clipped to the plane.
    CHECK(idx.to_vector() == Values{0, 0, 1, 2, 0, 0, 1, 2, 4, 4, 5, 6, 8, 8, 9, 10});
    CHECK(y.to_vector() == Values(16, -3.0));  // the −∞ padding never wins over −3
    tg::Tensor g = tg::grad({tg::sum(y)}, {x})[0];
    CHECK(g.to_vector() == Values{4, 2, 2, 0, 2, 1, 1, 0, 2, 1, 1, 0, 0, 0, 0, 0});
    // A tie between two later elements: the first of them.
    tg::Tensor t = tg::from_values({0, 5, 5, 1}, {1, 1, 2, 2}, tg::float64);
    CHECK(tg::max_pool2d_with_indices(t, 2).second.to_vector() == Values{1});
}

TEST_CASE("max_pool2d 2x2: ties and NaN in the vectorised rows as in the generic loop")
{
    // 2 x 40 input: 20 windows; on AVX2 two 8-wide steps, then one overlapping them.
    for (tg::Dtype dt : {tg::float32, tg::float64}) {
        INFO(tg::dtype_name(dt));
        std::vector<double> v(80, 1.0);
        v[2 * 3 + 1] = v[40 + 2 * 3] = 2.0;  // window 3: a tie between (0, 7) and (1, 6): the first wins
        v[40 + 2 * 5 + 1] = std::nan("");    // window 5: the NaN at (1, 11) wins
        v[2 * 9] = std::nan("");              // window 9: the last NaN (1, 19) wins over the first, as in PyTorch
        v[40 + 2 * 9 + 1] = std::nan("");
        v[2 * 12 + 1] = 5.0;                  // window 12: a maximum, then a NaN: the NaN
        v[40 + 2 * 12] = std::nan("");
        v[2 * 19 + 1] = 3.0;                  // window 19 (the overlapping step): (0, 39)
        tg::Tensor x = tg::from_values(v, {1, 1, 2, 40}, dt);
        auto [y, idx] = tg::max_pool2d_with_indices(x, 2);
        std::vector<double> want_idx(20);
        for (int64_t o = 0; o < 20; ++o) want_idx[size_t(o)] = double(2 * o);
        want_idx[3] = 7;
        want_idx[5] = 40 + 11;
        want_idx[9] = 40 + 19;
        want_idx[12] = 40 + 24;
        want_idx[19] = 39;
        CHECK(idx.to_vector() == want_idx);
        std::vector<double> got = y.to_vector();
        CHECK(got[3] == 2.0);
        CHECK(std::isnan(got[5]));
        CHECK(std::isnan(got[9]));
        CHECK(std::isnan(got[12]));
        CHECK(got[19] == 3.0);
        CHECK(got[0] == 1.0);
    }
}

TEST_CASE("max_pool2d_backward scatters (adding repeats) and max_pool2d_gather gathers")
{
    tg::Tensor g = tg::from_values({1, 2, 3, 4}, {1, 1, 2, 2}, tg::float64);
    tg::Tensor idx = tg::from_values({0, 5, 5, 8}, {1, 1, 2, 2}, tg::int64);
    tg::Tensor d = tg::max_pool2d_backward(g, idx, {1, 1, 3, 3});
    CHECK(d.to_vector() == Values{1, 0, 0, 0, 0, 5, 0, 0, 4});
    tg::Tensor x = tg::reshape(tg::arange(10, 19, 1, tg::float64), {1, 1, 3, 3});
    CHECK(tg::max_pool2d_gather(x, idx).to_vector() == Values{10, 15, 15, 18});
    tg::Tensor bad = tg::from_values({0, 9, 1, 2}, {1, 1, 2, 2}, tg::int64);
    CHECK(error_of([&] { tg::max_pool2d_backward(g, bad, {1, 1, 3, 3}); }).find("index 9 outside") != std::string::npos);
    // The first index too (the kernels report a bad one by its position, 0 included).
    tg::Tensor bad_first = tg::from_values({-1, 5, 5, 8}, {1, 1, 2, 2}, tg::int64);
    CHECK(error_of([&] { tg::max_pool2d_backward(g, bad_first, {1, 1, 3, 3}); }).find("index -1 outside") !=
          std::string::npos);
    CHECK(error_of([&] { tg::max_pool2d_gather(x, bad_first); }).find("index -1 outside") != std::string::npos);
}

TEST_CASE("max_pool2d_backward float32 of windows that do not tile 2x2 writes every element")
{
    // A 2x6 plane pooled by 2x3 windows (stride 2x3): h and w even, ho = h/2,
    // but wo = w/3. Indices that happen to lie in the 2x2 tiles too (1 and 9)
    // must not send it down the dense 2x2 path, which writes only 4 columns.
    // Fresh buffers filled with 0xff: an element left unwritten is NaN.
    const int fill = tg::detail::fresh_buffer_fill();
    tg::detail::set_fresh_buffer_fill(0xff);
    tg::Tensor g = tg::from_values({1, 2}, {1, 1, 1, 2}, tg::float32);
    tg::Tensor idx = tg::from_values({1, 9}, {1, 1, 1, 2}, tg::int64);
    std::vector<double> got = tg::max_pool2d_backward(g, idx, {1, 1, 2, 6}).to_vector();
    tg::detail::set_fresh_buffer_fill(fill);
    CHECK(got == Values{0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0});
}

TEST_CASE("max_pool2d_backward 2x2 float32: dense writes, and indices outside their windows still scatter")
{
    // 2 x 20 input: 10 windows; on AVX2 an 8-wide step, then one overlapping it.
    tg::Tensor g = tg::reshape(tg::arange(1, 11, 1, tg::float32), {1, 1, 1, 10});
    std::vector<double> own(10), want(40, 0.0);
    for (int64_t o = 0; o < 10; ++o) {
        own[size_t(o)] = double(2 * o + (o % 4 == 1 ? 1 : 0) + (o % 4 == 2 ? 20 : 0) + (o % 4 == 3 ? 21 : 0));
        want[size_t(own[size_t(o)])] = double(o + 1);
    }
    tg::Tensor idx = tg::from_values(own, {1, 1, 1, 10}, tg::int64);
    CHECK(tg::max_pool2d_backward(g, idx, {1, 1, 2, 20}).to_vector() == want);
    // A -0 gradient lands as +0, as 0 + g in the scatter.
    tg::Tensor mz = tg::full({1, 1, 1, 10}, -0.0, tg::float32);
    for (double v : tg::max_pool2d_backward(mz, idx, {1, 1, 2, 20}).to_vector()) CHECK(!std::signbit(v));
    // Indices of other windows (first step, then the overlapping one): the repeats add up.
    for (int64_t at : {3, 9}) {
        INFO("foreign index at output ", at);
        std::vector<double> bad = own, want_bad(40, 0.0);
        bad[size_t(at)] = own[0];
        for (int64_t o = 0; o < 10; ++o) want_bad[size_t(bad[size_t(o)])] += double(o + 1);
        tg::Tensor ib = tg::from_values(bad, {1, 1, 1, 10}, tg::int64);
        CHECK(tg::max_pool2d_backward(g, ib, {1, 1, 2, 20}).to_vector() == want_bad);
    }
}

TEST_CASE("avg_pool2d: both count_include_pad settings match direct loops, forward and backward")
{
    for (const PoolCase& c : pool_cases())
        for (bool cip : {true, false})
            for (tg::Dtype dt : {tg::float64, tg::float32}) {
                INFO("x ", c.x, " count_include_pad ", cip, " ", tg::dtype_name(dt));
                tg::Generator gen(4);
                tg::Tensor x = tg::randn(c.x, dt, &gen).requires_grad_();
                tg::Tensor y = tg::avg_pool2d(x, c.kernel, c.stride, c.padding, cip);
                tg::Tensor gy = tg::randn(y.shape(), dt, &gen);
                PoolRef r = reference_pool(c.x, x.to_vector(), gy.to_vector(), cip ? 1 : 2, c.kernel, c.stride, c.padding);
                const double tol = dt == tg::float64 ? 1e-13 : 1e-6;
                check_close(y.to_vector(), r.y, tol, "values");
                check_close(tg::grad({y}, {x}, {gy})[0].to_vector(), r.dx, tol, "dx");
            }
    // The two settings differ exactly at the padded corners.
    tg::Tensor ones = tg::ones({1, 1, 3, 3}, tg::float64);
    CHECK(tg::avg_pool2d(ones, 3, 1, 1, true).at({0, 0, 0, 0}) == doctest::Approx(4.0 / 9));
    CHECK(tg::avg_pool2d(ones, 3, 1, 1, false).at({0, 0, 0, 0}) == doctest::Approx(1.0));
}

TEST_CASE("adaptive_avg_pool2d: global average and uneven windows")
{
    tg::Generator gen(6);
    tg::Tensor x = tg::randn({2, 3, 7, 5}, tg::float64, &gen).requires_grad_();
    tg::Tensor g = tg::adaptive_avg_pool2d(x, 1);
    REQUIRE(g.shape() == tg::shape_type{2, 3, 1, 1});
    check_close(g.to_vector(), tg::mean(x, {2, 3}).to_vector(), 1e-14, "global average");
    // 7 rows into 3: [0,3), [2,5), [4,7); 5 columns into 2: [0,3), [2,5).
    tg::Tensor y = tg::adaptive_avg_pool2d(x, {3, 2});
    REQUIRE(y.shape() == tg::shape_type{2, 3, 3, 2});
    Values xv = x.to_vector(), want;
    const int64_t rb[] = {0, 2, 4}, cb[] = {0, 2};
    for (int64_t p = 0; p < 6; ++p)
        for (int64_t r : rb)
            for (int64_t c : cb) {
                double s = 0;
                for (int64_t i = r; i < r + 3; ++i)
                    for (int64_t j = c; j < c + 3; ++j) s += xv[size_t(p * 35 + i * 5 + j)];
                want.push_back(s / 9);
            }
    check_close(y.to_vector(), want, 1e-14, "3x2 windows");
    // Its backward spreads each gradient evenly over the window.
    tg::Tensor dx = tg::grad({tg::sum(g)}, {x})[0];
    check_close(dx.to_vector(), Values(210, 1.0 / 35), 1e-14, "global average backward");
}

TEST_CASE("adaptive_avg_pool2d: an unbatched [C, H, W] input is its batch of one, and an undefined one is an error")
{
    tg::Generator gen(8);
    tg::Tensor x = tg::randn({3, 5, 4}, tg::float64, &gen);
    tg::Tensor y = tg::adaptive_avg_pool2d(x, {2, 3});
    REQUIRE(y.shape() == tg::shape_type{3, 2, 3});
    CHECK(y.to_vector() == tg::adaptive_avg_pool2d(tg::unsqueeze(x, 0), {2, 3}).to_vector());
    CHECK(contains(error_of([] { tg::adaptive_avg_pool2d(tg::Tensor(), 2); }), "adaptive_avg_pool2d: undefined input"));
}

TEST_CASE("max_pool2d: a window of padding in the columns only, rows inside, is refused as one of padding only")
{
    // [1, 1, 3, 1], kernel (1, 2), padding (0, 1), dilation (1, 2): the one
    // column's window taps columns -1 and 1, both padding, in every row.
    for (tg::Dtype dt : {tg::float32, tg::float64})
        CHECK(contains(error_of([&] { tg::max_pool2d(tg::zeros({1, 1, 3, 1}, dt), {1, 2}, 1, {0, 1}, {1, 2}); }),
                       "only padding"));
}

TEST_CASE("max_unpool2d float32: an index outside the plane is an error naming it, as in float64")
{
    tg::Tensor y = tg::ones({1, 1, 2, 2}, tg::float32);
    tg::Tensor idx = tg::from_values({0, 5, 10, 16}, {1, 1, 2, 2}, tg::int64);
    const std::string msg = error_of([&] { tg::max_unpool2d(y, idx, 2); });
    CHECK(contains(msg, "max_unpool2d"));
    CHECK(contains(msg, "index 16"));
    CHECK(contains(msg, "4x4 output plane"));
}

// --- the registry samples ---------------------------------------------------------------------

TEST_CASE("conv and pool ops: every registered sample passes gradcheck, first and second order, and float32")
{
    const char* names[] = {"conv2d", "im2col", "col2im", "max_pool2d", "max_pool2d_backward", "max_pool2d_gather",
                           "avg_pool2d", "avg_pool2d_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"};
    for (const char* name : names) {
        const tg::OpInfo* op = tg::find_op(name);
        REQUIRE_MESSAGE(op != nullptr, name);
        CHECK(!op->samples.empty());
        for (const tg::OpSample& s : op->samples) {
            tg::SampleCheck sc = tg::check_sample(*op, s);
            INFO(name, " / ", s.label, "\n", sc.to_string());
            CHECK(sc.passed());
            for (const tg::InputReport& r : sc.first.inputs) CHECK_FALSE(r.vacuous);
        }
    }
}

// --- errors -----------------------------------------------------------------------------------

TEST_CASE("conv2d: shapes that cannot work are errors naming conv2d, the argument and the shapes")
{
    tg::Tensor x = tg::zeros({2, 4, 5, 5});
    tg::Tensor w = tg::zeros({6, 4, 3, 3});
    auto has = [](const std::string& msg, std::initializer_list<const char*> parts) {
        INFO(msg);
        for (const char* p : parts) CHECK(msg.find(p) != std::string::npos);
    };
    has(error_of([&] { tg::conv2d(x, tg::zeros({6, 4, 7, 3})); }),
        {"conv2d", "kernel (7, 3)", "larger than the padded input (5, 5)", "[2, 4, 5, 5]"});
    has(error_of([&] { tg::conv2d(x, tg::zeros({6, 4, 3, 3}), {}, 1, 0, 3); }),
        {"conv2d", "dilation (3, 3)", "spans (7, 7)"});
    has(error_of([&] { tg::conv2d(tg::zeros({2, 5, 5, 5}), tg::zeros({6, 2, 3, 3}), {}, 1, 0, 1, 2); }),
        {"conv2d", "input channels 5", "[2, 5, 5, 5]", "groups = 2"});
    has(error_of([&] { tg::conv2d(x, tg::zeros({5, 2, 3, 3}), {}, 1, 0, 1, 2); }),
        {"conv2d", "output channels 5", "[5, 2, 3, 3]", "groups = 2"});
    has(error_of([&] { tg::conv2d(x, tg::zeros({6, 3, 3, 3})); }),
        {"conv2d", "weight [6, 3, 3, 3]", "input [2, 4, 5, 5] has 4"});
    has(error_of([&] { tg::conv2d(x, tg::zeros({6, 4, 3})); }), {"conv2d", "weight", "[6, 4, 3]"});
    has(error_of([&] { tg::conv2d(tg::zeros({4, 5}), w); }), {"conv2d", "input", "[4, 5]"});
    has(error_of([&] { tg::conv2d(tg::zeros({1, 2, 4, 5, 5}), w); }), {"conv2d", "input", "[1, 2, 4, 5, 5]"});
    has(error_of([&] { tg::conv2d(x, w, tg::zeros({5})); }), {"conv2d", "bias of shape [5]", "expected [6]"});
    has(error_of([&] { tg::conv2d(x, w, tg::zeros({6, 1})); }), {"conv2d", "bias of shape [6, 1]"});
    has(error_of([&] { tg::conv2d(x, tg::zeros({6, 4, 3, 3}, tg::float64)); }),
        {"conv2d", "weight is float64", "input is float32"});
    has(error_of([&] { tg::conv2d(x, w, tg::zeros({6}, tg::float64)); }), {"conv2d", "bias is float64"});
    has(error_of([&] { tg::conv2d(x, w, {}, 0); }), {"conv2d", "stride (0, 0)"});
    has(error_of([&] { tg::conv2d(x, w, {}, 1, -1); }), {"conv2d", "padding (-1, -1)"});
    has(error_of([&] { tg::conv2d(x, w, {}, 1, 0, 1, 0); }), {"conv2d", "groups must be positive"});
    has(error_of([&] { tg::im2col(x, 6); }), {"im2col", "larger than the padded input"});
    has(error_of([&] { tg::col2im(tg::zeros({2, 10, 9}), {5, 5}, 3); }), {"col2im", "not a multiple", "3x3"});
    has(error_of([&] { tg::col2im(tg::zeros({2, 9, 8}), {5, 5}, 3); }), {"col2im", "8 columns", "3x3 = 9"});
}

TEST_CASE("pooling: shapes that cannot work are errors naming the op and the shapes")
{
    tg::Tensor x = tg::zeros({2, 3, 4, 4});
    auto has = [](const std::string& msg, std::initializer_list<const char*> parts) {
        INFO(msg);
        for (const char* p : parts) CHECK(msg.find(p) != std::string::npos);
    };
    has(error_of([&] { tg::max_pool2d(x, 5); }), {"max_pool2d", "kernel (5, 5)", "larger than the input's plane (4, 4)", "[2, 3, 4, 4]"});
    has(error_of([&] { tg::max_pool2d(x, 2, 2, 2); }), {"max_pool2d", "padding (2, 2)", "half the kernel"});
    has(error_of([&] { tg::avg_pool2d(tg::zeros({3, 4}), 2); }), {"avg_pool2d", "[3, 4]"});
    has(error_of([&] { tg::avg_pool2d(x, 2, 0); }), {"avg_pool2d", "stride"});
    has(error_of([&] { tg::adaptive_avg_pool2d(x, {0, 2}); }), {"adaptive_avg_pool2d", "output size (0, 2)"});
    has(error_of([&] { tg::avg_pool2d_backward(tg::zeros({2, 3, 3, 3}), {2, 3, 4, 4}, 2); }),
        {"avg_pool2d_backward", "[2, 3, 3, 3]", "[2, 3, 2, 2]"});
    has(error_of([&] { tg::max_pool2d_backward(tg::zeros({2, 3, 2, 2}), tg::zeros({2, 3, 2, 2}), {2, 3, 4, 4}); }),
        {"max_pool2d_backward", "int64"});
    // An index outside its plane, in either dtype (float32 tries the dense 2x2 writes first).
    tg::Tensor bad = tg::from_values({0, 1, 16, 2}, {1, 1, 2, 2}, tg::int64);
    for (tg::Dtype dt : {tg::float64, tg::float32}) {
        INFO(tg::dtype_name(dt));
        has(error_of([&] { tg::max_pool2d_gather(tg::zeros({1, 1, 4, 4}, dt), bad); }),
            {"max_pool2d_gather", "index 16 outside the 4x4 plane", "[1, 1, 4, 4]"});
        has(error_of([&] {
                tg::max_pool2d_backward(tg::zeros({1, 1, 2, 2}, dt), tg::from_values({0, -1, 8, 10}, {1, 1, 2, 2}, tg::int64),
                                        {1, 1, 4, 4});
            }),
            {"max_pool2d_backward", "index -1 outside the 4x4 plane"});
    }
}

TEST_CASE("conv2d: second order with the weight or the input detached equals that part of the full second order")
{
    // The composite backward (create_graph) skips the gradient of an input
    // that needs none: what it returns for the other must not change.
    tg::Generator gen(71);
    auto randn = [&](const tg::shape_type& s) { return tg::randn(s, tg::float64, &gen); };
    const tg::Tensor x0 = randn({2, 3, 7, 6}), w0 = randn({4, 3, 3, 2}), b0 = randn({4});
    const tg::Tensor vx = randn({2, 3, 7, 6}), vw = randn({4, 3, 3, 2});
    auto loss = [](const tg::Tensor& x, const tg::Tensor& w, const tg::Tensor& b) {
        tg::Tensor y = tg::conv2d(x, w, b, {2, 1}, {1, 0});
        return tg::sum(tg::mul(y, y));
    };
    auto values = [](const tg::Tensor& t) { return std::vector<double>(t.data<double>(), t.data<double>() + t.numel()); };
    // Full: every input needs a gradient. d/dx <dL/dx, vx> and d/dw <dL/dw, vw>.
    tg::Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    tg::tensor_list g = tg::grad({loss(x, w, b)}, {x, w}, {}, graph_options(true));
    tg::GradOptions keep;
    keep.retain_graph = true;  // g[1]'s graph shares the forward with g[0]'s
    tg::Tensor hxx = tg::grad({tg::sum(tg::mul(g[0], vx))}, {x}, {}, keep)[0];
    tg::Tensor hww = tg::grad({tg::sum(tg::mul(g[1], vw))}, {w})[0];
    SUBCASE("weight detached")
    {
        tg::Tensor xd = x0.clone().requires_grad_();
        tg::Tensor gx = tg::grad({loss(xd, w0, b0)}, {xd}, {}, graph_options(true))[0];
        tg::Tensor h = tg::grad({tg::sum(tg::mul(gx, vx))}, {xd})[0];
        check_close(values(h), values(hxx), 1e-12);
        CHECK(tg::sum(tg::abs(h)).item() > 1);  // not vacuous
    }
    SUBCASE("input detached")
    {
        tg::Tensor wd = w0.clone().requires_grad_();
        tg::Tensor gw = tg::grad({loss(x0, wd, b0)}, {wd}, {}, graph_options(true))[0];
        tg::Tensor h = tg::grad({tg::sum(tg::mul(gw, vw))}, {wd})[0];
        check_close(values(h), values(hww), 1e-12);
        CHECK(tg::sum(tg::abs(h)).item() > 1);
    }
}
