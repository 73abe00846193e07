// Sweeps the op registry: every registered op × sample is gradchecked in
// float64 (first and second order) and its float32 gradients are compared
// with the float64 ones. One row per op × sample; exit status 1 if any fails.
//
//   gradcheck_all                      every op
//   gradcheck_all --op mul             one op
//   gradcheck_all --op mul --sample 'broadcast [3,1] x [1,4]' --seed 3 --verbose
#include <cstdio>
#include <cstring>
#include <string>

#include <tapegrad/tapegrad.hpp>

int main(int argc, char** argv)
{
    std::string only_op, only_sample;
    uint64_t seed = 0;
    bool verbose = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--op" && i + 1 < argc) only_op = argv[++i];
        else if (a == "--sample" && i + 1 < argc) only_sample = argv[++i];
        else if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
        else if (a == "--verbose" || a == "-v") verbose = true;
        else {
            std::fprintf(stderr, "usage: %s [--op NAME] [--sample LABEL] [--seed N] [--verbose]\n", argv[0]);
            return 2;
        }
    }

    int checked = 0, failed = 0;
    double total = 0;
    std::printf("%-14s %-44s %10s %10s %9s %8s  %s\n", "op", "sample", "1st rel", "2nd rel", "f32 rel", "ms",
                "verdict");
    for (const tg::OpInfo& op : tg::registered_ops()) {
        if (!only_op.empty() && op.name != only_op) continue;
        for (const tg::OpSample& sample : op.samples) {
            if (!only_sample.empty() && sample.label != only_sample) continue;
            tg::SampleCheck sc;
            try {
                sc = tg::check_sample(op, sample, seed);
            } catch (const std::exception& e) {
                std::printf("%-14s %-44s  ERROR: %s\n", op.name.c_str(), sample.label.c_str(), e.what());
                ++checked;
                ++failed;
                continue;
            }
            auto worst = [](const tg::GradcheckResult& r) {
                double w = 0;
                for (const auto& in : r.inputs) w = std::max(w, in.rel_error);
                return w;
            };
            ++checked;
            total += sc.seconds;
            bool ok = sc.passed();
            if (!ok) ++failed;
            char second[32];
            if (sample.second_order)
                std::snprintf(second, sizeof second, "%10.1e", worst(sc.second));
            else
                std::snprintf(second, sizeof second, "%10s", "n/a");
            std::printf("%-14s %-44s %10.1e %s %9.1e %8.2f  %s\n", op.name.c_str(), sample.label.c_str(),
                        worst(sc.first), second, sc.float32_max_rel_error, sc.seconds * 1e3,
                        ok ? "pass" : "FAIL");
            if (!ok || verbose) {
                if (!sc.first.passed || verbose) std::printf("%s", sc.first.to_string().c_str());
                if (!sc.second.passed || verbose) std::printf("%s", sc.second.to_string().c_str());
                if (!sc.float32_passed) std::printf("  float32: %s\n", sc.float32_message.c_str());
            }
        }
    }
    std::printf("\n%d op samples checked, %d failed, %.2f s\n", checked, failed, total);
    if (checked == 0) {
        std::fprintf(stderr, "no op or sample matched\n");
        return 2;
    }
    return failed ? 1 : 0;
}
