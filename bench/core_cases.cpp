// The engine's own overhead and the GEMM path: torch_ref.py's "tiny" and
// "matmul" groups, same workloads, same case names.
#include <tapegrad/tapegrad.hpp>

#include "bench/bench.hpp"

namespace {

// A chain of 100 adds on 1x1 tensors: what is left is the per-op cost of the
// engine (allocation, dispatch, recording, the backward sweep). Reported per add.
TG_BENCH_GROUP("tiny", [] {
    tg::Tensor x = tg::ones({1, 1}).requires_grad_();
    tg::Tensor c = tg::ones({1, 1});
    std::vector<bench::Case> cases;
    auto chain = [x, c] {
        tg::Tensor y = x;
        for (int i = 0; i < 100; ++i) y = y + c;
        return y;
    };
    cases.push_back({"100x add 1x1 no_grad fwd [per op]", 1, 0, 0, 100, [chain] {
                         tg::NoGradGuard off;
                         chain();
                     }});
    cases.push_back({"100x add 1x1 fwd (graph) [per op]", 1, 0, 0, 100, [chain] { chain(); }});
    cases.push_back({"100x add 1x1 fwd+bwd [per op]", 1, 0, 0, 100, [chain, x] { tg::grad({chain()}, {x}); }});
    // The debugging tools' cost: a hook that only looks, registered on the
    // leaf (called once a backward, not once an op), and anomaly detection on.
    tg::Tensor hooked = tg::ones({1, 1}).requires_grad_();
    hooked.register_hook([](const tg::Tensor&) { return tg::Tensor(); });
    auto hooked_chain = [hooked, c] {
        tg::Tensor y = hooked;
        for (int i = 0; i < 100; ++i) y = y + c;
        return y;
    };
    cases.push_back({"100x add 1x1 fwd+bwd, a hook on the leaf [per op]", 1, 0, 0, 100,
                     [hooked_chain, hooked] { tg::grad({hooked_chain()}, {hooked}); }});
    cases.push_back({"100x add 1x1 fwd+bwd, anomaly detection on [per op]", 1, 0, 0, 100, [chain, x] {
                         tg::DetectAnomalyGuard anomaly;
                         tg::grad({chain()}, {x});
                     }});
    return cases;
});

TG_BENCH_GROUP("matmul", [] {
    tg::Generator gen(0);
    tg::Tensor x = tg::randn({256, 784}, tg::float32, &gen).requires_grad_();
    tg::Tensor w = tg::randn({784, 512}, tg::float32, &gen).requires_grad_();
    tg::Tensor g = tg::randn({256, 512}, tg::float32, &gen);
    const double flops = 2.0 * 256 * 784 * 512;
    std::vector<bench::Case> cases;
    cases.push_back({"matmul (256x784)@(784x512) fwd", 256, flops, 0, 1, [x, w] {
                         tg::NoGradGuard off;
                         tg::matmul(x, w);
                     }});
    cases.push_back({"matmul (256x784)@(784x512) fwd+bwd", 256, 3 * flops, 0, 1,
                     [x, w, g] { tg::grad({tg::matmul(x, w)}, {x, w}, {g}); }});
    return cases;
});

}  // namespace
