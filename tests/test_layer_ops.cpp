// linear, dropout, batch_norm and layer_norm against naive references,
// the running statistics' update, dropout's masks, and the error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "tests/helpers.hpp"

using namespace tg;


TEST_CASE("linear: x·Wᵀ + b for 1-d, 2-d and 3-d inputs, with and without bias")
{
    Generator gen(1);
    for (Dtype dt : {float64, float32}) {
        Tensor w = randn({5, 4}, dt, &gen), b = randn({5}, dt, &gen);
        std::vector<double> wv = w.to_vector(), bv = b.to_vector();
        for (shape_type xs : {shape_type{4}, shape_type{3, 4}, shape_type{2, 3, 4}}) {
            Tensor x = randn(xs, dt, &gen);
            std::vector<double> xv = x.to_vector();
            int64_t rows = x.numel() / 4;
            std::vector<double> want(size_t(rows * 5)), want_nb(size_t(rows * 5));
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t o = 0; o < 5; ++o) {
                    double s = 0;
                    for (int64_t i = 0; i < 4; ++i) s += xv[size_t(r * 4 + i)] * wv[size_t(o * 4 + i)];
                    want_nb[size_t(r * 5 + o)] = s;
                    want[size_t(r * 5 + o)] = s + bv[size_t(o)];
                }
            shape_type ys = xs;
            ys.back() = 5;
            Tensor y = linear(x, w, b);
            CHECK(y.shape() == ys);
            double tol = dt == float32 ? 1e-5 : 1e-13;
            check_close(y.to_vector(), want, tol);
            check_close(linear(x, w).to_vector(), want_nb, tol);
        }
    }
    CHECK(error_of([] { linear(zeros({2, 3}), zeros({5, 4})); }) ==
          "tapegrad: linear: input of shape [2, 3] does not end in the weight's 4 input features (weight [5, 4])");
    CHECK(error_of([] { linear(zeros({2, 4}), zeros({5, 4}), zeros({4})); }).find(
              "linear: bias of shape [4] for an input of shape [2, 4] (expected [5])") != std::string::npos);
    CHECK(error_of([] { linear(zeros({2, 4}), zeros({4})); }) ==
          "tapegrad: linear: weight must be [out_features, in_features], got [4]");
}

TEST_CASE("dropout: reseeded generator gives the same mask, scaling, eval, p = 0 and p = 1")
{
    Tensor x = ones({200, 500});
    Generator g1(42), g2(42), g3(43);
    Tensor a = dropout(x, 0.3, true, g1), b = dropout(x, 0.3, true, g2), c = dropout(x, 0.3, true, g3);
    std::vector<double> av = a.to_vector(), bv = b.to_vector(), cv = c.to_vector();
    CHECK(av == bv);
    CHECK(av != cv);
    // Kept elements are scaled by 1/(1-p); about 30% are dropped; the mean is preserved.
    int64_t dropped = 0;
    double total = 0;
    for (double v : av) {
        CHECK((v == 0.0 || v == doctest::Approx(1 / 0.7)));
        dropped += v == 0.0;
        total += v;
    }
    CHECK(std::abs(double(dropped) / double(av.size()) - 0.3) <= 0.009);  // 6 standard deviations of 1e5 draws
    CHECK(total / double(av.size()) == doctest::Approx(1.0).epsilon(0.02));
    // The gradient is the mask.
    Tensor xr = from_values({1, 2, 3, 4, 5, 6}, {2, 3}, float64).requires_grad_();
    Generator g4(5);
    Tensor y = dropout(xr, 0.5, true, g4);
    Tensor g = grad({sum(y)}, {xr})[0];
    std::vector<double> yv = y.to_vector(), gv = g.to_vector(), xv = xr.to_vector();
    for (size_t i = 0; i < yv.size(); ++i) CHECK(yv[i] == doctest::Approx(gv[i] * xv[i]));
    // Identity when not training or p = 0; zeros for p = 1.
    Generator g5(1);
    CHECK(dropout(xr, 0.5, false, g5).same(xr));
    CHECK(dropout(xr, 0.0, true, g5).same(xr));
    for (double v : dropout(xr, 1.0, true, g5).to_vector()) CHECK(v == 0.0);
    CHECK(error_of([&] { dropout(xr, 1.5, true, g5); }) == "tapegrad: dropout: probability p = 1.5 is outside [0, 1]");
    CHECK(error_of([&] { dropout(xr, -0.1, false, g5); }) ==
          "tapegrad: dropout: probability p = -0.1 is outside [0, 1]");
}

