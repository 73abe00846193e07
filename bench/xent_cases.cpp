// Softmax + cross-entropy: torch_ref.py's "xent" group, same workloads, same
// case names (float32 logits [256, C] requiring grad, random class targets,
// the gradient of the mean loss with respect to the logits).
#include <tapegrad/tapegrad.hpp>

#include "bench/bench.hpp"

namespace {

TG_BENCH_GROUP("xent", [] {
    tg::Generator gen(0);
    std::vector<bench::Case> cases;
    for (int64_t classes : {10, 1000}) {
        tg::Tensor z = tg::randn({256, classes}, tg::float32, &gen).requires_grad_();
        tg::Tensor t = tg::randint(0, classes, {256}, &gen);
        cases.push_back({"softmax+xent (256x" + std::to_string(classes) + ") fwd+bwd", 256, 0, 0, 1,
                         [z, t] { tg::grad({tg::cross_entropy(z, t)}, {z}); }});
    }
    return cases;
});

}  // namespace
