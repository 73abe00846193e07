// The tape: accumulation, tg::grad, retained graphs, the version counter,
// grad mode, threads, memory held by the tape, and second derivatives.
#include <doctest/doctest.h>

#include "helpers.hpp"
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>
#include <latch>
#include <string>
#include <thread>

namespace {


void check_close(const tg::Tensor& a, const Values& expected, double tol)
{
    Values got = a.to_vector();
    REQUIRE(got.size() == expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
        INFO("element ", i, ": ", got[i], " vs ", expected[i]);
        CHECK(std::abs(got[i] - expected[i]) <= tol * std::max(1.0, std::abs(expected[i])));
    }
}

double max_abs(const Values& v)
{
    double m = 0;
    for (double x : v) m = std::max(m, std::abs(x));
    return m;
}

}  // namespace

// --- accumulation and tg::grad -------------------------------------------------------------

TEST_CASE("autograd: gradients accumulate across backward calls until zero_grad")
{
    tg::Tensor x = tg::from_values({1, -2, 3}, {3}, tg::float64).requires_grad_();
    CHECK_FALSE(x.grad().defined());
    tg::sum(x * x).backward();
    CHECK(x.grad().to_vector() == Values{2, -4, 6});
    tg::sum(x * x).backward();
    CHECK(x.grad().to_vector() == Values{4, -8, 12});
    tg::sum(x * 3.0).backward();
    CHECK(x.grad().to_vector() == Values{7, -5, 15});
    x.zero_grad();
    CHECK_FALSE(x.grad().defined());
    tg::sum(x * x).backward();
    CHECK(x.grad().to_vector() == Values{2, -4, 6});
}

TEST_CASE("autograd: leaves that got the same upstream gradient do not share it")
{
    // add passes its gradient through unchanged, so a and b receive the very
    // same tensor; accumulating into one must not change the other.
    tg::Tensor a = tg::ones({3}, tg::float64).requires_grad_();
    tg::Tensor b = tg::ones({3}, tg::float64).requires_grad_();
    tg::Tensor up = tg::full({3}, 2.0, tg::float64);
    (a + b).backward(up);
    (a + b).backward(up);
    CHECK(a.grad().to_vector() == Values(3, 4.0));
    CHECK(b.grad().to_vector() == Values(3, 4.0));
    CHECK(up.to_vector() == Values(3, 2.0));  // the caller's tensor is untouched
    CHECK(a.grad().raw_data() != up.raw_data());

    // A leaf that is itself the root.
    tg::Tensor c = tg::ones({2}, tg::float64).requires_grad_();
    tg::Tensor g = tg::full({2}, 5.0, tg::float64);
    c.backward(g);
    {
        tg::NoGradGuard no_grad;
        g.fill_(0);
    }
    CHECK(c.grad().to_vector() == Values(2, 5.0));
}

TEST_CASE("autograd: a tensor used several times gets the sum of its gradients")
{
    tg::Tensor x = tg::from_values({0.5, -1, 2}, {3}, tg::float64).requires_grad_();
    tg::Tensor y = tg::sum(x * x * x + x * 2.0 + tg::sin(x));
    y.backward();
    Values expected;
    for (double v : {0.5, -1.0, 2.0}) expected.push_back(3 * v * v + 2 + std::cos(v));
    check_close(x.grad(), expected, 1e-14);

    // Broadcast use: b of shape [3] added to every row of a [4, 3].
    tg::Tensor b = tg::zeros({3}, tg::float64).requires_grad_();
    tg::sum(tg::ones({4, 3}, tg::float64) * 2.0 + b).backward();
    CHECK(b.grad().to_vector() == Values(3, 4.0));
}

