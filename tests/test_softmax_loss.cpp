// softmax, log_softmax and the losses against naive references, their
// stability at extreme logits, the fused and the differentiable backward
// paths against each other, and their error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/softmax.hpp"
#include "tests/helpers.hpp"

using namespace tg;

namespace {

// Naive softmax along the last axis of a [rows, n] row-major array, in double.
std::vector<double> naive_softmax(const std::vector<double>& x, int64_t n, bool log)
{
    std::vector<double> y(x.size());
    for (size_t r = 0; r < x.size() / size_t(n); ++r) {
        double m = -INFINITY;
        for (int64_t k = 0; k < n; ++k) m = std::max(m, x[r * size_t(n) + size_t(k)]);
        double s = 0;
        for (int64_t k = 0; k < n; ++k) s += std::exp(x[r * size_t(n) + size_t(k)] - m);
        for (int64_t k = 0; k < n; ++k) {
            double v = x[r * size_t(n) + size_t(k)] - m;
            y[r * size_t(n) + size_t(k)] = log ? v - std::log(s) : std::exp(v) / s;
        }
    }
    return y;
}


// cross-entropy of one row, PyTorch's definition with label smoothing.
double naive_xent_row(const std::vector<double>& z, int64_t t, double eps)
{
    std::vector<double> lp = naive_softmax(z, int64_t(z.size()), true);
    double smooth = 0;
    for (double v : lp) smooth -= v;
    return (1 - eps) * -lp[size_t(t)] + eps * smooth / double(z.size());
}



Tensor targets(std::vector<double> v, shape_type shape = {})
{
    return from_values(v, shape.empty() ? shape_type{int64_t(v.size())} : shape, int64);
}

}  // namespace

TEST_CASE("softmax and log_softmax: values against a naive reference, float32 and float64")
{
    Generator gen(3);
    for (Dtype dt : {float64, float32}) {
        for (int64_t n : {1, 3, 4, 7, 8, 9, 16, 19, 1000}) {
            Tensor x = mul(randn({5, n}, float64, &gen), scalar(4.0, float64));
            std::vector<double> xv = x.to_vector();
            double tol = dt == float32 ? 2e-6 : 1e-13;
            INFO("dtype " << dtype_name(dt) << " n " << n);
            check_close(softmax(x.to(dt)).to_vector(), naive_softmax(xv, n, false), tol);
            check_close(log_softmax(x.to(dt)).to_vector(), naive_softmax(xv, n, true), tol);
        }
    }
}

namespace {

// The checks of the float exp kernel, for whichever instruction set runs it.
void check_exp_kernel()
{
    // Every row length 1..40 exercises the full vectors and the overlapping last one.
    std::vector<float> x(4001), out(4001);
    for (size_t i = 0; i < x.size(); ++i) x[i] = -87.0f * float(i) / 4000.0f;
    double worst = 0;
    for (int64_t n = 1; n <= 40; ++n) {
        kernels::exp_row(x.data(), 0.0f, out.data(), n);
        for (int64_t k = 0; k < n; ++k)
            worst = std::max(worst, std::abs(out[size_t(k)] / std::exp(double(x[size_t(k)])) - 1));
    }
    kernels::exp_row(x.data(), 0.25f, out.data(), int64_t(x.size()), 2.0f);  // exp(x - 0.25)·2
    for (size_t k = 0; k < x.size(); ++k)
        worst = std::max(worst, std::abs(out[k] / (2 * std::exp(double(x[k] - 0.25f))) - 1));
    CHECK(worst < 4e-7);
    kernels::exp_row(x.data(), 0.0f, out.data(), 9, 1.0f, -0.25f);  // the offset
    for (size_t k = 0; k < 9; ++k) CHECK(out[k] == doctest::Approx(std::exp(double(x[k])) - 0.25).epsilon(1e-6));
    // Far below the threshold: exactly 0; NaN stays NaN; in place works.
    std::vector<float> y = {-1000.0f, -88.0f, NAN, 0.0f, -1.0f, -2.0f, -3.0f, -4.0f, -5.0f};
    kernels::exp_row(y.data(), 0.0f, y.data(), int64_t(y.size()));
    CHECK(y[0] == 0.0f);
    CHECK(y[1] < 1e-38f);
    CHECK(std::isnan(y[2]));
    CHECK(y[3] == 1.0f);
    CHECK(y[8] / std::exp(-5.0) == doctest::Approx(1.0).epsilon(2e-7));
    // At the threshold itself, exp is still the smallest normal float, not 0.
    std::vector<float> t(9, -87.33654f);
    kernels::exp_row(t.data(), 0.0f, t.data(), int64_t(t.size()));
    for (float v : t) CHECK(std::abs(v / std::exp(double(-87.33654f)) - 1) < 1e-5);
    std::vector<float> z = {0.0f, -1.0f, -2.0f, -3.0f, -4.0f, -5.0f};
    kernels::RowLse<float> lse = kernels::logsumexp_row(z.data(), 6);
    CHECK(lse.max == 0.0f);
    CHECK(lse.max + lse.log_sum == doctest::Approx(std::log(1 + std::exp(-1.0f) + std::exp(-2.0f) +
                                                                           std::exp(-3.0f) + std::exp(-4.0f) +
                                                                           std::exp(-5.0f))).epsilon(1e-6));
}

}  // namespace

