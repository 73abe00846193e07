// Debugging tools: gradient hooks on tensors, module hooks (pre, forward,
// full backward) with their handles, module scopes on tape entries, and
// anomaly detection in forwards and backward rules.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace nn = tg::nn;

namespace {

tg::Tensor leaf(std::initializer_list<double> v, tg::Dtype dtype = tg::float64)
{
    tg::Tensor t = tg::from_values(v, {}, dtype);
    t.requires_grad_(true);
    return t;
}

// log of its input: a layer that can produce NaN.
class LogLayer : public nn::Module {
public:
    tg::Tensor forward(const tg::Tensor& x) override { return tg::log(x); }
};

// PyTorch-style attribute names around a Sequential.
class Net : public nn::Module {
public:
    Net()
    {
        tg::Generator gen(3);
        features = register_module("features", std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
                                                   nn::make<nn::Linear>(3, 3, true, &gen), nn::make<LogLayer>()}));
        head = register_module("head", nn::make<nn::Linear>(3, 2, true, &gen));
    }
    tg::Tensor forward(const tg::Tensor& x) override { return (*head)((*features)(x)); }
    std::shared_ptr<nn::Sequential> features;
    std::shared_ptr<nn::Linear> head;
};

}  // namespace

TEST_CASE("tensor hooks: a non-leaf hook sees its gradient and its replacement flows on")
{
    tg::Tensor x = leaf({1, 2, 3});
    tg::Tensor y = x * x;
    std::vector<double> seen;
    y.register_hook([&](const tg::Tensor& g) {
        seen = g.to_vector();
        return g * 2.0;
    });
    tg::sum(y).backward();
    CHECK(seen == Values{1, 1, 1});
    CHECK(x.grad().to_vector() == Values{4, 8, 12});  // 2 · 2x
}

TEST_CASE("tensor hooks: leaf hooks run in order before grad() accumulates, each backward")
{
    tg::Tensor x = leaf({1, 2});
    std::vector<std::string> order;
    x.register_hook([&](const tg::Tensor& g) {
        order.push_back("first");
        return g + 1.0;
    });
    tg::HookHandle second = x.register_hook([&](const tg::Tensor& g) {
        order.push_back("second");
        return g * 10.0;
    });
    x.register_hook([&](const tg::Tensor&) {
        order.push_back("keeps");
        return tg::Tensor();  // undefined: no change
    });
    tg::sum(x * 3.0).backward();
    CHECK(order == std::vector<std::string>{"first", "second", "keeps"});
    CHECK(x.grad().to_vector() == Values{40, 40});  // (3 + 1) · 10
    second.remove();
    second.remove();  // twice does nothing
    tg::sum(x * 3.0).backward();
    CHECK(x.grad().to_vector() == Values{44, 44});  // + (3 + 1)
}

TEST_CASE("tensor hooks: tg::grad runs them and returns the hooked gradient")
{
    tg::Tensor x = leaf({1, 2});
    tg::Tensor h = x * 2.0;
    h.register_hook([](const tg::Tensor& g) { return g * 5.0; });
    x.register_hook([](const tg::Tensor& g) { return g + 1.0; });
    tg::tensor_list g = tg::grad({tg::sum(h * h)}, {x, h});
    CHECK(g[1].to_vector() == Values{20, 40});     // 2h · 5
    CHECK(g[0].to_vector() == Values{41, 81});     // 2h · 5 · 2 + 1
    CHECK_FALSE(x.grad().defined());               // tg::grad touches no grad()
}

TEST_CASE("tensor hooks: second order differentiates what a hook computes")
{
    // hook g -> g·x on y = Σ x²: the gradient is 2x·x = 2x², whose gradient is 4x.
    tg::Tensor x = leaf({1, -2, 3});
    // The hook holds x and x holds the hook: removed at the end, or the two leak.
    tg::HookHandle hook = x.register_hook([x](const tg::Tensor& g) { return g * x; });
    tg::Tensor gx = tg::grad({tg::sum(x * x)}, {x}, {}, {.create_graph = true, .retain_graph = std::nullopt})[0];
    CHECK(gx.to_vector() == Values{2, 8, 18});
    REQUIRE(gx.requires_grad());
    // The second sweep also reaches x: its hook multiplies by x once more (4x · x).
    tg::Tensor ggx = tg::grad({tg::sum(gx)}, {x})[0];
    CHECK(ggx.to_vector() == Values{4, 16, 36});
    hook.remove();
}

