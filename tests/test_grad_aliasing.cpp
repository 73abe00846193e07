// Gradient accumulation never writes into a tensor somebody else can see: the
// caller's upstream gradient, an input, another leaf's gradient, a gradient
// the caller kept from an earlier (create_graph) backward, or a gradient given
// with set_grad. add, an identity rule and a leaf that is the root pass the
// very tensor they receive on, so a leaf's first gradient is often one of
// those; each case below fails if a later backward accumulated into it in
// place.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "tests/helpers.hpp"

using namespace tg;

namespace {

Tensor f64(const Values& v) { return from_values(v, {int64_t(v.size())}, float64); }

// y = x, recorded with a rule that returns the incoming gradient itself.
Tensor identity(const Tensor& x)
{
    return record("identity", x.detach(), {x}, {}, [](const BackwardArgs& a) -> tensor_list { return {a.grad}; });
}

Values values(const Tensor& t) { return t.to_vector(); }

}  // namespace

TEST_CASE("aliasing: the caller's upstream gradient is never accumulated into, through add and an identity rule")
{
    for (bool first_create_graph : {false, true}) {
        CAPTURE(first_create_graph);
        // add's backward and identity's return the upstream tensor itself: x's
        // first gradient is the caller's g, until it is copied.
        Tensor x = f64({1, -2, 3}).requires_grad_();
        const Tensor g = f64({10, 20, 30});
        Tensor c = f64({5, 5, 5});
        (x + c).backward(g, false, first_create_graph);
        identity(x).backward(g);
        identity(x).backward(g);
        CHECK(values(g) == Values{10, 20, 30});
        CHECK(values(x.grad()) == Values{30, 60, 90});
        CHECK(x.grad().raw_data() != g.raw_data());
    }
}

TEST_CASE("aliasing: a leaf's first gradient is its own copy: changing the caller's upstream tensor later leaves it alone")
{
    for (bool create_graph : {false, true}) {
        CAPTURE(create_graph);
        Tensor x = f64({1, 2}).requires_grad_();
        Tensor w = f64({3, 4}).requires_grad_();
        Tensor g = f64({7, 8});
        identity(x).backward(g, false, create_graph);
        (w + x.detach()).backward(g, false, create_graph);
        {
            NoGradGuard no_grad;
            g.fill_(0);
        }
        CHECK(values(x.grad()) == Values{7, 8});
        CHECK(values(w.grad()) == Values{7, 8});
    }
}

TEST_CASE("aliasing: a leaf used twice sums its gradients without writing into the upstream one")
{
    for (bool create_graph : {false, true}) {
        CAPTURE(create_graph);
        Tensor x = f64({1, 2}).requires_grad_();
        const Tensor g = f64({3, 4});
        // Both edges of the add reach x with the same tensor g.
        Tensor y = identity(x) + identity(x);
        y.backward(g, true, create_graph);
        CHECK(values(g) == Values{3, 4});
        CHECK(values(x.grad()) == Values{6, 8});
        y.backward(g);
        CHECK(values(g) == Values{3, 4});
        CHECK(values(x.grad()) == Values{12, 16});
    }
}

TEST_CASE("aliasing: an upstream gradient that is an input's own storage leaves the input unchanged")
{
    for (bool first_create_graph : {false, true}) {
        CAPTURE(first_create_graph);
        Tensor x = f64({1, -2, 3}).requires_grad_();
        Tensor y = identity(x);
        // The upstream gradient shares x's storage.
        y.backward(x.detach(), true, first_create_graph);
        y.backward(x.detach());
        CHECK(values(x) == Values{1, -2, 3});
        CHECK(values(x.grad()) == Values{2, -4, 6});

        // relu's fused backward masks an exclusive incoming gradient in place:
        // x's storage is not exclusive.
        Tensor z = f64({-1, 2, -3}).requires_grad_();
        relu(z).backward(z.detach(), false, first_create_graph);
        CHECK(values(z) == Values{-1, 2, -3});
        CHECK(values(z.grad()) == Values{0, 2, 0});
        z.zero_grad();  // a gradient with a graph holds its leaf: the cycle broken, as in PyTorch
    }
}

