// Elementwise ops at the points the registry's random samples do not reach.
#include <doctest/doctest.h>

#include "helpers.hpp"
#include <tapegrad/tapegrad.hpp>

#include <cmath>
#include <utility>

TEST_CASE("softplus: value, gradient and second derivative at 0 and far out")
{
    // σ(x) = 1 / (1 + e^-x) in long double, as the reference.
    auto sigma = [](double x) { return double(1.0L / (1.0L + std::exp(-(long double)x))); };
    const Values xs{0.0, 50.0, -50.0, 1000.0, -1000.0, 2.5, -2.5};
    for (tg::Dtype dtype : {tg::float64, tg::float32}) {
        INFO("dtype ", tg::dtype_name(dtype));
        const double tol = dtype == tg::float64 ? 1e-15 : 4e-7;  // relative
        tg::Tensor x = tg::from_values(xs, {int64_t(xs.size())}, dtype).requires_grad_();
        tg::Tensor y = tg::softplus(x);
        tg::GradOptions options;
        options.create_graph = true;
        tg::Tensor dy = tg::grad({tg::sum(y)}, {x}, {}, options)[0];
        tg::Tensor d2y = tg::grad({tg::sum(dy)}, {x})[0];
        Values v = y.to_vector(), g = dy.to_vector(), h = d2y.to_vector();
        for (size_t i = 0; i < xs.size(); ++i) {
            const double xi = xs[i];
            INFO("x = ", xi);
            REQUIRE(std::isfinite(v[i]));
            REQUIRE(std::isfinite(g[i]));
            REQUIRE(std::isfinite(h[i]));
            // log(1 + e^x), to a relative tolerance also where it is as small as 2e-22.
            const double value = xi > 0 ? xi + std::log1p(std::exp(-xi)) : std::log1p(std::exp(xi));
            CHECK(std::abs(v[i] - value) <= tol * value);
            const double s = sigma(xi);
            CHECK(std::abs(g[i] - s) <= tol * s);
            CHECK(std::abs(h[i] - s * (1 - s)) <= 4 * tol * std::max(s * (1 - s), 1e-300));
        }
        // The points the composite relu + log1p(e^-|x|) got wrong or lost.
        CHECK(g[0] == 0.5);
        CHECK(h[0] == 0.25);
        CHECK(v[0] == doctest::Approx(std::log(2.0)).epsilon(tol));
        CHECK(g[1] == 1.0);
        CHECK(g[2] > 0);
        CHECK(g[2] / std::exp(-50.0) == doctest::Approx(1.0).epsilon(1e-6));
        CHECK(v[3] == 1000.0);
        CHECK(v[4] == 0.0);
    }
}

TEST_CASE("relu backward: masks in the incoming gradient's buffer only when nothing else holds it")
{
    using Values = std::vector<double>;
    for (tg::Dtype dt : {tg::float32, tg::float64}) {
        INFO(tg::dtype_name(dt));
        tg::Tensor x = tg::from_values({-1, 2, 0, 3, -4, 5}, {2, 3}, dt).requires_grad_();
        // A temporary gradient (from mul's backward): the in-place path.
        tg::Tensor y = tg::mul(tg::relu(x), tg::from_values({1, 2, 3, 4, 5, 6}, {2, 3}, dt));
        CHECK(tg::grad({tg::sum(y)}, {x})[0].to_vector() == Values{0, 2, 0, 4, 0, 6});
        // A gradient the caller holds: left unchanged.
        tg::Tensor r = tg::relu(x);
        tg::Tensor gout = tg::from_values({7, 8, 9, 10, 11, 12}, {2, 3}, dt);
        CHECK(tg::grad({r}, {x}, {gout})[0].to_vector() == Values{0, 8, 0, 10, 0, 12});
        CHECK(gout.to_vector() == Values{7, 8, 9, 10, 11, 12});
        // With create_graph the rule stays differentiable.
        tg::Tensor r2 = tg::relu(x);
        tg::Tensor g2 = tg::grad({tg::sum(tg::mul(r2, r2))}, {x}, {}, {.create_graph = true, .retain_graph = std::nullopt})[0];
        CHECK(g2.to_vector() == Values{0, 4, 0, 6, 0, 10});
        CHECK(g2.requires_grad());
    }
}

TEST_CASE("binary ops: the gradient of one operand alone equals its part of the gradient of both")
{
    // With the other operand off the tape, the backward skips its gradient:
    // what is left must not change. a [2,3] and b [3] broadcast; b repeats
    // a's first row, so maximum and minimum tie there (ties share the gradient).
    using Fn = tg::Tensor (*)(const tg::Tensor&, const tg::Tensor&);
    const std::pair<const char*, Fn> ops[] = {
        {"add", tg::add}, {"sub", tg::sub}, {"mul", tg::mul}, {"div", tg::div},
        {"pow", [](const tg::Tensor& a, const tg::Tensor& b) { return tg::pow(a, b); }},
        {"maximum", tg::maximum}, {"minimum", tg::minimum}};
    const tg::Tensor a0 = tg::from_values({0.5, 1.5, 2.0, 0.7, 1.1, 2.5}, {2, 3}, tg::float64);
    const tg::Tensor b0 = tg::from_values({0.5, 1.5, 2.0}, {3}, tg::float64);
    const tg::Tensor u = tg::from_values({1, -2, 3, 0.5, 0.25, -1}, {2, 3}, tg::float64);
    for (const auto& [op_name, f] : ops)
        for (bool create_graph : {false, true}) {
            const std::string name = op_name;  // (clang 14 cannot capture a structured binding)
            CAPTURE(name);
            CAPTURE(create_graph);
            tg::Tensor a = a0.clone().requires_grad_(), b = b0.clone().requires_grad_();
            tg::tensor_list both = tg::grad({f(a, b)}, {a, b}, {u}, graph_options(create_graph));
            tg::tensor_list a_alone = tg::grad({f(a, b0)}, {a}, {u}, graph_options(create_graph));
            tg::tensor_list b_alone = tg::grad({f(a0, b)}, {b}, {u}, graph_options(create_graph));
            check_close(a_alone[0].detach().to_vector(), both[0].detach().to_vector(), 1e-15);
            check_close(b_alone[0].detach().to_vector(), both[1].detach().to_vector(), 1e-15);
            CHECK(both[1].shape() == tg::shape_type{3});
        }
}
