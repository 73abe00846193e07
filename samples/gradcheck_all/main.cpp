// Sweeps the op registry: every registered op × sample is gradchecked in
// float64 (first and second order) and its float32 gradients are compared
// with the float64 ones. One row per op × sample; exit status 1 if any fails.
//
//   gradcheck_all                      every op
//   gradcheck_all --op mul             one op
//   gradcheck_all --op mul --sample 'broadcast [3,1] x [1,4]' --seed 3 --verbose
//   gradcheck_all --strict             a vacuous check (gradients ~0 everywhere) fails
//   gradcheck_all --bench              times the checker itself (bench.cpp)
#include <cstdio>
#include <string>

#include <tapegrad/tapegrad.hpp>

int run_bench(int argc, char** argv);  // bench.cpp

namespace {
double worst(const tg::GradcheckResult& r)
{
    double w = 0;
    for (const auto& in : r.inputs) w = std::max(w, in.rel_error);
    return w;
}
}  // namespace

int main(int argc, char** argv)
{
    if (argc > 1 && std::string(argv[1]) == "--bench") return run_bench(argc - 1, argv + 1);
    std::string only_op, only_sample;
    uint64_t seed = 0;
    bool verbose = false;
    tg::GradcheckOptions options;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--op" && i + 1 < argc) only_op = argv[++i];
        else if (a == "--sample" && i + 1 < argc) only_sample = argv[++i];
        else if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
        else if (a == "--verbose" || a == "-v") verbose = true;
        else if (a == "--strict") options.vacuous_fails = true;
        else {
            std::fprintf(stderr, "usage: %s [--op NAME] [--sample LABEL] [--seed N] [--verbose] [--strict] | --bench [--reps N] [--large]\n",
                         argv[0]);
            return 2;
        }
    }

    int checked = 0, failed = 0, warned = 0;
    double total = 0;
    std::printf("%-14s %-44s %9s %9s %9s %7s  %s\n", "op", "sample", "1st rel", "2nd rel", "f32 rel", "ms", "verdict");
    for (const tg::OpInfo& op : tg::registered_ops()) {
        if (!only_op.empty() && op.name != only_op) continue;
        for (const tg::OpSample& sample : op.samples) {
            if (!only_sample.empty() && sample.label != only_sample) continue;
            ++checked;
            tg::SampleCheck sc;
            try {
                sc = tg::check_sample(op, sample, seed, options);
            } catch (const std::exception& e) {
                std::printf("%-14s %-44s  ERROR: %s\n", op.name.c_str(), sample.label.c_str(), e.what());
                ++failed;
                continue;
            }
            total += sc.seconds;
            std::string verdict = sc.verdict();
            if (!sc.passed()) ++failed;
            else if (verdict != "pass") ++warned;
            char second[16];
            if (sample.second_order) std::snprintf(second, sizeof second, "%9.1e", worst(sc.second));
            else std::snprintf(second, sizeof second, "%9s", "n/a");
            std::printf("%-14s %-44s %9.1e %s %9.1e %7.2f  %s\n", op.name.c_str(), sample.label.c_str(),
                        worst(sc.first), second, sc.float32.max_rel_error, sc.seconds * 1e3, verdict.c_str());
            if (!sc.passed() || verbose) std::printf("%s\n", sc.to_string().c_str());
        }
    }
    std::printf("\n%d op samples checked, %d failed, %d with warnings, %.2f s\n", checked, failed, warned, total);
    if (checked == 0) {
        std::fprintf(stderr, "no op or sample matched\n");
        return 2;
    }
    return failed ? 1 : 0;
}