TEST_CASE("aliasing: two leaves given the same gradient tensor by a create_graph backward accumulate separately")
{
    Tensor a = f64({1, 2}).requires_grad_();
    Tensor b = f64({3, 4}).requires_grad_();
    const Tensor g = f64({1, 1});
    (a + b).backward(g, false, true);  // a and b both receive g itself
    (a + b * 3.0).backward(g);         // a += 1, b += 3
    CHECK(values(g) == Values{1, 1});
    CHECK(values(a.grad()) == Values{2, 2});
    CHECK(values(b.grad()) == Values{4, 4});
    // Clipping scales each gradient in place, once: not a shared one twice.
    (a + b).backward(g, false, true);
    const double norm = optim::clip_grad_norm_(tensor_list{a, b}, 1.0);
    CHECK(norm == doctest::Approx(std::sqrt(9.0 + 9.0 + 25.0 + 25.0)));
    CHECK(values(g) == Values{1, 1});
    check_close(values(a.grad()), Values(2, 3 / norm), 1e-6);
    check_close(values(b.grad()), Values(2, 5 / norm), 1e-6);
}

TEST_CASE("aliasing: a gradient kept from a create_graph backward is not changed by later accumulation")
{
    SUBCASE("a gradient with a graph: second order stays right")
    {
        Tensor x = f64({1, 2, -1}).requires_grad_();
        sum(x * x * x).backward(Tensor(), false, true);
        const Tensor first = x.grad();  // 3x², on the tape
        REQUIRE(first.grad_fn() != nullptr);
        sum(x * x * x).backward();
        CHECK(values(first) == Values{3, 12, 3});
        CHECK(values(x.grad()) == Values{6, 24, 6});
        // d/dx Σ 3x² = 6x, through the kept gradient's graph.
        CHECK(values(grad({sum(first)}, {x})[0]) == Values{6, 12, -6});
        x.zero_grad();  // breaks the cycle x -> its gradient's graph -> x
    }
    SUBCASE("a gradient without a graph (a constant derivative)")
    {
        Tensor x = f64({1, 2, -1}).requires_grad_();
        sum(x * 2.0).backward(Tensor(), false, true);
        const Tensor first = x.grad();  // 2 everywhere: nothing to record
        sum(x * 3.0).backward();
        CHECK(values(first) == Values{2, 2, 2});
        CHECK(values(x.grad()) == Values{5, 5, 5});
    }
    SUBCASE("the second backward builds a graph too")
    {
        Tensor x = f64({1, 2}).requires_grad_();
        sum(x * x).backward(Tensor(), false, true);
        const Tensor first = x.grad();
        sum(x * x * x).backward(Tensor(), false, true);
        CHECK(values(first) == Values{2, 4});
        CHECK(values(x.grad()) == Values{2 + 3, 4 + 12});
        CHECK(values(grad({sum(x.grad())}, {x})[0]) == Values{2 + 6, 2 + 12});
        x.zero_grad();
    }
}

TEST_CASE("aliasing: a gradient set with set_grad and still held by the caller is not accumulated into")
{
    Tensor x = f64({1, 2}).requires_grad_();
    const Tensor start = f64({100, 200});
    x.set_grad(start);
    sum(x * x).backward();
    CHECK(values(start) == Values{100, 200});
    CHECK(values(x.grad()) == Values{102, 204});
    // Nobody else holds the accumulated gradient now: the next backward may add in place.
    const void* before = x.grad().raw_data();
    sum(x * x).backward();
    CHECK(values(x.grad()) == Values{104, 208});
    CHECK(x.grad().raw_data() == before);
}

