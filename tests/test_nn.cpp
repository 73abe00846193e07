// nn modules: names and order of parameters and buffers, counts, modes,
// dtype conversion, summary(), PyTorch's initialisation, each layer against
// the op it wraps, output shapes, error messages, and a short training run.
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "helpers.hpp"

namespace nn = tg::nn;

namespace {


std::vector<std::string> names_of(const tg::named_tensors& named)
{
    std::vector<std::string> out;
    for (const auto& [name, t] : named) out.push_back(name);
    return out;
}

void check_equal(const tg::Tensor& got, const tg::Tensor& want, double tol = 0)
{
    REQUIRE(got.shape() == want.shape());
    Values g = got.to_vector(), w = want.to_vector();
    for (size_t i = 0; i < g.size(); ++i) {
        INFO("element " << i);
        if (tol == 0)
            CHECK(g[i] == w[i]);
        else
            CHECK(g[i] == doctest::Approx(w[i]).epsilon(tol).scale(1.0));
    }
}

// A module with named children, as a user would write one.
class Block : public nn::Module {
public:
    explicit Block(tg::Generator* gen)
        : scale(register_parameter("scale", tg::ones({3}))),
          encoder(register_module("encoder", std::make_shared<nn::Linear>(4, 3, true, gen))),
          head(register_module("head", std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
                                           nn::make<nn::ReLU>(), nn::make<nn::Linear>(3, 2, false, gen)})))
    {
        register_buffer("steps", tg::zeros({}, tg::int64));
    }
    tg::Tensor forward(const tg::Tensor& x) override { return (*head)((*encoder)(x) * scale); }
    std::string describe() const override { return "Block"; }
    void register_twice() { register_parameter("scale", tg::ones({1})); }

    tg::Tensor scale;
    std::shared_ptr<nn::Linear> encoder;
    std::shared_ptr<nn::Sequential> head;
};

}  // namespace

// --- names, order, counts ------------------------------------------------------------------

