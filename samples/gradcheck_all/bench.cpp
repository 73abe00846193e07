// gradcheck_all --bench: times the checker in full mode (float64) on the
// cases of ../shared/bench/torch_gradcheck.py --groups ops that tapegrad has,
// plus two large ones. Median of --reps runs (default 5; 1 for the large).
//
//   gradcheck_all --bench [--reps N] [--large]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace {

struct Case {
    std::string name;
    tg::GradcheckFn fn;
    tg::tensor_list inputs;
    bool large = false;
};

tg::Tensor randn_leaf(const tg::shape_type& shape, tg::Generator& gen)
{
    return tg::randn(shape, tg::float64, &gen).requires_grad_(true);
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int run_bench(int argc, char** argv)
{
    int reps = 5;
    bool large = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::stoi(argv[++i]));
        else if (a == "--large") large = true;
        else {
            std::fprintf(stderr, "usage: gradcheck_all --bench [--reps N] [--large]\n");
            return 2;
        }
    }
    tg::Generator gen(0);
    std::vector<Case> cases;
    // torch_gradcheck.py's conv2d case, through the registered conv2d sample
    // with the same options (stride 2, padding 1, bias).
    const tg::OpInfo* conv = tg::find_op("conv2d");
    const tg::OpSample* conv_s2p1 = nullptr;
    if (conv)
        for (const tg::OpSample& s : conv->samples)
            if (s.label.rfind("stride 2, padding 1", 0) == 0) conv_s2p1 = &s;
    if (conv_s2p1)
        cases.push_back({"conv2d x(2,3,9,9) w(4,3,3,3) b s2 p1", conv_s2p1->fn,
                         {randn_leaf({2, 3, 9, 9}, gen), randn_leaf({4, 3, 3, 3}, gen), randn_leaf({4}, gen)}});
    else
        std::printf("(conv2d stride 2 padding 1 is not registered: its case is skipped)\n");
    cases.push_back({"matmul (16,32)@(32,8) [wrt both]",
                     [](const tg::tensor_list& x) { return tg::matmul(x[0], x[1]); },
                     {randn_leaf({16, 32}, gen), randn_leaf({32, 8}, gen)}});
    // Issue 10's fast-mode case: a correct sum of 10^4 squares must not escalate.
    cases.push_back({"sum of squares (10000)", [](const tg::tensor_list& x) { return tg::sum(tg::mul(x[0], x[0])); },
                     {randn_leaf({10000}, gen)}, true});
    cases.push_back({"square x·x (100000)", [](const tg::tensor_list& x) { return tg::mul(x[0], x[0]); },
                     {randn_leaf({100000}, gen)}, true});
    cases.push_back({"tanh (100000)", [](const tg::tensor_list& x) { return tg::tanh(x[0]); },
                     {randn_leaf({100000}, gen)}, true});
    cases.push_back({"matmul (256,256)@(256,256) [wrt both]",
                     [](const tg::tensor_list& x) { return tg::matmul(x[0], x[1]); },
                     {randn_leaf({256, 256}, gen), randn_leaf({256, 256}, gen)}, true});

    std::printf("%-44s %8s %10s %12s %12s  %s\n", "case (float64)", "elements", "mode", "median ms", "evaluations",
                "verdict");
    for (const Case& c : cases) {
        int64_t elements = 0;
        for (const tg::Tensor& t : c.inputs) elements += t.numel();
        for (tg::GradcheckMode mode : {tg::GradcheckMode::full, tg::GradcheckMode::fast}) {
            if (c.large && mode == tg::GradcheckMode::full && !large) continue;
            if (!c.large && mode == tg::GradcheckMode::fast) continue;
            tg::GradcheckOptions o;
            o.mode = mode;
            std::vector<double> ms;
            tg::GradcheckResult r;
            int n = c.large && mode == tg::GradcheckMode::full ? 1 : reps;
            for (int i = 0; i < n; ++i) {
                r = tg::gradcheck(c.fn, c.inputs, o);
                ms.push_back(r.seconds * 1e3);
            }
            std::string escalated;
            for (const auto& in : r.inputs)
                if (in.checked_by == tg::CheckedBy::fast_then_full) escalated = " (escalated to full)";
            std::printf("%-44s %8lld %10s %12.2f %12lld  %s%s\n", c.name.c_str(), static_cast<long long>(elements),
                        mode == tg::GradcheckMode::full ? "full" : "fast", median(ms),
                        static_cast<long long>(r.evaluations), tg::to_string(r.verdict), escalated.c_str());
            std::fflush(stdout);
        }
    }
    std::printf("threads: %d (TG_NUM_THREADS)\n", tg::num_threads());
    return 0;
}