TEST_CASE("the vectorised float exp: relative error of a few ulp down to the underflow threshold, on every instruction set")
{
    const kernels::Isa chosen = kernels::isa();
    int variants = 0;
    for (kernels::Isa isa : kernels::supported_isas()) {
        CAPTURE(kernels::isa_name(isa));
        kernels::set_isa(isa);
        check_exp_kernel();
        ++variants;
    }
    kernels::set_isa(chosen);
    CHECK(variants == int(kernels::supported_isas().size()));
    CHECK(variants >= 1);
}

TEST_CASE("softmax along a non-last axis equals softmax of the permuted tensor")
{
    Generator gen(4);
    for (Dtype dt : {float64, float32}) {
        Tensor x = randn({3, 5, 4}, dt, &gen);
        // axis 1: move it last, compare.
        Tensor ref = permute(softmax(permute(x, {0, 2, 1})), {0, 2, 1});
        check_close(softmax(x, 1).to_vector(), ref.to_vector(), 1e-6);
        Tensor lref = permute(log_softmax(permute(x, {0, 2, 1})), {0, 2, 1});
        check_close(log_softmax(x, 1).to_vector(), lref.to_vector(), 1e-6);
        // axis 0 of a 2-d tensor.
        Tensor y = randn({6, 3}, dt, &gen);
        check_close(softmax(y, 0).to_vector(), transpose(softmax(transpose(y))).to_vector(), 1e-6);
        std::vector<double> col_sums = sum(softmax(y, 0), {0}).to_vector();
        for (double s : col_sums) CHECK(s == doctest::Approx(1.0).epsilon(1e-6));
    }
}

TEST_CASE("softmax and log_softmax stay finite and exact for logits of +-1e4")
{
    for (Dtype dt : {float32, float64}) {
        INFO(dtype_name(dt));
        // float32 holds 1e4 to about 6e-4: values derived from a log-sum-exp
        // near 1e4 carry that absolute error.
        double tol = dt == float32 ? 2e-3 : 1e-9;
        // Row 0: two logits 1 apart at +1e4 and the rest far below; row 1 all at -1e4.
        Tensor x = from_values({1e4, -1e4, 0, 1e4 - 1, -1e4, -1e4, -1e4, -1e4}, {2, 4}, dt).requires_grad_();
        double p = 1 / (1 + std::exp(-1.0));
        std::vector<double> s = softmax(x).to_vector();
        check_close(s, {p, 0, 0, 1 - p, 0.25, 0.25, 0.25, 0.25}, tol);
        std::vector<double> ls = log_softmax(x).to_vector();
        check_close(ls, {std::log(p), -2e4 + std::log(p), -1e4 + std::log(p), std::log(1 - p), -std::log(4.0),
                         -std::log(4.0), -std::log(4.0), -std::log(4.0)},
                    tol);
        Tensor w = from_values({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4}, dt);
        for (bool create_graph : {false, true}) {
            for (bool log : {false, true}) {
                Tensor y = log ? log_softmax(x) : softmax(x);
                Tensor g = grad({sum(mul(y, w))}, {x}, {}, graph_options(create_graph))[0];
                for (double v : g.to_vector()) CHECK(std::isfinite(v));
                // d/dx Σ w·softmax = y·(w - Σ w·y); for log_softmax: w - softmax·Σ w.
                std::vector<double> sv = softmax(x).to_vector(), gv = g.to_vector(), wv = w.to_vector();
                for (int r = 0; r < 2; ++r) {
                    double dot = 0, total = 0;
                    for (int k = 0; k < 4; ++k) {
                        dot += wv[size_t(r * 4 + k)] * sv[size_t(r * 4 + k)];
                        total += wv[size_t(r * 4 + k)];
                    }
                    for (int k = 0; k < 4; ++k) {
                        size_t i = size_t(r * 4 + k);
                        double want = log ? wv[i] - sv[i] * total : sv[i] * (wv[i] - dot);
                        CHECK(gv[i] == doctest::Approx(want).epsilon(10 * tol).scale(1.0));
                    }
                }
            }
        }
    }
}