TEST_CASE("autograd: tg::grad returns gradients without touching grad()")
{
    tg::Tensor x = tg::from_values({1, 2}, {2}, tg::float64).requires_grad_();
    tg::Tensor w = tg::from_values({3, 4}, {2}, tg::float64).requires_grad_();
    tg::Tensor y = tg::sum(x * w);
    tg::tensor_list g = tg::grad({y}, {x, w});
    REQUIRE(g.size() == 2);
    CHECK(g[0].to_vector() == Values{3, 4});
    CHECK(g[1].to_vector() == Values{1, 2});
    CHECK_FALSE(x.grad().defined());
    CHECK_FALSE(w.grad().defined());
    CHECK_FALSE(g[0].requires_grad());  // not recorded without create_graph

    // Several outputs at once, with weights.
    tg::Tensor y1 = tg::sum(x * x), y2 = tg::sum(x * w);
    tg::tensor_list g2 = tg::grad({y1, y2}, {x}, {tg::scalar(1, tg::float64), tg::scalar(10, tg::float64)});
    CHECK(g2[0].to_vector() == Values{2 + 30, 4 + 40});
}

TEST_CASE("autograd: tg::grad with respect to a non-leaf intermediate")
{
    tg::Tensor x = tg::from_values({1, -2, 3}, {3}, tg::float64).requires_grad_();
    tg::Tensor h = x * 2.0;
    tg::Tensor y = tg::sum(h * h * h);
    tg::tensor_list g = tg::grad({y}, {h, x});
    // dy/dh = 3h², dy/dx = 3h² · 2.
    CHECK(g[0].to_vector() == Values{12, 48, 108});
    CHECK(g[1].to_vector() == Values{24, 96, 216});
    CHECK_FALSE(x.grad().defined());

    // An intermediate used twice collects both contributions.
    tg::Tensor a = tg::exp(x);
    tg::Tensor z = tg::sum(a * x + a);
    tg::tensor_list ga = tg::grad({z}, {a});
    CHECK(ga[0].to_vector() == Values{2, -1, 4});
}

TEST_CASE("autograd: an input the output does not depend on gets zeros")
{
    tg::Tensor x = tg::ones({2, 2}, tg::float64).requires_grad_();
    tg::Tensor unused = tg::ones({5}, tg::float32).requires_grad_();
    tg::Tensor y = tg::sum(x * 3.0);
    tg::tensor_list g = tg::grad({y}, {x, unused});
    CHECK(g[0].to_vector() == Values(4, 3.0));
    REQUIRE(g[1].defined());
    CHECK(g[1].shape() == tg::shape_type{5});
    CHECK(g[1].dtype() == tg::float32);
    CHECK(g[1].to_vector() == Values(5, 0.0));

    // An intermediate on an unrelated branch, too.
    tg::Tensor side = x * 5.0;
    tg::Tensor y2 = tg::sum(x * x);
    CHECK(tg::grad({y2}, {side})[0].to_vector() == Values(4, 0.0));
    CHECK(error_of([&] { tg::grad({y2}, {tg::ones({2})}); }).find("does not require grad") != std::string::npos);
}

TEST_CASE("autograd: explicit upstream gradient for a non-scalar output")
{
    tg::Tensor x = tg::from_values({1, 2, 3, 4}, {2, 2}, tg::float64).requires_grad_();
    tg::Tensor y = x * x;
    y.backward(tg::from_values({1, 10, 100, 1000}, {2, 2}, tg::float64));
    CHECK(x.grad().to_vector() == Values{2, 40, 600, 8000});

    tg::Tensor z = tg::matmul(x, x);
    tg::tensor_list g = tg::grad({z}, {x}, {tg::ones({2, 2}, tg::float64)});
    // d/dX of sum(X·X) = 1·Xᵀ + Xᵀ·1 (1 the all-ones matrix): X's row sums
    // [3, 7] along each row plus its column sums [4, 6] down each column.
    CHECK(g[0].to_vector() == Values{3 + 4, 7 + 4, 3 + 6, 7 + 6});
}

