// Writing your own layers, checking their gradients, and training with them.
//
// A. GatedLinear: a new layer built only from tapegrad ops (linear, slice,
//    sigmoid, mul). The tape differentiates it for free: nothing to derive.
// B. LearnedSwish: a layer around a new op, learned_swish(x, β) = x·σ(β·x)
//    with one learned β per feature, written as an op definition: a forward
//    loop, a backward rule in tapegrad ops and registry samples, so the
//    registry sweep checks it like a library op.
// C. Both are gradchecked in float64 (first and second order): the op on its
//    inputs, and each layer as a function of its input and its parameters;
//    after training, the whole model with one call, tg::gradcheck(model, loss, batch).
// D. A small network made of them is trained on a Fashion-MNIST subset (or a
//    synthetic problem when the dataset is not installed) and the loss must go
//    down.
// The program prints a short report and exits with 1 if any check fails.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace nn = tg::nn;

namespace {

// --- A. a layer composed of tapegrad ops -------------------------------------------------

// The layer's math as a free function of its input and parameters. The module
// below calls it, and so does the gradient check (part C): the checker passes
// its own float64 copies of the tensors, so it needs the math apart from the
// module's stored parameters.
//
// GLU (Dauphin et al. 2017): one linear map to 2·out features, split in two
// halves a and g, output a ⊙ σ(g). The sigmoid "gate" decides per feature how
// much of the "value" a passes.
tg::Tensor gated_linear(const tg::Tensor& x, const tg::Tensor& weight, const tg::Tensor& bias)
{
    int64_t out = weight.size(0) / 2;
    tg::Tensor h = tg::linear(x, weight, bias);  // [..., 2·out], one GEMM for both halves
    tg::Tensor a = tg::slice(h, -1, 0, out);
    tg::Tensor g = tg::slice(h, -1, out, 2 * out);
    return a * tg::sigmoid(g);
}

class GatedLinear : public nn::Module {
public:
    // Initialised as PyTorch's Linear is: uniform in ±1/sqrt(in_features),
    // from `gen` so that a seed fixes the model.
    GatedLinear(int64_t in_features, int64_t out_features, tg::Generator* gen) : in_(in_features), out_(out_features)
    {
        weight = register_parameter("weight", uniform({2 * out_features, in_features}, in_features, gen));
        bias = register_parameter("bias", uniform({2 * out_features}, in_features, gen));
    }
    tg::Tensor forward(const tg::Tensor& x) override
    {
        // The same kind of message the library's layers give for a wrong input.
        TG_CHECK(x.dim() >= 1 && x.shape().back() == in_, describe(), ": input of shape ", x.shape(),
                 " does not end in ", in_, " input features");
        return gated_linear(x, weight, bias);
    }
    std::string describe() const override
    {
        return "GatedLinear(" + std::to_string(in_) + ", " + std::to_string(out_) + ")";
    }

    // register_parameter marks them as leaves that require grad and names them
    // for named_parameters() ("weight", "bias"), the optimizers and checkpoints.
    tg::Tensor weight, bias;

private:
    static tg::Tensor uniform(const tg::shape_type& shape, int64_t fan_in, tg::Generator* gen)
    {
        double bound = 1 / std::sqrt(double(fan_in));
        return (tg::rand(shape, tg::float32, gen) * 2.0 - 1.0) * bound;
    }
    int64_t in_, out_;
};

// --- B. a layer around a custom op ------------------------------------------------------

// learned_swish(x, β) = x·σ(β·x), β of shape [F] broadcast along x's last axis.
// With β = 1 it is SiLU; β → ∞ approaches ReLU, β = 0 gives x/2. Written as its
// own op (rather than composed as in part A) to show the extension API: one
// pass over the data forward, and a hand-written backward.
struct LearnedSwishOp : tg::Op<LearnedSwishOp> {
    static constexpr const char* name = "learned_swish";
    // The tensors the rule reads back: both inputs.
    static constexpr tg::Saves saves = tg::save_input(0) | tg::save_input(1);

    // 1. The forward: a plain loop on the raw data (it runs off the tape).
    static tg::Tensor forward(tg::TensorRefs in)
    {
        const tg::Tensor &x = in[0], &beta = in[1];
        TG_CHECK(beta.dim() == 1 && x.dim() >= 1 && x.shape().back() == beta.size(0), "learned_swish: beta of shape ",
                 beta.shape(), " does not match the last axis of x ", x.shape());
        TG_CHECK(x.dtype() == beta.dtype(), "learned_swish: x is ", tg::dtype_name(x.dtype()), ", beta is ",
                 tg::dtype_name(beta.dtype()));
        tg::Tensor out = tg::Tensor::empty(x.shape(), x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), "learned_swish", [&] {
            const scalar_t* px = x.data<scalar_t>();
            const scalar_t* pb = beta.data<scalar_t>();
            scalar_t* py = out.data<scalar_t>();
            int64_t f = beta.numel();
            for (int64_t i = 0; i < x.numel(); ++i) {
                scalar_t z = pb[i % f] * px[i];
                py[i] = px[i] / (1 + std::exp(-z));  // exp(-z) = inf for very negative z gives 0, not NaN
            }
        });
        return out;
    }

