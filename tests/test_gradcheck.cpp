// The gradient checker, tested the only way that means anything: planted
// bugs in backward rules must fail, naming the right input; correct ops,
// kinks included, must pass.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "tests/same_report.hpp"

using namespace tg;

namespace {

Tensor leaf(std::vector<double> v, const shape_type& shape) { return from_values(v, shape, float64).requires_grad_(); }
Tensor randn_leaf(const shape_type& shape, uint64_t seed)
{
    Generator gen(seed);
    return randn(shape, float64, &gen).requires_grad_();
}

// Runs `f` without the tape: the forward of a hand-written op.
template <class F>
Tensor untaped(F f)
{
    NoGradGuard off;
    return f();
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const StructuralCheck& structural(const GradcheckResult& r, const std::string& name_part)
{
    for (const StructuralCheck& s : r.structural)
        if (has(s.name, name_part)) return s;
    FAIL("no structural check named like '", name_part, "'");
    return r.structural.front();
}

// --- planted bugs: each op is correct but for one thing -------------------------------

// d/db has the wrong sign.
Tensor mul_flipped(const Tensor& a, const Tensor& b)
{
    return record("mul_flipped", untaped([&] { return mul(a, b); }), {a, b}, {a, b},
                  [](const BackwardArgs& g) -> tensor_list {
                      return {mul(g.grad, g.saved[1]), neg(mul(g.grad, g.saved[0]))};
                  });
}

// d/da is off by a factor 1 + 1e-3 in one element, [1, 2].
Tensor mul_one_scaled(const Tensor& a, const Tensor& b)
{
    return record("mul_one_scaled", untaped([&] { return mul(a, b); }), {a, b}, {a, b},
                  [](const BackwardArgs& g) -> tensor_list {
                      Tensor scale = ones(g.saved[0].shape(), float64);
                      {
                          NoGradGuard off;
                          int64_t flat = g.saved[0].numel() > 6 ? 6 : 0;  // [1, 2] of a [3, 4]
                          scale.data<double>()[flat] = 1 + 1e-3;
                      }
                      return {mul(mul(g.grad, g.saved[1]), scale), mul(g.grad, g.saved[0])};
                  });
}

// a [3, 1] + b [3, 4]: a's gradient is not summed over the broadcast axis.
Tensor add_no_reduction(const Tensor& a, const Tensor& b)
{
    return record("add_no_reduction", untaped([&] { return add(a, b); }), {a, b}, {},
                  [](const BackwardArgs& g) -> tensor_list { return {g.grad, g.grad}; });
}

// a [3, 1] + b [3, 3]: a's gradient is summed over the wrong axis, then
// reshaped, so its shape is right.
Tensor add_wrong_axis(const Tensor& a, const Tensor& b)
{
    return record("add_wrong_axis", untaped([&] { return add(a, b); }), {a, b}, {},
                  [](const BackwardArgs& g) -> tensor_list {
                      return {reshape(sum(g.grad, {0}), {3, 1}), g.grad};
                  });
}

// A @ B with square matrices: B's gradient is transposed.
Tensor matmul_transposed(const Tensor& a, const Tensor& b)
{
    return record("matmul_transposed", untaped([&] { return matmul(a, b); }), {a, b}, {a, b},
                  [](const BackwardArgs& g) -> tensor_list {
                      return {matmul(g.grad, transpose(g.saved[1])), transpose(matmul(transpose(g.saved[0]), g.grad))};
                  });
}

// exp(x) for a vector: the gradient is shifted by one position.
Tensor exp_shifted(const Tensor& x)
{
    Tensor out = untaped([&] { return exp(x); });
    return record("exp_shifted", out, {x}, {out}, [](const BackwardArgs& g) -> tensor_list {
        Tensor right = mul(g.grad, g.saved[0]);
        int64_t n = right.numel();
        return {concat({slice(right, 0, 1, n), slice(right, 0, 0, 1)}, 0)};
    });
}

// 3·x[7]: a Jacobian of zeros but one entry, and the backward adds a
// wrong 1e-4 at x[23].
Tensor pick_mostly_zero(const Tensor& x)
{
    Tensor out = untaped([&] { return mul(select(x, 0, 7), scalar(3.0, float64)); });
    return record("pick_mostly_zero", out, {x}, {}, [n = x.numel()](const BackwardArgs& g) -> tensor_list {
        Tensor w = zeros({n}, float64);
        {
            NoGradGuard off;
            w.data<double>()[7] = 3;
            w.data<double>()[23] = 1e-4;
        }
        return {mul(w, g.grad)};
    });
}

// relu whose "subgradient" at 0 is 2: outside [0, 1].
Tensor relu_bad_at_zero(const Tensor& x)
{
    return record("relu_bad_at_zero", untaped([&] { return relu(x); }), {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        const Tensor& x = g.saved[0];
        Tensor slope = add(gt(x, 0.0), mul(eq(x, zeros_like(x)), scalar(2.0, x.dtype())));
        return {mul(g.grad, slope)};
    });
}

// 2·x whose backward says 3: planted in a helper so only second order sees it.
Tensor twice_bad(const Tensor& x)
{
    return record("twice_bad", untaped([&] { return mul(x, scalar(2.0, x.dtype())); }), {x}, {},
                  [](const BackwardArgs& g) -> tensor_list { return {mul(g.grad, scalar(3.0, g.grad.dtype()))}; });
}
// x², first-order correct: d/dx = g·twice(x), but twice's own backward is wrong.
Tensor square_bad_second_order(const Tensor& x)
{
    return record("square_bad2", untaped([&] { return mul(x, x); }), {x}, {x}, [](const BackwardArgs& g) -> tensor_list {
        return {mul(g.grad, twice_bad(g.saved[0]))};
    });
}

// x·1.5 whose float32 backward is 1% off.
Tensor scale_bad_float32(const Tensor& x)
{
    return record("scale_bad_f32", untaped([&] { return mul(x, scalar(1.5, x.dtype())); }), {x}, {},
                  [](const BackwardArgs& g) -> tensor_list {
                      double k = g.grad.dtype() == float32 ? 1.5 * 1.01 : 1.5;
                      return {mul(g.grad, scalar(k, g.grad.dtype()))};
                  });
}

GradcheckOptions named(std::vector<std::string> names, GradcheckMode mode = GradcheckMode::full)
{
    GradcheckOptions o;
    o.names = std::move(names);
    o.mode = mode;
    return o;
}

// Asserts that r failed on input `bad` only.
void check_fails_on(const GradcheckResult& r, const std::string& bad)
{
    INFO(r.to_string());
    CHECK_FALSE(r.passed());
    CHECK(r.verdict == Verdict::fail);
    REQUIRE(r.failed_inputs().size() == 1);
    CHECK(r.failed_inputs()[0] == bad);
    for (const InputReport& in : r.inputs)
        if (in.name != bad) CHECK(in.verdict == Verdict::pass);
    CHECK(has(r.to_string(), bad));
}

// The first input fails at exactly one element, `where`, which the report names first.
void check_one_failure_at(const GradcheckResult& r, const shape_type& where)
{
    INFO(r.to_string());
    CHECK_FALSE(r.passed());
    CHECK(r.inputs[0].failures == 1);
    REQUIRE(!r.inputs[0].worst.empty());
    CHECK(r.inputs[0].worst[0].index == where);
}

}  // namespace

TEST_CASE("gradcheck: correct ops pass, with small errors and every structural check")
{
    Tensor a = randn_leaf({3, 4}, 1), b = randn_leaf({4, 5}, 2);
    GradcheckResult r = gradcheck([](const tensor_list& x) { return tanh(matmul(x[0], x[1])); }, {a, b},
                                  named({"a", "b"}));
    INFO(r.to_string());
    CHECK(r.passed());
    CHECK(r.verdict == Verdict::pass);
    CHECK_FALSE(r.vacuous);
    CHECK(r.cotangents == 2);
    REQUIRE(r.inputs.size() == 2);
    for (const InputReport& in : r.inputs) {
        CHECK(in.elements == in.shape[0] * in.shape[1]);
        CHECK(in.rel_error < 1e-9);
        CHECK(in.checked_by == CheckedBy::full);
    }
    CHECK(r.structural.size() == 7);
    for (const StructuralCheck& s : r.structural) CHECK(s.passed);
    // Two forwards per element when every element agrees at the first step.
    CHECK(r.evaluations >= 2 * (12 + 20));
    CHECK(r.evaluations < 3 * (12 + 20));
}

TEST_CASE("gradcheck: the step is a power of two scaled to the value")
{
    Tensor x = leaf({0.3, -5.0, 1000.0}, {3});
    GradcheckOptions o;
    o.report_worst = 3;
    GradcheckResult r = gradcheck([](const tensor_list& x) { return sin(x[0]); }, {x}, o);
    REQUIRE(r.passed());
    REQUIRE(r.inputs[0].worst.size() == 3);
    for (const ElementReport& e : r.inputs[0].worst) {
        int exponent = 0;
        CHECK(std::frexp(e.step, &exponent) == 0.5);  // a power of two
        double target = std::cbrt(2.220446049250313e-16) * std::max(1.0, std::abs(e.value));
        CHECK(e.step > target / 1.5);
        CHECK(e.step < target * 1.5);
        CHECK((e.value + e.step) - e.value == e.step);  // exact
    }
}

TEST_CASE("gradcheck: a flipped sign fails, naming the input")
{
    Tensor a = randn_leaf({3, 4}, 3), b = randn_leaf({3, 4}, 4);
    auto fn = [](const tensor_list& x) { return mul_flipped(x[0], x[1]); };
    check_fails_on(gradcheck(fn, {a, b}, named({"a", "b"})), "b");
    // Fast mode alone escalates and finds it too.
    GradcheckResult fast = gradcheck(fn, {a, b}, named({"a", "b"}, GradcheckMode::fast));
    check_fails_on(fast, "b");
    CHECK(fast.input("b").checked_by == CheckedBy::fast_then_full);
    CHECK(fast.input("a").checked_by == CheckedBy::fast);
}

TEST_CASE("gradcheck: one element scaled by 1 + 1e-3 fails at that element")
{
    Tensor a = randn_leaf({3, 4}, 5), b = randn_leaf({3, 4}, 6);
    auto fn = [](const tensor_list& x) { return mul_one_scaled(x[0], x[1]); };
    for (GradcheckMode mode : {GradcheckMode::full, GradcheckMode::fast}) {
        GradcheckResult r = gradcheck(fn, {a, b}, named({"a", "b"}, mode));
        check_fails_on(r, "a");
        const InputReport& in = r.input("a");
        CHECK(in.failures == 1);
        REQUIRE(!in.worst.empty());
        CHECK(in.worst[0].verdict == ElementVerdict::fail);
        CHECK(in.worst[0].index == shape_type{1, 2});
        CHECK(in.worst[0].rel_error / 1e-3 == doctest::Approx(1.0).epsilon(1e-3));
    }
    // In an input large enough for fast mode: one wrong element in 2,000.
    Tensor big_a = randn_leaf({20, 100}, 7), big_b = randn_leaf({20, 100}, 8);
    GradcheckOptions o = named({"a", "b"}, GradcheckMode::automatic);
    o.fast_above = 500;
    GradcheckResult r = gradcheck(fn, {big_a, big_b}, o);
    check_fails_on(r, "a");
    CHECK(r.input("a").checked_by == CheckedBy::fast_then_full);
    CHECK(r.input("b").checked_by == CheckedBy::fast);
    CHECK(r.input("a").failures == 1);
}

TEST_CASE("gradcheck: a missing reduction over a broadcast axis")
{
    // The wrong shape is caught by the engine before any comparison: a failed
    // structural check naming op and input.
    Tensor a = randn_leaf({3, 1}, 9), b = randn_leaf({3, 4}, 10);
    GradcheckResult shapes = gradcheck([](const tensor_list& x) { return add_no_reduction(x[0], x[1]); }, {a, b});
    CHECK_FALSE(shapes.passed());
    REQUIRE(shapes.structural.size() == 1);
    CHECK(shapes.structural[0].name == "gradient shapes and dtypes match the inputs");
    CHECK_FALSE(shapes.structural[0].passed);
    CHECK(has(shapes.structural[0].detail, "add_no_reduction"));
    CHECK(has(shapes.structural[0].detail, "input 0 of shape [3, 1]"));
    CHECK(has(shapes.to_string(), "the backward raised where the forward did not"));
    // Summed over the wrong axis, with the right shape: the checker fails it.
    Tensor c = randn_leaf({3, 3}, 11);
    auto fn = [](const tensor_list& x) { return add_wrong_axis(x[0], x[1]); };
    check_fails_on(gradcheck(fn, {a, c}, named({"a", "b"})), "a");
    check_fails_on(gradcheck(fn, {a, c}, named({"a", "b"}, GradcheckMode::fast)), "a");
}

TEST_CASE("gradcheck: a transposed gradient fails")
{
    Tensor a = randn_leaf({4, 4}, 12), b = randn_leaf({4, 4}, 13);
    auto fn = [](const tensor_list& x) { return matmul_transposed(x[0], x[1]); };
    check_fails_on(gradcheck(fn, {a, b}, named({"input", "weight"})), "weight");
    check_fails_on(gradcheck(fn, {a, b}, named({"input", "weight"}, GradcheckMode::fast)), "weight");
}

TEST_CASE("gradcheck: a gradient off by one position fails")
{
    Tensor x = randn_leaf({10}, 14), y = randn_leaf({10}, 15);
    auto fn = [](const tensor_list& v) { return mul(exp_shifted(v[0]), v[1]); };
    GradcheckResult r = gradcheck(fn, {x, y}, named({"x", "y"}));
    check_fails_on(r, "x");
    CHECK(r.input("x").failures >= 9);
    check_fails_on(gradcheck(fn, {x, y}, named({"x", "y"}, GradcheckMode::fast)), "x");
}

TEST_CASE("gradcheck: one wrong entry in a mostly-zero Jacobian fails, in fast mode too")
{
    Tensor x = randn_leaf({50}, 16);
    auto fn = [](const tensor_list& v) { return pick_mostly_zero(v[0]); };
    for (GradcheckMode mode : {GradcheckMode::full, GradcheckMode::fast}) {
        GradcheckResult r = gradcheck(fn, {x}, named({"x"}, mode));
        check_fails_on(r, "x");
        CHECK(r.input("x").failures == 1);
        CHECK(r.input("x").worst[0].index == shape_type{23});
    }
}

TEST_CASE("gradcheck: fast mode passes correct large inputs without escalating")
{
    Tensor x = randn_leaf({20000}, 17);
    GradcheckOptions o;
    o.mode = GradcheckMode::fast;
    GradcheckResult r = gradcheck([](const tensor_list& v) { return mul(sigmoid(v[0]), v[0]); }, {x}, o);
    INFO(r.to_string());
    CHECK(r.passed());
    CHECK(r.inputs[0].checked_by == CheckedBy::fast);
    CHECK(r.inputs[0].elements == 0);  // none perturbed one by one
    CHECK(r.inputs[0].probes >= o.probes);
    CHECK(r.inputs[0].probe_ratio < 1);
    CHECK(r.evaluations < 200);  // not 40,000

    Tensor a = randn_leaf({64, 64}, 18), b = randn_leaf({64, 64}, 19);
    GradcheckResult m = gradcheck([](const tensor_list& v) { return matmul(v[0], v[1]); }, {a, b}, o);
    INFO(m.to_string());
    CHECK(m.passed());
    for (const InputReport& in : m.inputs) CHECK(in.checked_by == CheckedBy::fast);

    // A long reduction rounds in every term: its noise must not read as a
    // discrepancy, at unit scale or at 10^6.
    for (double scale : {1.0, 1e6}) {
        Tensor s = tg::mul(randn_leaf({10000}, 20).detach(), tg::scalar(scale, float64)).requires_grad_();
        GradcheckResult q = gradcheck([](const tensor_list& v) { return tg::sum(v[0]); }, {s}, o);
        INFO("scale " << scale << "\n" << q.to_string());
        CHECK(q.passed());
        CHECK(q.inputs[0].checked_by == CheckedBy::fast);
    }
}

TEST_CASE("gradcheck: kinks are non-differentiable points, not failures")
{
    auto expect_kinks = [](const GradcheckResult& r, int64_t kinks, std::vector<shape_type> where) {
        INFO(r.to_string());
        CHECK(r.passed());
        CHECK(r.verdict == Verdict::nondifferentiable);
        CHECK(r.inputs[0].verdict == Verdict::nondifferentiable);
        CHECK(r.inputs[0].failures == 0);
        CHECK(r.inputs[0].kinks == kinks);
        for (size_t i = 0; i < where.size(); ++i) {
            REQUIRE(i < r.inputs[0].worst.size());
            const ElementReport& e = r.inputs[0].worst[i];
            CHECK(e.verdict == ElementVerdict::kink);
            CHECK(std::find(where.begin(), where.end(), e.index) != where.end());
            CHECK(e.analytic >= std::min(e.left, e.right) - 1e-7);
            CHECK(e.analytic <= std::max(e.left, e.right) + 1e-7);
        }
        CHECK(has(r.to_string(), "kink"));
    };
    Tensor x = leaf({-1.0, 0.0, 0.5, 2.0, 0.0}, {5});
    expect_kinks(gradcheck([](const tensor_list& v) { return relu(v[0]); }, {x}), 2, {{1}, {4}});
    expect_kinks(gradcheck([](const tensor_list& v) { return abs(v[0]); }, {x}), 2, {{1}, {4}});
    Tensor t = leaf({1.0, 3.0, 3.0, 2.0}, {4});
    expect_kinks(gradcheck([](const tensor_list& v) { return max(v[0]); }, {t}), 2, {{1}, {2}});
    Tensor a = leaf({1.0, 2.0, -0.5}, {3}), b = from_values({1.0, 0.5, -0.5}, {3}, float64);
    expect_kinks(gradcheck([](const tensor_list& v) { return maximum(v[0], v[1]); }, {a, b}), 2, {{0}, {2}});

    // A "subgradient" outside [left, right] is a failure.
    GradcheckResult bad = gradcheck([](const tensor_list& v) { return relu_bad_at_zero(v[0]); }, {x}, named({"x"}));
    check_fails_on(bad, "x");
    CHECK(bad.inputs[0].failures == 2);
    CHECK(bad.inputs[0].worst[0].verdict == ElementVerdict::fail);
    CHECK(bad.inputs[0].worst[0].analytic != doctest::Approx(0.0));
}

TEST_CASE("gradcheck: at a kink, a slope just outside the one-sided derivatives fails and any inside passes")
{
    // relu with slope s at 0: [0, 1] are its subgradients. The slack is the
    // tolerance and the sides' own error estimates (tiny: relu is piecewise
    // linear), so 1e-3 outside fails, in a scalar output and a projected one.
    auto relu_with = [](double s) {
        return [s](const tensor_list& v) {
            const Tensor& x = v[0];
            Tensor y = record("relu_slope_at_0", untaped([&] { return relu(x); }), {x}, {x},
                              [s](const BackwardArgs& g) -> tensor_list {
                                  const Tensor& x0 = g.saved[0];
                                  Tensor slope = add(gt(x0, 0.0), mul(eq(x0, zeros_like(x0)), scalar(s, float64)));
                                  return {mul(g.grad, slope)};
                              });
            return y;
        };
    };
    Tensor x = leaf({-1.0, 0.0, 0.5}, {3});
    for (bool scalar_output : {true, false}) {
        CAPTURE(scalar_output);
        auto run = [&](double s) {
            auto f = relu_with(s);
            return scalar_output ? gradcheck([f](const tensor_list& v) { return sum(f(v)); }, {x})
                                 : gradcheck(f, {x});
        };
        for (double s : {0.0, 0.5, 1.0}) {
            CAPTURE(s);
            GradcheckResult r = run(s);
            INFO(r.to_string());
            CHECK(r.verdict == Verdict::nondifferentiable);
        }
        for (double s : {1.001, -0.001}) {
            CAPTURE(s);
            GradcheckResult r = run(s);
            INFO(r.to_string());
            CHECK(r.verdict == Verdict::fail);
            CHECK(r.inputs[0].failures == 1);
            REQUIRE(!r.inputs[0].worst.empty());
            CHECK(r.inputs[0].worst[0].index == shape_type{1});
        }
    }
}

TEST_CASE("gradcheck: the one-sided derivatives at a kink are extrapolated, not first-order differences")
{
    // |x|·e^x at 0: the sides -x·e^x and x·e^x are curved, so a one-sided
    // difference is off by about h (1e-5 here); the refinement's tableau
    // removes that, and the two sides come out opposite to ~1e-10.
    Tensor x = leaf({0.0}, {1});
    GradcheckResult r = gradcheck([](const tensor_list& v) { return sum(mul(abs(v[0]), exp(v[0]))); }, {x});
    INFO(r.to_string());
    REQUIRE(r.inputs[0].worst.size() == 1);
    const ElementReport& e = r.inputs[0].worst[0];
    CHECK(e.verdict == ElementVerdict::kink);
    CHECK(std::abs(e.right) > 0.1);  // |u|, the cotangent the numbers are projected on
    CHECK(std::abs(e.left + e.right) <= 1e-8 * std::abs(e.right));
}

TEST_CASE("gradcheck: where the first step is too coarse, the refined estimate and its error come from the best entry")
{
    // sin(100x): the first central difference is off by h²·100²/6 (about 6e-8
    // relative), more than the tolerance allows, so the tableau refines it;
    // its best entry is accurate to ~1e-12 and its error estimate (~3e-10
    // here) is that entry's, not a neighbour's (~2e-8).
    Tensor x = leaf({0.3}, {1});
    GradcheckResult r = gradcheck([](const tensor_list& v) { return sum(sin(v[0] * 100.0)); }, {x});
    INFO(r.to_string());
    CHECK(r.passed());
    REQUIRE(r.inputs[0].worst.size() == 1);
    const ElementReport& e = r.inputs[0].worst[0];
    CHECK(std::abs(e.numeric - e.analytic) <= 1e-9 * std::abs(e.analytic));
    CHECK(e.error_estimate <= 1e-10 * std::abs(e.analytic));
}

TEST_CASE("gradcheck: an extrapolated entry's error is its distance to the farther of the two entries it came from")
{
    // x³ at 0: the central difference at step h is exactly h², the first
    // extrapolation exactly 0. The analytic gradient is off by half the
    // tolerance, so the first step does not settle it; one level refines it,
    // and that entry is the best. Its error estimate is max(h²/4, h²) = h²
    // (plus a negligible noise), not the 3h²/4 between the two lower entries.
    const double atol = 1e-8;
    Tensor x = leaf({0.0}, {1});
    GradcheckOptions o;
    o.atol = atol;
    GradcheckResult r = gradcheck(
        [&](const tensor_list& v) { return sum(mul(mul(v[0], v[0]), v[0]) + (v[0].detach() - v[0]) * (atol / 2)); },
        {x}, o);
    INFO(r.to_string());
    CHECK(r.passed());
    REQUIRE(r.inputs[0].worst.size() == 1);
    const ElementReport& e = r.inputs[0].worst[0];
    CHECK(e.analytic / (-atol / 2) == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(std::abs(e.numeric) <= 1e-20);
    CHECK(e.error_estimate / (e.step * e.step) == doctest::Approx(1.0).epsilon(0.01));
}

TEST_CASE("gradcheck: an element no finite stencil reaches is unchecked, and the check does not pass")
{
    // sqrt at 0: every step leaves the domain on one side.
    Tensor x = leaf({0.0, 1.0, 4.0}, {3});
    GradcheckResult r = gradcheck([](const tensor_list& v) { return sqrt(v[0]); }, {x});
    INFO(r.to_string());
    CHECK_FALSE(r.passed());
    CHECK(r.verdict == Verdict::incomplete);
    CHECK(r.inputs[0].unchecked == 1);
    CHECK(r.inputs[0].failures == 0);
    CHECK(r.inputs[0].worst[0].index == shape_type{0});
    CHECK(r.inputs[0].worst[0].verdict == ElementVerdict::unchecked);
    CHECK(r.to_string().find("1 unchecked") != std::string::npos);
    // Allowed explicitly, it passes (and still says what it could not check).
    GradcheckOptions allow;
    allow.allow_unchecked = true;
    GradcheckResult allowed = gradcheck([](const tensor_list& v) { return sqrt(v[0]); }, {x}, allow);
    CHECK(allowed.passed());
    CHECK(allowed.verdict == Verdict::incomplete);
    // Near the edge the step shrinks until the stencil is inside: checked, and passing.
    Tensor near = leaf({1e-5, 3e-6, 2e-4}, {3});
    GradcheckResult edge = gradcheck([](const tensor_list& v) { return sqrt(v[0]); }, {near});
    INFO(edge.to_string());
    CHECK(edge.verdict == Verdict::pass);
}

TEST_CASE("gradcheck: an element whose only step is below the floor reports that step's difference, unchecked")
{
    // log at 1e-13: the first step that fits (a quarter of x) is already below
    // the floor, so nothing can be refined. The element is unchecked, and the
    // report still shows the central difference it took, with an error
    // estimate that covers its distance to the true 1e13.
    Tensor x = leaf({1e-13, 0.5}, {2});
    GradcheckResult r = gradcheck([](const tensor_list& v) { return log(v[0]); }, {x});
    INFO(r.to_string());
    CHECK(r.verdict == Verdict::incomplete);
    CHECK(r.inputs[0].unchecked == 1);
    CHECK(r.inputs[0].failures == 0);
    const ElementReport& e = r.inputs[0].worst[0];
    CHECK(e.index == shape_type{0});
    CHECK(e.verdict == ElementVerdict::unchecked);
    CHECK(e.step > 0);
    CHECK(e.step <= 0.25e-13);
    CHECK(e.numeric / e.analytic == doctest::Approx(1.0).epsilon(0.05));
    CHECK(std::abs(e.numeric - e.analytic) <= e.error_estimate);
}

TEST_CASE("gradcheck: structural checks catch what finite differences cannot")
{
    Tensor x = randn_leaf({4}, 20);
    SUBCASE("backward not linear in the upstream gradient")
    {
        auto fn = [](const tensor_list& v) {
            return record("sq_grad", untaped([&] { return mul(v[0], scalar(2.0, float64)); }), {v[0]}, {},
                          [](const BackwardArgs& g) -> tensor_list { return {mul(g.grad, mul(g.grad, g.grad))}; });
        };
        GradcheckResult r = gradcheck(fn, {x});
        CHECK_FALSE(r.passed());
        CHECK_FALSE(structural(r, "linear").passed);
    }
    SUBCASE("zero upstream gradient gives non-zero")
    {
        auto fn = [](const tensor_list& v) {
            return record("affine_grad", untaped([&] { return mul(v[0], scalar(2.0, float64)); }), {v[0]}, {},
                          [](const BackwardArgs& g) -> tensor_list {
                              return {add(mul(g.grad, scalar(2.0, float64)), scalar(1e-3, float64))};
                          });
        };
        GradcheckResult r = gradcheck(fn, {x});
        CHECK_FALSE(r.passed());
        CHECK_FALSE(structural(r, "zero upstream").passed);
        CHECK(has(r.to_string(), "zero upstream"));
    }
    SUBCASE("nondeterministic backward")
    {
        auto fn = [](const tensor_list& v) {
            return record("drifting", untaped([&] { return mul(v[0], scalar(2.0, float64)); }), {v[0]}, {},
                          [](const BackwardArgs& g) -> tensor_list {
                              static std::atomic<int> calls{0};
                              double k = 2.0 * (1 + 1e-14 * (calls++ % 7));
                              return {mul(g.grad, scalar(k, float64))};
                          });
        };
        GradcheckResult r = gradcheck(fn, {x});
        CHECK_FALSE(structural(r, "deterministic").passed);
        CHECK_FALSE(r.passed());
    }
    SUBCASE("an input modified in place")
    {
        Tensor y = from_values({1.0, 2.0}, {2}, float64);
        auto fn = [](const tensor_list& v) {
            {
                NoGradGuard off;
                Tensor target = v[1];
                target.fill_(7.0);
            }
            return sin(v[0]);
        };
        GradcheckResult r = gradcheck(fn, {x, y}, named({"x", "y"}));
        CHECK_FALSE(r.passed());
        CHECK_FALSE(structural(r, "inputs unchanged").passed);
        CHECK(has(structural(r, "inputs unchanged").detail, "'y'"));
    }
    SUBCASE("recorded forward differs from the untaped one")
    {
        auto fn = [](const tensor_list& v) {
            return grad_enabled() ? sin(v[0]) : add(sin(v[0]), scalar(1e-6, float64));
        };
        GradcheckResult r = gradcheck(fn, {x});
        CHECK_FALSE(r.passed());
        CHECK_FALSE(structural(r, "recorded forward").passed);
    }
}

TEST_CASE("gradcheck: a structural failure names the input, the element and the values it saw")
{
    // f(x, y) = 2x + y, whose rule for x is 2·u except at element 2, where it
    // is 5 whatever u is: not linear there, and not zero for a zero upstream
    // gradient. Both checks must name x's element 2 and print what it gave,
    // exactly (α + β = −0.5).
    Tensor x = randn_leaf({5}, 25), y = randn_leaf({5}, 26);
    auto fn = [](const tensor_list& v) {
        Tensor doubled =
            record("constant_at_2", untaped([&] { return mul(v[0], scalar(2.0, float64)); }), {v[0]}, {},
                   [](const BackwardArgs& g) -> tensor_list {
                       Tensor keep = ones(g.grad.shape(), float64), five = zeros(g.grad.shape(), float64);
                       {
                           NoGradGuard off;
                           keep.data<double>()[2] = 0;
                           five.data<double>()[2] = 5;
                       }
                       return {add(mul(mul(g.grad, scalar(2.0, float64)), keep), five)};
                   });
        return add(doubled, v[1]);
    };
    GradcheckResult r = gradcheck(fn, {x, y}, named({"x", "y"}));
    INFO(r.to_string());
    CHECK_FALSE(r.passed());
    const StructuralCheck& linear = structural(r, "linear");
    CHECK_FALSE(linear.passed);
    CHECK(linear.detail == "'x' [2]: vjp(α·u+β·v) = 5, α·vjp(u)+β·vjp(v) = -2.5");
    const StructuralCheck& zero = structural(r, "zero upstream");
    CHECK_FALSE(zero.passed);
    CHECK(zero.detail == "'x' [2] got 5");
    CHECK(structural(r, "deterministic").passed);
}

TEST_CASE("gradcheck: a gradient that cancels to rounding noise is not a structural failure")
{
    // y = (x + b) − mean(x + b): the gradient of b is Σ(u − mean u), zero but
    // for rounding, whose bits differ between vjp(α·u + β·v) and α·vjp(u) +
    // β·vjp(v) (a conv bias before batch norm is the same). Rounding is
    // relative to the other gradients' size, not to this one's; a rule that
    // is not linear, with gradients 1e-9 of the others', still fails.
    Tensor x = randn_leaf({7}, 31), b = randn_leaf({1}, 32);
    auto fn = [](const tensor_list& v) {
        Tensor y = add(v[0], v[1]);
        return sub(y, mean(y));
    };
    GradcheckResult r = gradcheck(fn, {x, b}, named({"x", "b"}));
    INFO(r.to_string());
    CHECK(r.passed());
    CHECK(structural(r, "linear").passed);
    CHECK(r.input("b").max_abs_analytic < 1e-14);

    auto bent = [](const tensor_list& v) {
        Tensor y = add(v[0],
                       record("small_square", untaped([&] { return v[1].detach(); }), {v[1]}, {},
                              [](const BackwardArgs& g) -> tensor_list {
                                  return {mul(mul(g.grad, g.grad), scalar(1e-9, float64))};
                              }));
        return y;
    };
    GradcheckResult bad = gradcheck(bent, {x, b}, named({"x", "b"}));
    CHECK_FALSE(structural(bad, "linear").passed);
    CHECK(has(structural(bad, "linear").detail, "'b' [0]"));
}

TEST_CASE("gradcheck: a vacuous check is flagged")
{
    Tensor x = randn_leaf({3}, 21);
    auto fn = [](const tensor_list& v) { return mul(v[0], scalar(0.0, float64)); };
    GradcheckResult r = gradcheck(fn, {x});
    CHECK(r.vacuous);
    CHECK(r.inputs[0].vacuous);
    CHECK(r.passed());  // a warning by default
    CHECK(has(r.to_string(), "VACUOUS"));
    GradcheckOptions o;
    o.vacuous_fails = true;
    CHECK_FALSE(gradcheck(fn, {x}, o).passed());
    // Gradients exactly zero are vacuous whatever the tolerance, atol = 0 included.
    GradcheckOptions exact;
    exact.atol = 0;
    CHECK(gradcheck(fn, {x}, exact).vacuous);
    // One input with zero gradient does not make the check vacuous.
    Tensor y = randn_leaf({3}, 22);
    GradcheckResult part = gradcheck([](const tensor_list& v) { return add(mul(v[0], scalar(0.0, float64)), v[1]); },
                                     {x, y});
    CHECK_FALSE(part.vacuous);
    CHECK(part.inputs[0].vacuous);
}

TEST_CASE("gradgradcheck: second order of correct functions passes, a planted bug fails")
{
    Tensor a = randn_leaf({3, 4}, 23), b = randn_leaf({4, 2}, 24);
    auto fn = [](const tensor_list& v) { return sigmoid(matmul(tanh(v[0]), v[1])); };
    GradcheckResult r = gradgradcheck(fn, {a, b}, named({"a", "b"}));
    INFO(r.to_string());
    CHECK(r.passed());
    REQUIRE(r.inputs.size() == 3);
    CHECK(r.inputs[2].name == "upstream gradient");

    Tensor x = randn_leaf({5}, 25);
    auto sq = [](const tensor_list& v) { return square_bad_second_order(v[0]); };
    CHECK(gradcheck(sq, {x}).passed());  // first order is right
    GradcheckResult second = gradgradcheck(sq, {x}, named({"x"}));
    check_fails_on(second, "x");
    GradcheckOptions o = named({"x"});
    o.second_order = true;
    GradcheckResult both = gradcheck(sq, {x}, o);
    CHECK(both.verdict == Verdict::pass);
    CHECK_FALSE(both.passed());
    REQUIRE(both.second_order.size() == 1);
    CHECK(has(both.to_string(), "second order"));
}

TEST_CASE("check_float32: float32 gradients against float64 ones")
{
    Tensor x = randn_leaf({6}, 26);
    PrecisionReport ok = check_float32([](const tensor_list& v) { return tanh(v[0]); }, {x});
    CHECK(ok.passed);
    CHECK(ok.max_rel_error < 1e-5);
    auto fn = [](const tensor_list& v) { return scale_bad_float32(v[0]); };
    CHECK(gradcheck(fn, {x}).passed());  // float64 is right
    PrecisionReport bad = check_float32(fn, {x}, named({"x"}));
    CHECK_FALSE(bad.passed);
    CHECK(has(bad.message, "gradient of 'x'"));
}

TEST_CASE("check_float32: errors are measured against the largest value, wherever it is")
{
    // x² of 3000.3 is 9001800.09, rounded to a float32 by ~0.1: tiny next to
    // the largest value (the last element), large next to 1.
    Tensor x = leaf({0.1, 0.2, 3000.3}, {3});
    PrecisionReport r = check_float32([](const tensor_list& v) { return mul(v[0], v[0]); }, {x});
    CHECK(r.passed);
    CHECK(r.max_rel_error > 0);
    CHECK(r.max_rel_error < 1e-6);
}

TEST_CASE("gradcheck: the report names what failed and how to reproduce it")
{
    Tensor a = randn_leaf({3, 4}, 27), b = randn_leaf({3, 4}, 28);
    GradcheckOptions o = named({"weight", "input"});
    o.seed = 5;
    GradcheckResult r = gradcheck([](const tensor_list& x) { return mul_one_scaled(x[0], x[1]); }, {a, b}, o);
    std::string text = r.to_string();
    CHECK(has(text, "weight [3, 4]: FAIL"));
    CHECK(has(text, "input [3, 4]: pass"));
    CHECK(has(text, "[1, 2]"));
    CHECK(has(text, "seed 5"));
    CHECK(has(text, "reproduce: tg::gradcheck(fn, inputs, {.seed = 5, .mode = tg::GradcheckMode::full})"));
    CHECK(r.reproduce == "tg::gradcheck(fn, inputs, {.seed = 5, .mode = tg::GradcheckMode::full})");
}

TEST_CASE("gradcheck: options and errors")
{
    Tensor x = randn_leaf({3, 2}, 29);
    auto fn = [](const tensor_list& v) { return exp(v[0]); };
    GradcheckOptions o;
    o.cotangents = 3;
    CHECK(gradcheck(fn, {x}, o).cotangents == 3);
    CHECK(gradcheck([](const tensor_list& v) { return sum(exp(v[0])); }, {x}, o).cotangents == 1);  // scalar
    Tensor no_grad = from_values({1.0, 2.0}, {2}, float64);
    CHECK_THROWS_WITH_AS(gradcheck(fn, {no_grad}), doctest::Contains("no input requires grad"), Error);
    CHECK_THROWS_AS(gradcheck([](const tensor_list& v) { return v[0].to(float32); }, {x}), Error);
    // float32 inputs are checked through float64 copies.
    Tensor x32 = randn({4}, float32).requires_grad_();
    CHECK(gradcheck(fn, {x32}).passed());
}

namespace {
// max over all elements with a chosen tie rule in its backward.
enum class TieRule { every_tied_gets_all, first_gets_all, equal_shares };
Tensor max_with(const Tensor& x, TieRule rule)
{
    Tensor out;
    {
        NoGradGuard off;
        out = max(x);
    }
    return record("max_tie_rule", out, {x}, {x, out}, [rule](const BackwardArgs& g) -> tensor_list {
        const Tensor &x = g.saved[0], &m = g.saved[1];
        Tensor winners = eq(x, broadcast_to(m.detach(), x.shape()));
        if (rule == TieRule::first_gets_all) {
            Tensor w = zeros_like(x);
            const double* p = winners.data<double>();
            for (int64_t i = 0; i < x.numel(); ++i)
                if (p[i] != 0) {
                    w.data<double>()[i] = 1;
                    break;
                }
            winners = w;
        } else if (rule == TieRule::equal_shares) {
            winners = div(winners, sum(winners).detach());
        }
        return {mul(g.grad, winners)};
    });
}
}  // namespace

TEST_CASE("gradcheck: ties are judged jointly, so double counting fails and any convex split passes")
{
    for (const std::vector<double>& values : {std::vector<double>{1.0, 3.0, 3.0, 2.0}, std::vector<double>{0.5, 0.5, 0.5}}) {
        CAPTURE(values.size());
        Tensor t = leaf(values, {int64_t(values.size())});
        GradcheckResult every = gradcheck([](const tensor_list& v) { return max_with(v[0], TieRule::every_tied_gets_all); }, {t});
        INFO(every.to_string());
        CHECK_FALSE(every.passed());
        CHECK(every.inputs[0].failures >= 2);
        const double top = *std::max_element(values.begin(), values.end());
        for (const ElementReport& e : every.inputs[0].worst)
            if (e.verdict == ElementVerdict::fail) CHECK(values[size_t(e.index[0])] == top);  // the tied ones
        for (TieRule rule : {TieRule::first_gets_all, TieRule::equal_shares}) {
            GradcheckResult r = gradcheck([rule](const tensor_list& v) { return max_with(v[0], rule); }, {t});
            INFO(r.to_string());
            CHECK(r.passed());
            CHECK(r.verdict == Verdict::nondifferentiable);
        }
    }
    // Kinks at one value that are not tied (relu at 0 in three places) pass as before.
    Tensor z = leaf({0.0, -1.0, 0.0, 2.0, 0.0}, {5});
    GradcheckResult relu0 = gradcheck([](const tensor_list& v) { return relu(v[0]); }, {z});
    INFO(relu0.to_string());
    CHECK(relu0.passed());
    CHECK(relu0.inputs[0].kinks == 3);
}

namespace {
// y = log(x) with a forward that refuses x <= 0 (as an op checking its domain does).
Tensor checked_log(const Tensor& x)
{
    const double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i)
        TG_CHECK(p[i] > 0, "checked_log: x[", i, "] = ", p[i], " is not positive");
    Tensor out;
    {
        NoGradGuard off;
        out = log(x);
    }
    return record("checked_log", out, {x}, {x}, [](const BackwardArgs& g) -> tensor_list { return {div(g.grad, g.saved[0])}; });
}

Tensor raising_backward(const Tensor& x, bool tapegrad_error)
{
    Tensor out;
    {
        NoGradGuard off;
        out = mul(x, x);
    }
    return record("raising_backward", out, {x}, {}, [tapegrad_error](const BackwardArgs&) -> tensor_list {
        if (tapegrad_error) fail("my rule: not implemented for this case");
        throw std::runtime_error("out of range");
    });
}

// A backward that differs from run to run in the last bits (as an atomic-add reduction would).
Tensor jittery_backward(const Tensor& x)
{
    Tensor out;
    {
        NoGradGuard off;
        out = mul(x, scalar(3.0, x.dtype()));
    }
    return record("jittery", out, {x}, {}, [](const BackwardArgs& g) -> tensor_list {
        static int calls = 0;
        double jitter = 1 + 1e-15 * (++calls % 3);
        return {mul(g.grad, scalar(3.0 * jitter, g.grad.dtype()))};
    });
}

// A backward whose gradient is [1, 0.5] the first time it sees an upstream
// gradient and [1 + 2^-30, 0.5] each time it sees the same one again: its
// nondeterminism is exactly 2^-30 of the gradient's largest element.
using SeenUpstream = std::shared_ptr<std::vector<std::vector<double>>>;
Tensor repeats_differ(const Tensor& x, SeenUpstream seen)
{
    Tensor out;
    {
        NoGradGuard off;
        out = mul(x, x);
    }
    return record("repeats_differ", out, {x}, {}, [seen](const BackwardArgs& g) -> tensor_list {
        const std::vector<double> up = g.grad.to_vector();
        const bool again = std::find(seen->begin(), seen->end(), up) != seen->end();
        if (!again) seen->push_back(up);
        return {from_values({again ? 1 + std::ldexp(1.0, -30) : 1.0, 0.5}, {2}, float64)};
    });
}
}  // namespace

TEST_CASE("gradcheck: a forward that raises is reported, a backward that raises is a failure naming the op")
{
    // The forward raises at the given point: no exception escapes, the report says why.
    Tensor bad = leaf({1.0, -2.0}, {2});
    GradcheckResult r = gradcheck([](const tensor_list& v) { return checked_log(v[0]); }, {bad});
    CHECK_FALSE(r.passed());
    CHECK(has(r.error, "the function raised at the given inputs"));
    CHECK(has(r.to_string(), "checked_log: x[1] = -2 is not positive"));
    // Raising at perturbed points is leaving the domain: the step shrinks, so a
    // point near the edge is checked, and passes.
    Tensor near = leaf({3e-6, 0.5}, {2});
    GradcheckResult edge = gradcheck([](const tensor_list& v) { return checked_log(v[0]); }, {near});
    INFO(edge.to_string());
    CHECK(edge.passed());
    CHECK(edge.verdict == Verdict::pass);
    // The backward raises where the forward did not: a failure that names the op.
    for (bool tapegrad_error : {true, false}) {
        Tensor x = leaf({1.0, 2.0}, {2});
        GradcheckResult b = gradcheck([tapegrad_error](const tensor_list& v) { return raising_backward(v[0], tapegrad_error); }, {x});
        CHECK_FALSE(b.passed());
        CHECK(has(b.error, "the backward raised where the forward did not"));
        CHECK(has(b.error, "backward of op 'raising_backward'"));
        CHECK(has(b.error, tapegrad_error ? "my rule: not implemented" : "out of range"));
    }
}

TEST_CASE("gradcheck: nondet_tol allows a backward that is nondeterministic in the last bits, and only that")
{
    Tensor x = randn_leaf({5}, 31);
    auto fn = [](const tensor_list& v) { return jittery_backward(v[0]); };
    GradcheckResult strict = gradcheck(fn, {x});
    CHECK_FALSE(strict.passed());
    bool flagged = false;
    for (const StructuralCheck& c : strict.structural) flagged = flagged || (c.name == "backward is deterministic" && !c.passed);
    CHECK(flagged);
    GradcheckOptions o;
    o.nondet_tol = 1e-12;
    CHECK(gradcheck(fn, {x}, o).passed());
    o.nondet_tol = 1e-17;  // tighter than the jitter
    CHECK_FALSE(gradcheck(fn, {x}, o).passed());
}

TEST_CASE("gradcheck: nondet_tol allows differences up to and including nondet_tol times the largest gradient")
{
    auto deterministic = [](const GradcheckResult& r) {
        for (const StructuralCheck& c : r.structural)
            if (c.name == "backward is deterministic") return c.passed;
        FAIL("no determinism check ran");
        return false;
    };
    auto check = [&](double nondet_tol) {
        auto seen = std::make_shared<std::vector<std::vector<double>>>();
        GradcheckOptions o;
        o.nondet_tol = nondet_tol;
        return deterministic(gradcheck([seen](const tensor_list& v) { return repeats_differ(v[0], seen); },
                                       {randn_leaf({2}, 7)}, o));
    };
    CHECK(check(std::ldexp(1.0, -30)));  // the difference exactly
    CHECK_FALSE(check(std::ldexp(1.0, -31)));
}

// --- the checker's own paths, each against a planted error of its own ------------------

namespace {
// Σ w_e·x_e² with weights over eight orders of magnitude, so the elements fall
// into several fast-mode tolerance groups; the backward is off by a relative
// `error` at element `bad` (none if bad < 0).
Tensor weighted_squares(const Tensor& x, const Tensor& w, int64_t bad, double error)
{
    Tensor out = untaped([&] { return sum(mul(w, mul(x, x))); });
    return record("weighted_squares", out, {x}, {x}, [w, bad, error](const BackwardArgs& g) -> tensor_list {
        Tensor d = mul(mul(w, g.saved[0]), scalar(2.0, float64));
        if (bad >= 0) {
            Tensor scale = ones(d.shape(), float64);
            {
                NoGradGuard off;
                scale.data<double>()[bad] = 1 + error;
            }
            d = mul(d, scale);
        }
        return {mul(broadcast_to(g.grad, d.shape()), d)};
    });
}

Tensor dynamic_range_weights(int64_t n)
{
    Tensor w = zeros({n}, float64);
    for (int64_t e = 0; e < n; ++e) w.data<double>()[e] = std::pow(10.0, -6.0 + 8.0 * double(e % 9) / 8.0);
    return w;
}
}  // namespace

TEST_CASE("gradcheck: fast-mode probes hold each tolerance group to its own smallest tolerance")
{
    const int64_t n = 6000;
    Tensor x = randn_leaf({n}, 40), w = dynamic_range_weights(n);
    GradcheckOptions o;
    o.mode = GradcheckMode::fast;
    // Correct, over eight orders of magnitude of gradient: no escalation.
    GradcheckResult ok = gradcheck([&](const tensor_list& v) { return weighted_squares(v[0], w, -1, 0); }, {x}, o);
    INFO(ok.to_string());
    CHECK(ok.passed());
    CHECK(ok.inputs[0].checked_by == CheckedBy::fast);
    CHECK(ok.inputs[0].probes >= 2 * o.probes);  // more than one group
    // Off by 1e-3 relative at an element whose gradient is ~1e-7 of the largest:
    // invisible next to the large ones (1e-10 of the total), yet far outside
    // its own tolerance (5e-9 against 1e-10) and the output's noise (a sum of
    // 6,000 terms up to 100). The probes of its group must see it.
    const int64_t bad = 9 * 321 + 1;  // weight 10^-5
    REQUIRE(w.data<double>()[bad] / 1e-5 == doctest::Approx(1.0));
    GradcheckResult r = gradcheck([&](const tensor_list& v) { return weighted_squares(v[0], w, bad, 1e-3); }, {x}, o);
    CHECK(r.inputs[0].checked_by == CheckedBy::fast_then_full);
    check_one_failure_at(r, shape_type{bad});
}

TEST_CASE("gradcheck: a probe whose output turns non-finite escalates to the full check")
{
    // log(x) at positive x, one of them so small that a probe along a random
    // direction leaves the domain: the probe cannot judge, the full check must.
    const int64_t n = 5000;
    Generator gen(42);
    Tensor x = abs(randn({n}, float64, &gen)).detach();
    {
        NoGradGuard off;
        for (int64_t e = 0; e < n; ++e) x.data<double>()[e] += 0.5;
        x.data<double>()[17] = 1e-4;
    }
    x.requires_grad_();
    GradcheckOptions o;
    o.mode = GradcheckMode::fast;
    GradcheckResult ok = gradcheck([](const tensor_list& v) { return log(v[0]); }, {x}, o);
    INFO(ok.to_string());
    CHECK(ok.passed());
    CHECK(ok.inputs[0].checked_by == CheckedBy::fast_then_full);
    CHECK(has(ok.inputs[0].note, "finiteness"));
    // The same with a backward wrong at one ordinary element: found and named.
    auto bad_log = [](const tensor_list& v) {
        Tensor out = untaped([&] { return log(v[0]); });
        return record("log_wrong_at_3", out, {v[0]}, {v[0]}, [](const BackwardArgs& g) -> tensor_list {
            Tensor scale = ones(g.saved[0].shape(), float64);
            {
                NoGradGuard off;
                scale.data<double>()[3] = 1.001;
            }
            return {mul(div(g.grad, g.saved[0]), scale)};
        });
    };
    GradcheckResult r = gradcheck(bad_log, {x}, o);
    check_one_failure_at(r, shape_type{3});
}

TEST_CASE("gradcheck: output elements that are infinite and stay so do not stop the check")
{
    // [-inf, inf, NaN, x²] and [x², -inf, inf, NaN]: the constant non-finite
    // outputs cancel out of every difference; each element of x is still
    // checked, and a wrong one found, with 2 cotangents and with 8.
    Tensor x = randn_leaf({7}, 19);
    const Tensor stuck = from_values({-INFINITY, INFINITY, NAN}, {3}, float64);
    auto wrong_at_2 = [](const Tensor& v) {
        Tensor sq = untaped([&] { return mul(v, v); });
        return record("square_wrong_at_2", sq, {v}, {v}, [](const BackwardArgs& g) -> tensor_list {
            Tensor scale = full(g.saved[0].shape(), 2.0, float64);
            {
                NoGradGuard off;
                scale.data<double>()[2] = 2.002;
            }
            return {mul(g.grad, mul(g.saved[0], scale))};
        });
    };
    for (bool stuck_first : {false, true}) {
        for (int cotangents : {2, 8}) {
            CAPTURE(stuck_first);
            CAPTURE(cotangents);
            auto join = [&](const Tensor& sq) { return stuck_first ? concat({stuck, sq}) : concat({sq, stuck}); };
            GradcheckOptions o;
            o.mode = GradcheckMode::full;
            o.cotangents = cotangents;
            GradcheckResult ok = gradcheck([&](const tensor_list& v) { return join(mul(v[0], v[0])); }, {x}, o);
            INFO(ok.to_string());
            CHECK(ok.passed());
            CHECK(ok.inputs[0].elements == 7);
            CHECK(ok.inputs[0].unchecked == 0);
            GradcheckResult r = gradcheck([&](const tensor_list& v) { return join(wrong_at_2(v[0])); }, {x}, o);
            check_one_failure_at(r, shape_type{2});
        }
    }
}

TEST_CASE("jvp: J·v of a function of two inputs, one of them not moved")
{
    // f(x, y) = sin(x)·y + x: J·v = (cos(x)·y + 1)·vx + sin(x)·vy.
    Tensor x = randn_leaf({2, 3}, 30), y = randn_leaf({2, 3}, 31);
    Tensor vx = randn_leaf({2, 3}, 32).detach(), vy = randn_leaf({2, 3}, 33).detach();
    auto fn = [](const tensor_list& v) { return add(mul(sin(v[0]), v[1]), v[0]); };
    JvpResult both = jvp(fn, {x, y}, {vx, vy}), only_x = jvp(fn, {x, y}, {vx, Tensor()});
    const std::vector<double> xs = x.to_vector(), ys = y.to_vector(), ax = vx.to_vector(), ay = vy.to_vector();
    const std::vector<double> out = both.output.to_vector(), t = both.tangent.to_vector(), tx = only_x.tangent.to_vector();
    REQUIRE(both.tangent.shape() == shape_type{2, 3});
    for (size_t i = 0; i < 6; ++i) {
        CAPTURE(i);
        CHECK(out[i] == doctest::Approx(std::sin(xs[i]) * ys[i] + xs[i]).epsilon(1e-14));
        const double along_x = (std::cos(xs[i]) * ys[i] + 1) * ax[i];
        CHECK(t[i] == doctest::Approx(along_x + std::sin(xs[i]) * ay[i]).epsilon(1e-13));
        CHECK(tx[i] == doctest::Approx(along_x).epsilon(1e-13));
    }
    CHECK(live_tape_entries() == 0);
}

TEST_CASE("gradcheck: forward_ad finds a backward whose value is right but whose own derivative is not")
{
    // sin(50·x), whose central differences need the extrapolation. The planted
    // rule returns g·cos(50x)·50 exactly, but as (1 + 1e-4)·that minus 1e-4·that
    // with g detached in the second term: reverse mode cannot see it, forward
    // mode (built from the rule's own backward) is off by 1e-4 of itself.
    Tensor x = randn_leaf({9}, 34);
    auto correct = [](const tensor_list& v) { return sin(mul(v[0], scalar(50.0, float64))); };
    auto planted = [](const tensor_list& v) {
        Tensor out = untaped([&] { return sin(mul(v[0], scalar(50.0, float64))); });
        return record("sin50_forward_wrong", out, {v[0]}, {v[0]}, [](const BackwardArgs& g) -> tensor_list {
            Tensor slope = mul(cos(mul(g.saved[0], scalar(50.0, float64))), scalar(50.0, float64));
            Tensor right = mul(g.grad, slope);
            return {sub(mul(right, scalar(1 + 1e-4, float64)), mul(mul(g.grad.detach(), slope), scalar(1e-4, float64)))};
        });
    };
    GradcheckOptions o;
    o.forward_ad = true;
    GradcheckResult ok = gradcheck(correct, {x}, o);
    INFO(ok.to_string());
    CHECK(ok.passed());
    CHECK(structural(ok, "forward mode").passed);
    GradcheckOptions reverse_only;
    CHECK(gradcheck(planted, {x}, reverse_only).passed());
    GradcheckResult r = gradcheck(planted, {x}, o);
    INFO(r.to_string());
    CHECK_FALSE(r.passed());
    const StructuralCheck& fwd = structural(r, "forward mode");
    CHECK_FALSE(fwd.passed);
    CHECK(has(fwd.detail, "output ["));
}

TEST_CASE("gradcheck: forward_ad's extrapolated differences are tight enough to see a 2e-4 error on every input")
{
    // One element of sin(50·x): central differences along v are off by about
    // 2.5e-5·v² of J·v at the check's step, the extrapolation removes it. The
    // planted rule's J·v is off by 2e-4 of itself (reverse mode cannot see it):
    // caught at every seed, for |v| up to about 4, only if the extrapolated value
    // and its error estimate are the tight ones.
    auto correct = [](const tensor_list& v) { return sin(mul(v[0], scalar(50.0, float64))); };
    auto planted = [](const tensor_list& v) {
        Tensor out = untaped([&] { return sin(mul(v[0], scalar(50.0, float64))); });
        return record("sin50_forward_2e-4", out, {v[0]}, {v[0]}, [](const BackwardArgs& g) -> tensor_list {
            Tensor slope = mul(cos(mul(g.saved[0], scalar(50.0, float64))), scalar(50.0, float64));
            Tensor right = mul(g.grad, slope);
            return {sub(mul(right, scalar(1 + 2e-4, float64)), mul(mul(g.grad.detach(), slope), scalar(2e-4, float64)))};
        });
    };
    int caught = 0, passed = 0;
    for (uint64_t seed = 0; seed < 20; ++seed) {
        CAPTURE(seed);
        Tensor x = randn_leaf({1}, 200 + seed);
        GradcheckOptions o;
        o.forward_ad = true;
        o.seed = seed;
        GradcheckResult ok = gradcheck(correct, {x}, o);
        INFO(ok.to_string());
        passed += ok.passed();
        GradcheckResult r = gradcheck(planted, {x}, o);
        INFO(r.to_string());
        caught += !structural(r, "forward mode").passed;
    }
    CHECK(passed == 20);
    CHECK(caught == 20);
}

TEST_CASE("gradcheck: projections onto 4 to 8 cotangents")
{
    // exp(x)·c for a [6, 5] output: correct, then wrong in one output row's
    // contribution only (the backward drops row 4 of the upstream gradient).
    Tensor x = randn_leaf({6, 5}, 41);
    auto correct = [](const tensor_list& v) { return exp(v[0]); };
    auto drops_row = [](const tensor_list& v) {
        Tensor out = untaped([&] { return exp(v[0]); });
        return record("exp_drops_row_4", out, {v[0]}, {out}, [](const BackwardArgs& g) -> tensor_list {
            Tensor keep = ones(g.saved[0].shape(), float64);
            {
                NoGradGuard off;
                for (int j = 0; j < 5; ++j) keep.data<double>()[4 * 5 + j] = 0;
            }
            return {mul(mul(g.grad, keep), g.saved[0])};
        });
    };
    for (int cotangents : {4, 5, 8}) {
        CAPTURE(cotangents);
        GradcheckOptions o;
        o.cotangents = cotangents;
        GradcheckResult ok = gradcheck(correct, {x}, o);
        INFO(ok.to_string());
        CHECK(ok.passed());
        CHECK(ok.cotangents == cotangents);
        // Every perturbation is projected onto all cotangents at once.
        CHECK(ok.evaluations < 6 * 30);
        GradcheckResult r = gradcheck(drops_row, {x}, o);
        INFO(r.to_string());
        CHECK_FALSE(r.passed());
        CHECK(r.inputs[0].failures == 5);
        for (const ElementReport& e : r.inputs[0].worst) {
            CHECK(e.cotangent >= 0);
            CHECK(e.cotangent < cotangents);
            if (e.verdict == ElementVerdict::fail) CHECK(e.index[0] == 4);
        }
    }
    // Elements that need refining (sin(100x): the first step is too coarse),
    // with as many cotangents as the checker has room for.
    GradcheckOptions most;
    most.cotangents = 8;
    most.mode = GradcheckMode::full;
    Tensor small = leaf({0.3, -0.7, 1.1}, {3});
    GradcheckResult refined = gradcheck([](const tensor_list& v) { return sin(v[0] * 100.0); }, {small}, most);
    INFO(refined.to_string());
    CHECK(refined.passed());
    CHECK(refined.cotangents == 8);
    CHECK(refined.evaluations > 3 * 2 + 20);  // more than one step per element (and the noise probes)
    // And refined where the one-sided gaps close at once (x³ at 0: r − l = 0),
    // so every cotangent's gap is looked at.
    Tensor zeros5 = leaf({0.0, 0.0, 0.0, 0.0, 0.0}, {5});
    GradcheckResult cubic = gradcheck([](const tensor_list& v) { return mul(mul(v[0], v[0]), v[0]); }, {zeros5}, most);
    INFO(cubic.to_string());
    CHECK(cubic.passed());
    CHECK(cubic.evaluations > 5 * 2 + 20);
    GradcheckOptions too_many;
    too_many.cotangents = 9;
    CHECK_THROWS_WITH_AS(gradcheck(correct, {x}, too_many), doctest::Contains("cotangents"), Error);
}

namespace {

// Parts of a split check played by threads: each sum adds its buffer into a
// shared one and waits for every part (tg::dist's parts are ranks).
struct ThreadParts {
    explicit ThreadParts(int n) : parts(n) {}
    GradcheckOptions::Partition part(int i)
    {
        GradcheckOptions::Partition p;
        p.part = i;
        p.parts = parts;
        p.sum = [this](std::vector<int64_t>& buffer) {
            std::unique_lock lock(mutex);
            const int round = rounds;
            if (total.size() < buffer.size()) total.resize(buffer.size(), 0);
            for (size_t j = 0; j < buffer.size(); ++j) total[j] += buffer[j];
            if (++arrived == parts) {
                result = total;
                total.clear();
                arrived = 0;
                ++rounds;
                done.notify_all();
            } else {
                done.wait(lock, [&] { return rounds != round; });
            }
            buffer = result;
        };
        return p;
    }
    int parts, arrived = 0, rounds = 0;
    std::vector<int64_t> total, result;
    std::mutex mutex;
    std::condition_variable done;
};

std::vector<GradcheckResult> split_check(int parts, const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions o)
{
    ThreadParts shared(parts);
    std::vector<GradcheckResult> results{size_t(parts)};
    std::vector<std::thread> threads;
    for (int i = 0; i < parts; ++i)
        threads.emplace_back([&, i] {
            GradcheckOptions mine = o;
            mine.partition = shared.part(i);
            results[size_t(i)] = gradcheck(fn, inputs, mine);
        });
    for (std::thread& t : threads) t.join();
    return results;
}

}  // namespace

TEST_CASE("gradcheck: elements split over parts merge into the report of one")
{
    // Ties (a max over equal values) across parts, a kink, a planted error at
    // one element, second order: every part's report is the unsplit one.
    Tensor x = leaf({1, 3, 3, 0, 2, 3, -1, 0.5, 2, 2, 1, 1, 4, -2, 0.25, 3, 3, 1, 2, 0, 1.5, 0.75, -0.5, 2.5, 3, 1, 1, 0,
                     2, 2, 1, 3, -3, 0.1, 3, 1},
                    {36});
    Tensor y = randn_leaf({36}, 41);
    auto fn = [](const tensor_list& v) {
        return add(mul(max(reshape(v[0], {6, 6}), {1}), scalar(1.5, float64)), sum(mul(tanh(v[1]), v[0])));
    };
    GradcheckOptions o;
    o.mode = GradcheckMode::full;
    o.second_order = true;
    const GradcheckResult one = gradcheck(fn, {x, y}, o);
    INFO(one.to_string());
    CHECK(one.input("x0").kinks > 0);
    for (int parts : {2, 3, 5}) {
        CAPTURE(parts);
        for (const GradcheckResult& r : split_check(parts, fn, {x, y}, o)) {
            CHECK(tg_test::report_difference(one, r) == "");
            CHECK(has(r.note, "elements split over " + std::to_string(parts) + " processes"));
        }
    }
    // A planted error in one element's gradient: found by the part that has it, reported by all.
    auto bad = [](const tensor_list& v) {
        Tensor w = record("off_at_29", untaped([&] { return v[0].detach(); }), {v[0]}, {},
                          [](const BackwardArgs& g) -> tensor_list {
                              Tensor off = ones(g.grad.shape(), float64);
                              {
                                  NoGradGuard no;
                                  off.data<double>()[29] = 1.01;
                              }
                              return {mul(g.grad, off)};
                          });
        return mul(w, v[0]);
    };
    Tensor z = randn_leaf({40}, 42);
    const GradcheckResult bad_one = gradcheck(bad, {z}, o);
    REQUIRE(bad_one.input("x0").failures == 1);
    for (const GradcheckResult& r : split_check(3, bad, {z}, o)) {
        CHECK(tg_test::report_difference(bad_one, r) == "");
        REQUIRE_FALSE(r.inputs[0].worst.empty());
        CHECK(r.inputs[0].worst[0].index == shape_type{29});
    }
    // Fast mode: the probes are dealt to the parts; a large input that passes
    // them, and one whose planted error makes them escalate to the full
    // check, give the unsplit report in every part.
    GradcheckOptions fast;
    fast.mode = GradcheckMode::fast;
    Tensor big = randn_leaf({300}, 43), other = randn_leaf({300}, 44);
    auto smooth = [](const tensor_list& v) { return mul(tanh(v[0]), v[1]); };
    const GradcheckResult fast_one = gradcheck(smooth, {big, other}, fast);
    REQUIRE(fast_one.inputs[0].checked_by == CheckedBy::fast);
    REQUIRE(fast_one.inputs[0].probes >= 4);
    for (const GradcheckResult& r : split_check(3, smooth, {big, other}, fast)) {
        CHECK(tg_test::report_difference(fast_one, r) == "");
        CHECK(r.inputs[0].probe_ratio == fast_one.inputs[0].probe_ratio);
    }
    Tensor z300 = randn_leaf({300}, 45);
    const GradcheckResult escalated = gradcheck(bad, {z300}, fast);
    REQUIRE(escalated.inputs[0].checked_by == CheckedBy::fast_then_full);
    for (const GradcheckResult& r : split_check(2, bad, {z300}, fast)) {
        CHECK(tg_test::report_difference(escalated, r) == "");
        CHECK(r.inputs[0].note == escalated.inputs[0].note);
    }
    // A partition that does not exist, or without its sum, is the caller's error.
    GradcheckOptions wrong = o;
    wrong.partition.parts = 2;
    wrong.partition.part = 2;
    CHECK_THROWS_WITH_AS(gradcheck(fn, {x, y}, wrong), doctest::Contains("gradcheck: partition part 2 of 2 does not exist"), Error);
    wrong.partition.part = 1;
    CHECK_THROWS_WITH_AS(gradcheck(fn, {x, y}, wrong), doctest::Contains("gradcheck: a partition over 2 parts needs its sum"), Error);
    // Refused before any work, in fast mode (probes are dealt first) and by the model check alike.
    wrong.mode = GradcheckMode::fast;
    CHECK_THROWS_WITH_AS(gradcheck(fn, {x, y}, wrong), doctest::Contains("needs its sum"), Error);
    wrong.partition.parts = 0;
    wrong.partition.part = 0;
    CHECK_THROWS_WITH_AS(gradcheck(fn, {x, y}, wrong), doctest::Contains("gradcheck: partition part 0 of 0 does not exist"), Error);
    Tensor w = randn_leaf({3}, 46);
    CHECK_THROWS_WITH_AS(gradcheck_parameters([&] { return sum(mul(w, w)); }, {{"w", w}}, wrong),
                         doctest::Contains("does not exist"), Error);
}