TEST_CASE("autograd: retain_graph allows a second backward, without it the second is an error")
{
    tg::Tensor x = tg::from_values({1, 2}, {2}, tg::float64).requires_grad_();
    tg::Tensor y = tg::sum(tg::tanh(x) * x);
    y.backward(tg::Tensor(), /*retain_graph=*/true);
    Values once = x.grad().to_vector();
    y.backward();  // the graph was kept; this one frees it
    Values twice = x.grad().to_vector();
    for (size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == doctest::Approx(2 * once[i]).epsilon(1e-15));

    std::string msg = error_of([&] { y.backward(); });
    CHECK(msg.find("retain_graph") != std::string::npos);
    CHECK(msg.find("'sum'") != std::string::npos);
    CHECK(msg.find("shape []") != std::string::npos);
    CHECK(x.grad().to_vector() == twice);  // the failed backward added nothing

    // tg::grad with retain_graph, then a backward.
    tg::Tensor z = tg::sum(x * x * x);
    tg::GradOptions keep;
    keep.retain_graph = true;
    CHECK(tg::grad({z}, {x}, {}, keep)[0].to_vector() == Values{3, 12});
    CHECK(tg::grad({z}, {x})[0].to_vector() == Values{3, 12});
    CHECK_THROWS_WITH_AS(tg::grad({z}, {x}), doctest::Contains("retain_graph"), tg::Error);
}

// --- the version counter -------------------------------------------------------------------

TEST_CASE("autograd: modifying a saved tensor between forward and backward is an error")
{
    tg::Tensor w = tg::from_values({1, 2, 3}, {3}, tg::float64).requires_grad_();
    tg::Tensor x = tg::from_values({4, 5, 6}, {3}, tg::float64).requires_grad_();
    tg::Tensor loss = tg::sum(w * x);  // mul saves both operands
    {
        tg::NoGradGuard no_grad;
        w.add_(tg::ones({3}, tg::float64), -0.1);  // an optimizer step too early
    }
    std::string msg = error_of([&] { loss.backward(); });
    CHECK(msg.find("modified in place") != std::string::npos);
    CHECK(msg.find("'mul'") != std::string::npos);
    CHECK(msg.find("[3]") != std::string::npos);

    // A saved output (tanh keeps its result) changed through an alias.
    tg::Tensor a = tg::from_values({0.1, 0.2}, {2}, tg::float64).requires_grad_();
    tg::Tensor t = tg::tanh(a);
    tg::Tensor l2 = tg::sum(t);  // sum saves nothing: only tanh holds t
    tg::reshape(t, {2, 1}).mul_(3);
    std::string msg2 = error_of([&] { l2.backward(); });
    CHECK(msg2.find("modified in place") != std::string::npos);
    CHECK(msg2.find("'tanh'") != std::string::npos);
    CHECK(msg2.find("its output") != std::string::npos);

    // Changing a tensor nobody saved is fine: add saves nothing.
    tg::Tensor p = tg::ones({2}, tg::float64).requires_grad_();
    tg::Tensor l3 = tg::sum(p + 1.0);
    {
        tg::NoGradGuard no_grad;
        p.mul_(5);
    }
    l3.backward();
    CHECK(p.grad().to_vector() == Values(2, 1.0));
}

// --- grad mode -------------------------------------------------------------------------------