    // 2. The rule mapping the output's gradient to one gradient per input.
    //    With z = β·x and s = σ(z), s' = s·(1 − s):
    //      ∂y/∂x = s + x·β·s' = s + z·s'        ∂y/∂β = x²·s'
    //    β's gradient is summed over the axes it was broadcast along (sum_to).
    //    The rule uses tapegrad ops, so it is itself recorded when the caller
    //    asks for create_graph: that is what makes second order work.
    static tg::tensor_list backward(const tg::BackwardArgs& a)
    {
        const tg::Tensor &x = a.input(0), &beta = a.input(1);
        tg::Tensor z = x * beta;
        tg::Tensor s = tg::sigmoid(z);
        tg::Tensor ds = s * (1.0 - s);
        // needs_grad skips the work for an input nobody asked about (e.g. the
        // data x of the first layer).
        tg::Tensor gx = a.needs_grad(0) ? a.grad * (s + z * ds) : tg::Tensor();
        tg::Tensor gb = a.needs_grad(1) ? tg::sum_to(a.grad * x * x * ds, beta.shape()) : tg::Tensor();
        return {gx, gb};
    }

    // 3. Samples for the registry: the sweep (doctest case, samples/gradcheck_all)
    //    now checks learned_swish first and second order and float32 vs float64.
    static std::vector<tg::OpSample> samples()
    {
        return {sample("[3,5] beta [5]", {tg::real("x", {3, 5}), tg::real("beta", {5})}),
                sample("[2,3,4] beta [4]", {tg::real("x", {2, 3, 4}), tg::real("beta", {4})})};
    }
};
TG_REGISTER_OP(LearnedSwishOp);

tg::Tensor learned_swish(const tg::Tensor& x, const tg::Tensor& beta) { return LearnedSwishOp::call({x, beta}); }

class LearnedSwish : public nn::Module {
public:
    // β starts at 1: the layer starts as SiLU and learns its shape per feature.
    explicit LearnedSwish(int64_t features) : beta(register_parameter("beta", tg::ones({features}))), f_(features) {}
    tg::Tensor forward(const tg::Tensor& x) override { return learned_swish(x, beta); }
    std::string describe() const override { return "LearnedSwish(" + std::to_string(f_) + ")"; }
    tg::Tensor beta;

private:
    int64_t f_;
};

// --- C. gradient checks -------------------------------------------------------------------

bool all_ok = true;

void report(const std::string& what, const tg::GradcheckResult& r)
{
    double worst = 0;
    for (const auto& in : r.inputs) worst = std::max(worst, in.rel_error);
    for (const auto& second : r.second_order)
        for (const auto& in : second.inputs) worst = std::max(worst, in.rel_error);
    std::printf("  %-64s %-18s worst rel. error %.1e  (%.1f ms)\n", what.c_str(),
                r.passed() ? (r.second_order.empty() ? "pass" : "pass (1st+2nd)") : "FAIL", worst, r.seconds * 1e3);
    if (!r.passed()) {
        std::printf("%s\n", r.to_string().c_str());
        all_ok = false;
    }
}

void expect(bool ok, const std::string& what)
{
    std::printf("  %-64s %s\n", what.c_str(), ok ? "ok" : "FAIL");
    all_ok = all_ok && ok;
}

