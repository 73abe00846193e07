// Op definitions (engine/core/op.hpp): one descriptor gives the recorded op,
// its registry samples and its replay; the engine, not the rule, chooses the
// fused first-order backward; a rule reads its saved tensors by what they are.
// And Tensor::set_data, which lets modules hold plain Tensor members.
#include "tests/helpers.hpp"

#include <set>
#include <type_traits>

namespace {

// y = a·x² + b (a, b attributes); keeps x² for the backward, completes its
// attributes with the input's size, and has both backwards, counting which ran.
int fused_runs = 0, differentiable_runs = 0;

struct QuadraticOp : tg::Op<QuadraticOp> {
    static constexpr const char* name = "test_quadratic";
    static constexpr tg::Saves saves = tg::save_input(0) | tg::save_output;
    struct Attrs {
        double a = 1, b = 0;
        int64_t seen_numel = -1;  // set by forward
    };
    static tg::Tensor forward(tg::TensorRefs in, Attrs& at, tg::OpContext& ctx)
    {
        const tg::Tensor& x = in[0];
        at.seen_numel = x.numel();
        tg::Tensor sq = tg::mul(x, x);  // tapegrad ops inside a forward are not recorded
        CHECK_FALSE(sq.requires_grad());
        ctx.keep(sq);
        return tg::add(tg::mul(sq, tg::scalar(at.a, x.dtype())), tg::scalar(at.b, x.dtype()));
    }
    static tg::tensor_list backward(const tg::BackwardArgs& g, const Attrs& at)
    {
        ++differentiable_runs;
        CHECK(at.seen_numel == g.input(0).numel());
        CHECK(g.kept(0).shape() == g.input(0).shape());
        CHECK(g.output().shape() == g.input(0).shape());
        return {tg::mul(g.grad, tg::mul(g.input(0), tg::scalar(2 * at.a, g.grad.dtype())))};
    }
    static tg::tensor_list fused_backward(const tg::BackwardArgs& g, const Attrs& at)
    {
        ++fused_runs;
        CHECK_FALSE(g.create_graph());
        return {tg::mul(g.grad, tg::mul(g.input(0), tg::scalar(2 * at.a, g.grad.dtype())))};
    }
    static std::vector<tg::OpSample> samples()
    {
        return {sample("[3,4] a 1.5 b -2", {tg::real("x", {3, 4})}, Attrs{1.5, -2}),
                sample("0-d a -0.5", {tg::real("x", {})}, Attrs{-0.5, 0})};
    }
};
TG_REGISTER_OP(QuadraticOp);

tg::Tensor quadratic(const tg::Tensor& x, double a, double b) { return QuadraticOp::call({x}, {a, b}); }

// A rule that reads an input its definition does not save.
struct ForgetsToSave : tg::Op<ForgetsToSave> {
    static constexpr const char* name = "test_forgets_to_save";
    static tg::Tensor forward(tg::TensorRefs in) { return tg::mul(in[0], in[0]); }
    static tg::tensor_list backward(const tg::BackwardArgs& g) { return {tg::mul(g.grad, g.input(0))}; }
    static std::vector<tg::OpSample> samples() { return {}; }
};

// y = x0 · Σ_k x_k over 40 inputs: saves input 0 and its output and keeps the
// sum, so the saved list holds exactly those three, however many inputs
// there are (the save mask has 32 bits; inputs from 32 on are never saved).
struct ScaledSum40 : tg::Op<ScaledSum40> {
    static constexpr const char* name = "test_scaled_sum";
    static constexpr tg::Saves saves = tg::save_input(0) | tg::save_output;
    static tg::Tensor forward(tg::TensorRefs in, const tg::NoAttrs&, tg::OpContext& ctx)
    {
        tg::Tensor s = in[0];
        for (size_t k = 1; k < in.size(); ++k) s = tg::add(s, in[k]);
        ctx.keep(s);
        return tg::mul(in[0], s);
    }
    static tg::tensor_list backward(const tg::BackwardArgs& g)
    {
        CHECK(contains(error_of([&] { (void)g.input(32); }), "reads input 32, which its definition does not save"));
        CHECK(contains(error_of([&] { (void)g.input(1); }), "reads input 1"));
        CHECK(g.output().to_vector() == tg::mul(g.input(0), g.kept(0)).to_vector());
        tg::tensor_list grads(g.inputs(), tg::mul(g.grad, g.input(0)));
        grads[0] = tg::mul(g.grad, tg::add(g.kept(0), g.input(0)));
        return grads;
    }
    static std::vector<tg::OpSample> samples() { return {}; }
};

}  // namespace