TEST_CASE("tensor hooks: bad hooks and tensors are errors that say so")
{
    tg::Tensor x = leaf({1, 2});
    tg::Tensor c = tg::from_values({1, 2}, {}, tg::float64);
    CHECK(contains(error_of([&] { c.register_hook([](const tg::Tensor& g) { return g; }); }), "does not require grad"));
    CHECK(contains(error_of([&] { x.register_hook(tg::GradHook()); }), "register_hook: the hook is empty"));
    tg::Tensor y = x * 2.0;
    y.register_hook([](const tg::Tensor&) { return tg::zeros({3}, tg::float64); });
    const std::string e = error_of([&] { tg::sum(y).backward(); });
    CHECK(contains(e, "gradient hook on the output of op 'mul'"));
    CHECK(contains(e, "[3]"));
    // A handle outliving its tensor does nothing.
    tg::HookHandle h;
    {
        tg::Tensor z = leaf({1});
        h = z.register_hook([](const tg::Tensor& g) { return g; });
    }
    h.remove();
}

TEST_CASE("post-accumulate hooks: once per backward, after the leaf's last contribution, not for tg::grad")
{
    // w is used three times: its hook runs once, with grad() complete.
    tg::Tensor w = leaf({1.5, -2.0, 0.5}), x = tg::from_values({2.0, 3.0, -1.0}, {}, tg::float64);
    tg::Tensor unused = leaf({4.0});
    std::vector<std::vector<double>> seen;
    int unused_calls = 0;
    tg::HookHandle h = w.register_post_accumulate_grad_hook([&](const tg::Tensor& t) {
        CHECK(t.same(w));
        seen.push_back(t.grad().to_vector());
    });
    unused.register_post_accumulate_grad_hook([&](const tg::Tensor&) { ++unused_calls; });
    auto loss = [&] { return tg::sum(tg::add(tg::add(tg::mul(w, x), tg::mul(w, w)), w)); };  // d/dw = x + 2w + 1
    loss().backward();
    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == Values{2 + 3 + 1, 3 - 4 + 1, -1 + 1 + 1});
    loss().backward();  // accumulates: the hook sees the sum of both
    REQUIRE(seen.size() == 2);
    CHECK(seen[1] == Values{12, 0, 2});
    CHECK(unused_calls == 0);  // not on the tape
    tg::grad({loss()}, {w});   // accumulates nothing
    CHECK(seen.size() == 2);
    // A leaf as the root of its own backward.
    tg::Tensor s = leaf({2.0});
    std::vector<double> root_grads;
    s.register_post_accumulate_grad_hook([&](const tg::Tensor& t) { root_grads.push_back(t.grad().item()); });
    tg::sum(s).backward();
    s.backward(tg::ones({}, tg::float64));
    CHECK(root_grads == Values{1, 2});
    h.remove();
    loss().backward();
    CHECK(seen.size() == 2);
    CHECK(contains(error_of([&] { tg::mul(w, x).register_post_accumulate_grad_hook([](const tg::Tensor&) {}); }),
                   "register_post_accumulate_grad_hook: a tensor of shape [3] is not a leaf (it is computed by op 'mul')"));
    CHECK(contains(error_of([&] { x.register_post_accumulate_grad_hook([](const tg::Tensor&) {}); }),
                   "does not require grad"));
}