TEST_CASE("nn: named_parameters of a Sequential are '<index>.<name>' in registration order")
{
    tg::Generator gen(0);
    auto cnn = nn::reference_cnn(&gen);
    // conv, relu, pool, conv, relu, pool, flatten, linear, relu, linear
    CHECK(names_of(cnn->named_parameters()) ==
          std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"});
    auto named = cnn->named_parameters();
    CHECK(named[0].second.shape() == tg::shape_type{32, 1, 3, 3});
    CHECK(named[3].second.shape() == tg::shape_type{64});
    CHECK(named[4].second.shape() == tg::shape_type{128, 3136});
    CHECK(named[7].second.shape() == tg::shape_type{10});
    CHECK(cnn->named_buffers().empty());

    // parameters() holds the same tensors (not copies), in the same order.
    tg::tensor_list params = cnn->parameters();
    REQUIRE(params.size() == named.size());
    for (size_t i = 0; i < params.size(); ++i) CHECK(params[i].same(named[i].second));
    for (const auto& p : params) {
        CHECK(p.requires_grad());
        CHECK(p.is_leaf());
    }
}

TEST_CASE("nn: nested modules join names with '.', buffers are named the same way")
{
    tg::Generator gen(1);
    auto inner_ptr = std::make_shared<nn::Sequential>();
    inner_ptr->add(nn::make<nn::Conv2d>(2, 4, 3, nn::Conv2dOptions{.bias = false}, &gen));
    inner_ptr->add(nn::make<nn::BatchNorm2d>(4));
    nn::Sequential outer{nn::make<nn::Conv2d>(3, 2, 1, nn::Conv2dOptions{}, &gen), inner_ptr, nn::make<nn::ReLU>(),
                         nn::make<nn::LayerNorm>(tg::shape_type{4, 5, 5})};
    CHECK(names_of(outer.named_parameters()) ==
          std::vector<std::string>{"0.weight", "0.bias", "1.0.weight", "1.1.weight", "1.1.bias", "3.weight", "3.bias"});
    CHECK(names_of(outer.named_buffers()) ==
          std::vector<std::string>{"1.1.running_mean", "1.1.running_var", "1.1.num_batches_tracked"});
    CHECK(outer.parameter_count() == 3 * 2 + 2 + 4 * 2 * 9 + 4 + 4 + 2 * 100);
    // The buffers are the BatchNorm2d's own tensors.
    auto& bn = dynamic_cast<nn::BatchNorm2d&>(*inner_ptr->children()[1].second);
    CHECK(outer.named_buffers()[0].second.same(bn.running_mean));
    // Buffers are not parameters: they do not require grad.
    for (const auto& [name, t] : outer.named_buffers()) CHECK_FALSE(t.requires_grad());
}

TEST_CASE("nn: a user module's own parameters come before its children's, children in registration order")
{
    tg::Generator gen(2);
    Block block(&gen);
    CHECK(names_of(block.named_parameters()) ==
          std::vector<std::string>{"scale", "encoder.weight", "encoder.bias", "head.1.weight"});
    CHECK(names_of(block.named_buffers()) == std::vector<std::string>{"steps"});
    CHECK(block.named_parameters()[1].second.same(block.encoder->weight));
    CHECK(block.encoder->bias.defined());
    CHECK_FALSE(dynamic_cast<nn::Linear&>(*block.head->children()[1].second).bias.defined());
    CHECK(block.parameter_count() == 3 + 12 + 3 + 6);
    CHECK(contains(error_of([&] { block.register_twice(); }), "parameter 'scale' registered twice"));
}

TEST_CASE("nn: parameter_count of the shared models matches their PyTorch twins")
{
    CHECK(nn::reference_cnn()->parameter_count() == 421642);
    CHECK(nn::small_cnn()->parameter_count() == 13242);
    CHECK(nn::reference_mlp()->parameter_count() == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
    CHECK(nn::Linear(5, 3, false).parameter_count() == 15);
    CHECK(nn::Conv2d(4, 8, 3, nn::Conv2dOptions{.groups = 2}).parameter_count() == 8 * 2 * 9 + 8);
    CHECK(nn::ReLU().parameter_count() == 0);
}

TEST_CASE("nn: modules cannot be copied (their weight/bias members refer to their own storage)")
{
    // A copy would keep references into the original's parameter list.
    CHECK_FALSE(std::is_copy_constructible_v<nn::Linear>);
    CHECK_FALSE(std::is_copy_constructible_v<nn::Conv2d>);
    CHECK_FALSE(std::is_copy_constructible_v<nn::BatchNorm2d>);
    CHECK_FALSE(std::is_copy_constructible_v<nn::Sequential>);
}

// --- gradients and modes ---------------------------------------------------------------------

TEST_CASE("nn: backward fills every parameter's grad, zero_grad drops them recursively")
{
    tg::Generator gen(3);
    auto mlp = nn::reference_mlp(&gen);
    tg::Tensor x = tg::randn({4, 784}, tg::float32, &gen);
    tg::Tensor loss = tg::sum((*mlp)(x));
    loss.backward();
    for (const auto& [param_name, p] : mlp->named_parameters()) {
        const std::string& name = param_name;  // (clang 14 cannot capture a structured binding)
        INFO(name);
        REQUIRE(p.grad().defined());
        CHECK(p.grad().shape() == p.shape());
    }
    // The last layer's bias gets d sum / d b = batch size for each output.
    check_equal(mlp->named_parameters()[5].second.grad(), tg::full({10}, 4.0));
    mlp->zero_grad();
    for (const auto& [param_name, p] : mlp->named_parameters()) {
        const std::string& name = param_name;  // (clang 14 cannot capture a structured binding)
        INFO(name);
        CHECK_FALSE(p.grad().defined());
    }
    // A second backward after zero_grad gives the same gradients, not twice them.
    tg::sum((*mlp)(x)).backward();
    check_equal(mlp->named_parameters()[5].second.grad(), tg::full({10}, 4.0));
}

TEST_CASE("nn: train()/eval() reach every nested module, Dropout is the identity in eval")
{
    auto drop = std::make_shared<nn::Dropout>(0.5, 11);
    auto inner = std::make_shared<nn::Sequential>();
    inner->add(drop);
    nn::Sequential model{nn::make<nn::ReLU>(), inner};
    CHECK(model.is_training());
    CHECK(drop->is_training());

    model.eval();
    CHECK_FALSE(model.is_training());
    CHECK_FALSE(inner->is_training());
    CHECK_FALSE(drop->is_training());
    tg::Tensor x = tg::rand({50, 40}) + 0.5;  // positive, so ReLU keeps it
    check_equal(model(x), x);

    model.train();
    CHECK(drop->is_training());
    tg::Tensor y = model(x);
    Values xv = x.to_vector(), yv = y.to_vector();
    int64_t zeros = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
        if (yv[i] == 0) {
            ++zeros;
        } else {
            // kept elements are scaled by 1 / (1 - p)
            CHECK(yv[i] == doctest::Approx(2 * xv[i]));
        }
    }
    // 2000 draws at p = 0.5: well within 5 standard deviations (±112) of 1000.
    CHECK(zeros > 888);
    CHECK(zeros < 1112);

    // The same seed gives the same mask.
    nn::Dropout again(0.5, 11);
    check_equal(again(x), y);
    model.train(false);
    CHECK_FALSE(drop->is_training());
}

TEST_CASE("nn: BatchNorm2d updates running stats in train (momentum 0.1, unbiased var) and uses them in eval")
{
    tg::Generator gen(4);
    nn::BatchNorm2d bn(2);
    CHECK(names_of(bn.named_parameters()) == std::vector<std::string>{"weight", "bias"});
    CHECK(names_of(bn.named_buffers()) ==
          std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});
    check_equal(bn.running_mean, tg::zeros({2}));
    check_equal(bn.running_var, tg::ones({2}));
    CHECK(bn.num_batches_tracked.dtype() == tg::int64);
    CHECK(bn.num_batches_tracked.shape() == tg::shape_type{});
    CHECK(bn.num_batches_tracked.item() == 0);

    const int64_t n = 3, c = 2, hw = 4;
    tg::Tensor x = tg::randn({n, c, 2, 2}, tg::float32, &gen) * 2.0 + 1.0;
    // The per-channel statistics by hand.
    Values xv = x.to_vector();
    std::vector<double> mean(c, 0), var(c, 0);
    for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t k = 0; k < hw; ++k) mean[ch] += xv[size_t((i * c + ch) * hw + k)];
        mean[ch] /= double(n * hw);
        for (int64_t i = 0; i < n; ++i)
            for (int64_t k = 0; k < hw; ++k) var[ch] += std::pow(xv[size_t((i * c + ch) * hw + k)] - mean[ch], 2);
        var[ch] /= double(n * hw);  // biased
    }
    double unbiased = double(n * hw) / double(n * hw - 1);

    tg::Tensor y = bn(x);  // training mode: batch statistics
    for (int64_t ch = 0; ch < c; ++ch) {
        CHECK(bn.running_mean.at({ch}) == doctest::Approx(0.1 * mean[ch]).epsilon(1e-5));
        CHECK(bn.running_var.at({ch}) == doctest::Approx(0.9 + 0.1 * var[ch] * unbiased).epsilon(1e-5));
        // The output is normalised with the biased batch variance.
        double y0 = y.at({0, ch, 0, 0});
        CHECK(y0 == doctest::Approx((x.at({0, ch, 0, 0}) - mean[ch]) / std::sqrt(var[ch] + 1e-5)).epsilon(1e-4));
    }
    CHECK(bn.num_batches_tracked.item() == 1);
    // A second step compounds: r = 0.9 r + 0.1 batch.
    bn(x);
    CHECK(bn.num_batches_tracked.item() == 2);
    for (int64_t ch = 0; ch < c; ++ch) {
        CHECK(bn.running_mean.at({ch}) == doctest::Approx(0.19 * mean[ch]).epsilon(1e-5));
        CHECK(bn.running_var.at({ch}) == doctest::Approx(0.81 + 0.19 * var[ch] * unbiased).epsilon(1e-5));
    }

    // Evaluation: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, stats untouched.
    {
        tg::NoGradGuard off;  // in-place changes of parameters happen off the tape
        bn.weight.copy_(tg::from_values({2.0, -0.5}));
        bn.bias.copy_(tg::from_values({0.25, 1.0}));
    }
    bn.eval();
    Values rm = bn.running_mean.to_vector(), rv = bn.running_var.to_vector();
    tg::Tensor z = bn(x);
    check_equal(bn.running_mean, tg::from_values(rm));
    check_equal(bn.running_var, tg::from_values(rv));
    CHECK(bn.num_batches_tracked.item() == 2);  // counted in training only
    Values w = {2.0, -0.5}, b = {0.25, 1.0};
    Values zv = z.to_vector();
    for (int64_t i = 0; i < n; ++i)
        for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t k = 0; k < hw; ++k) {
                size_t at = size_t((i * c + ch) * hw + k);
                double want = (xv[at] - rm[size_t(ch)]) / std::sqrt(rv[size_t(ch)] + 1e-5) * w[size_t(ch)] + b[size_t(ch)];
                CHECK(zv[at] == doctest::Approx(want).epsilon(1e-5));
            }
    // eval output differs from what batch statistics would give (the stats are not the batch's).
    CHECK(std::abs(z.at({0, 0, 0, 0}) - (y.at({0, 0, 0, 0}) * 2.0 + 0.25)) > 1e-3);
}