TEST_CASE("softmax: the fused first-order backward and the differentiable one agree")
{
    Generator gen(5);
    for (Dtype dt : {float64, float32}) {
        for (int64_t axis : {-1, 0, 1}) {
            Tensor x = randn({4, 6, 11}, dt, &gen).requires_grad_();
            Tensor u = randn({4, 6, 11}, dt, &gen);
            for (bool log : {false, true}) {
                auto f = [&] { return log ? log_softmax(x, axis) : softmax(x, axis); };
                Tensor fused = grad({f()}, {x}, {u})[0];
                Tensor composite = grad({f()}, {x}, {u}, graph_options(true))[0];
                CHECK(composite.requires_grad());
                check_close(fused.to_vector(), composite.detach().to_vector(), dt == float32 ? 1e-5 : 1e-12);
            }
        }
    }
}

TEST_CASE("cross_entropy against a naive reference: reductions, label smoothing, ignore_index")
{
    Generator gen(6);
    const int64_t n = 9, c = 13;
    for (Dtype dt : {float64, float32}) {
        Tensor z64 = mul(randn({n, c}, float64, &gen), scalar(3.0, float64));
        std::vector<double> zv = z64.to_vector();
        std::vector<double> tv = {0, 12, 5, 3, 3, 7, 11, 2, 1};
        for (double eps : {0.0, 0.15}) {
            for (int64_t ignore : {int64_t(-100), int64_t(3)}) {
                INFO(std::string(dtype_name(dt)) << " eps " << eps << " ignore " << ignore);
                Tensor t = targets(tv);
                std::vector<double> rows(n);
                std::vector<double> grad_rows(size_t(n * c), 0.0);
                double total = 0;
                int valid = 0;
                for (int64_t r = 0; r < n; ++r) {
                    if (int64_t(tv[size_t(r)]) == ignore) continue;
                    std::vector<double> zr(zv.begin() + r * c, zv.begin() + (r + 1) * c);
                    rows[size_t(r)] = naive_xent_row(zr, int64_t(tv[size_t(r)]), eps);
                    total += rows[size_t(r)];
                    ++valid;
                    std::vector<double> p = naive_softmax(zr, c, false);
                    for (int64_t k = 0; k < c; ++k)
                        grad_rows[size_t(r * c + k)] =
                            p[size_t(k)] - eps / double(c) - (k == int64_t(tv[size_t(r)]) ? 1 - eps : 0.0);
                }
                double tol = dt == float32 ? 2e-5 : 1e-12;
                Tensor z = z64.to(dt).requires_grad_();
                Tensor mean_loss = cross_entropy(z, t, Reduction::mean, ignore, eps);
                CHECK(mean_loss.dim() == 0);
                CHECK(mean_loss.item() == doctest::Approx(total / valid).epsilon(tol));
                CHECK(cross_entropy(z, t, Reduction::sum, ignore, eps).item() == doctest::Approx(total).epsilon(tol));
                Tensor none = cross_entropy(z, t, Reduction::none, ignore, eps);
                CHECK(none.shape() == shape_type{n});
                check_close(none.to_vector(), rows, tol);
                // Gradient of the mean: (softmax - q) / valid on the rows that count.
                for (bool create_graph : {false, true}) {
                    Tensor g = grad({cross_entropy(z, t, Reduction::mean, ignore, eps)}, {z}, {},
                                    graph_options(create_graph))[0];
                    std::vector<double> want = grad_rows;
                    for (double& v : want) v /= valid;
                    check_close(g.detach().to_vector(), want, tol);
                }
            }
        }
    }
}