TEST_CASE("op definition: recorded, and its backward reads inputs, output and kept tensors by name")
{
    tg::Tensor x = tg::randn({3, 4}, tg::float64).requires_grad_();
    tg::Tensor y = quadratic(x, 1.5, -2);
    REQUIRE(y.grad_fn() != nullptr);
    CHECK(std::string(y.grad_fn()->op) == "test_quadratic");
    CHECK(y.at({1, 2}) == doctest::Approx(1.5 * x.at({1, 2}) * x.at({1, 2}) - 2));
    tg::Tensor g = tg::grad({tg::sum(y)}, {x})[0];
    check_close(g.to_vector(), (tg::mul(x, tg::scalar(3.0, tg::float64))).to_vector(), 1e-15);
    // Untaped when nothing requires grad.
    CHECK(quadratic(tg::ones({2}), 1, 0).grad_fn() == nullptr);
}

TEST_CASE("op definition: the engine chooses the fused backward when no graph is built, whatever the grad mode")
{
    tg::Tensor x = tg::randn({5}, tg::float64).requires_grad_();
    fused_runs = differentiable_runs = 0;
    tg::grad({tg::sum(quadratic(x, 2, 0))}, {x});
    CHECK(fused_runs == 1);
    CHECK(differentiable_runs == 0);
    {
        tg::EnableGradGuard on;  // a rule reading the global mode would pick the wrong one here
        tg::grad({tg::sum(quadratic(x, 2, 0))}, {x}, {}, {.create_graph = false, .retain_graph = false});
    }
    CHECK(fused_runs == 2);
    CHECK(differentiable_runs == 0);
    tg::Tensor g = tg::grad({tg::sum(quadratic(x, 2, 0))}, {x}, {}, {.create_graph = true, .retain_graph = {}})[0];
    CHECK(differentiable_runs == 1);
    CHECK(g.requires_grad());  // recorded: differentiable again
    tg::Tensor h = tg::grad({tg::sum(g)}, {x})[0];
    check_close(h.to_vector(), (tg::full({5}, 4.0, tg::float64)).to_vector(), 1e-15);
}

TEST_CASE("op definition: its registry samples come from the definition and pass the checker")
{
    const tg::OpInfo* op = tg::find_op("test_quadratic");
    REQUIRE(op != nullptr);
    REQUIRE(op->samples.size() == 2);
    for (const tg::OpSample& s : op->samples) {
        CAPTURE(s.label);
        tg::SampleCheck sc = tg::check_sample(*op, s);
        CHECK_MESSAGE(sc.passed(), sc.to_string());
    }
    // The sample's function is the op with the sample's attributes.
    tg::tensor_list in = tg::make_inputs(op->samples[0], tg::float64, 3);
    tg::Tensor y = op->samples[0].fn(in);
    CHECK(y.at({0, 0}) == doctest::Approx(1.5 * in[0].at({0, 0}) * in[0].at({0, 0}) - 2));
}

TEST_CASE("op definition: a rule that reads what its definition does not save names the op")
{
    tg::Tensor x = tg::ones({2}, tg::float64).requires_grad_();
    tg::Tensor y = ForgetsToSave::call({x});
    std::string msg = error_of([&] { tg::grad({tg::sum(y)}, {x}); });
    CHECK(contains(msg, "backward of op 'test_forgets_to_save' reads input 0, which its definition does not save"));
}

TEST_CASE("op definition: an op of 40 inputs saves what its definition says, and input 32 is not saved")
{
    tg::tensor_list xs;
    for (int k = 0; k < 40; ++k) xs.push_back(tg::full({3}, 0.25 * (k + 1), tg::float64).requires_grad_());
    tg::Tensor y = ScaledSum40::call(xs);
    REQUIRE(y.grad_fn() != nullptr);
    CHECK(y.grad_fn()->saved.size() == 3);  // input 0, the output, the kept sum
    tg::tensor_list g = tg::grad({tg::sum(y)}, xs);
    const double sum = 0.25 * 40 * 41 / 2;
    CHECK(g[0].at({1}) == doctest::Approx(sum + 0.25));
    for (int k : {1, 31, 32, 39}) CHECK(g[size_t(k)].at({2}) == 0.25);
}

TEST_CASE("op definition: an entry replays its forward with the attributes it was recorded with")
{
    tg::Tensor x = tg::randn({4}, tg::float64).requires_grad_();
    tg::Tensor y = quadratic(x, 0.25, 3);
    REQUIRE(y.grad_fn()->replay_form() == tg::ReplayForm::dense);
    tg::Tensor x2 = tg::randn({4}, tg::float64);
    tg::Tensor again = y.grad_fn()->forward_again({x2});
    CHECK(again.to_vector() == (quadratic(x2, 0.25, 3)).to_vector());
    // Elementwise ops replay pointwise, shape ops as index maps, by definition.
    CHECK(tg::exp(x).grad_fn()->replay_form() == tg::ReplayForm::pointwise);
    CHECK(tg::reshape(x, {2, 2}).grad_fn()->replay_form() == tg::ReplayForm::index_map);
    CHECK(tg::matmul(tg::reshape(x, {2, 2}), tg::reshape(x, {2, 2})).grad_fn()->replay_form() ==
          tg::ReplayForm::index_map);  // matmul ends in a reshape of bmm
    double args[2] = {3, 4};
    CHECK(tg::add(x, x).grad_fn()->pointwise(args) == 7);
}