// --- dtype conversion -------------------------------------------------------------------------

TEST_CASE("nn: to(float64) keeps parameters leaves that require grad, with the same values")
{
    tg::Generator gen(5);
    nn::Sequential model{nn::make<nn::Conv2d>(1, 2, 3, nn::Conv2dOptions{.padding = 1}, &gen),
                         nn::make<nn::BatchNorm2d>(2), nn::make<nn::Flatten>(), nn::make<nn::Linear>(2 * 4 * 4, 3, true, &gen)};
    auto before = model.named_parameters();
    std::vector<Values> values;
    for (const auto& [name, p] : before) values.push_back(p.to_vector());

    model.to(tg::float64);
    auto after = model.named_parameters();
    REQUIRE(names_of(after) == names_of(before));
    for (size_t i = 0; i < after.size(); ++i) {
        INFO(after[i].first);
        const tg::Tensor& p = after[i].second;
        CHECK(p.dtype() == tg::float64);
        CHECK(p.is_leaf());
        CHECK(p.requires_grad());
        CHECK(p.to_vector() == values[i]);  // float32 → float64 is exact
    }
    // Floating buffers follow; the int64 count stays a count.
    for (const auto& [name, b] : model.named_buffers())
        CHECK(b.dtype() == (name.ends_with("num_batches_tracked") ? tg::int64 : tg::float64));
    // The layer's weight member follows the conversion.
    auto& lin = dynamic_cast<nn::Linear&>(*model.children()[3].second);
    CHECK(lin.weight.dtype() == tg::float64);
    CHECK(lin.weight.same(after[4].second));
    CHECK(lin.bias.same(after[5].second));

    // It trains in float64: the gradients reach the converted leaves.
    tg::Tensor x = tg::randn({2, 1, 4, 4}, tg::float64, &gen);
    tg::sum(model(x)).backward();
    for (const auto& [param_name, p] : model.named_parameters()) {
        const std::string& name = param_name;  // (clang 14 cannot capture a structured binding)
        INFO(name);
        REQUIRE(p.grad().defined());
        CHECK(p.grad().dtype() == tg::float64);
    }
    // And back to float32.
    model.to(tg::float32);
    CHECK(model.named_parameters()[0].second.to_vector() == values[0]);
    CHECK(model.named_buffers()[0].second.dtype() == tg::float32);
}