TEST_CASE("autograd: NoGradGuard stops recording and is restored after its scope")
{
    tg::Tensor x = tg::ones({3}, tg::float64).requires_grad_();
    int64_t entries = tg::live_tape_entries();
    REQUIRE(tg::grad_enabled());
    {
        tg::NoGradGuard no_grad;
        CHECK_FALSE(tg::grad_enabled());
        tg::Tensor y = tg::exp(x * x);
        CHECK_FALSE(y.requires_grad());
        CHECK(y.grad_fn() == nullptr);
        CHECK(tg::live_tape_entries() == entries);
        {
            tg::EnableGradGuard on;
            CHECK(tg::grad_enabled());
            tg::Tensor z = x * 2.0;
            CHECK(z.requires_grad());
            CHECK(tg::live_tape_entries() == entries + 1);
            {
                tg::NoGradGuard nested;
                CHECK_FALSE(tg::grad_enabled());
            }
            CHECK(tg::grad_enabled());
        }
        CHECK_FALSE(tg::grad_enabled());
    }
    CHECK(tg::grad_enabled());
    CHECK(tg::live_tape_entries() == entries);
    tg::Tensor y = x * x;
    CHECK(y.requires_grad());
    CHECK(std::string(y.grad_fn()->op) == "mul");

    // Also restored when the scope is left by an exception.
    try {
        tg::NoGradGuard no_grad;
        tg::add(tg::ones({2}), tg::ones({3}));
    } catch (const tg::Error&) {
    }
    CHECK(tg::grad_enabled());
}

TEST_CASE("autograd: grad mode is per thread")
{
    std::latch both_inside(2), main_checked(1);
    bool other_saw_enabled = false, other_recorded = false;
    std::thread other([&] {
        both_inside.arrive_and_wait();  // the main thread is inside its NoGradGuard now
        other_saw_enabled = tg::grad_enabled();
        tg::Tensor x = tg::ones({2}).requires_grad_();
        other_recorded = (x * x).requires_grad();
        main_checked.wait();
    });
    {
        tg::NoGradGuard no_grad;
        both_inside.arrive_and_wait();
        CHECK_FALSE(tg::grad_enabled());
        main_checked.count_down();
        other.join();
    }
    CHECK(other_saw_enabled);
    CHECK(other_recorded);
    CHECK(tg::grad_enabled());

    // The other way round: a thread that turns grad mode off leaves this one on.
    std::thread off([] {
        tg::set_grad_enabled(false);
        CHECK_FALSE(tg::grad_enabled());
    });
    off.join();
    CHECK(tg::grad_enabled());
}

// --- threads ---------------------------------------------------------------------------------

namespace {
// Gradients of a small two-layer network from inputs drawn with `seed`.
Values network_gradients(uint64_t seed)
{
    tg::Generator gen(seed);
    tg::Tensor x = tg::randn({64, 96}, tg::float64, &gen);
    tg::Tensor w1 = tg::randn({96, 80}, tg::float64, &gen).requires_grad_();
    tg::Tensor b1 = tg::randn({80}, tg::float64, &gen).requires_grad_();
    tg::Tensor w2 = tg::randn({80, 3}, tg::float64, &gen).requires_grad_();
    tg::Tensor h = tg::tanh(tg::matmul(x, w1) * 0.1 + b1);
    tg::Tensor loss = tg::mean(tg::square(tg::matmul(h, w2))) + tg::sum(tg::sigmoid(h));
    loss.backward();
    Values out = w1.grad().to_vector();
    for (const tg::Tensor& p : {b1, w2}) {
        Values v = p.grad().to_vector();
        out.insert(out.end(), v.begin(), v.end());
    }
    out.push_back(loss.item());
    return out;
}
}  // namespace

TEST_CASE("autograd: independent graphs on 4 threads give the single-thread results")
{
    const int threads = 4, rounds = 5;
    std::vector<Values> expected;
    for (int t = 0; t < threads; ++t) expected.push_back(network_gradients(100 + uint64_t(t)));
    int64_t entries = tg::live_tape_entries();

    std::vector<std::vector<Values>> got(threads);
    std::latch start(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            start.arrive_and_wait();
            for (int r = 0; r < rounds; ++r) got[size_t(t)].push_back(network_gradients(100 + uint64_t(t)));
        });
    for (auto& th : pool) th.join();

    for (int t = 0; t < threads; ++t)
        for (int r = 0; r < rounds; ++r) {
            const Values &a = got[size_t(t)][size_t(r)], &b = expected[size_t(t)];
            REQUIRE(a.size() == b.size());
            double worst = 0;
            for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
            INFO("thread ", t, " round ", r);
            // GEMMs split across the pool only when it is free, which may sum in
            // another order: equal up to rounding.
            CHECK(worst <= 1e-12 * std::max(1.0, max_abs(b)));
        }
    CHECK(tg::live_tape_entries() == entries);
}