// --- Tensor::set_data -------------------------------------------------------------------------

TEST_CASE("set_data: the tensor takes the new data and keeps its identity")
{
    tg::Tensor w = tg::ones({2, 3}).requires_grad_();
    tg::Tensor alias = w;  // another handle, like a module member and an optimizer's list
    tg::sum(tg::mul(w, w)).backward();
    REQUIRE(w.grad().defined());
    w.set_data(tg::full({2, 3}, 2.0, tg::float64));
    CHECK(alias.dtype() == tg::float64);
    CHECK(alias.at({1, 2}) == 2.0);
    CHECK(alias.requires_grad());
    CHECK_FALSE(alias.grad().defined());  // a float32 gradient does not fit float64 data
    // Same shape and dtype: the gradient stays.
    tg::sum(tg::mul(w, w)).backward();
    tg::Tensor before = w.grad();
    w.set_data(tg::zeros({2, 3}, tg::float64));
    CHECK(w.grad().same(before));
}

TEST_CASE("set_data: a tape entry that saved the tensor refuses to run on swapped data")
{
    tg::Tensor w = tg::randn({3}, tg::float64).requires_grad_();
    tg::Tensor y = tg::sum(tg::mul(w, w));
    w.set_data(tg::zeros({3}, tg::float64));
    std::string msg = error_of([&] { y.backward(); });
    CHECK(contains(msg, "backward of op 'mul'"));
    CHECK(contains(msg, "swapped by set_data"));
    // Swapping the original data back makes the entry valid again: nothing changed.
    tg::Tensor w2 = tg::randn({3}, tg::float64).requires_grad_();
    tg::Tensor own = w2.detach();
    tg::Tensor y2 = tg::sum(tg::mul(w2, w2));
    w2.set_data(tg::zeros({3}, tg::float64));
    w2.set_data(own);
    y2.backward();
    check_close(w2.grad().to_vector(), (tg::mul(own, tg::scalar(2.0, tg::float64))).to_vector(), 1e-15);
}

TEST_CASE("set_data: errors")
{
    tg::Tensor x = tg::ones({2}).requires_grad_();
    tg::Tensor y = tg::mul(x, x);
    CHECK(contains(error_of([&] { y.set_data(tg::ones({2})); }), "only leaves"));
    CHECK(contains(error_of([&] { x.set_data(tg::Tensor()); }), "undefined source"));
    CHECK(contains(error_of([&] { x.set_data(tg::zeros({2}, tg::int64)); }), "cannot take int64 data"));
}

// --- modules with plain members -----------------------------------------------------------------

namespace {
class Affine : public tg::nn::Module {
public:
    explicit Affine(int64_t n)
    {
        scale = register_parameter("scale", tg::ones({n}));
        shift = register_parameter("shift", tg::zeros({n}));
        offset = register_parameter("offset", tg::Tensor());  // none: registers nothing
    }
    tg::Tensor forward(const tg::Tensor& x) override { return tg::add(tg::mul(x, scale), shift); }
    tg::Tensor scale, shift, offset;
};
}  // namespace

TEST_CASE("modules: members, copies held elsewhere and the optimizer all see to()")
{
    static_assert(std::is_same_v<decltype(tg::nn::make<tg::nn::Linear>(2, 3)), std::shared_ptr<tg::nn::Linear>>);
    auto lin = tg::nn::make<tg::nn::Linear>(4, 3);
    tg::Tensor held = lin->weight;  // as a LibTorch user writes it
    tg::optim::SGD opt(lin->named_parameters(), {.lr = 0.1});
    lin->to(tg::float64);
    CHECK(held.dtype() == tg::float64);
    CHECK(held.same(lin->weight));
    CHECK(lin->named_parameters()[0].second.same(held));
    tg::Tensor before = held.detach().clone();
    tg::sum(lin->forward(tg::ones({2, 4}, tg::float64))).backward();
    opt.step();  // the optimizer holds the same tensors: it updates the float64 data
    CHECK(held.at({0, 0}) != before.at({0, 0}));
    Affine a(3);
    CHECK(a.named_parameters().size() == 2);
    CHECK_FALSE(a.offset.defined());
    CHECK(a.describe() == "Affine()");  // the default: the class's name
}