TEST_CASE("nn: to(int64) is refused before anything changes")
{
    tg::Generator gen(6);
    nn::Sequential model{nn::make<nn::Linear>(3, 2, true, &gen), nn::make<nn::Linear>(2, 1, true, &gen)};
    std::string msg = error_of([&] { model.to(tg::int64); });
    CHECK(contains(msg, "int64"));
    CHECK(contains(msg, "float32 or float64"));
    for (const auto& [param_name, p] : model.named_parameters()) {
        const std::string& name = param_name;  // (clang 14 cannot capture a structured binding)
        INFO(name);
        CHECK(p.dtype() == tg::float32);
        CHECK(p.requires_grad());
    }
}

// --- summary -----------------------------------------------------------------------------------

TEST_CASE("nn: summary lists each layer with its output shape and parameter count")
{
    tg::Generator gen(7);
    auto cnn = nn::reference_cnn(&gen);
    int64_t tape_before = tg::live_tape_entries();
    std::string s = cnn->summary({2, 1, 28, 28});
    INFO(s);
    CHECK(contains(s, "0: Conv2d(1, 32, kernel=3, padding=1)"));
    CHECK(contains(s, "3: Conv2d(32, 64, kernel=3, padding=1)"));
    CHECK(contains(s, "2: MaxPool2d(2)"));
    CHECK(contains(s, "6: Flatten()"));
    CHECK(contains(s, "7: Linear(3136, 128)"));
    CHECK(contains(s, "total parameters: 421642"));

    // One line per layer: the shape and the count on the layer's own line.
    auto line_of = [&](const std::string& label) {
        size_t at = s.find(label);
        REQUIRE(at != std::string::npos);
        size_t end = s.find('\n', at);
        return s.substr(at, end - at);
    };
    CHECK(contains(line_of("0: Conv2d"), "[2, 32, 28, 28]"));
    CHECK(contains(line_of("0: Conv2d"), "320"));
    CHECK(contains(line_of("2: MaxPool2d"), "[2, 32, 14, 14]"));
    CHECK(contains(line_of("5: MaxPool2d"), "[2, 64, 7, 7]"));
    CHECK(contains(line_of("6: Flatten"), "[2, 3136]"));
    CHECK(contains(line_of("7: Linear"), "401536"));
    CHECK(contains(line_of("9: Linear"), "[2, 10]"));
    CHECK(contains(line_of("9: Linear"), "1290"));
    CHECK(std::count(s.begin(), s.end(), '\n') == 1 + 11 + 1);  // header, the Sequential and its 10 layers, total

    // summary() leaves no tape behind and keeps the mode.
    CHECK(tg::live_tape_entries() == tape_before);
    CHECK(cnn->is_training());
}