TEST_CASE("batch_norm training: batch statistics, and the running statistics after two steps")
{
    for (Dtype dt : {float64, float32}) {
        INFO(dtype_name(dt));
        // x [N=2, C=2, L=2]: channel 0 holds {1, 2, 5, 8}, channel 1 holds {0, 0, 4, -4}.
        Tensor x = from_values({1, 2, 0, 0, 5, 8, 4, -4}, {2, 2, 2}, dt);
        Tensor w = from_values({2, 0.5}, {2}, dt), b = from_values({0.1, -1}, {2}, dt);
        Tensor rm = zeros({2}, dt), rv = ones({2}, dt);
        double eps = 1e-5;
        Tensor y = batch_norm(x, {&rm, &rv}, w, b, true, 0.1, eps);
        // Channel 0: mean 4, biased var (9 + 4 + 1 + 16)/4 = 7.5; channel 1: mean 0, var 8.
        double s0 = 2 / std::sqrt(7.5 + eps), s1 = 0.5 / std::sqrt(8 + eps);
        double tol = dt == float32 ? 1e-5 : 1e-12;
        check_close(y.to_vector(),
                    {(1 - 4) * s0 + 0.1, (2 - 4) * s0 + 0.1, -1, -1, (5 - 4) * s0 + 0.1, (8 - 4) * s0 + 0.1,
                     4 * s1 - 1, -4 * s1 - 1},
                    tol);
        // Step 1: running = 0.9·running + 0.1·stat, unbiased variance (n = 4: ×4/3).
        check_close(rm.to_vector(), {0.4, 0.0}, tol);
        check_close(rv.to_vector(), {0.9 + 0.1 * 10, 0.9 + 0.1 * 32.0 / 3}, tol);
        // Step 2 with another batch: channel 0 {0, 0, 0, 4} (mean 1, unbiased var 4), channel 1 {2, 2, 2, 2}.
        Tensor x2 = from_values({0, 0, 2, 2, 0, 4, 2, 2}, {2, 2, 2}, dt);
        batch_norm(x2, {&rm, &rv}, w, b, true, 0.1, eps);
        check_close(rm.to_vector(), {0.9 * 0.4 + 0.1 * 1, 0.9 * 0.0 + 0.1 * 2}, tol);
        check_close(rv.to_vector(), {0.9 * 1.9 + 0.1 * 4, 0.9 * (0.9 + 3.2 / 3) + 0.1 * 0}, tol);
        // Evaluation uses the running statistics and changes nothing.
        std::vector<double> rm_before = rm.to_vector(), rv_before = rv.to_vector();
        Tensor e = batch_norm(x, {&rm, &rv}, w, b, false, 0.1, eps);
        std::vector<double> xv = x.to_vector(), want;
        for (size_t i = 0; i < xv.size(); ++i) {
            size_t ch = (i / 2) % 2;
            double wc = ch == 0 ? 2 : 0.5, bc = ch == 0 ? 0.1 : -1;
            want.push_back((xv[i] - rm_before[ch]) / std::sqrt(rv_before[ch] + eps) * wc + bc);
        }
        check_close(e.to_vector(), want, tol);
        CHECK(rm.to_vector() == rm_before);
        CHECK(rv.to_vector() == rv_before);
    }
}