// The checker perturbs every element, so it runs on small instances of the
// layers: the code is the same at any size.
void gradient_checks()
{
    tg::Generator gen(1);
    tg::GradcheckOptions options;
    options.second_order = true;  // also differentiate the backward rules once more

    std::printf("== gradient checks (float64)\n");
    // The op on its own inputs. beta away from 1 so a β-specific slip would show.
    {
        tg::Tensor x = tg::randn({4, 6}, tg::float64, &gen).requires_grad_();
        tg::Tensor beta = (tg::randn({6}, tg::float64, &gen) + 1.0).requires_grad_();
        options.names = {"x", "beta"};
        report("learned_swish(x [4,6], beta [6])",
               tg::gradcheck([](const tg::tensor_list& v) { return learned_swish(v[0], v[1]); }, {x, beta}, options));
        // The same checks the registry sweep runs, on the registered samples.
        const tg::OpInfo* op = tg::find_op("learned_swish");
        for (const tg::OpSample& sample : op->samples) {
            tg::SampleCheck sc = tg::check_sample(*op, sample);
            expect(sc.passed(), "registry sweep, sample '" + sample.label + "' (1st, 2nd, float32)");
            if (!sc.passed()) std::printf("%s\n", sc.to_string().c_str());
        }
    }

    // A layer as a function of its input and its parameters: the GradcheckFn
    // runs the layer's math (the free function its forward calls) on the
    // tensors the checker hands it. Passing the layer's own parameters as the
    // starting point checks the gradients exactly where the layer stands.
    {
        GatedLinear glu(5, 3, &gen);
        tg::Tensor x = tg::randn({4, 5}, tg::float32, &gen).requires_grad_();
        tg::GradcheckFn fn = [](const tg::tensor_list& v) { return gated_linear(v[0], v[1], v[2]); };
        // Guard against the checked function drifting from the layer: both must agree.
        expect(fn({x, glu.weight, glu.bias}).to_vector() == glu(x).to_vector(), "GatedLinear: forward == checked fn");
        options.names = {"x", "weight", "bias"};
        report("GatedLinear(5, 3) wrt x, weight, bias", tg::gradcheck(fn, {x, glu.weight, glu.bias}, options));
        // The float32 gradients against the float64 ones (no float32 finite differences).
        tg::PrecisionReport p = tg::check_float32(fn, {x, glu.weight, glu.bias});
        expect(p.passed, "GatedLinear: float32 gradients match float64");
        if (!p.passed) std::printf("%s\n", p.to_string().c_str());
    }
    {
        LearnedSwish swish(4);
        {
            // Move β off its initial ones (off the tape: an in-place change of a parameter).
            tg::NoGradGuard off;
            swish.beta.copy_(tg::from_values({0.5, 1.0, 2.0, -0.7}));
        }
        tg::Tensor x = tg::randn({3, 4}, tg::float32, &gen).requires_grad_();
        tg::GradcheckFn fn = [](const tg::tensor_list& v) { return learned_swish(v[0], v[1]); };
        expect(fn({x, swish.beta}).to_vector() == swish(x).to_vector(), "LearnedSwish: forward == checked fn");
        options.names = {"x", "beta"};
        report("LearnedSwish(4) wrt x, beta", tg::gradcheck(fn, {x, swish.beta}, options));
    }
    // The two together with a Linear head: the whole small network, as the
    // training below uses it, with respect to the input and every parameter.
    {
        GatedLinear glu(6, 4, &gen);
        LearnedSwish swish(4);
        nn::Linear head(4, 3, true, &gen);
        tg::Tensor x = tg::randn({5, 6}, tg::float32, &gen).requires_grad_();
        tg::GradcheckFn fn = [](const tg::tensor_list& v) {
            return tg::linear(learned_swish(gated_linear(v[0], v[1], v[2]), v[3]), v[4], v[5]);
        };
        options.names = {"x", "glu.weight", "glu.bias", "swish.beta", "head.weight", "head.bias"};
        report("network GatedLinear -> LearnedSwish -> Linear",
               tg::gradcheck(fn, {x, glu.weight, glu.bias, swish.beta, head.weight, head.bias}, options));
    }
}

// --- D. training ---------------------------------------------------------------------------

struct Data {
    tg::TensorDataset train, test;
    std::string name;
};

// The first 6000 training and 2000 test images of Fashion-MNIST, normalised;
// without the dataset, a synthetic 10-class problem of the same shape whose
// labels come from a fixed random "teacher" network.
Data load_data()
{
    try {
        tg::TensorDataset full_train = tg::load_fashion_mnist("train");
        tg::TensorDataset full_test = tg::load_fashion_mnist("test");
        auto first = [](const tg::TensorDataset& d, int64_t n) {
            tg::TensorDataset s(tg::slice(d.inputs(), 0, 0, n), tg::slice(d.targets(), 0, 0, n));
            s.normalize(tg::fashion_mnist_mean, tg::fashion_mnist_std);
            return s;
        };
        return {first(full_train, 6000), first(full_test, 2000), "Fashion-MNIST subset (6000 train, 2000 test)"};
    } catch (const tg::Error& e) {
        std::printf("  (Fashion-MNIST not found: %s; using synthetic data)\n", e.what());
    }
    tg::Generator gen(7);
    tg::Tensor teacher = tg::randn({10, 784}, tg::float32, &gen);
    auto make = [&](int64_t n) {
        tg::Tensor x = tg::randn({n, 1, 28, 28}, tg::float32, &gen);
        tg::Tensor y = tg::argmax(tg::linear(tg::flatten(x, 1), teacher), 1);
        return tg::TensorDataset(x, y);
    };
    tg::TensorDataset train = make(6000);
    return {train, make(2000), "synthetic teacher problem (6000 train, 2000 test)"};
}