TEST_CASE("nn: summary runs in eval mode: BatchNorm2d's running stats are not touched")
{
    nn::Sequential model{nn::make<nn::Conv2d>(1, 3, 3), nn::make<nn::BatchNorm2d>(3)};
    tg::Tensor& rm = dynamic_cast<nn::BatchNorm2d&>(*model.children()[1].second).running_mean;
    rm.fill_(0.5);
    std::string s = model.summary({1, 1, 5, 5});
    CHECK(contains(s, "BatchNorm2d(3)"));
    CHECK(contains(s, "[1, 3, 3, 3]"));
    check_equal(rm, tg::full({3}, 0.5));
    CHECK(model.is_training());
}

// --- initialisation --------------------------------------------------------------------------

TEST_CASE("nn: Linear and Conv2d initialise like PyTorch: uniform in ±1/sqrt(fan_in)")
{
    // uniform(-b, b): |w| <= b, max near b, mean 0, variance b²/3.
    auto check_uniform = [](const tg::Tensor& t, double bound) {
        Values v = t.to_vector();
        double mx = 0, sum = 0, sq = 0;
        for (double e : v) {
            mx = std::max(mx, std::abs(e));
            sum += e;
            sq += e * e;
        }
        double n = double(v.size()), mean = sum / n, var = sq / n - mean * mean;
        CHECK(mx <= bound * (1 + 1e-6));
        CHECK(mx > bound * (1 - 10.0 / n));  // the largest of n draws is close to the bound
        CHECK(std::abs(mean) < 5 * bound / std::sqrt(3 * n));
        // Relative to b²/3 (not doctest's Approx, whose absolute floor is 100 times
        // this variance): within 5 standard deviations of a uniform's sample variance.
        CHECK(std::abs(var / (bound * bound / 3) - 1) <= 5 * std::sqrt(0.8 / n));
    };
    tg::Generator gen(8);
    nn::Linear lin(1000, 300, true, &gen);
    check_uniform(lin.weight, 1 / std::sqrt(1000.0));
    check_uniform(lin.bias, 1 / std::sqrt(1000.0));

    nn::Conv2d conv(16, 64, 5, {}, &gen);  // fan_in = 16 * 5 * 5
    check_uniform(conv.weight, 1 / std::sqrt(400.0));
    CHECK(conv.bias.numel() == 64);
    for (double b : conv.bias.to_vector()) CHECK(std::abs(b) <= 1 / std::sqrt(400.0));

    nn::Conv2d grouped(32, 64, 3, nn::Conv2dOptions{.groups = 4}, &gen);  // fan_in = 32 / 4 * 9
    CHECK(grouped.weight.shape() == tg::shape_type{64, 8, 3, 3});
    check_uniform(grouped.weight, 1 / std::sqrt(72.0));

    // BatchNorm2d and LayerNorm start as the identity affine map.
    nn::BatchNorm2d bn(3);
    check_equal(bn.weight, tg::ones({3}));
    check_equal(bn.bias, tg::zeros({3}));
    nn::LayerNorm ln({2, 3});
    check_equal(ln.weight, tg::ones({2, 3}));
    check_equal(ln.bias, tg::zeros({2, 3}));
}

TEST_CASE("nn: the same seed gives the same weights, another seed other weights")
{
    tg::Generator a(42), b(42), c(43);
    auto ma = nn::small_cnn(&a), mb = nn::small_cnn(&b), mc = nn::small_cnn(&c);
    auto pa = ma->parameters(), pb = mb->parameters(), pc = mc->parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
        CHECK(pa[i].to_vector() == pb[i].to_vector());
        CHECK(pa[i].to_vector() != pc[i].to_vector());
    }
    // Without a generator the thread's default one is used, so manual_seed fixes the model.
    tg::manual_seed(9);
    nn::Linear l1(20, 10);
    tg::manual_seed(9);
    nn::Linear l2(20, 10);
    CHECK(l1.weight.to_vector() == l2.weight.to_vector());
    CHECK(l1.bias.to_vector() == l2.bias.to_vector());
    // Two layers drawn one after another differ.
    nn::Linear l3(20, 10);
    CHECK(l3.weight.to_vector() != l2.weight.to_vector());
}

// --- layers against their ops ----------------------------------------------------------------