// --- memory held by the tape --------------------------------------------------------------

TEST_CASE("autograd: a training loop holds constant memory")
{
    tg::Generator gen(5);
    tg::Tensor x = tg::randn({32, 8}, tg::float32, &gen);
    tg::Tensor target = tg::randn({32, 1}, tg::float32, &gen);
    tg::Tensor w1 = (tg::randn({8, 16}, tg::float32, &gen) * 0.3).detach().requires_grad_();
    tg::Tensor b1 = tg::zeros({16}).requires_grad_();
    tg::Tensor w2 = (tg::randn({16, 1}, tg::float32, &gen) * 0.3).detach().requires_grad_();
    tg::Tensor b2 = tg::zeros({1}).requires_grad_();
    const tg::tensor_list params = {w1, b1, w2, b2};

    int64_t bytes_at_10 = 0, entries_at_10 = 0;
    double first_loss = 0, last_loss = 0;
    for (int it = 1; it <= 1000; ++it) {
        {
            tg::Tensor h = tg::tanh(tg::matmul(x, w1) + b1);
            tg::Tensor out = tg::matmul(h, w2) + b2;
            tg::Tensor diff = out - target;
            tg::Tensor loss = tg::sum(diff * diff) * (1.0 / 32);
            loss.backward();
            if (it == 1) first_loss = loss.item();
            last_loss = loss.item();
            tg::NoGradGuard no_grad;
            for (tg::Tensor p : params) {
                p.add_(p.grad(), -0.05);
                p.zero_grad();
            }
        }
        if (it == 10) {
            bytes_at_10 = tg::memory_stats().live_bytes;
            entries_at_10 = tg::live_tape_entries();
        }
    }
    CHECK(tg::memory_stats().live_bytes == bytes_at_10);
    CHECK(tg::live_tape_entries() == entries_at_10);
    CHECK(last_loss < 0.5 * first_loss);  // it did train
}

TEST_CASE("autograd: forwards that never call backward leave nothing on the tape")
{
    tg::Generator gen(6);
    tg::Tensor x = tg::randn({16, 8}, tg::float32, &gen);
    tg::Tensor w = tg::randn({8, 4}, tg::float32, &gen).requires_grad_();
    tg::Tensor b = tg::zeros({4}).requires_grad_();
    const int64_t entries = tg::live_tape_entries();
    const int64_t bytes = tg::memory_stats().live_bytes;
    double total = 0;
    for (int it = 0; it < 1000; ++it) {
        {
            tg::Tensor y = tg::sum(tg::tanh(tg::matmul(x, w) + b));
            if (it == 0) CHECK(tg::live_tape_entries() > entries);  // it was recorded
            total += y.item();
        }
        if (tg::live_tape_entries() != entries) {
            FAIL("iteration ", it, ": ", tg::live_tape_entries() - entries, " tape entries left behind");
            break;
        }
    }
    CHECK(tg::live_tape_entries() == entries);
    CHECK(tg::memory_stats().live_bytes == bytes);
    CHECK(std::isfinite(total));
}

// --- second order ---------------------------------------------------------------------------