TEST_CASE("cross_entropy: the fused backward and the create_graph backward agree for every option")
{
    Generator gen(7);
    for (Dtype dt : {float64, float32}) {
        for (Reduction red : {Reduction::mean, Reduction::sum, Reduction::none}) {
            for (double eps : {0.0, 0.3}) {
                Tensor z = randn({2, 5, 3}, dt, &gen).requires_grad_();
                Tensor t = targets({0, 4, -100, 2, 1, 4}, {2, 3});
                Tensor out = cross_entropy(z, t, red, -100, eps);
                Tensor u = red == Reduction::none ? randn(out.shape(), dt, &gen) : scalar(1.7, dt);
                Tensor fused = grad({cross_entropy(z, t, red, -100, eps)}, {z}, {u})[0];
                Tensor composite = grad({cross_entropy(z, t, red, -100, eps)}, {z}, {u}, graph_options(true))[0];
                CHECK(composite.requires_grad());
                check_close(fused.to_vector(), composite.detach().to_vector(), dt == float32 ? 1e-5 : 1e-12);
                // The ignored target (position [0, 2]) gets no gradient.
                for (int64_t k = 0; k < 5; ++k) CHECK(fused.at({0, k, 2}) == 0.0);
            }
        }
    }
}

TEST_CASE("cross_entropy: classes on axis 1 of [N, C, d] equal the rows of the permuted logits")
{
    Generator gen(8);
    Tensor z = randn({2, 4, 3}, float64, &gen).requires_grad_();
    Tensor t = targets({3, 0, 1, 2, 2, 0}, {2, 3});
    Tensor none = cross_entropy(z, t, Reduction::none);
    CHECK(none.shape() == shape_type{2, 3});
    Tensor rows = reshape(permute(z, {0, 2, 1}), {6, 4});
    check_close(none.to_vector(), cross_entropy(rows, reshape(t, {6}), Reduction::none).to_vector(), 1e-12);
    // 1-d logits with a 0-d target.
    Tensor z1 = from_values({0.5, -1, 2}, {3}, float64);
    double want = -naive_softmax({0.5, -1, 2}, 3, true)[2];
    CHECK(cross_entropy(z1, from_values({2}, {}, int64)).item() == doctest::Approx(want));
}

TEST_CASE("cross_entropy stays finite and exact for logits of +-1e4")
{
    for (Dtype dt : {float32, float64}) {
        Tensor z = from_values({1e4, -1e4, 0, -1e4, 1e4, 1e4}, {2, 3}, dt).requires_grad_();
        Tensor t = targets({1, 2});
        double tol = dt == float32 ? 2e-3 : 1e-9;  // float32 holds 1e4 to about 6e-4
        Tensor loss = cross_entropy(z, t, Reduction::none);
        // Row 0: the target logit is 2e4 below the maximum; row 1: a tie with the target.
        check_close(loss.to_vector(), {2e4, std::log(2.0)}, tol);
        for (bool cg : {false, true}) {
            Tensor g = grad({cross_entropy(z, t)}, {z}, {}, graph_options(cg))[0];
            check_close(g.detach().to_vector(), {0.5, -0.5, 0, 0, 0.25, -0.25}, tol);
        }
    }
}

TEST_CASE("cross_entropy: a mean over only ignored targets is NaN with a zero gradient")
{
    Tensor z = from_values({1, 2, 3, 4}, {2, 2}, float32).requires_grad_();
    Tensor t = targets({-100, -100});
    CHECK(std::isnan(cross_entropy(z, t).item()));
    CHECK(cross_entropy(z, t, Reduction::sum).item() == 0.0);
    for (bool cg : {false, true})
        for (double v : grad({cross_entropy(z, t)}, {z}, {}, graph_options(cg))[0].detach().to_vector())
            CHECK(v == 0.0);
}