TEST_CASE("nn: Linear's forward is linear() with its parameters, i.e. x·Wᵀ + b")
{
    tg::Generator gen(10);
    nn::Linear lin(6, 4, true, &gen);
    tg::Tensor x = tg::randn({5, 6}, tg::float32, &gen);
    tg::Tensor y = lin(x);
    CHECK(y.shape() == tg::shape_type{5, 4});
    check_equal(y, tg::linear(x, lin.weight, lin.bias));
    check_equal(y, tg::matmul(x, tg::transpose(lin.weight)) + lin.bias, 1e-6);
    // Any leading axes.
    tg::Tensor x3 = tg::randn({2, 3, 6}, tg::float32, &gen);
    CHECK(lin(x3).shape() == tg::shape_type{2, 3, 4});
    check_equal(tg::reshape(lin(x3), {6, 4}), lin(tg::reshape(x3, {6, 6})));

    nn::Linear nobias(6, 4, false, &gen);
    CHECK_FALSE(nobias.bias.defined());
    CHECK(nobias.describe() == "Linear(6, 4, bias=false)");
    check_equal(nobias(x), tg::matmul(x, tg::transpose(nobias.weight)), 1e-6);
}

TEST_CASE("nn: Conv2d's forward is conv2d() with its parameters and options")
{
    tg::Generator gen(11);
    tg::Tensor x = tg::randn({2, 4, 9, 8}, tg::float32, &gen);
    nn::Conv2dOptions o{.stride = 2, .padding = 1, .dilation = 1, .groups = 2};
    nn::Conv2d conv(4, 6, 3, o, &gen);
    check_equal(conv(x), tg::conv2d(x, conv.weight, conv.bias, 2, 1, 1, 2));
    // Against a naive sum for one output element: n 1, out channel 4 (group 1: inputs 2, 3), position (2, 1).
    double want = conv.bias.at({4});
    for (int64_t ci = 0; ci < 2; ++ci)
        for (int64_t i = 0; i < 3; ++i)
            for (int64_t j = 0; j < 3; ++j) {
                int64_t r = 2 * 2 - 1 + i, col = 1 * 2 - 1 + j;
                if (r < 0 || r >= 9 || col < 0 || col >= 8) continue;
                want += conv.weight.at({4, ci, i, j}) * x.at({1, 2 + ci, r, col});
            }
    CHECK(conv(x).at({1, 4, 2, 1}) == doctest::Approx(want).epsilon(1e-5));
    CHECK(conv.describe() == "Conv2d(4, 6, kernel=3, stride=2, padding=1, groups=2)");
}

TEST_CASE("nn: Conv2dOptions give PyTorch's output shapes")
{
    tg::Generator gen(12);
    tg::Tensor x = tg::randn({2, 4, 11, 13}, tg::float32, &gen);
    CHECK(nn::Conv2d(4, 8, 3, {}, &gen)(x).shape() == tg::shape_type{2, 8, 9, 11});
    // floor((11 + 2 - 3) / 2) + 1 = 6, floor((13 + 2 - 3) / 2) + 1 = 7
    CHECK(nn::Conv2d(4, 8, 3, {.stride = 2, .padding = 1}, &gen)(x).shape() == tg::shape_type{2, 8, 6, 7});
    // dilation 2: a 5-wide window
    CHECK(nn::Conv2d(4, 8, 3, {.dilation = 2}, &gen)(x).shape() == tg::shape_type{2, 8, 7, 9});
    CHECK(nn::Conv2d(4, 8, 1, {.stride = 3}, &gen)(x).shape() == tg::shape_type{2, 8, 4, 5});
    nn::Conv2d grouped(4, 8, 3, {.padding = 1, .groups = 4, .bias = false}, &gen);
    CHECK(grouped(x).shape() == tg::shape_type{2, 8, 11, 13});
    CHECK(names_of(grouped.named_parameters()) == std::vector<std::string>{"weight"});
    CHECK(grouped.weight.shape() == tg::shape_type{8, 1, 3, 3});
    CHECK_FALSE(grouped.bias.defined());
    CHECK(grouped.describe() == "Conv2d(4, 8, kernel=3, padding=1, groups=4, bias=false)");
    // A bias-free conv of zeros is zero.
    check_equal(grouped(tg::zeros({1, 4, 5, 5})), tg::zeros({1, 8, 5, 5}));
}

