// tg::checkpoint: a function's intermediates recomputed in the backward
// instead of kept. Everything it gives must be what the function gives
// without it, bit for bit: outputs, gradients of inputs and parameters, the
// dropout masks of the recomputation, and the state training continues from.
#include <doctest/doctest.h>

#include "helpers.hpp"
#include <tapegrad/tapegrad.hpp>

#include <cstring>
#include <memory>

namespace {

// The same bits, -0.0 and NaNs included.
bool same_bits(const tg::Tensor& a, const tg::Tensor& b)
{
    if (a.defined() != b.defined()) return false;
    if (!a.defined()) return true;
    if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
    return std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * tg::dtype_size(a.dtype())) == 0;
}

bool same_state(const tg::Generator& a, const tg::Generator& b)
{
    tg::Generator x = a, y = b;
    return x.next_u64() == y.next_u64() && x.next_u64() == y.next_u64();
}

// A small CNN in training mode: two blocks with batch norm and dropout (one
// module with its own generator, one drawing from the thread's default
// generator), then a linear head.
struct SmallCnn {
    std::shared_ptr<tg::nn::Sequential> block1, block2, head;
    std::shared_ptr<tg::nn::Dropout> dropout;

    SmallCnn()
    {
        tg::Generator gen(3);
        using namespace tg::nn;
        dropout = make<Dropout>(0.3, 11);
        block1 = std::make_shared<Sequential>();
        block1->add(make<Conv2d>(1, 4, 3, Conv2dOptions{.padding = 1}, &gen));
        block1->add(make<BatchNorm2d>(4));
        block1->add(make<ReLU>());
        block1->add(dropout);
        block1->add(make<MaxPool2d>(2));
        block2 = std::make_shared<Sequential>();
        block2->add(make<Conv2d>(4, 6, 3, Conv2dOptions{.padding = 1}, &gen));
        block2->add(make<BatchNorm2d>(6));
        block2->add(make<ReLU>());
        block2->add(make<MaxPool2d>(2));
        head = std::make_shared<Sequential>();
        head->add(make<Flatten>());
        head->add(make<Linear>(6 * 2 * 2, 5, true, &gen));
    }
    tg::Tensor second(const tg::Tensor& h) { return tg::dropout((*block2)(h), 0.5, true); }
    tg::Tensor forward(const tg::Tensor& x, bool checkpointed)
    {
        if (!checkpointed) return (*head)(second((*block1)(x)));
        tg::Tensor h = tg::checkpoint([&](const tg::tensor_list& in) { return (*block1)(in[0]); }, {x});
        h = tg::checkpoint([&](const tg::tensor_list& in) { return second(in[0]); }, {h});
        return (*head)(h);
    }
    tg::named_tensors state() const
    {
        tg::named_tensors all;
        for (auto* m : {block1.get(), block2.get(), head.get()}) {
            for (auto& p : m->named_parameters()) all.push_back(p);
            for (auto& b : m->named_buffers()) all.push_back(b);
        }
        return all;
    }
    tg::named_tensors parameters() const
    {
        tg::named_tensors all;
        for (auto& [prefix, m] : {std::pair{"block1.", block1.get()}, {"block2.", block2.get()}, {"head.", head.get()}})
            for (auto& [name, p] : m->named_parameters()) all.emplace_back(prefix + name, p);
        return all;
    }
};

struct StepRecord {
    tg::Tensor loss, input_grad;
    tg::tensor_list grads;
};

// Three SGD steps; each step's loss and gradients, then the final state.
std::vector<StepRecord> train(SmallCnn& model, bool checkpointed, tg::named_tensors& final_state)
{
    tg::manual_seed(5);
    tg::Generator data(9);
    tg::optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    std::vector<StepRecord> steps;
    for (int step = 0; step < 3; ++step) {
        tg::Tensor x = tg::randn({4, 1, 8, 8}, tg::float32, &data).requires_grad_();
        tg::Tensor y = tg::randint(0, 5, {4}, &data);
        opt.zero_grad();
        tg::Tensor loss = tg::cross_entropy(model.forward(x, checkpointed), y);
        loss.backward();
        StepRecord r{loss.detach(), x.grad(), {}};
        for (auto& [name, p] : model.parameters()) r.grads.push_back(p.grad().clone());
        steps.push_back(r);
        opt.step();
    }
    final_state = model.state();
    return steps;
}

}  // namespace