TEST_CASE("backward callbacks: run after every hook of that backward, in order, and not when it raises")
{
    tg::Tensor a = leaf({1.0, 2.0}), b = leaf({3.0});
    std::vector<std::string> order;
    a.register_post_accumulate_grad_hook([&](const tg::Tensor&) {
        order.push_back("hook a");
        tg::queue_backward_callback([&] {
            order.push_back("callback 1");
            tg::queue_backward_callback([&] { order.push_back("callback 2, queued by 1"); });
        });
    });
    b.register_post_accumulate_grad_hook([&](const tg::Tensor&) { order.push_back("hook b"); });
    tg::sum(tg::mul(a, b)).backward();
    REQUIRE(order.size() == 4);
    CHECK(order[2] == "callback 1");
    CHECK(order[3] == "callback 2, queued by 1");
    CHECK(contains(error_of([] { tg::queue_backward_callback([] {}); }),
                   "queue_backward_callback: no backward is running on this thread"));
    // A backward that raises runs none, and leaves no backward "running".
    order.clear();
    tg::Tensor c = leaf({2.0});
    c.register_hook([&](const tg::Tensor&) -> tg::Tensor {
        tg::queue_backward_callback([&] { order.push_back("must not run"); });
        tg::fail("planted failure");
    });
    CHECK(contains(error_of([&] { tg::sum(tg::mul(c, c)).backward(); }), "planted failure"));
    CHECK(order.empty());
    CHECK(contains(error_of([] { tg::queue_backward_callback([] {}); }), "no backward is running"));
}

TEST_CASE("module hooks: pre-hooks replace the input, forward hooks see it and replace the output")
{
    tg::Generator gen(1);
    nn::Linear lin(2, 2, false, &gen);
    std::vector<std::string> log;
    tg::HookHandle pre = lin.register_forward_pre_hook([&](nn::Module& m, const tg::Tensor& in) {
        log.push_back("pre " + m.kind());
        return in * 2.0;
    });
    lin.register_forward_hook([&](nn::Module&, const tg::Tensor& in, const tg::Tensor& out) {
        log.push_back("forward " + std::to_string(in.to_vector()[0]));
        return out + 1.0;
    });
    tg::Tensor x = tg::from_values({1, 3}, {1, 2});
    tg::Tensor want = tg::linear(x * 2.0, lin.weight) + 1.0;
    tg::Tensor got = lin(x);
    CHECK(got.to_vector() == want.to_vector());
    CHECK(log == std::vector<std::string>{"pre Linear", "forward 2.000000"});
    pre.remove();
    CHECK(lin(x).to_vector() == (tg::linear(x, lin.weight) + 1.0).to_vector());
}

TEST_CASE("module hooks: full backward hooks see grad_input and grad_output, last module first")
{
    tg::Generator gen(2);
    auto l1 = nn::make<nn::Linear>(3, 4, true, &gen);
    auto l2 = nn::make<nn::Linear>(4, 2, true, &gen);
    nn::Sequential model{l1, nn::make<nn::Tanh>(), l2};
    std::vector<std::string> order;
    tg::Tensor seen_in, seen_out;
    l1->register_full_backward_hook([&](nn::Module&, const tg::Tensor& gin, const tg::Tensor& gout) {
        order.push_back("l1");
        seen_in = gin;
        seen_out = gout;
        return tg::Tensor();
    });
    l2->register_full_backward_hook([&](nn::Module&, const tg::Tensor& gin, const tg::Tensor& gout) {
        order.push_back("l2");
        CHECK(gin.shape() == tg::shape_type{5, 4});
        CHECK(gout.shape() == tg::shape_type{5, 2});
        return tg::Tensor();
    });
    tg::Tensor x = tg::randn({5, 3}, tg::float32, &gen).requires_grad_(true);
    tg::Tensor y = model(x);
    y.backward(tg::randn({5, 2}, tg::float32, &gen));
    CHECK(order == std::vector<std::string>{"l2", "l1"});
    REQUIRE(seen_in.defined());
    CHECK(seen_in.to_vector() == x.grad().to_vector());  // the gradient with respect to l1's input
    CHECK(seen_out.shape() == tg::shape_type{5, 4});
}