TEST_CASE("autograd: Hessian-vector product against the closed form")
{
    tg::Generator gen(8);
    tg::Tensor x = tg::randn({7}, tg::float64, &gen).requires_grad_();
    tg::Tensor v = tg::randn({7}, tg::float64, &gen);
    auto f = [&] { return tg::sum(tg::pow(x, 3.0)) + tg::sum(tg::sin(x) * x); };

    // H = diag(6x + 2cos x - x sin x).
    Values expected, xs = x.to_vector(), vs = v.to_vector();
    for (size_t i = 0; i < xs.size(); ++i)
        expected.push_back((6 * xs[i] + 2 * std::cos(xs[i]) - xs[i] * std::sin(xs[i])) * vs[i]);

    SUBCASE("through tg::grad")
    {
        tg::GradOptions opts;
        opts.create_graph = true;
        tg::Tensor g = tg::grad({f()}, {x}, {}, opts)[0];
        CHECK(g.requires_grad());
        Values gx = g.to_vector();
        for (size_t i = 0; i < xs.size(); ++i)
            CHECK(gx[i] == doctest::Approx(3 * xs[i] * xs[i] + std::cos(xs[i]) * xs[i] + std::sin(xs[i])).epsilon(1e-13));
        tg::Tensor hv = tg::grad({tg::sum(g * v)}, {x})[0];
        check_close(hv, expected, 1e-12);
    }
    SUBCASE("through backward(create_graph) and grad()")
    {
        f().backward(tg::Tensor(), false, /*create_graph=*/true);
        tg::Tensor g = x.grad();
        REQUIRE(g.grad_fn() != nullptr);
        x.zero_grad();
        tg::sum(g * v).backward();
        check_close(x.grad(), expected, 1e-12);
    }
}

namespace {
struct Mlp {
    tg::Tensor x, y;

    tg::Tensor loss(const tg::tensor_list& p) const
    {
        tg::Tensor h = tg::tanh(tg::matmul(x, p[0]) + p[1]);
        tg::Tensor out = tg::tanh(tg::matmul(h, p[2]));
        return tg::mean(tg::square(out - y));
    }

    // The gradient at p + eps·v, flattened.
    Values gradient_at(const tg::tensor_list& p, const tg::tensor_list& v, double eps) const
    {
        tg::tensor_list q;
        {
            tg::NoGradGuard no_grad;
            for (size_t i = 0; i < p.size(); ++i) q.push_back((p[i].detach() + v[i] * eps).requires_grad_());
        }
        Values out;
        for (const tg::Tensor& g : tg::grad({loss(q)}, q)) {
            Values part = g.to_vector();
            out.insert(out.end(), part.begin(), part.end());
        }
        return out;
    }
};
}  // namespace

TEST_CASE("autograd: Hessian-vector product of a tanh MLP against finite differences")
{
    tg::Generator gen(9);
    Mlp m{tg::randn({12, 5}, tg::float64, &gen), tg::rand({12, 2}, tg::float64, &gen)};
    tg::tensor_list p = {tg::randn({5, 6}, tg::float64, &gen).requires_grad_(),
                         tg::randn({6}, tg::float64, &gen).requires_grad_(),
                         tg::randn({6, 2}, tg::float64, &gen).requires_grad_()};
    tg::tensor_list v = {tg::randn({5, 6}, tg::float64, &gen), tg::randn({6}, tg::float64, &gen),
                         tg::randn({6, 2}, tg::float64, &gen)};

    tg::GradOptions opts;
    opts.create_graph = true;
    tg::tensor_list g = tg::grad({m.loss(p)}, p, {}, opts);
    tg::Tensor gv = tg::sum(g[0] * v[0]) + tg::sum(g[1] * v[1]) + tg::sum(g[2] * v[2]);
    Values hv;
    for (const tg::Tensor& part : tg::grad({gv}, p)) {
        Values vals = part.to_vector();
        hv.insert(hv.end(), vals.begin(), vals.end());
    }

    const double eps = 1e-4;
    Values plus = m.gradient_at(p, v, eps), minus = m.gradient_at(p, v, -eps);
    REQUIRE(plus.size() == hv.size());
    double scale = max_abs(hv);
    REQUIRE(scale > 1e-3);  // not vacuous
    double worst = 0;
    for (size_t i = 0; i < hv.size(); ++i) {
        double fd = (plus[i] - minus[i]) / (2 * eps);
        worst = std::max(worst, std::abs(hv[i] - fd) / scale);
    }
    CHECK(worst < 1e-6);
}

