#include "nn/models.hpp"

namespace tg::nn {

namespace {

// conv k×k "same" padding, ReLU, max-pool 2
void conv_block(Sequential& s, int64_t in, int64_t out, Generator* gen)
{
    s.add(make<Conv2d>(in, out, 3, Conv2dOptions{.padding = 1}, gen));
    s.add(make<ReLU>());
    s.add(make<MaxPool2d>(2));
}

std::shared_ptr<Sequential> two_block_cnn(int64_t c1, int64_t c2, int64_t hidden, Generator* gen)
{
    auto s = std::make_shared<Sequential>();
    conv_block(*s, 1, c1, gen);
    conv_block(*s, c1, c2, gen);
    s->add(make<Flatten>());
    s->add(make<Linear>(c2 * 7 * 7, hidden, true, gen));
    s->add(make<ReLU>());
    s->add(make<Linear>(hidden, 10, true, gen));
    return s;
}

}  // namespace

std::shared_ptr<Sequential> reference_cnn(Generator* gen) { return two_block_cnn(32, 64, 128, gen); }

std::shared_ptr<Sequential> small_cnn(Generator* gen) { return two_block_cnn(4, 8, 32, gen); }

std::shared_ptr<Sequential> reference_mlp(Generator* gen)
{
    auto s = std::make_shared<Sequential>();
    s->add(make<Linear>(784, 256, true, gen));
    s->add(make<ReLU>());
    s->add(make<Linear>(256, 128, true, gen));
    s->add(make<ReLU>());
    s->add(make<Linear>(128, 10, true, gen));
    return s;
}

}  // namespace tg::nn