TEST_CASE("module hooks: a backward hook replaces the input gradient, and without an input gradient it still fires")
{
    tg::Generator gen(4);
    nn::Linear lin(3, 2, true, &gen);
    int calls = 0;
    tg::HookHandle handle = lin.register_full_backward_hook([&](nn::Module&, const tg::Tensor& gin, const tg::Tensor& gout) {
        ++calls;
        CHECK(gout.to_vector() == Values(4, 1.0));
        return gin.defined() ? tg::zeros_like(gin) : tg::Tensor();
    });
    tg::Tensor x = tg::randn({2, 3}, tg::float32, &gen).requires_grad_(true);
    tg::sum(lin(x)).backward();
    CHECK(calls == 1);
    CHECK(x.grad().to_vector() == Values(6, 0.0));
    CHECK(lin.weight.grad().defined());  // the parameters' gradients are not the hook's to change
    // The input needs no gradient: the hook sees none, once.
    lin.zero_grad();
    tg::Tensor c = tg::randn({2, 3}, tg::float32, &gen);
    tg::sum(lin(c)).backward();
    CHECK(calls == 2);
    CHECK(lin.weight.grad().defined());
    handle.remove();
    tg::sum(lin(x)).backward();
    CHECK(calls == 2);
    // A wrong replacement is an error naming the module.
    lin.register_full_backward_hook([](nn::Module&, const tg::Tensor&, const tg::Tensor&) { return tg::zeros({7}); });
    CHECK(contains(error_of([&] { tg::sum(lin(x)).backward(); }), "backward hook of module Linear"));
}

TEST_CASE("module hooks: second order through a module with a backward hook equals the unhooked one")
{
    tg::Generator gen(5);
    auto run = [&](bool hooked) {
        tg::Generator g(5);
        nn::Sequential model{nn::make<nn::Linear>(3, 3, true, &g), nn::make<nn::Tanh>(), nn::make<nn::Linear>(3, 1, true, &g)};
        if (hooked)
            for (const auto& [name, child] : model.children())
                child->register_full_backward_hook(
                    [](nn::Module&, const tg::Tensor& gin, const tg::Tensor&) { return gin * 1.0; });
        tg::Tensor x = tg::from_values({0.3, -0.2, 0.5, 0.1, 0.7, -0.4}, {2, 3}, tg::float64).requires_grad_(true);
        model.to(tg::float64);
        tg::Tensor gx = tg::grad({tg::sum(model(x))}, {x}, {}, {.create_graph = true, .retain_graph = std::nullopt})[0];
        tg::Tensor ggx = tg::grad({tg::sum(gx * gx)}, {x})[0];
        return std::pair{gx.to_vector(), ggx.to_vector()};
    };
    auto plain = run(false), hooked = run(true);
    CHECK(plain.first == hooked.first);
    CHECK(plain.second == hooked.second);
    bool nonzero = false;
    for (double v : plain.second) nonzero = nonzero || v != 0;
    CHECK(nonzero);
}

TEST_CASE("module scopes: each tape entry records the path of the module that ran it")
{
    Net net;
    tg::Tensor x = tg::from_values({1, 2, 3}, {1, 3}).requires_grad_(true);
    tg::Tensor y = net(x);
    REQUIRE(y.grad_fn());
    REQUIRE(y.grad_fn()->scope);
    CHECK(y.grad_fn()->scope->describe() == "head (Linear)");
    // Walk down to the log: its entry is in features.1.
    bool found_log = false;
    std::vector<tg::Node*> stack{y.grad_fn().get()};
    while (!stack.empty()) {
        tg::Node* n = stack.back();
        stack.pop_back();
        if (std::string(n->op) == "log") {
            found_log = true;
            REQUIRE(n->scope);
            CHECK(n->scope->describe() == "features.1 (LogLayer)");
            REQUIRE(n->scope->parent);
            CHECK(n->scope->parent->describe() == "features (Sequential)");
            CHECK(n->scope->parent->parent->describe() == "(Net)");
        }
        for (const tg::Edge& e : n->inputs)
            if (e.node) stack.push_back(e.node.get());
    }
    CHECK(found_log);
    CHECK(tg::current_module_scope() == nullptr);
    CHECK(tg::from_values({1.0}).requires_grad_(true).defined());
}

