// The whole-model gradcheck (nn/gradcheck.hpp): every parameter checked, the
// model left exactly as it was, a planted gradient bug found and named, and
// the fallback for ops without a replay closure.
#include "tests/helpers.hpp"

#include <cstring>

namespace {

tg::Tensor xent(tg::nn::Module& m, const tg::Batch& b) { return tg::cross_entropy(m(b.x), b.y); }

// y = x·s with s per feature, as a user's own op whose rule scales the
// gradient of s by (1 + bug): an op definition (replayable), or a bare rule.
tg::tensor_list scale_rule(const tg::BackwardArgs& a, const tg::Tensor& x, const tg::Tensor& s, double bug)
{
    tg::Tensor ds = tg::sum_to(tg::mul(a.grad, x), s.shape());
    if (bug != 0) ds = tg::mul(ds, tg::scalar(1 + bug, ds.dtype()));
    return {tg::sum_to(tg::mul(a.grad, s), x.shape()), ds};
}

struct ScaleOp : tg::Op<ScaleOp> {
    static constexpr const char* name = "scale";
    static constexpr tg::Saves saves = tg::save_input(0) | tg::save_input(1);
    struct Attrs {
        double bug;
    };
    static tg::Tensor forward(tg::TensorRefs in) { return tg::mul(in[0], in[1]); }
    static tg::tensor_list backward(const tg::BackwardArgs& a, const Attrs& at)
    {
        return scale_rule(a, a.input(0), a.input(1), at.bug);
    }
    static std::vector<tg::OpSample> samples() { return {sample("[3,4] x [4]", {tg::real("x", {3, 4}), tg::real("s", {4})})}; }
};

tg::Tensor scale_op(const tg::Tensor& x, const tg::Tensor& s, double bug, bool replayable)
{
    if (replayable) return ScaleOp::call({x, s}, {bug});
    tg::Tensor out;
    {
        tg::NoGradGuard off;
        out = tg::mul(x, s);
    }
    return tg::record("scale", out, {x, s}, {x, s}, [bug](const tg::BackwardArgs& a) -> tg::tensor_list {
        return scale_rule(a, a.saved[0], a.saved[1], bug);
    });
}

class Scale : public tg::nn::Module {
public:
    Scale(int64_t n, double bug, bool replayable)
        : s(register_parameter("s", tg::add(tg::ones({n}), tg::rand({n})))), bug_(bug), replayable_(replayable)
    {
    }
    tg::Tensor forward(const tg::Tensor& x) override { return scale_op(x, s, bug_, replayable_); }
    std::string describe() const override { return "Scale"; }
    tg::Tensor s;

private:
    double bug_;
    bool replayable_;
};

std::shared_ptr<tg::nn::Sequential> scaled_mlp(double bug, bool replayable)
{
    tg::Generator gen(5);
    return std::make_shared<tg::nn::Sequential>(std::initializer_list<std::shared_ptr<tg::nn::Module>>{
        tg::nn::make<tg::nn::Linear>(6, 5, true, &gen), std::make_shared<Scale>(5, bug, replayable),
        tg::nn::make<tg::nn::Tanh>(), tg::nn::make<tg::nn::Linear>(5, 3, true, &gen)});
}

tg::Batch small_batch(int64_t n, int64_t features, int64_t classes)
{
    tg::Generator gen(9);
    return {tg::randn({n, features}, tg::float32, &gen), tg::randint(0, classes, {n}, &gen)};
}

}  // namespace

TEST_CASE("model gradcheck: every parameter of the small CNN, the model untouched")
{
    tg::Generator gen(1);
    auto model = tg::nn::small_cnn(&gen);
    tg::named_tensors before = model->named_parameters();
    std::vector<std::vector<float>> values;
    for (auto& [name, t] : before) values.emplace_back(t.data<float>(), t.data<float>() + t.numel());
    tg::Batch batch{tg::randn({2, 1, 28, 28}, tg::float32, &gen), tg::randint(0, 10, {2}, &gen)};

    tg::GradcheckResult r = tg::gradcheck(*model, xent, batch);
    INFO(r.to_string());
    CHECK(r.passed());
    CHECK_FALSE(r.vacuous);
    REQUIRE(r.inputs.size() == 8);
    int64_t elements = 0;
    for (const tg::InputReport& in : r.inputs) {
        CHECK(in.checked_by == tg::CheckedBy::full);
        CHECK(in.rel_error < 1e-7);
        elements += in.elements;
    }
    CHECK(elements == 13242);
    CHECK(r.evaluations >= 2 * 13242);
    CHECK(r.input("3.weight").shape == tg::shape_type{8, 4, 3, 3});
    CHECK(r.note.find("partial replay") != std::string::npos);

    // The same tensors, the same dtype, the same bits.
    tg::named_tensors after = model->named_parameters();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) {
        CHECK(after[i].second.same(before[i].second));
        CHECK(after[i].second.dtype() == tg::float32);
        CHECK(std::memcmp(after[i].second.data<float>(), values[i].data(), values[i].size() * sizeof(float)) == 0);
    }
}