TEST_CASE("activation checkpoint: a CNN with batch norm and dropout trains bit for bit as without")
{
    SmallCnn plain, checkpointed;
    tg::named_tensors plain_state, checkpointed_state;
    auto a = train(plain, false, plain_state);
    const tg::Generator default_after_plain = tg::default_generator();
    auto b = train(checkpointed, true, checkpointed_state);
    for (size_t s = 0; s < a.size(); ++s) {
        INFO("step " << s);
        CHECK(same_bits(a[s].loss, b[s].loss));
        CHECK(same_bits(a[s].input_grad, b[s].input_grad));
        REQUIRE(a[s].grads.size() == b[s].grads.size());
        for (size_t i = 0; i < a[s].grads.size(); ++i) {
            INFO("parameter " << plain.parameters()[i].first);
            CHECK(a[s].grads[i].defined());
            CHECK(same_bits(a[s].grads[i], b[s].grads[i]));
        }
    }
    // Parameters and running statistics (updated once per step, not again by the recomputation).
    REQUIRE(plain_state.size() == checkpointed_state.size());
    for (size_t i = 0; i < plain_state.size(); ++i) {
        INFO(plain_state[i].first);
        CHECK(same_bits(plain_state[i].second, checkpointed_state[i].second));
    }
    // The generators continue from where they would be without the checkpoint.
    CHECK(same_state(plain.dropout->generator(), checkpointed.dropout->generator()));
    CHECK(same_state(default_after_plain, tg::default_generator()));
}

TEST_CASE("activation checkpoint: the function's graph is dropped after the forward and nothing leaks")
{
    tg::Generator gen(1);
    tg::Tensor x = tg::randn({64, 64}, tg::float64, &gen).requires_grad_();
    tg::Tensor w = tg::randn({64, 64}, tg::float64, &gen).requires_grad_();
    auto fn = [&](const tg::tensor_list& in) {
        tg::Tensor h = in[0];
        for (int i = 0; i < 8; ++i) h = tg::tanh(tg::mul(h, w));
        return h;
    };
    const int64_t entries = tg::live_tape_entries();
    const int64_t bytes = tg::memory_stats().live_bytes;
    int64_t kept_plain = 0, kept_checkpointed = 0;
    tg::Tensor plain_grad_x, plain_grad_w;
    {
        tg::Tensor y = fn({x});
        kept_plain = tg::memory_stats().live_bytes - bytes;
        tg::sum(y).backward();
        plain_grad_x = x.grad();
        plain_grad_w = w.grad();
    }
    x.zero_grad();
    w.zero_grad();
    x.set_grad(tg::Tensor());
    w.set_grad(tg::Tensor());
    CHECK(tg::live_tape_entries() == entries);
    const int64_t bytes_before = tg::memory_stats().live_bytes;
    {
        tg::Tensor y = tg::checkpoint(fn, {x});
        CHECK(tg::live_tape_entries() - entries == 1);  // the checkpoint's entry alone
        kept_checkpointed = tg::memory_stats().live_bytes - bytes_before;
        tg::Tensor loss = tg::sum(y);
        loss.backward();
    }
    CHECK(tg::live_tape_entries() == entries);
    CHECK(same_bits(x.grad(), plain_grad_x));
    CHECK(same_bits(w.grad(), plain_grad_w));
    // The 8 tanh outputs of 32 KiB kept without the checkpoint, the output alone with it.
    CHECK(kept_plain >= 8 * 64 * 64 * 8);
    CHECK(kept_checkpointed <= 2 * 64 * 64 * 8);
}

