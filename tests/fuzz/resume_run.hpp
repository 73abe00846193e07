// The training run whose checkpoints fuzz_resume loads and make_seed_corpus
// writes: a tiny CNN (a parameter of every layer kind, and batch norm's
// buffers), an optimizer, a schedule, a shuffling loader.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <tapegrad/tapegrad.hpp>

namespace tg::fuzz {

inline std::shared_ptr<nn::Sequential> tiny_cnn(Generator* gen)
{
    using namespace nn;
    auto s = std::make_shared<Sequential>();
    s->add(make<Conv2d>(1, 2, 3, Conv2dOptions{.padding = 1}, gen));
    s->add(make<BatchNorm2d>(2));
    s->add(make<ReLU>());
    s->add(make<Flatten>());
    s->add(make<Linear>(32, 3, true, gen));
    return s;
}

struct Run {
    Generator init{7};
    std::shared_ptr<nn::Sequential> model;
    std::unique_ptr<optim::Optimizer> optimizer;
    optim::LrScheduler schedule;
    TensorDataset data;
    DataLoader loader;

    explicit Run(bool adam)
        : model(tiny_cnn(&init)),
          optimizer(adam ? std::unique_ptr<optim::Optimizer>(
                               new optim::Adam(model->named_parameters(), {.lr = 1e-2, .amsgrad = true}))
                         : std::unique_ptr<optim::Optimizer>(
                               new optim::SGD(model->named_parameters(), {.lr = 0.1, .momentum = 0.9}))),
          schedule(*optimizer, optim::step_lr(3, 0.5)),
          data(randn({12, 1, 4, 4}, float32, &init), zeros({12}, int64)),
          loader(data, {.batch_size = 4, .shuffle = true, .seed = 3})
    {
    }

    // `steps` training steps, one batch each, going on through the epochs
    // (train(1) twice is train(2)).
    void train(int steps)
    {
        for (; steps > 0; --steps) {
            if (!batch || *batch == loader.end()) batch = loader.begin();
            const Batch& b = **batch;
            Tensor loss = cross_entropy(model->forward(b.x), b.y);
            optimizer->zero_grad();
            loss.backward();
            optimizer->step();
            schedule.step();
            ++*batch;
        }
    }

    void save_to(Checkpoint& ck) const
    {
        ck.set_tensors("model.", model->named_parameters());
        ck.set_tensors("buffers.", model->named_buffers());
        optimizer->save_to(ck, "optimizer.");
        schedule.save_to(ck, "schedule.");
        loader.save_to(ck, "loader.");
        ck.set_generator("rng", default_generator());
    }

    void load_from(const Checkpoint& ck)
    {
        ck.load_into(model->named_parameters(), "model.");
        ck.load_into(model->named_buffers(), "buffers.", "buffer");
        optimizer->load_from(ck, "optimizer.");
        schedule.load_from(ck, "schedule.");
        loader.load_from(ck, "loader.");
        Generator g;
        ck.get_generator("rng", g);
        batch.reset();  // the next begin() continues the epoch the checkpoint stopped in
    }

private:
    std::optional<DataLoader::Iterator> batch;  // the next batch of the current epoch
};

}  // namespace tg::fuzz