TEST_CASE("matmul: second order with one operand detached equals that part of the full second order")
{
    // bmm's backward skips the gradient of an operand that needs none, on
    // both sides and with transposed operands: the other's must not change.
    tg::Generator gen(73);
    auto randn = [&](const tg::shape_type& s) { return tg::randn(s, tg::float64, &gen); };
    const tg::Tensor a0 = randn({2, 5, 3}), b0 = randn({2, 4, 3}), c = randn({2, 5, 4});
    const tg::Tensor va = randn({2, 5, 3}), vb = randn({2, 4, 3});
    auto loss = [&](const tg::Tensor& a, const tg::Tensor& b) {
        tg::Tensor y = tg::matmul(a, tg::transpose(b, 1, 2));
        return tg::sum(tg::mul(tg::mul(y, y), c));
    };
    // d/dt <dL/dt, v> for t the operand `which`, the other one needing a gradient or not.
    auto second = [&](int which, bool other_needs_grad) {
        tg::Tensor a = a0.clone(), b = b0.clone();
        tg::Tensor& t = which == 0 ? a : b;
        tg::Tensor& o = which == 0 ? b : a;
        t.requires_grad_();
        if (other_needs_grad) o.requires_grad_();
        tg::tensor_list wrt = other_needs_grad ? tg::tensor_list{t, o} : tg::tensor_list{t};
        tg::Tensor gt = tg::grad({loss(a, b)}, wrt, {}, graph_options(true))[0];
        return tg::grad({tg::sum(tg::mul(gt, which == 0 ? va : vb))}, {t})[0].to_vector();
    };
    for (int which : {0, 1}) {
        INFO("operand " << which);
        const std::vector<double> full = second(which, true), alone = second(which, false);
        check_close(alone, full, 1e-12);
        double size = 0;
        for (double v : full) size += std::abs(v);
        CHECK(size > 0.1);  // not vacuous
    }
}

TEST_CASE("autograd: an op with more inputs than the saved-input mask has bits (concat of 40)")
{
    // Inputs past the 32nd are never saved as inputs; the entry still records
    // all of them and the backward reaches each.
    tg::tensor_list parts;
    for (int i = 0; i < 40; ++i) parts.push_back(tg::full({1, 2}, double(i), tg::float64).requires_grad_());
    tg::Tensor y = tg::concat(parts, 0);
    REQUIRE(y.shape() == tg::shape_type{40, 2});
    tg::Tensor w = tg::arange(80, tg::float64);
    tg::tensor_list g = tg::grad({tg::sum(tg::mul(y, tg::reshape(w, {40, 2})))}, parts);
    for (int i = 0; i < 40; ++i) {
        CAPTURE(i);
        CHECK(g[size_t(i)].to_vector() == std::vector<double>{2.0 * i, 2.0 * i + 1});
    }
    tg::GradcheckResult r = tg::gradcheck([](const tg::tensor_list& v) { return tg::concat(v, 1); },
                                          tg::tensor_list(parts.begin(), parts.begin() + 33));
    INFO(r.to_string());
    CHECK(r.passed());
}

