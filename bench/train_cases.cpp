// One training step: torch_ref.py's "train" group, same models, same case
// names (SGD lr 0.01 momentum 0.9, cross-entropy, randn inputs, random class
// targets). One call = zero_grad, forward, loss, backward, step.
#include <memory>

#include <tapegrad/tapegrad.hpp>

#include "bench/bench.hpp"

namespace {

bench::Case train_case(const std::string& name, std::shared_ptr<tg::nn::Sequential> model, tg::Tensor x,
                       tg::Tensor y)
{
    auto opt = std::make_shared<tg::optim::SGD>(model->named_parameters(),
                                                tg::optim::SgdOptions{.lr = 0.01, .momentum = 0.9});
    const int64_t b = x.shape()[0];
    return {name, b, 0, double(b), 1, [model, opt, x, y] {
                opt->zero_grad();
                tg::Tensor loss = tg::cross_entropy((*model)(x), y);
                loss.backward();
                opt->step();
            }};
}

TG_BENCH_GROUP("train", [] {
    tg::Generator gen(0);
    std::vector<bench::Case> cases;
    for (int64_t b : {64, 256}) {
        tg::Generator mgen(0);
        auto model = tg::nn::reference_cnn(&mgen);
        tg::Tensor x = tg::randn({b, 1, 28, 28}, tg::float32, &gen);
        tg::Tensor y = tg::randint(0, 10, {b}, &gen);
        cases.push_back(train_case("train step RefCNN", model, x, y));
    }
    tg::Generator mgen(0);
    auto model = tg::nn::reference_mlp(&mgen);
    tg::Tensor x = tg::randn({128, 784}, tg::float32, &gen);
    tg::Tensor y = tg::randint(0, 10, {128}, &gen);
    cases.push_back(train_case("train step MLP 784-256-128-10", model, x, y));
    return cases;
});

}  // namespace