TEST_CASE("aliasing: a rule that returns its saved input as the gradient leaves the input unchanged")
{
    Tensor x = f64({1, 2, 3}).requires_grad_();
    // y = x²/2, whose gradient for the upstream 1 used here is x itself (the
    // saved input, not a copy).
    Tensor y = record("half_square", mul(x.detach(), x.detach()) * 0.5, {x}, {x},
                      [](const BackwardArgs& a) -> tensor_list { return {a.saved[0]}; });
    y.backward(ones({3}, float64), true);
    y.backward(ones({3}, float64));
    CHECK(values(x) == Values{1, 2, 3});
    CHECK(values(x.grad()) == Values{2, 4, 6});
}

TEST_CASE("aliasing: under create_graph a shared gradient with a graph is copied on the tape, second order intact")
{
    Tensor x = f64({1, -2}).requires_grad_();
    Tensor a = f64({0, 0}).requires_grad_();
    Tensor b = f64({0, 0}).requires_grad_();
    Tensor h = x * x;  // the upstream gradient, itself on the tape
    (a + b).backward(h, false, true);  // a and b both receive h itself
    REQUIRE(a.grad().grad_fn() != nullptr);
    CHECK(a.grad().raw_data() != h.raw_data());
    CHECK(a.grad().raw_data() != b.grad().raw_data());
    (a * 2.0).backward(ones({2}, float64));  // a += 2, out of place: a.grad has a graph
    CHECK(values(h) == Values{1, 4});
    CHECK(values(a.grad()) == Values{3, 6});
    CHECK(values(b.grad()) == Values{1, 4});
    // d/dx Σ b.grad = d/dx Σ x² = 2x, through the copy.
    CHECK(values(grad({sum(b.grad())}, {x})[0]) == Values{2, -4});
}

TEST_CASE("aliasing: relu's backward masks in place only a gradient nothing else holds")
{
    // relu's fused backward writes the mask into its incoming gradient when
    // that is a temporary of the sweep. Here the op after relu hands relu, as
    // its gradient, a fresh tensor whose memory the test still sees: a reshape
    // of the test's tensor (shared storage), or memory the test adopted. And
    // the caller's own upstream tensor, given to relu directly. Each is left
    // alone, and the gradient is right.
    const Values xs{1, -2, 3, -4}, up{10, 20, 30, 40}, want{10, 0, 30, 0};
    const Tensor held = from_values(up, {2, 2}, float64);
    std::vector<double> memory = up;
    auto hands_out = [](const Tensor& h, std::function<Tensor()> gradient) {
        return record("hands_out", h.detach(), {h}, {},
                      [gradient](const BackwardArgs&) -> tensor_list { return {gradient()}; });
    };
    const std::vector<std::pair<const char*, std::function<Tensor()>>> makers = {
        {"a reshape sharing the test's storage", [&] { return reshape(held, {4}); }},
        {"adopted memory", [&] {
             return detail::adopt(memory.data(), {4}, float64, std::shared_ptr<void>(memory.data(), [](void*) {}));
         }},
        {"a fresh tensor that requires grad", [&] { return f64(up).requires_grad_(); }},
    };
    for (const auto& [name, make] : makers) {
        const std::string what = name;
        CAPTURE(what);
        Tensor x = f64(xs).requires_grad_();
        CHECK(values(tg::grad({sum(hands_out(relu(x), make))}, {x})[0]) == want);
        CHECK(values(held) == up);
        CHECK(memory == up);
    }
    Tensor x = f64(xs).requires_grad_();
    const Tensor g = f64(up);
    CHECK(values(tg::grad({relu(x)}, {x}, {g})[0]) == want);
    CHECK(values(g) == up);
    // A temporary of the sweep (mul's input gradient) is masked in its own buffer.
    CHECK(values(tg::grad({mul(relu(x), scalar(2.0, float64))}, {x}, {f64(up)})[0]) == Values{20, 0, 60, 0});
}