TEST_CASE("cross_entropy and nll_loss: errors name the op, the position and the value")
{
    Tensor z = zeros({10, 10});
    Tensor t = targets({0, 1, 2, 3, 4, 5, 6, 12, 8, 9});
    CHECK(error_of([&] { cross_entropy(z, t); }) ==
          "tapegrad: cross_entropy: target[7] = 12 is out of range for 10 classes");
    CHECK(error_of([&] { nll_loss(z, t); }) == "tapegrad: nll_loss: target[7] = 12 is out of range for 10 classes");
    CHECK(error_of([&] { cross_entropy(zeros({2, 3}), targets({0, -1})); }) ==
          "tapegrad: cross_entropy: target[1] = -1 is out of range for 3 classes");
    // ignore_index inside [0, C) is skipped, outside it the default -100 is not special.
    CHECK_NOTHROW(cross_entropy(zeros({2, 3}), targets({0, -1}), Reduction::mean, -1));
    CHECK(error_of([&] { cross_entropy(zeros({2, 3, 2}), targets({0, 1, 2, 3}, {2, 2})); }) ==
          "tapegrad: cross_entropy: target[1, 1] = 3 is out of range for 3 classes");
    // Shapes and dtypes.
    std::string e = error_of([&] { cross_entropy(zeros({4, 3}), targets({0, 1, 2})); });
    CHECK(e.find("cross_entropy: logits of shape [4, 3]") != std::string::npos);
    CHECK(e.find("need a target of shape [4], got [3]") != std::string::npos);
    e = error_of([&] { cross_entropy(zeros({4, 3}), zeros({4})); });
    CHECK(e.find("target must hold int64 class indices, got float32") != std::string::npos);
    e = error_of([&] { cross_entropy(zeros({4, 3}), targets({0, 1, 2, 0}), Reduction::mean, -100, 1.5); });
    CHECK(e.find("label_smoothing 1.5 is outside [0, 1]") != std::string::npos);
    e = error_of([&] { nll_loss(zeros({2, 3, 4}), targets({0, 1}, {2})); });
    CHECK(e.find("nll_loss: log_probs of shape [2, 3, 4] (classes along axis 1) need a target of shape [2, 4]") !=
          std::string::npos);
}

TEST_CASE("nll_loss: values, ignore_index, and nll_loss(log_softmax) == cross_entropy")
{
    Generator gen(9);
    Tensor lp = randn({5, 4}, float64, &gen).requires_grad_();
    Tensor t = targets({3, 0, 2, 2, 1});
    std::vector<double> v = lp.to_vector();
    std::vector<double> picked = {-v[3], -v[4], -v[10], -v[14], -v[17]};
    check_close(nll_loss(lp, t, Reduction::none).to_vector(), picked, 1e-15);
    CHECK(nll_loss(lp, t, Reduction::sum).item() ==
          doctest::Approx(picked[0] + picked[1] + picked[2] + picked[3] + picked[4]));
    // ignore_index 2: rows 2 and 3 drop out of the mean.
    CHECK(nll_loss(lp, t, Reduction::mean, 2).item() == doctest::Approx((picked[0] + picked[1] + picked[4]) / 3));
    Tensor g = grad({nll_loss(lp, t, Reduction::mean, 2)}, {lp})[0];
    CHECK(g.at({0, 3}) == doctest::Approx(-1.0 / 3));
    CHECK(g.at({2, 2}) == 0.0);
    CHECK(sum(abs(g)).item() == doctest::Approx(1.0));

    for (Dtype dt : {float64, float32}) {
        Tensor z = randn({6, 7}, dt, &gen).requires_grad_();
        Tensor tt = targets({0, 6, 3, 3, 1, 5});
        Tensor a = cross_entropy(z, tt), b = nll_loss(log_softmax(z), tt);
        CHECK(a.item() == doctest::Approx(b.item()).epsilon(1e-6));
        check_close(grad({a}, {z})[0].to_vector(), grad({b}, {z})[0].to_vector(), 1e-5);
    }
}

TEST_CASE("mse_loss: values, gradients for both operands, shape errors")
{
    Tensor a = from_values({1, 2, 3, 4}, {2, 2}, float64).requires_grad_();
    Tensor b = from_values({0, 2, 5, 1}, {2, 2}, float64).requires_grad_();
    CHECK(mse_loss(a, b).item() == doctest::Approx((1 + 0 + 4 + 9) / 4.0));
    CHECK(mse_loss(a, b, Reduction::sum).item() == doctest::Approx(14.0));
    check_close(mse_loss(a, b, Reduction::none).to_vector(), {1, 0, 4, 9}, 1e-15);
    tensor_list g = grad({mse_loss(a, b)}, {a, b});
    check_close(g[0].to_vector(), {0.5, 0, -1, 1.5}, 1e-15);
    check_close(g[1].to_vector(), {-0.5, 0, 1, -1.5}, 1e-15);
    CHECK(error_of([&] { mse_loss(zeros({2, 2}), zeros({4})); }) ==
          "tapegrad: mse_loss: input of shape [2, 2] and target of shape [4] differ");
}

