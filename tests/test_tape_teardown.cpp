// Very long tapes: dropping them, sweeping them and differentiating them again
// must not recurse once per entry (a million-entry chain would overflow the
// stack), and must leave nothing behind.
#include <doctest/doctest.h>

#include "helpers.hpp"
#include <tapegrad/tapegrad.hpp>

#include <cmath>

namespace {

constexpr int chain_length = 1'000'000;
// Enough to overflow an 8 MiB stack when torn down recursively, for the slower cases.
constexpr int short_chain_length = 200'000;

// y = x · c · c · ... (n muls). mul saves both operands, so every entry is
// held twice by the next one: through its input edge and through the saved
// input's own grad_fn.
tg::Tensor mul_chain(const tg::Tensor& x, const tg::Tensor& factor, int n)
{
    tg::Tensor y = x;
    for (int i = 0; i < n; ++i) y = tg::mul(y, factor);
    return y;
}
tg::Tensor mul_chain(const tg::Tensor& x, double c, int n = chain_length)
{
    return mul_chain(x, tg::scalar(c, x.dtype()), n);
}

}  // namespace

TEST_CASE("tape teardown: a chain of a million entries dropped without backward")
{
    const int64_t entries = tg::live_tape_entries();
    tg::Tensor x = tg::scalar(1.0, tg::float64).requires_grad_();
    {
        tg::Tensor y = mul_chain(x, 1.0);
        CHECK(tg::live_tape_entries() - entries == chain_length);
        CHECK(y.item() == 1.0);
    }  // the whole chain goes here
    CHECK(tg::live_tape_entries() == entries);
    CHECK_FALSE(x.grad().defined());
}

TEST_CASE("tape teardown: a long chain of adds dropped without backward")
{
    // add saves nothing: the entries hold each other only through their edges.
    const int64_t entries = tg::live_tape_entries();
    tg::Tensor x = tg::scalar(0.0, tg::float64).requires_grad_();
    tg::Tensor one = tg::scalar(1.0, tg::float64);
    {
        tg::Tensor y = x;
        for (int i = 0; i < short_chain_length; ++i) y = y + one;
        CHECK(tg::live_tape_entries() - entries == short_chain_length);
        CHECK(y.item() == double(short_chain_length));
    }
    CHECK(tg::live_tape_entries() == entries);
}

TEST_CASE("tape teardown: backward through a chain of a million entries")
{
    // d(x·c^n)/dx = c^n; with c = 1 + 1/n that is (1 + 1/n)^n, close to e.
    const double c = 1.0 + 1.0 / chain_length;
    const double expected = std::pow(c, chain_length);
    const int64_t entries = tg::live_tape_entries();
    tg::Tensor x = tg::scalar(2.0, tg::float64).requires_grad_();
    {
        tg::Tensor y = mul_chain(x, c);
        CHECK(y.item() == doctest::Approx(2.0 * expected).epsilon(1e-9));
        y.backward();
        // Released by the sweep, but still alive until y goes.
        CHECK(tg::live_tape_entries() - entries == chain_length);
    }
    CHECK(tg::live_tape_entries() == entries);
    REQUIRE(x.grad().defined());
    CHECK(x.grad().item() == doctest::Approx(expected).epsilon(1e-9));
}

TEST_CASE("tape teardown: a long retained graph, backward twice, then dropped")
{
    const int n = short_chain_length;
    const double c = 1.0 - 1.0 / n;
    const double expected = std::pow(c, n);  // close to 1/e
    const int64_t entries = tg::live_tape_entries();
    tg::Tensor x = tg::scalar(1.0, tg::float64).requires_grad_();
    {
        tg::Tensor y = mul_chain(x, c, n);
        y.backward(tg::Tensor(), /*retain_graph=*/true);
        y.backward();
    }
    CHECK(tg::live_tape_entries() == entries);
    CHECK(x.grad().item() == doctest::Approx(2 * expected).epsilon(1e-9));
}

TEST_CASE("tape teardown: grad with create_graph through a long chain, then its graph dropped")
{
    // y = x^2 · c^n with c a leaf too, so the backward's own tape is a chain
    // of n muls by c: dy/dx = 2x·c^n (recorded), d2y/dx2 = 2·c^n.
    const int n = short_chain_length;
    const double cv = 1.0 + 1.0 / n;
    const double cn = std::pow(cv, n);
    const int64_t entries = tg::live_tape_entries();
    tg::Tensor x = tg::scalar(3.0, tg::float64).requires_grad_();
    tg::Tensor c = tg::scalar(cv, tg::float64).requires_grad_();
    {
        tg::Tensor y = mul_chain(tg::mul(x, x), c, n);
        tg::GradOptions options;
        options.create_graph = true;
        tg::Tensor dx = tg::grad({y}, {x}, {}, options)[0];
        CHECK(dx.item() == doctest::Approx(2 * 3.0 * cn).epsilon(1e-9));
        REQUIRE(dx.requires_grad());
        y = tg::Tensor();  // the forward chain goes; dx's tape stays
        CHECK(tg::live_tape_entries() - entries > n);
        tg::Tensor d2x = tg::grad({dx}, {x})[0];
        CHECK(d2x.item() == doctest::Approx(2 * cn).epsilon(1e-9));
    }
    CHECK(tg::live_tape_entries() == entries);
}