TEST_CASE("batch_norm: normalised channels, the gradient through the batch statistics, errors")
{
    Generator gen(2);
    Tensor x = randn({4, 3, 2, 2}, float64, &gen).requires_grad_();
    Tensor y = batch_norm(x, {}, Tensor(), Tensor(), true);
    // Each channel of the output has mean 0 and biased variance 1 (up to eps).
    std::vector<double> mean_c = mean(y, {0, 2, 3}).to_vector();
    std::vector<double> var_c = mean(mul(y, y), {0, 2, 3}).to_vector();
    for (int c = 0; c < 3; ++c) {
        CHECK(std::abs(mean_c[size_t(c)]) < 1e-12);
        CHECK(var_c[size_t(c)] == doctest::Approx(1.0).epsilon(1e-4));
    }
    // A loss that is the sum of a normalised channel has zero gradient.
    Tensor g = grad({sum(y)}, {x})[0];
    for (double v : g.to_vector()) CHECK(std::abs(v) < 1e-12);

    CHECK(error_of([] { batch_norm(zeros({1, 3}), {}); }) ==
          "tapegrad: batch_norm: expected more than 1 value per channel when training, got an input of shape [1, 3]");
    Tensor short_mean = zeros({2}), short_var = ones({2});
    CHECK(error_of([&] { batch_norm(zeros({2, 3}), {&short_mean, &short_var}); })
              .find("batch_norm: running_mean of shape [2] for an input of shape [2, 3] (expected [3])") !=
          std::string::npos);
    CHECK(error_of([] { batch_norm(zeros({2, 3}), {}, Tensor(), Tensor(), false); }) ==
          "tapegrad: batch_norm: evaluation mode needs running_mean and running_var");
    CHECK(error_of([] { batch_norm(zeros({3}), {}); }) ==
          "tapegrad: batch_norm: input must be [N, C, ...], got [3]");
}

TEST_CASE("batch_norm training: the fused first-order backward and the create_graph backward agree")
{
    Generator gen(4);
    for (Dtype dt : {float64, float32}) {
        for (shape_type shape : {shape_type{6, 3}, shape_type{3, 4, 5}, shape_type{2, 3, 3, 3}}) {
            Tensor x = mul(randn(shape, dt, &gen), scalar(3.0, dt)) + 1.5;
            x = x.detach().requires_grad_();
            Tensor w = randn({shape[1]}, dt, &gen).requires_grad_(), b = randn({shape[1]}, dt, &gen).requires_grad_();
            Tensor u = randn(shape, dt, &gen);
            auto f = [&] { return batch_norm(x, {}, w, b, true); };
            tensor_list fused = grad({f()}, {x, w, b}, {u});
            tensor_list composite = grad({f()}, {x, w, b}, {u}, graph_options(true));
            for (size_t i = 0; i < 3; ++i) {
                INFO(std::string(dtype_name(dt)) << " input " << i);
                if (i < 2) CHECK(composite[i].requires_grad());  // dbias = Σ u is a constant
                check_close(fused[i].to_vector(), composite[i].detach().to_vector(), dt == float32 ? 1e-4 : 1e-11);
            }
        }
    }
}

TEST_CASE("batch_norm training: the fused backward of weight and bias alone equals the full one")
{
    // x off the tape: the kernel gets no dx and skips it.
    Generator gen(5);
    for (Dtype dt : {float64, float32}) {
        Tensor x = randn({4, 3, 2, 2}, dt, &gen).requires_grad_();
        Tensor w = randn({3}, dt, &gen).requires_grad_(), b = randn({3}, dt, &gen).requires_grad_();
        Tensor u = randn({4, 3, 2, 2}, dt, &gen);
        tensor_list full = grad({batch_norm(x, {}, w, b, true)}, {x, w, b}, {u});
        tensor_list alone = grad({batch_norm(x.detach(), {}, w, b, true)}, {w, b}, {u});
        INFO(dtype_name(dt));
        REQUIRE(alone.size() == 2);
        CHECK(alone[0].to_vector() == full[1].to_vector());
        CHECK(alone[1].to_vector() == full[2].to_vector());
    }
}

