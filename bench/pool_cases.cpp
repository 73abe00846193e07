// The max pools of the reference CNN (2×2, stride 2, after each conv of
// torch_ref.py's RefCNN at batch 64), alone: forward without a tape, and
// forward plus the input's gradient. No torch_ref.py counterpart; they guard
// the 2×2 kernels against options added to the generic path.
#include <tapegrad/tapegrad.hpp>

#include "bench/bench.hpp"

namespace {

struct Pool {
    const char* name;
    int64_t n, c, h, w;
};

const Pool pools[] = {
    {"max_pool2d N64 32x28x28 k2", 64, 32, 28, 28},
    {"max_pool2d N64 64x14x14 k2", 64, 64, 14, 14},
};

TG_BENCH_GROUP("pool", [] {
    tg::Generator gen(0);
    std::vector<bench::Case> cases;
    for (const Pool& p : pools) {
        tg::Tensor x = tg::randn({p.n, p.c, p.h, p.w}, tg::float32, &gen).requires_grad_();
        tg::Tensor gy = tg::randn({p.n, p.c, p.h / 2, p.w / 2}, tg::float32, &gen);
        cases.push_back({std::string(p.name) + " fwd", p.n, 0, 0, 1, [x] {
                             tg::NoGradGuard off;
                             tg::max_pool2d(x, 2);
                         }});
        cases.push_back({std::string(p.name) + " fwd+bwd(dx)", p.n, 0, 0, 1,
                         [x, gy] { tg::grad({tg::max_pool2d(x, 2)}, {x}, {gy}); }});
    }
    return cases;
});

}  // namespace
