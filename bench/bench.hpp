// tapegrad_bench: fixed workloads timed the way ../shared/bench/torch_ref.py
// times PyTorch (warm-up, calibrated inner loop, median of samples), written
// as JSON lines in its schema so ../shared/bench/compare.py lines them up.
//
// Each file in bench/ registers a group of cases with TG_BENCH_GROUP; the
// case names are torch_ref.py's, character for character.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace bench {

struct Case {
    std::string name;        // torch_ref.py's case name
    int64_t batch = 1;
    double flops = 0;        // per call, for GFLOP/s (0: none)
    double images = 0;       // per call, for img/s (0: none)
    double ops_per_call = 1; // the time is divided by this ("[per op]" cases: 100)
    std::function<void()> fn;
};

// A group builds its cases (allocating inputs) when the group runs.
using GroupFn = std::function<std::vector<Case>()>;
void register_group(const std::string& name, GroupFn make);

struct GroupRegistration {
    GroupRegistration(const std::string& name, GroupFn make) { register_group(name, std::move(make)); }
};

}  // namespace bench

#define TG_BENCH_CONCAT_INNER(a, b) a##b
#define TG_BENCH_CONCAT(a, b) TG_BENCH_CONCAT_INNER(a, b)
// TG_BENCH_GROUP("conv", [] { std::vector<bench::Case> cases; ...; return cases; });
#define TG_BENCH_GROUP(name, ...) \
    static const ::bench::GroupRegistration TG_BENCH_CONCAT(bench_group_, __COUNTER__)(name, __VA_ARGS__)