// Ops that differentiate each input only when it asks: the gradient of the one
// asked for must be the one it gets when both are differentiated, first and
// second order (the usual calls: a loss's target, scatter_add's base, and the
// constant incoming gradient of a second order).
TEST_CASE("autograd: one input differentiated and the other constant gets the gradient it gets with both")
{
    using namespace tg;
    Generator gen(11);
    const Tensor p0 = add(mul(rand({2, 3}, float64, &gen), scalar(0.8, float64)), scalar(0.1, float64));  // in (0.1, 0.9)
    const Tensor t0 = rand({2, 3}, float64, &gen), z0 = randn({2, 3}, float64, &gen);
    const Tensor logq0 = log_softmax(z0, 1), q0 = softmax(randn({2, 3}, float64, &gen), 1);
    const Tensor index = from_values({0, 1, 1, 0, 0, 1}, {2, 3}, int64);
    using Loss = std::function<Tensor(const Tensor&, const Tensor&)>;
    const std::vector<std::tuple<const char*, Loss, Tensor, Tensor>> cases = {
        {"kl_div", [](const Tensor& a, const Tensor& b) { return kl_div(a, b, Reduction::batchmean); }, logq0, q0},
        {"kl_div, log_target", [](const Tensor& a, const Tensor& b) { return kl_div(a, b, Reduction::sum, true); },
         logq0, log(q0)},
        {"binary_cross_entropy", [](const Tensor& a, const Tensor& b) { return binary_cross_entropy(a, b); }, p0, t0},
        {"binary_cross_entropy_with_logits",
         [](const Tensor& a, const Tensor& b) { return binary_cross_entropy_with_logits(a, b, Reduction::sum); }, z0, t0},
        {"scatter_add", [&](const Tensor& a, const Tensor& b) { return sum(mul(scatter_add(a, 0, index, b), a)); }, z0,
         t0},
    };
    int checked = 0;
    for (const auto& [name, f, a0, b0] : cases) {
        CAPTURE(std::string(name));
        Tensor a = a0.detach().requires_grad_(), b = b0.detach().requires_grad_();
        const tensor_list both = grad({f(a, b)}, {a, b});
        const Tensor a_only = grad({f(a, b0.detach())}, {a})[0], b_only = grad({f(a0.detach(), b)}, {b})[0];
        CHECK(a_only.to_vector() == both[0].to_vector());
        CHECK(b_only.to_vector() == both[1].to_vector());
        // Second order: the Hessian-vector products of the input-gradient ops,
        // each with the other input constant.
        const Tensor v = randn(a0.shape(), float64, &gen);
        const Tensor ga = grad({f(a, b)}, {a}, {}, {.create_graph = true})[0];
        const tensor_list hv_both = grad({sum(mul(ga, v))}, {a, b});
        const Tensor ga_const_b = grad({f(a, b0.detach())}, {a}, {}, {.create_graph = true})[0];
        if (ga_const_b.requires_grad())
            CHECK(grad({sum(mul(ga_const_b, v))}, {a})[0].to_vector() == hv_both[0].to_vector());
        else  // linear in a (kl_div): its gradient is a constant, and so d²/da² = 0
            CHECK(hv_both[0].to_vector() == Values(size_t(a0.numel()), 0.0));
        ++checked;
    }
    CHECK(checked == int(cases.size()));

    // The gradient of BCE's input gradient w·(p - t)/(p·(1 - p)) with respect
    // to the upstream gradient w (as tg::jvp takes it): (p - t)/(p·(1 - p)).
    {
        Tensor p = p0.detach().requires_grad_(), w = rand({2, 3}, float64, &gen).requires_grad_();
        const Tensor gp = grad({binary_cross_entropy(p, t0, Reduction::none)}, {p}, {w}, {.create_graph = true})[0];
        const Values dw = grad({sum(gp)}, {w})[0].to_vector(), pv = p0.to_vector(), tv = t0.to_vector();
        for (size_t i = 0; i < dw.size(); ++i)
            CHECK(dw[i] == doctest::Approx((pv[i] - tv[i]) / (pv[i] * (1 - pv[i]))).epsilon(1e-14));
    }

    // The second order of sum(relu(x)): relu's backward meets a constant
    // incoming gradient (the ones of sum), and relu is piecewise linear.
    Tensor x = from_values({-1.5, 0.5, 2.0, -0.25}, {4}, float64).requires_grad_();
    const Tensor g = grad({sum(relu(x))}, {x}, {}, {.create_graph = true})[0];
    CHECK(g.to_vector() == Values{0, 1, 1, 0});
    const Tensor h = grad({sum(mul(g, from_values({1, 2, 3, 4}, {4}, float64)))}, {x})[0];
    CHECK(h.to_vector() == Values{0, 0, 0, 0});
}