TEST_CASE("activation checkpoint: second order through the checkpoint, gradcheck and double backward")
{
    tg::Generator gen(2);
    tg::Tensor x = tg::randn({3, 4}, tg::float64, &gen).requires_grad_();
    tg::Tensor y = tg::randn({4}, tg::float64, &gen).requires_grad_();
    tg::Tensor w = tg::randn({3, 4}, tg::float64, &gen).requires_grad_();
    // w is read from outside the function: a parameter.
    auto inner = [](const tg::Tensor& w) {
        return [w](const tg::tensor_list& in) { return tg::mul(tg::tanh(tg::mul(in[0], w)), tg::exp(in[1])); };
    };
    auto through = [&](const tg::tensor_list& in) { return tg::checkpoint(inner(in[2]), {in[0], in[1]}); };
    tg::GradcheckOptions o;
    o.second_order = true;
    tg::GradcheckResult r = tg::gradcheck(through, {x, y, w}, o);
    INFO(r.what << " " << r.error);
    CHECK(r.passed());
    REQUIRE(r.second_order.size() >= 1);
    CHECK(r.second_order[0].passed());

    // Double backward: the first-order gradients bit for bit as without the
    // checkpoint; the second-order ones to rounding, as the gradient
    // reaching an input through the checkpoint is summed inside it first.
    auto second = [&](bool checkpointed) {
        tg::Tensor out = checkpointed ? tg::checkpoint(inner(w), {x, y}) : inner(w)({x, y});
        tg::tensor_list g = tg::grad({tg::sum(tg::mul(out, out))}, {x, y, w}, {}, graph_options(true));
        tg::Tensor s = tg::sum(tg::mul(g[0], g[0])) + tg::sum(g[1]) + tg::sum(tg::mul(g[2], w));
        tg::tensor_list h = tg::grad({s}, {x, y, w});
        g.insert(g.end(), h.begin(), h.end());
        return g;
    };
    tg::tensor_list plain = second(false), checkpointed = second(true);
    for (size_t i = 0; i < plain.size(); ++i) {
        INFO("gradient " << i);
        if (i < 3) CHECK(same_bits(plain[i].detach(), checkpointed[i].detach()));
        else check_close(checkpointed[i].to_vector(), plain[i].to_vector(), 1e-13);
        CHECK(checkpointed[i].defined());
    }
    CHECK_FALSE(w.grad().defined());  // tg::grad touches no grad()

    // backward with create_graph, then through the gradient again.
    for (bool checkpointed_run : {false, true}) {
        tg::Tensor xs = x.detach().requires_grad_();
        tg::Tensor out = checkpointed_run ? tg::checkpoint(inner(w), {xs, y}) : inner(w)({xs, y});
        tg::sum(out).backward(tg::Tensor(), false, true);
        tg::Tensor gx = xs.grad();
        CHECK(gx.requires_grad());
        tg::tensor_list h = tg::grad({tg::sum(tg::mul(gx, gx))}, {xs});
        if (!checkpointed_run) {
            plain = {gx.detach(), h[0]};
        } else {
            CHECK(same_bits(plain[0], gx.detach()));
            CHECK(same_bits(plain[1], h[0]));
        }
        // create_graph gradients hold the graph that saved their leaves: a
        // cycle (as in PyTorch) until the gradients are dropped.
        xs.set_grad(tg::Tensor());
        w.set_grad(tg::Tensor());
        y.set_grad(tg::Tensor());
    }
}

TEST_CASE("activation checkpoint: tg::grad captures through it and nested checkpoints")
{
    tg::Generator gen(4);
    tg::Tensor x = tg::randn({5, 3}, tg::float64, &gen).requires_grad_();
    tg::Tensor w = tg::randn({5, 3}, tg::float64, &gen).requires_grad_();
    tg::Generator drop(8);
    auto innermost = [&](const tg::tensor_list& in) { return tg::dropout(tg::sin(tg::mul(in[0], w)), 0.4, true, drop); };
    auto middle = [&](bool nested) {
        return [&, nested](const tg::tensor_list& in) {
            tg::Tensor h = tg::exp(in[0]);
            h = nested ? tg::checkpoint(innermost, {h}) : innermost({h});
            return tg::mul(h, tg::dropout(in[0], 0.5, true));
        };
    };
    auto run = [&](int depth) {
        drop.manual_seed(8);
        tg::manual_seed(21);
        tg::Tensor x2 = tg::mul(x, x);  // not a leaf: the input's gradient flows on to x
        tg::Tensor out = depth == 0 ? middle(false)({x2}) : tg::checkpoint(middle(depth == 2), {x2});
        tg::Tensor loss = tg::sum(tg::mul(out, out));
        tg::tensor_list g = tg::grad({loss}, {x, w, x2}, {}, tg::GradOptions{.retain_graph = true});
        g.push_back(out.detach());
        // and once more, into grad(): the graph was retained
        loss.backward();
        g.push_back(x.grad());
        g.push_back(w.grad());
        x.set_grad(tg::Tensor());
        w.set_grad(tg::Tensor());
        return g;
    };
    tg::tensor_list plain = run(0), once = run(1), nested = run(2);
    REQUIRE(plain.size() == 6);
    for (size_t i = 0; i < plain.size(); ++i) {
        INFO("result " << i);
        CHECK(same_bits(plain[i], once[i]));
        CHECK(same_bits(plain[i], nested[i]));
    }
}