TEST_CASE("nn: Flatten, the pools, activations and LayerNorm")
{
    tg::Tensor x = tg::reshape(tg::arange(2 * 3 * 4 * 4), {2, 3, 4, 4});
    CHECK(nn::Flatten()(x).shape() == tg::shape_type{2, 48});
    CHECK(nn::Flatten(2, 3)(x).shape() == tg::shape_type{2, 3, 16});
    CHECK(nn::Flatten(0, 1)(x).shape() == tg::shape_type{6, 4, 4});
    CHECK(nn::Flatten()(x).to_vector() == x.to_vector());
    CHECK(nn::Flatten(2, 3).describe() == "Flatten(2, 3)");

    // Windows of the first 4×4 plane (0..15): maxima 5, 7, 13, 15; means 2.5, 4.5, 10.5, 12.5.
    tg::Tensor mp = nn::MaxPool2d(2)(x);
    CHECK(mp.shape() == tg::shape_type{2, 3, 2, 2});
    CHECK(tg::slice(tg::reshape(mp, {6, 4}), 0, 0, 1).to_vector() == Values{5, 7, 13, 15});
    tg::Tensor ap = nn::AvgPool2d(2)(x);
    CHECK(tg::slice(tg::reshape(ap, {6, 4}), 0, 0, 1).to_vector() == Values{2.5, 4.5, 10.5, 12.5});
    CHECK(nn::MaxPool2d(3, 1, 1)(x).shape() == tg::shape_type{2, 3, 4, 4});
    CHECK(nn::MaxPool2d(3, 1, 1).describe() == "MaxPool2d(3, stride=1, padding=1)");
    // Padding counts in the divisor unless count_include_pad is false: the corner window holds 0, 1, 4, 5.
    CHECK(nn::AvgPool2d(3, 1, 1)(x).at({0, 0, 0, 0}) == doctest::Approx(10.0 / 9));
    CHECK(nn::AvgPool2d(3, 1, 1, false)(x).at({0, 0, 0, 0}) == doctest::Approx(2.5));
    tg::Tensor gap = nn::AdaptiveAvgPool2d(1, 1)(x);
    CHECK(gap.shape() == tg::shape_type{2, 3, 1, 1});
    CHECK(gap.at({0, 0, 0, 0}) == doctest::Approx(7.5));
    CHECK(gap.at({1, 2, 0, 0}) == doctest::Approx(5 * 16 + 7.5));
    CHECK(nn::AdaptiveAvgPool2d(2, 1)(x).shape() == tg::shape_type{2, 3, 2, 1});

    tg::Tensor v = tg::from_values({-1.0, 0.0, 2.0});
    CHECK(nn::ReLU()(v).to_vector() == Values{0, 0, 2});
    CHECK(nn::Tanh()(v).at({2}) == doctest::Approx(std::tanh(2.0)));
    CHECK(nn::Sigmoid()(v).at({0}) == doctest::Approx(1 / (1 + std::exp(1.0))));

    // LayerNorm over the last axis: each row has mean β and (biased) standard deviation |γ|.
    tg::Generator gen(13);
    nn::LayerNorm ln({5});
    CHECK(names_of(ln.named_parameters()) == std::vector<std::string>{"weight", "bias"});
    CHECK(ln.describe() == "LayerNorm([5])");
    {
        tg::NoGradGuard off;
        ln.weight.fill_(3.0);
        ln.bias.fill_(-1.0);
    }
    tg::Tensor r = tg::randn({4, 5}, tg::float64, &gen) * 4.0 + 2.0;
    ln.to(tg::float64);
    tg::Tensor y = ln(r);
    for (int64_t i = 0; i < 4; ++i) {
        double mean = 0, var = 0;
        for (int64_t j = 0; j < 5; ++j) mean += y.at({i, j}) / 5;
        for (int64_t j = 0; j < 5; ++j) var += std::pow(y.at({i, j}) - mean, 2) / 5;
        CHECK(mean == doctest::Approx(-1.0));
        CHECK(var == doctest::Approx(9.0).epsilon(1e-4));  // eps = 1e-5 shrinks it a little
    }
    // Over the last two axes.
    nn::LayerNorm ln2({4, 4});
    tg::Tensor y2 = ln2(x);
    CHECK(y2.shape() == x.shape());
    for (double m : tg::mean(y2, {2, 3}).to_vector()) CHECK(std::abs(m) < 1e-5);
    for (double m : tg::mean(tg::square(y2), {2, 3}).to_vector()) CHECK(m == doctest::Approx(1.0).epsilon(1e-3));
}

// --- errors ----------------------------------------------------------------------------------