TEST_CASE("model gradcheck: a planted bug in one parameter's gradient is found and named")
{
    tg::Batch batch = small_batch(4, 6, 3);
    auto good = scaled_mlp(0, true);
    CHECK(tg::gradcheck(*good, xent, batch).passed());

    auto bad = scaled_mlp(1e-3, true);  // the gradient of 1.s is 0.1% too large
    tg::GradcheckResult r = tg::gradcheck(*bad, xent, batch);
    INFO(r.to_string());
    CHECK_FALSE(r.passed());
    CHECK(r.failed_inputs() == std::vector<std::string>{"1.s"});
    const tg::InputReport& s = r.input("1.s");
    CHECK(s.failures == 5);
    REQUIRE_FALSE(s.worst.empty());
    CHECK(s.worst[0].verdict == tg::ElementVerdict::fail);
    CHECK(s.worst[0].analytic / s.worst[0].numeric == doctest::Approx(1.001).epsilon(1e-6));
    CHECK(r.to_string().find("1.s [5]: FAIL") != std::string::npos);
}

TEST_CASE("model gradcheck: ops without a replay closure fall back to re-running the loss")
{
    tg::Batch batch = small_batch(3, 6, 3);
    tg::GradcheckResult good = tg::gradcheck(*scaled_mlp(0, false), xent, batch);
    INFO(good.to_string());
    CHECK(good.passed());
    CHECK(good.note.find("no replay for scale") != std::string::npos);
    tg::GradcheckResult bad = tg::gradcheck(*scaled_mlp(1e-3, false), xent, batch);
    CHECK(bad.failed_inputs() == std::vector<std::string>{"1.s"});
}

TEST_CASE("model gradcheck: batch norm and dropout in training mode, buffers restored")
{
    tg::Generator gen(2);
    auto model = std::make_shared<tg::nn::Sequential>(std::initializer_list<std::shared_ptr<tg::nn::Module>>{
        tg::nn::make<tg::nn::Conv2d>(2, 3, 3, tg::nn::Conv2dOptions{.padding = 1, .bias = false}, &gen),
        tg::nn::make<tg::nn::BatchNorm2d>(3), tg::nn::make<tg::nn::Tanh>(), tg::nn::make<tg::nn::AvgPool2d>(2),
        tg::nn::make<tg::nn::Flatten>(), tg::nn::make<tg::nn::Dropout>(0.3, 7),
        tg::nn::make<tg::nn::Linear>(3 * 3 * 3, 4, true, &gen), tg::nn::make<tg::nn::LayerNorm>(tg::shape_type{4}),
        tg::nn::make<tg::nn::Linear>(4, 3, true, &gen)});
    tg::Batch batch{tg::randn({3, 2, 6, 6}, tg::float32, &gen), tg::randint(0, 3, {3}, &gen)};
    tg::named_tensors buffers = model->named_buffers();
    std::vector<std::vector<double>> values;
    for (auto& [name, t] : buffers) values.push_back(t.to_vector());
    REQUIRE(buffers.size() == 3);
    CHECK(buffers[2].first == "1.num_batches_tracked");

    tg::GradcheckResult r = tg::gradcheck(*model, xent, batch);
    INFO(r.to_string());
    CHECK(r.passed());
    CHECK(r.note.find("partial replay") != std::string::npos);
    tg::named_tensors after = model->named_buffers();
    REQUIRE(after.size() == buffers.size());
    for (size_t i = 0; i < after.size(); ++i) {
        CHECK(after[i].second.same(buffers[i].second));
        CHECK(after[i].second.dtype() == buffers[i].second.dtype());
        CHECK(after[i].second.to_vector() == values[i]);  // the running statistics and the batch count as they were
    }

    model->eval();
    CHECK(tg::gradcheck(*model, xent, batch).passed());
}