TEST_CASE("activation checkpoint: several outputs, unused inputs, inputs without grad, outputs without grad")
{
    tg::Generator gen(6);
    tg::Tensor a = tg::randn({2, 3}, tg::float64, &gen).requires_grad_();
    tg::Tensor b = tg::randn({3}, tg::float64, &gen).requires_grad_();
    tg::Tensor c = tg::randn({2, 3}, tg::float64, &gen);  // requires no grad
    tg::Tensor unused = tg::randn({4}, tg::float64, &gen).requires_grad_();
    tg::Tensor w = tg::randn({3}, tg::float64, &gen).requires_grad_();
    auto fn = [&](const tg::tensor_list& in) {
        tg::Tensor s = tg::mul(in[0], in[1]);
        return tg::tensor_list{
            tg::sum(tg::tanh(s)),           // 0-d
            tg::mul(s, in[2]),              // depends on a, b and the constant c
            tg::argmax(in[0], 1),           // int64: no gradient
            in[2] * 2.0,            // from c alone: no gradient
            tg::mul(w, w),                  // from a parameter only
            in[1],                          // an input itself
            tg::Tensor(),                   // undefined, passed through
        };
    };
    auto run = [&](bool checkpointed) {
        tg::tensor_list out = checkpointed ? tg::checkpoint(fn, {a, b, c, unused}) : fn({a, b, c, unused});
        REQUIRE(out.size() == 7);
        CHECK_FALSE(out[2].requires_grad());
        CHECK_FALSE(out[3].requires_grad());
        CHECK_FALSE(out[6].defined());
        tg::Tensor loss = out[0] * 3.0 + tg::sum(tg::mul(out[1], out[1])) + tg::sum(tg::exp(out[4])) +
                          tg::sum(tg::exp(out[5]));
        tg::tensor_list g = tg::grad({loss}, {a, b, unused, w});
        for (size_t k : {0, 1, 2, 3, 4, 5}) g.push_back(out[k].detach());
        return g;
    };
    tg::tensor_list plain = run(false), checkpointed = run(true);
    for (size_t i = 0; i < plain.size(); ++i) {
        INFO("result " << i);
        CHECK(same_bits(plain[i], checkpointed[i]));
    }
    CHECK(tg::sum(tg::abs(checkpointed[2])).item() == 0.0);  // unused: zeros from tg::grad

    // An output the upstream gradient never reaches, and one that goes unused.
    tg::tensor_list out = tg::checkpoint(fn, {a, b, c, unused});
    tg::sum(out[4]).backward();
    CHECK(same_bits(w.grad(), (w * 2.0).detach()));
    // The other outputs' parts of the checkpoint's gradient are zeros, so a
    // gets a zero gradient (PyTorch's checkpoint materialises them too).
    CHECK(tg::sum(tg::abs(a.grad())).item() == 0.0);
    a.set_grad(tg::Tensor());
    b.set_grad(tg::Tensor());
    w.set_grad(tg::Tensor());

    // One output requires grad and it is not the first: its values and its
    // gradient, as without the checkpoint.
    auto second_only = [&](const tg::tensor_list& in) {
        return tg::tensor_list{tg::argmax(in[0], 1), tg::tanh(in[0]), tg::argmin(in[0], 1)};
    };
    for (bool checkpointed : {false, true}) {
        CAPTURE(checkpointed);
        tg::tensor_list one = checkpointed ? tg::checkpoint(second_only, {c}) : second_only({c});
        CHECK_FALSE(one[1].requires_grad());
    }
    tg::tensor_list kept = second_only({a}), chk = tg::checkpoint(second_only, {a});
    REQUIRE(chk.size() == 3);
    CHECK(chk[1].requires_grad());
    CHECK(same_bits(chk[1].detach(), kept[1].detach()));
    CHECK(same_bits(chk[0], kept[0]));
    CHECK(same_bits(chk[2], kept[2]));
    CHECK(same_bits(tg::grad({tg::sum(chk[1])}, {a})[0], tg::grad({tg::sum(kept[1])}, {a})[0]));

    // An undefined input reaches fn as it is (PyTorch passes None through).
    auto maybe = [&](const tg::tensor_list& in) {
        return tg::tensor_list{in[1].defined() ? tg::mul(in[0], in[1]) : tg::exp(in[0])};
    };
    tg::tensor_list none = tg::checkpoint(maybe, {a, tg::Tensor()});
    CHECK(same_bits(none[0].detach(), tg::exp(a).detach()));
    CHECK(same_bits(tg::grad({tg::sum(none[0])}, {a})[0], tg::exp(a).detach()));

    // Nothing requires grad: the function's outputs as they are, nothing recorded.
    const int64_t entries = tg::live_tape_entries();
    tg::tensor_list plain_out = tg::checkpoint([&](const tg::tensor_list& in) { return tg::tensor_list{tg::exp(in[0])}; }, {c});
    CHECK_FALSE(plain_out[0].requires_grad());
    CHECK(tg::live_tape_entries() == entries);
}