TEST_CASE("anomaly detection: the first NaN of a forward names the op, the element, the shapes and the module")
{
    Net net;
    // features.0's output goes negative for this input: log gives NaN there.
    tg::Tensor x = tg::from_values({-50, 40, -30}, {1, 3});
    {
        tg::NoGradGuard off;
        auto negative = [&] {
            bool any = false;
            for (double v : (*net.features->children()[0].second)(x).to_vector()) any = any || v < 0;
            return any;
        };
        if (!negative()) x = tg::neg(x);  // one of x and -x makes an element negative
        REQUIRE(negative());
    }
    CHECK_FALSE(tg::anomaly_detection_enabled());
    tg::Tensor quiet = net(x);  // off: the NaN goes through
    bool has_nan = false;
    for (double v : quiet.to_vector()) has_nan = has_nan || std::isnan(v);
    CHECK(has_nan);
    tg::DetectAnomalyGuard anomaly;
    CHECK(tg::anomaly_detection_enabled());
    const std::string e = error_of([&] { net(x); });
    CHECK(contains(e, "anomaly detected: op 'log' produced NaN at ["));
    CHECK(contains(e, "of its output of shape [1, 3] (float32)"));
    CHECK(contains(e, "in module features.1 (LogLayer)"));
    CHECK(contains(e, "its inputs: 0: [1, 3] (float32)"));
    CHECK_FALSE(contains(e, "already held"));
}

TEST_CASE("anomaly detection: a non-finite gradient names the backward rule and the forward's module")
{
    // sqrt(0) = 0 is fine forward; its gradient 1/(2·sqrt(0)) is +Inf.
    tg::Tensor x = leaf({4, 0, 1});
    tg::DetectAnomalyGuard anomaly;
    tg::Tensor y = tg::sqrt(x);
    const std::string e = error_of([&] { tg::sum(y).backward(); });
    CHECK(contains(e, "sqrt"));
    CHECK(contains(e, "+Inf at [1]"));
    CHECK((contains(e, "the backward rule of op 'sqrt' produced") || contains(e, "while running the backward rule of op 'sqrt'")));
    // Under create_graph the rule runs as ops: the op inside it is named, and the rule.
    tg::Tensor x2 = leaf({4, 0, 1});
    tg::Tensor y2 = tg::sqrt(x2);
    const std::string e2 = error_of([&] { (void)tg::grad({tg::sum(y2)}, {x2}, {}, {.create_graph = true, .retain_graph = std::nullopt}); });
    CHECK(contains(e2, "while running the backward rule of op 'sqrt' (its forward ran outside any module"));
}

TEST_CASE("anomaly detection: options, inputs that already held NaN, and the guard's scope")
{
    tg::Tensor zero = tg::from_values({0.0, 1.0}, {}, tg::float64);
    {
        tg::DetectAnomalyGuard only_nan({.nan = true, .inf = false});
        tg::Tensor l = tg::log(zero);  // -Inf allowed
        CHECK(std::isinf(l.to_vector()[0]));
        CHECK(contains(error_of([&] { tg::log(tg::from_values({-1.0}, {}, tg::float64)); }), "NaN"));
        tg::DetectAnomalyGuard nested;  // stricter inside
        CHECK(contains(error_of([&] { tg::log(zero); }), "-Inf at [0]"));
    }
    CHECK_FALSE(tg::anomaly_detection_enabled());
    tg::Tensor nan_data = tg::from_values({1.0, std::nan("")}, {}, tg::float64);
    tg::DetectAnomalyGuard anomaly;
    const std::string e = error_of([&] { tg::exp(nan_data); });
    CHECK(contains(e, "op 'exp' produced NaN at [1]"));
    CHECK(contains(e, "input 0 already held NaN at [1]"));
    // Finite values and int64 tensors pass.
    CHECK(tg::exp(zero).defined());
    CHECK(tg::argmax(tg::from_values({1, 3, 2}), 0).defined());
}