TEST_CASE("nn: wrong input shapes give errors that name the layer and the shapes")
{
    tg::Generator gen(14);
    nn::Linear lin(784, 256, true, &gen);
    std::string msg = error_of([&] { lin(tg::zeros({8, 100})); });
    CHECK(contains(msg, "Linear(784, 256)"));
    CHECK(contains(msg, "[8, 100]"));
    CHECK(contains(msg, "784"));

    // A model fed an image that is not 28×28: the first Linear says what it got.
    auto cnn = nn::small_cnn(&gen);
    msg = error_of([&] { (*cnn)(tg::zeros({2, 1, 32, 32})); });
    CHECK(contains(msg, "Linear(392, 32)"));
    CHECK(contains(msg, "[2, 512]"));

    nn::Conv2d conv(3, 8, 3, {}, &gen);
    msg = error_of([&] { conv(tg::zeros({2, 1, 8, 8})); });
    CHECK(contains(msg, "Conv2d(3, 8, kernel=3)"));
    CHECK(contains(msg, "[2, 1, 8, 8]"));
    msg = error_of([&] { conv(tg::zeros({8, 8})); });
    CHECK(contains(msg, "Conv2d(3, 8, kernel=3)"));
    CHECK(contains(msg, "[8, 8]"));
    msg = error_of([&] { conv(tg::zeros({1, 3, 2, 2})); });  // smaller than the kernel
    CHECK(contains(msg, "[1, 3, 2, 2]"));

    nn::BatchNorm2d bn(3);
    msg = error_of([&] { bn(tg::zeros({2, 3, 4})); });
    CHECK(contains(msg, "BatchNorm2d"));
    CHECK(contains(msg, "[2, 3, 4]"));
    msg = error_of([&] { bn(tg::zeros({2, 4, 5, 5})); });
    CHECK(contains(msg, "BatchNorm2d(3)"));
    CHECK(contains(msg, "[2, 4, 5, 5]"));

    nn::LayerNorm ln({4});
    msg = error_of([&] { ln(tg::zeros({3, 5})); });
    CHECK(contains(msg, "LayerNorm([4])"));
    CHECK(contains(msg, "[3, 5]"));

    msg = error_of([&] { nn::MaxPool2d(2)(tg::zeros({4, 4})); });
    CHECK(contains(msg, "max_pool2d"));
    CHECK(contains(msg, "[4, 4]"));

    // A float64 input to a float32 layer says both dtypes.
    msg = error_of([&] { lin(tg::zeros({1, 784}, tg::float64)); });
    CHECK(contains(msg, "float32"));
    CHECK(contains(msg, "float64"));
}

TEST_CASE("nn: bad constructor arguments are errors")
{
    CHECK(contains(error_of([] { nn::Linear(0, 3); }), "Linear(0, 3): sizes must be positive"));
    CHECK(contains(error_of([] { nn::Linear(4, -2); }), "Linear(4, -2): sizes must be positive"));
    CHECK(contains(error_of([] { nn::Conv2d(4, 6, 3, {.groups = 4}); }), "divisible by groups = 4"));
    CHECK(contains(error_of([] { nn::Conv2d(4, 6, 0); }), "Conv2d(4, 6"));
    CHECK(contains(error_of([] { nn::Conv2d(0, 6, 3); }), "Conv2d(0, 6"));
    CHECK(contains(error_of([] { nn::Sequential().add(nullptr); }), "null module"));
    CHECK(contains(error_of([] { nn::Dropout(1.5)(tg::ones({2})); }), "p = 1.5"));
}

// --- end to end --------------------------------------------------------------------------------

TEST_CASE("nn: reference_mlp with SGD fits random data: the loss goes down")
{
    tg::Generator gen(15);
    auto mlp = nn::reference_mlp(&gen);
    tg::Tensor x = tg::randn({64, 784}, tg::float32, &gen);
    tg::Tensor y = tg::randint(0, 10, {64}, &gen);
    tg::optim::SGD opt(mlp->named_parameters(), {.lr = 0.05, .momentum = 0.9});
    std::vector<double> losses;
    for (int step = 0; step < 50; ++step) {
        opt.zero_grad();
        tg::Tensor loss = tg::cross_entropy((*mlp)(x), y);
        loss.backward();
        opt.step();
        losses.push_back(loss.item());
    }
    INFO("first " << losses.front() << ", last " << losses.back());
    // Starts near log(10) (small random logits) and memorises 64 examples.
    CHECK(losses.front() == doctest::Approx(std::log(10.0)).epsilon(0.1));
    CHECK(losses.back() < 0.2 * losses.front());
    CHECK(losses[49] < losses[40]);
    // The trained model classifies its training set.
    tg::NoGradGuard off;
    tg::Tensor pred = tg::argmax((*mlp)(x), 1);
    int64_t right = 0;
    for (int64_t i = 0; i < 64; ++i) right += pred.at({i}) == y.at({i});
    CHECK(right >= 60);
}

TEST_CASE("Dropout: unseeded layers drop different positions, seeding the default generator fixes them")
{
    auto mask_of = [](nn::Dropout& d) { return d(tg::ones({64})).to_vector(); };
    tg::default_generator().manual_seed(123);
    nn::Dropout a(0.5), b(0.5);
    std::vector<double> ma = mask_of(a), mb = mask_of(b);
    CHECK(ma != mb);
    tg::default_generator().manual_seed(123);
    nn::Dropout a2(0.5);
    CHECK(mask_of(a2) == ma);
}