TEST_CASE("activation checkpoint: no_grad only runs the function, retain_graph backs up twice")
{
    tg::Generator gen(7);
    tg::Tensor x = tg::randn({4}, tg::float64, &gen).requires_grad_();
    int calls = 0;
    auto fn = [&](const tg::tensor_list& in) {
        ++calls;
        return tg::exp(tg::sin(in[0]));
    };
    {
        tg::NoGradGuard off;
        tg::Tensor y = tg::checkpoint(fn, {x});
        CHECK_FALSE(y.requires_grad());
        CHECK(same_bits(y, fn({x})));
    }
    calls = 0;
    tg::Tensor y = tg::checkpoint(fn, {x});
    CHECK(calls == 1);
    tg::Tensor loss = tg::sum(y);
    loss.backward(tg::Tensor(), true);
    CHECK(calls == 2);
    tg::Tensor once = x.grad().clone();
    loss.backward();
    CHECK(calls == 3);
    CHECK(same_bits(x.grad(), once + once));
    std::string e = error_of([&] { loss.backward(); });
    CHECK(contains(e, "retain_graph"));
}

TEST_CASE("activation checkpoint: bad functions and changes between forward and backward are errors")
{
    tg::Generator gen(8);
    tg::Tensor x = tg::randn({3}, tg::float64, &gen).requires_grad_();
    tg::Tensor outside = tg::exp(x);  // on the tape
    using tg::tensor_list;
    std::string e = error_of([&] { tg::checkpoint([](const tensor_list&) { return tensor_list{}; }, {x}); });
    CHECK(contains(e, "checkpoint: the function returned no tensor"));
    e = error_of([&] { tg::checkpoint([](const tensor_list&) { return tg::Tensor(); }, {x}); });
    CHECK(contains(e, "only undefined tensors"));
    e = error_of([&] { tg::checkpoint(tg::checkpoint_function(), {x}); });
    CHECK(contains(e, "no function"));
    // A tensor computed on the tape outside the function, not passed as an input.
    e = error_of([&] { tg::checkpoint([&](const tensor_list& in) { return tg::mul(in[0], outside); }, {x}); });
    CHECK(contains(e, "computed outside it (by op 'exp')"));
    CHECK(contains(e, "pass it as an input"));
    e = error_of([&] { tg::checkpoint([&](const tensor_list&) { return outside; }, {x}); });
    CHECK(contains(e, "computed outside it"));
    e = error_of([&] {
        tg::checkpoint([&](const tensor_list& in) { return tensor_list{in[0], in[0].to(tg::float32)}; }, {x});
    });
    CHECK(contains(e, "one dtype"));
    // An error inside the function leaves no observer or generator log behind.
    e = error_of([&] { tg::checkpoint([&](const tensor_list& in) { return tg::mul(in[0], tg::ones({2})); }, {x}); });
    CHECK(contains(e, "mul"));
    CHECK(tg::set_tape_observer(nullptr) == nullptr);

    // The saved input changed in place before the backward.
    tg::Tensor h = x * 2.0;
    tg::Tensor y = tg::checkpoint([](const tensor_list& in) { return tg::exp(in[0]); }, {h});
    {
        tg::NoGradGuard off;
        h.add_(tg::ones_like(h));
    }
    e = error_of([&] { tg::sum(y).backward(); });
    CHECK(contains(e, "backward of op 'checkpoint'"));
    CHECK(contains(e, "modified in place"));

    // A parameter the function reads changed by an optimizer step before the backward.
    tg::Tensor w = tg::randn({3}, tg::float64, &gen).requires_grad_();
    y = tg::checkpoint([&](const tensor_list& in) { return tg::add(in[0], w); }, {x});
    {
        tg::NoGradGuard off;
        w.add_(tg::ones_like(w));
    }
    e = error_of([&] { tg::sum(y).backward(); });
    CHECK(contains(e, "modified in place"));

    // A function that does not compute the same thing again.
    int calls = 0;
    tg::Generator noise(3);
    y = tg::checkpoint(
        [&](const tensor_list& in) {
            ++calls;
            return calls == 1 ? tg::mul(in[0], tg::rand({3}, tg::float64, &noise)) : tg::exp(in[0]);
        },
        {x});
    e = error_of([&] { tg::sum(y).backward(); });
    CHECK(contains(e, "drew other random numbers"));
    calls = 0;
    y = tg::checkpoint(
        [&](const tensor_list& in) { return ++calls == 1 ? tensor_list{tg::exp(in[0])} : tensor_list{tg::exp(in[0]), in[0]}; },
        {x})[0];
    e = error_of([&] { tg::sum(y).backward(); });
    CHECK(contains(e, "gave other outputs"));
    CHECK(x.grad().defined() == false);
}

