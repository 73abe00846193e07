// tg::dist::gradcheck against tg::gradcheck in one process: the same report
// (every input's counts and errors, the worst elements with their numbers,
// the structural checks, the evaluations made), each rank having done only
// its share of the perturbations; a planted gradient bug found and named;
// ranks that would check different models refused on every rank.
#include "tests/dist/checks.hpp"
#include "tests/same_report.hpp"

namespace dist = tg::dist;
namespace nn = tg::nn;

namespace dist_test {

namespace {

// y = x·s per feature, its rule scaling the gradient of s by (1 + bug); a
// bare rule (no replay: every perturbation re-runs the loss, which counts
// the calls).
class Scale : public nn::Module {
public:
    Scale(int64_t n, double bug) : s(register_parameter("s", tg::add(tg::ones({n}), tg::rand({n})))), bug_(bug) {}
    tg::Tensor forward(const tg::Tensor& x) override
    {
        tg::Tensor out;
        {
            tg::NoGradGuard off;
            out = tg::mul(x, s);
        }
        const double bug = bug_;
        return tg::record("scale", out, {x, s}, {x, s}, [bug](const tg::BackwardArgs& a) -> tg::tensor_list {
            tg::Tensor ds = tg::sum_to(tg::mul(a.grad, a.saved[0]), a.saved[1].shape());
            if (bug != 0) ds = tg::mul(ds, tg::scalar(1 + bug, ds.dtype()));
            return {tg::sum_to(tg::mul(a.grad, a.saved[1]), a.saved[0].shape()), ds};
        });
    }
    tg::Tensor s;

private:
    double bug_;
};

// Conv, batch norm, relu (kinks at exact zeros are not expected, but max
// pool's windows and relu's switches are where splits could differ), pool,
// linear: a few hundred elements of five kinds.
std::shared_ptr<nn::Sequential> cnn(uint64_t seed)
{
    tg::Generator gen(seed);
    auto m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv2d>(2, 3, 3, nn::Conv2dOptions{.padding = 1}, &gen),
        std::make_shared<nn::BatchNorm2d>(3), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
        std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(3 * 3 * 3, 4, true, &gen)});
    m->to(tg::float64);
    return m;
}

tg::Tensor xent(nn::Module& m, const tg::Batch& b) { return tg::cross_entropy(m(b.x), b.y); }

}  // namespace

void gradcheck_split()
{
    const int n = dist::world_size();
    tg::Generator gen(21);
    const tg::Batch batch{tg::randn({3, 2, 7, 7}, tg::float64, &gen), tg::randint(0, 4, {3}, &gen)};

    // A model: the split report is the one-process report.
    {
        auto model = cnn(4);
        const tg::GradcheckResult one = tg::gradcheck(*model, xent, batch);
        const tg::GradcheckResult split = dist::gradcheck(*model, xent, batch);
        check(one.passed() && one.inputs.size() == 6, "the CNN passes in one process: " + one.to_string());
        const std::string d = tg_test::report_difference(one, split);
        check(d.empty(), "the split report of the CNN differs from one process's: " + d);
        check(n == 1 || contains(split.note, "elements split over " + std::to_string(n) + " processes"),
              "the split report says so: " + split.note);
    }
    // A function of inputs: full mode over two inputs, a non-scalar output (two cotangents).
    {
        tg::Tensor a = tg::randn({5, 4}, tg::float64, &gen).requires_grad_(), b = tg::randn({4, 3}, tg::float64, &gen).requires_grad_();
        auto fn = [](const tg::tensor_list& x) { return tg::tanh(tg::matmul(x[0], x[1])); };
        tg::GradcheckOptions full;
        full.mode = tg::GradcheckMode::full;
        const tg::GradcheckResult one = tg::gradcheck(fn, {a, b}, full);
        const tg::GradcheckResult split = dist::gradcheck(fn, {a, b}, full);
        const std::string d = tg_test::report_difference(one, split);
        check(one.passed() && d.empty(), "the split report of tanh(a·b) differs from one process's: " + d);
    }
    // A planted bug in a rule without replay: found and named alike, while
    // each rank re-ran the loss for its share of the perturbations only.
    {
        tg::Generator g(5);
        auto bad = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
            std::make_shared<nn::Linear>(6, 5, true, &g), std::make_shared<Scale>(5, 1e-3), std::make_shared<nn::Tanh>(),
            std::make_shared<nn::Linear>(5, 3, true, &g)});
        const tg::Batch small{tg::randn({4, 6}, tg::float64, &g), tg::randint(0, 3, {4}, &g)};
        int64_t calls = 0;
        auto counted = [&](nn::Module& m, const tg::Batch& b) {
            ++calls;
            return xent(m, b);
        };
        const tg::GradcheckResult one = tg::gradcheck(*bad, counted, small);
        const int64_t calls_one = calls;
        calls = 0;
        const tg::GradcheckResult split = dist::gradcheck(*bad, counted, small);
        const std::string d = tg_test::report_difference(one, split);
        check(d.empty(), "the split report of the planted bug differs from one process's: " + d);
        check(split.failed_inputs() == std::vector<std::string>{"1.s"} && split.input("1.s").failures == 5,
              "the planted bug is found and named: " + split.to_string());
        // Elements of the 83 parameters: ~2 evaluations each, dealt in blocks of 16.
        check(n == 1 ? calls == calls_one : calls < calls_one * (1.0 / n + 0.25),
              "each rank re-ran the loss for its share only: " + std::to_string(calls) + " of " + std::to_string(calls_one));
    }
    // Ranks that would check different things: refused on every rank, before any work.
    {
        auto model = cnn(4);
        if (dist::rank() == n - 1 && n > 1) {
            tg::NoGradGuard off;
            model->named_parameters()[3].second.data<double>()[1] += 1e-12;
        }
        const std::string e = error_of([&] { dist::gradcheck(*model, xent, batch); });
        check(n == 1 ? e == "(no error)" : contains(e, "tg::dist::gradcheck: every rank must check the same model"),
              "a model that differs on one rank: " + e);
        if (dist::rank() == n - 1 && n > 1)
            check(contains(e, "rank 0 has 'parameter '1.bias' [3] float64 requires grad values #"), "names the parameter: " + e);
    }
}

}  // namespace dist_test
