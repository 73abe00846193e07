// The convolution layers of torch_ref.py's "conv" group: same shapes, same
// case names, same flop counts; the forward without a tape, and forward plus
// the gradients of input, weight and bias.
#include <tapegrad/tapegrad.hpp>

#include "bench/bench.hpp"

namespace {

struct Layer {
    const char* name;
    int64_t n, cin, h, w, cout, k, stride, pad;
};

const Layer layers[] = {
    {"conv N64 1x28x28->32 k3 p1", 64, 1, 28, 28, 32, 3, 1, 1},
    {"conv N64 32x14x14->64 k3 p1", 64, 32, 14, 14, 64, 3, 1, 1},
    {"conv N32 64x32x32->64 k3 p1 s1", 32, 64, 32, 32, 64, 3, 1, 1},
    {"conv N32 64x32x32->128 k3 p1 s2", 32, 64, 32, 32, 128, 3, 2, 1},
};

TG_BENCH_GROUP("conv", [] {
    tg::Generator gen(0);
    std::vector<bench::Case> cases;
    for (const Layer& l : layers) {
        tg::Tensor x = tg::randn({l.n, l.cin, l.h, l.w}, tg::float32, &gen).requires_grad_();
        tg::Tensor w = (tg::randn({l.cout, l.cin, l.k, l.k}, tg::float32, &gen) * 0.1).detach().requires_grad_();
        tg::Tensor b = tg::zeros({l.cout}).requires_grad_();
        const int64_t ho = (l.h + 2 * l.pad - l.k) / l.stride + 1, wo = (l.w + 2 * l.pad - l.k) / l.stride + 1;
        const double flops = 2.0 * double(l.n * l.cout * ho * wo * l.cin * l.k * l.k);
        tg::Tensor gy = tg::randn({l.n, l.cout, ho, wo}, tg::float32, &gen);
        const int64_t s = l.stride, p = l.pad;
        cases.push_back({std::string(l.name) + " fwd", l.n, flops, 0, 1, [x, w, b, s, p] {
                             tg::NoGradGuard off;
                             tg::conv2d(x, w, b, s, p);
                         }});
        cases.push_back({std::string(l.name) + " fwd+bwd(dx,dw,db)", l.n, 3 * flops, 0, 1,
                         [x, w, b, s, p, gy] { tg::grad({tg::conv2d(x, w, b, s, p)}, {x, w, b}, {gy}); }});
    }
    return cases;
});

}  // namespace