TEST_CASE("layer_norm over one and two trailing axes against a naive reference")
{
    Generator gen(3);
    for (Dtype dt : {float64, float32}) {
        Tensor x = randn({2, 3, 4}, dt, &gen);
        Tensor w = randn({3, 4}, dt, &gen), b = randn({3, 4}, dt, &gen);
        std::vector<double> xv = x.to_vector(), wv = w.to_vector(), bv = b.to_vector();
        double eps = 1e-5, tol = dt == float32 ? 1e-5 : 1e-12;
        // Over [3, 4]: one group of 12 per leading index.
        std::vector<double> want(24);
        for (int g = 0; g < 2; ++g) {
            double m = 0, v = 0;
            for (int i = 0; i < 12; ++i) m += xv[size_t(g * 12 + i)] / 12;
            for (int i = 0; i < 12; ++i) v += std::pow(xv[size_t(g * 12 + i)] - m, 2) / 12;
            for (int i = 0; i < 12; ++i)
                want[size_t(g * 12 + i)] =
                    (xv[size_t(g * 12 + i)] - m) / std::sqrt(v + eps) * wv[size_t(i)] + bv[size_t(i)];
        }
        check_close(layer_norm(x, {3, 4}, w, b).to_vector(), want, tol);
        // Over [4] without affine: groups of 4.
        for (int g = 0; g < 6; ++g) {
            double m = 0, v = 0;
            for (int i = 0; i < 4; ++i) m += xv[size_t(g * 4 + i)] / 4;
            for (int i = 0; i < 4; ++i) v += std::pow(xv[size_t(g * 4 + i)] - m, 2) / 4;
            for (int i = 0; i < 4; ++i) want[size_t(g * 4 + i)] = (xv[size_t(g * 4 + i)] - m) / std::sqrt(v + eps);
        }
        check_close(layer_norm(x, {4}).to_vector(), want, tol);
    }
    CHECK(error_of([] { layer_norm(zeros({2, 3}), {2}); }) ==
          "tapegrad: layer_norm: input of shape [2, 3] does not end in normalized_shape [2]");
    CHECK(error_of([] { layer_norm(zeros({2, 3}), {3}, zeros({2})); })
              .find("layer_norm: weight of shape [2] for an input of shape [2, 3] (expected [3])") != std::string::npos);
}

TEST_CASE("batch_norm: second order with the input detached equals that part of the full second order")
{
    // The composite backward (create_graph) skips dx for an input that needs
    // none: the weight's second derivative must not change with it.
    Generator gen(72);
    const Tensor x0 = randn({4, 3, 5}, float64, &gen), w0 = randn({3}, float64, &gen), b0 = randn({3}, float64, &gen);
    const Tensor c = randn({4, 3, 5}, float64, &gen), vw = randn({3}, float64, &gen);
    auto loss = [&](const Tensor& x, const Tensor& w, const Tensor& b) {
        Tensor y = batch_norm(x, {}, w, b, true, 0.1, 1e-5);
        return sum(mul(mul(y, y), c));
    };
    auto second = [&](const Tensor& x, const Tensor& w) {
        // With x among the inputs asked for, the rule computes dx as well.
        tensor_list wrt = x.requires_grad() ? tensor_list{w, x} : tensor_list{w};
        Tensor gw = grad({loss(x, w, b0)}, wrt, {}, graph_options(true))[0];
        return grad({sum(mul(gw, vw))}, {w})[0].to_vector();
    };
    const std::vector<double> full = second(x0.clone().requires_grad_(), w0.clone().requires_grad_());
    const std::vector<double> detached = second(x0, w0.clone().requires_grad_());
    check_close(detached, full, 1e-12);
    double size = 0;
    for (double v : full) size += std::abs(v);
    CHECK(size > 0.1);  // not vacuous
}
