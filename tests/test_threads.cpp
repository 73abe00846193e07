// Several user threads at once: each trains or gradchecks its own model while
// tapegrad's one pool is shared between them, and while another thread
// resizes the pool. Every thread's result must equal the same work done alone
// (bit for bit), and every gradcheck must pass. Run under ThreadSanitizer by
// scripts/tsan.sh (a build of its own).
#include <doctest/doctest.h>

#include <atomic>
#include <latch>
#include <thread>
#include <vector>

#include "tests/fuzz/resume_run.hpp"

namespace {

std::vector<std::vector<double>> parameters_after(int steps, bool adam)
{
    tg::fuzz::Run run(adam);
    run.train(steps);
    std::vector<std::vector<double>> out;
    for (const auto& [name, p] : run.model->named_parameters()) out.push_back(p.to_vector());
    return out;
}

// A gradcheck whose function runs ops big enough to go to the pool.
bool gradcheck_conv(uint64_t seed)
{
    tg::Generator gen(seed);
    const tg::Tensor x = tg::randn({2, 3, 9, 9}, tg::float64, &gen).requires_grad_();
    const tg::Tensor w = tg::randn({4, 3, 3, 3}, tg::float64, &gen).requires_grad_();
    tg::GradcheckOptions options;
    options.mode = tg::GradcheckMode::fast;
    return tg::gradcheck([](const tg::tensor_list& in) { return tg::sum(tg::tanh(tg::conv2d(in[0], in[1]))); },
                         {x, w}, options)
        .passed();
}

}  // namespace

TEST_CASE("threads: four user threads train and gradcheck at once on the shared pool while it is resized")
{
    const int steps = 40;
    const auto alone_adam = parameters_after(steps, true), alone_sgd = parameters_after(steps, false);
    const int pool_before = tg::num_threads();

    std::latch start(5);
    std::atomic<bool> done{false};
    std::vector<std::vector<std::vector<double>>> trained(2);
    std::atomic<int> gradchecks{0}, passed{0}, resizes{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&, t] {
            start.arrive_and_wait();
            trained[size_t(t)] = parameters_after(steps, t == 0);
        });
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&, t] {
            start.arrive_and_wait();
            for (int i = 0; i < 6; ++i) {
                passed += gradcheck_conv(uint64_t(10 * t + i));
                ++gradchecks;
            }
        });
    // Resizing while others run: set_num_threads waits for the job in flight.
    std::thread resizer([&] {
        start.arrive_and_wait();
        for (int i = 0; !done.load(); ++i) {
            tg::set_num_threads(1 + i % 3);
            ++resizes;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });
    for (std::thread& t : threads) t.join();
    done = true;
    resizer.join();
    tg::set_num_threads(pool_before);

    CHECK(trained[0] == alone_adam);
    CHECK(trained[1] == alone_sgd);
    CHECK(gradchecks == 12);
    CHECK(passed == 12);
    MESSAGE(resizes.load(), " resizes of the pool while the others ran");
    CHECK(resizes > 0);
}