double accuracy(nn::Module& model, const tg::TensorDataset& data)
{
    tg::NoGradGuard off;  // evaluation: no tape
    model.eval();
    tg::Tensor pred = tg::argmax(model(data.inputs()), 1);
    model.train();
    int64_t right = 0;
    const int64_t* p = pred.data<int64_t>();
    const int64_t* y = data.targets().data<int64_t>();
    for (int64_t i = 0; i < data.size(); ++i) right += p[i] == y[i];
    return double(right) / double(data.size());
}

void train()
{
    std::printf("\n== training\n");
    Data data = load_data();
    std::printf("  data: %s\n", data.name.c_str());

    // The user's layers slot into a Sequential like the library's own.
    tg::Generator gen(3);
    auto model = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        nn::make<nn::Flatten>(), nn::make<GatedLinear>(784, 128, &gen), nn::make<LearnedSwish>(128),
        nn::make<nn::Linear>(128, 10, true, &gen)});
    std::printf("%s", model->summary({1, 1, 28, 28}).c_str());

    tg::optim::Adam opt(model->named_parameters(), {.lr = 2e-3});
    tg::DataLoader loader(data.train, {.batch_size = 64, .shuffle = true, .seed = 1});
    const int steps = 400, window = 50;
    std::vector<double> losses;
    double acc_before = accuracy(*model, data.test);
    auto start = std::chrono::steady_clock::now();
    while (int(losses.size()) < steps) {
        for (const tg::Batch& b : loader) {
            // One step: forward, loss, backward through the tape (our op's
            // rule included), optimizer update.
            opt.zero_grad();
            tg::Tensor loss = tg::cross_entropy((*model)(b.x), b.y);
            loss.backward();
            opt.step();
            losses.push_back(loss.item());
            if (losses.size() % window == 0) {
                double mean = 0;
                for (size_t i = losses.size() - window; i < losses.size(); ++i) mean += losses[i] / window;
                std::printf("  step %3zu  mean loss of the last %d steps %.4f\n", losses.size(), window, mean);
            }
            if (int(losses.size()) == steps) break;
        }
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double acc_after = accuracy(*model, data.test);
    double first = 0, last = 0;
    for (int i = 0; i < window; ++i) {
        first += losses[size_t(i)] / window;
        last += losses[losses.size() - window + size_t(i)] / window;
    }
    std::printf("  %d steps in %.1f s; test accuracy %.1f%% before, %.1f%% after\n", steps, seconds, 100 * acc_before,
                100 * acc_after);
    // β moved away from 1: the op's gradient reached the parameter.
    auto& swish = dynamic_cast<LearnedSwish&>(*model->children()[2].second);
    tg::Tensor beta = swish.beta;
    double lo = 1e9, hi = -1e9;
    for (double b : beta.to_vector()) {
        lo = std::min(lo, b);
        hi = std::max(hi, b);
    }
    std::printf("  learned beta in [%.3f, %.3f]\n", lo, hi);
    expect(last < 0.6 * first, "loss went down (first " + std::to_string(first) + ", last " + std::to_string(last) + ")");
    expect(acc_after > acc_before + 0.3, "test accuracy rose by more than 30 points");
    expect(hi - lo > 0.05, "beta was trained");

    // The trained model, every parameter (about 200,000), with one call:
    // tg::gradcheck runs it on float64 stand-ins and replays only the part of
    // the tape each perturbed element reaches.
    tg::Batch batch = *loader.begin();
    batch = {tg::slice(batch.x, 0, 0, 4), tg::slice(batch.y, 0, 0, 4)};
    tg::GradcheckResult whole = tg::gradcheck(
        *model, [](nn::Module& m, const tg::Batch& b) { return tg::cross_entropy(m(b.x), b.y); }, batch);
    std::printf("  whole-model gradcheck of the trained network: %s, %lld parameters in %.2f s\n",
                whole.passed() ? "pass" : "FAIL", (long long)model->parameter_count(), whole.seconds);
    if (!whole.passed()) std::printf("%s", whole.to_string().c_str());
    expect(whole.passed(), "whole-model gradcheck of the trained network");
}

}  // namespace

int main()
{
    gradient_checks();
    train();
    std::printf("\n%s\n", all_ok ? "all checks passed" : "SOME CHECKS FAILED");
    return all_ok ? 0 : 1;
}