TEST_CASE("modules: the model gradcheck perturbs what the forward reads, held as plain members")
{
    tg::Generator gen(2);
    auto model = std::make_shared<tg::nn::Sequential>(std::initializer_list<std::shared_ptr<tg::nn::Module>>{
        tg::nn::make<tg::nn::Linear>(3, 4, true, &gen), std::make_shared<Affine>(4)});
    tg::Batch batch{tg::randn({2, 3}, tg::float32, &gen), tg::randint(0, 4, {2}, &gen)};
    tg::Tensor w = dynamic_cast<tg::nn::Linear&>(*model->children()[0].second).weight;
    tg::Tensor w_data = w.detach();
    auto loss = [](tg::nn::Module& m, const tg::Batch& b) { return tg::cross_entropy(m(b.x), b.y); };
    tg::GradcheckResult r = tg::gradcheck(*model, loss, batch);
    CHECK_MESSAGE(r.passed(), r.to_string());
    CHECK(r.input("0.weight").elements == 12);
    CHECK_FALSE(r.input("0.weight").vacuous);
    // The model's tensors are back: same handles, same storage, float32.
    CHECK(w.dtype() == tg::float32);
    CHECK(w.impl().storage == w_data.impl().storage);
}

TEST_CASE("modules: (height, width) options for kernels, strides, paddings and dilations")
{
    tg::Generator gen(4);
    tg::nn::Conv2d conv(2, 3, {3, 1}, {.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 2}}, &gen);
    CHECK(conv.weight.shape() == tg::shape_type{3, 2, 3, 1});
    CHECK(conv.describe() == "Conv2d(2, 3, kernel=(3, 1), stride=(2, 1), padding=(1, 0), dilation=(1, 2))");
    tg::Tensor x = tg::randn({1, 2, 7, 6}, tg::float32, &gen);
    CHECK(conv(x).to_vector() == (tg::conv2d(x, conv.weight, conv.bias, {2, 1}, {1, 0}, {1, 2})).to_vector());
    tg::nn::MaxPool2d mp({2, 3}, {1, 2});
    CHECK(mp.describe() == "MaxPool2d((2, 3), stride=(1, 2))");
    CHECK(mp(x).to_vector() == (tg::max_pool2d(x, {2, 3}, {1, 2})).to_vector());
    tg::nn::AvgPool2d ap({3, 2}, tg::Int2(), {1, 1}, false);
    CHECK(ap(x).to_vector() == (tg::avg_pool2d(x, {3, 2}, {3, 2}, {1, 1}, false)).to_vector());
    CHECK(contains(error_of([&] { tg::nn::Conv2d bad(2, 3, {3, 0}); }), "Conv2d(2, 3, kernel=(3, 0)): sizes must be positive"));
}

namespace {
struct FiveFields {
    tg::Int2 kernel{3, 2};
    int64_t axis = 1;
    double eps = 1e-5;
    bool flag = false;
    tg::shape_type shape{4, 5};
};
}  // namespace

TEST_CASE("op definition: the bad-input sweep finds every attribute field and spoils each in turn")
{
    static_assert(tg::detail::field_count<FiveFields>() == 5);
    static_assert(tg::detail::field_count<tg::NoAttrs>() == 0);
    const auto spoiled = tg::detail::spoiled_attrs(FiveFields{});
    // Int2: 5 edge values (not -1, "not given") in each half; int64: the 6
    // edges; double: 6; bool: 1; shape [4, 5]: one longer, one shorter, 6
    // edges in each of its 2 places, 99 and -99 appended.
    CHECK(spoiled.size() == 10 + 6 + 6 + 1 + (2 + 12 + 2));
    std::set<std::string> seen;
    for (const auto& s : spoiled) {
        CAPTURE(s.what);
        CHECK(seen.insert(s.what).second);  // each describes a different call
        // Exactly one field differs from the original.
        const FiveFields o;
        const int changed = int(!(s.attrs.kernel == o.kernel)) + int(s.attrs.axis != o.axis) +
                            int(!(s.attrs.eps == o.eps)) + int(s.attrs.flag != o.flag) + int(s.attrs.shape != o.shape);
        CHECK(changed == 1);
    }
    CHECK(seen.count("attribute 1 of 5: (3, 2) -> (0, 2)") == 1);
    CHECK(seen.count("attribute 2 of 5: 1 -> 4611686018427387904") == 1);
    CHECK(seen.count("attribute 3 of 5: 1e-05 -> nan") == 1);
    CHECK(seen.count("attribute 4 of 5: false -> true") == 1);
    CHECK(seen.count("attribute 5 of 5: [4, 5] -> [4, 5, 99]") == 1);
}