TEST_CASE("activation checkpoint: a generator made inside the function is not replayed, one outside is")
{
    tg::Generator gen(9);
    tg::Tensor x = tg::randn({50}, tg::float64, &gen).requires_grad_();
    // As the registry's dropout samples: a fixed mask from a generator made in the function.
    auto local = [](const tg::tensor_list& in) {
        tg::Generator g(1234);
        return tg::dropout(in[0], 0.3, true, g);
    };
    tg::Tensor y = tg::checkpoint(local, {x});
    tg::sum(tg::mul(y, y)).backward();
    tg::Tensor want = local({x.detach()}) * 2.0;
    CHECK(same_bits(x.grad(), tg::mul(want, local({tg::ones_like(x)}))));
    x.set_grad(tg::Tensor());

    // rand from a generator outside, drawn again after the forward by someone else.
    tg::Generator shared(10);
    auto noisy = [&](const tg::tensor_list& in) { return tg::mul(in[0], tg::rand({50}, tg::float64, &shared)); };
    tg::Generator expect = shared;
    tg::Tensor mask = tg::rand({50}, tg::float64, &expect);
    y = tg::checkpoint(noisy, {x});
    tg::rand({7}, tg::float64, &shared);  // training goes on between forward and backward
    tg::Generator after = shared;
    tg::sum(y).backward();
    CHECK(same_bits(x.grad(), mask));
    CHECK(same_state(shared, after));
}

// Not registry samples: the checkpoint's entry has no replay form (it would
// need fn run on other parameter values), which the registry's replay test
// requires of every sample. The same checks, first and second order, here.
TEST_CASE("activation checkpoint: gradcheck first and second order, dropout, a parameter, two outputs")
{
    using tg::tensor_list;
    std::vector<std::pair<tg::GradcheckFn, tensor_list>> cases;
    tg::Generator gen(12);
    auto values = [&](const tg::shape_type& shape) { return tg::randn(shape, tg::float64, &gen).requires_grad_(); };
    cases.push_back({[](const tensor_list& in) {
                         return tg::checkpoint(
                             [](const tensor_list& z) {
                                 tg::Generator g(5);  // made inside: the same mask every run
                                 return tg::dropout(tg::tanh(tg::mul(z[0], z[1])), 0.3, true, g);
                             },
                             in);
                     },
                     {values({3, 4}), values({4})}});
    cases.push_back({[](const tensor_list& in) {
                         tg::Tensor w = in[1];
                         return tg::checkpoint([w](const tensor_list& z) { return tg::exp(tg::mul(tg::sin(z[0]), w)); },
                                               {in[0]});
                     },
                     {values({2, 3}), values({2, 3})}});
    cases.push_back({[](const tensor_list& in) {
                         tensor_list out = tg::checkpoint(
                             [](const tensor_list& z) { return tensor_list{tg::tanh(z[0]), tg::mul(z[1], z[0])}; }, in);
                         return tg::add(tg::mul(out[0], out[0]), out[1]);
                     },
                     {values({3}), values({2, 3})}});
    tg::GradcheckOptions o;
    o.second_order = true;
    for (size_t c = 0; c < cases.size(); ++c) {
        INFO("case " << c);
        tg::GradcheckResult r = tg::gradcheck(cases[c].first, cases[c].second, o);
        INFO(r.error);
        CHECK(r.passed());
        REQUIRE(r.second_order.size() >= 1);
        CHECK(r.second_order[0].passed());
    }
}