TEST_CASE("binary_cross_entropy_with_logits: exact and finite at logits of +-50, and at 0")
{
    for (Dtype dt : {float32, float64}) {
        INFO(dtype_name(dt));
        Tensor x = from_values({50, -50, 50, -50, 0, 0}, {6}, dt).requires_grad_();
        Tensor t = from_values({1, 0, 0, 1, 0.3, 1}, {6}, dt);
        std::vector<double> loss = binary_cross_entropy_with_logits(x, t, Reduction::none).to_vector();
        check_close(loss, {0, 0, 50, 50, std::log(2.0), std::log(2.0)}, 1e-6);
        // d/dx = σ(x) - t; at x = 0 exactly that is 0.5 - t.
        Tensor g = grad({binary_cross_entropy_with_logits(x, t, Reduction::sum)}, {x})[0];
        check_close(g.to_vector(), {0, 0, 1, -1, 0.2, -0.5}, 1e-6);
        CHECK(binary_cross_entropy_with_logits(x, t).item() == doctest::Approx((100 + 2 * std::log(2.0)) / 6));
    }
}

TEST_CASE("binary_cross_entropy_with_logits: pos_weight against the naive formula")
{
    Generator gen(10);
    Tensor x = randn({3, 4}, float64, &gen);
    Tensor t = rand({3, 4}, float64, &gen);
    Tensor pw = from_values({0.5, 1, 2, 3}, {4}, float64);
    std::vector<double> xv = x.to_vector(), tv = t.to_vector(), want(12);
    for (size_t i = 0; i < 12; ++i) {
        double s = 1 / (1 + std::exp(-xv[i]));
        want[i] = -(pw.to_vector()[i % 4] * tv[i] * std::log(s) + (1 - tv[i]) * std::log(1 - s));
    }
    check_close(binary_cross_entropy_with_logits(x, t, Reduction::none, pw).to_vector(), want, 1e-12);
    std::string e = error_of([&] { binary_cross_entropy_with_logits(x, t, Reduction::mean, zeros({3}, float64)); });
    CHECK(e.find("pos_weight of shape [3] does not broadcast to the logits' shape [3, 4]") != std::string::npos);
    e = error_of([&] { binary_cross_entropy_with_logits(x, zeros({4}, float64)); });
    CHECK(e.find("logits of shape [3, 4] and target of shape [4] differ") != std::string::npos);
}

namespace {
#include "tests/fixtures/softmax_extreme.inc"
}  // namespace

TEST_CASE("float32 log_softmax and cross_entropy at logits of 1e4 agree with PyTorch to 1e-4")
{
    // x - (max + log Σ) in float32 rounds max + log Σ to a few 1e-4 at 1e4;
    // (x - max) - log Σ does not.
    const int64_t n = extreme_rows * extreme_classes;
    std::vector<double> logits(extreme_logits, extreme_logits + n);
    Tensor z = from_values(logits, {extreme_rows, extreme_classes}, float32).requires_grad_();
    Tensor t = from_values(std::vector<double>(extreme_targets, extreme_targets + extreme_rows), {extreme_rows}, int64);
    check_close(log_softmax(z, 1).to_vector(), std::vector<double>(extreme_log_softmax, extreme_log_softmax + n), 1e-4);
    for (const kernels::Isa isa : kernels::supported_isas()) {
        CAPTURE(kernels::isa_name(isa));
        const kernels::Isa chosen = kernels::isa();
        kernels::set_isa(isa);
        Tensor loss = cross_entropy(z, t, Reduction::mean, -100, 0.1);
        CHECK(loss.item() == doctest::Approx(extreme_loss[0]).epsilon(1e-4));
        Tensor g = grad({loss}, {z})[0];
        check_close(g.to_vector(), std::vector<double>(extreme_grad, extreme_grad + n), 1e-4);
        kernels::set_isa(chosen);
    }
}
