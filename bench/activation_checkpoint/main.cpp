// checkpoint_bench: the peak memory and time of one training step of the
// reference CNN (nn::reference_cnn, samples/train_fashion_mnist) with its two
// conv blocks under tg::checkpoint, against the same step without; and of a
// deeper net (eight conv 16->16 + ReLU at 28x28, then the head), one
// checkpoint per two of them, where the saving shows.
//
//   checkpoint_bench [--steps 7] [--batches 64 256]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace {

struct Measure {
    double seconds;      // median step time
    int64_t peak_bytes;  // median of the step's peak, above what was live before it
};

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Children [begin, end) of the model in turn: one conv block.
tg::Tensor run_children(tg::nn::Sequential& model, size_t begin, size_t end, tg::Tensor x)
{
    for (size_t i = begin; i < end; ++i) x = (*model.children()[i].second)(x);
    return x;
}

// conv 1->16, then eight blocks of conv 16->16 + ReLU, pool, linear.
std::shared_ptr<tg::nn::Sequential> deep_cnn(tg::Generator* gen)
{
    using namespace tg::nn;
    auto s = std::make_shared<Sequential>();
    s->add(make<Conv2d>(1, 16, 3, Conv2dOptions{.padding = 1}, gen));
    for (int i = 0; i < 8; ++i) {
        s->add(make<Conv2d>(16, 16, 3, Conv2dOptions{.padding = 1}, gen));
        s->add(make<ReLU>());
    }
    s->add(make<MaxPool2d>(4));
    s->add(make<Flatten>());
    s->add(make<Linear>(16 * 7 * 7, 10, true, gen));
    return s;
}

// The children each checkpoint covers: [begin, end) pairs, then the rest runs plainly.
std::vector<std::pair<size_t, size_t>> blocks_of(bool deep)
{
    if (!deep) return {{0, 3}, {3, 6}};  // conv, relu, pool twice
    std::vector<std::pair<size_t, size_t>> b;
    for (size_t i = 0; i < 4; ++i) b.emplace_back(1 + 4 * i, 5 + 4 * i);  // two conv + ReLU each
    return b;
}

Measure measure(bool deep, int64_t batch, bool checkpointed, int steps)
{
    tg::Generator gen(0), mgen(0);
    auto model = deep ? deep_cnn(&mgen) : tg::nn::reference_cnn(&mgen);
    tg::optim::SGD opt(model->named_parameters(), {.lr = 0.01, .momentum = 0.9});
    tg::Tensor x = tg::randn({batch, 1, 28, 28}, tg::float32, &gen);
    tg::Tensor y = tg::randint(0, 10, {batch}, &gen);
    tg::nn::Sequential& m = *model;
    auto block = [&m](size_t begin, size_t end) {
        return [&m, begin, end](const tg::tensor_list& in) { return run_children(m, begin, end, in[0]); };
    };
    const auto blocks = blocks_of(deep);
    auto step = [&] {
        opt.zero_grad();
        tg::Tensor h = run_children(m, 0, blocks.front().first, x);
        for (auto [begin, end] : blocks)
            h = checkpointed ? tg::checkpoint(block(begin, end), {h}) : run_children(m, begin, end, h);
        h = run_children(m, blocks.back().second, m.children().size(), h);
        tg::cross_entropy(h, y).backward();
        opt.step();
    };
    for (int i = 0; i < 2; ++i) step();  // warm-up: caches, optimizer state
    std::vector<double> times, peaks;
    for (int i = 0; i < steps; ++i) {
        const int64_t before = tg::memory_stats().live_bytes;
        tg::reset_peak_memory();
        auto t0 = std::chrono::steady_clock::now();
        step();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        peaks.push_back(double(tg::memory_stats().peak_bytes - before));
    }
    return {median(times), int64_t(median(peaks))};
}

}  // namespace

int main(int argc, char** argv)
{
    int steps = 7;
    std::vector<int64_t> batches{64, 256};
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) {
            steps = std::atoi(argv[++i]);
        } else if (!std::strcmp(argv[i], "--batches")) {
            batches.clear();
            while (i + 1 < argc && argv[i + 1][0] != '-') batches.push_back(std::atoll(argv[++i]));
        } else {
            std::fprintf(stderr, "usage: checkpoint_bench [--steps N] [--batches B ...]\n");
            return 2;
        }
    }
    std::printf("training step, median of %d (threads %d); peak: above what was live before the step\n", steps,
                tg::num_threads());
    std::printf("%-14s %6s  %-13s %10s %14s\n", "model", "batch", "blocks", "ms/step", "peak MiB");
    for (bool deep : {false, true})
        for (int64_t b : batches)
            for (bool c : {false, true}) {
                Measure m = measure(deep, b, c, steps);
                std::printf("%-14s %6lld  %-13s %10.1f %14.1f\n", deep ? "deep 8x16ch" : "reference CNN",
                            (long long)b, c ? "checkpointed" : "kept", m.seconds * 1e3,
                            double(m.peak_bytes) / (1 << 20));
            }
    return 0;
}
