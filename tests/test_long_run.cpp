// Long runs: memory stays flat over 10,000 training steps and over 10,000
// gradcheck calls: the resident set stops growing after warm-up, no tape entry
// outlives its step, the bytes held by tensors return to the same count, and
// the buffer cache stays bounded (its peak is reported).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <tapegrad/tapegrad.hpp>

using tg::Tensor;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool asan = true;
#else
constexpr bool asan = false;
#endif
#else
constexpr bool asan = false;
#endif

// VmRSS of this process in KiB (0 where /proc is missing).
int64_t resident_kib()
{
    std::ifstream status("/proc/self/status");
    std::string key;
    while (status >> key) {
        if (key == "VmRSS:") {
            int64_t kib = 0;
            status >> kib;
            return kib;
        }
        status.ignore(1 << 20, '\n');
    }
    return 0;
}

struct Watch {
    int64_t rss_after_warmup = 0, rss_max_after = 0, live_after_warmup = 0, cached_peak = 0;
    // The cache starts empty, so its peak is this run's, not what the test
    // cases before it in the same process left there.
    Watch() { tg::release_cached_memory(); }
    void sample(int step, int warmup)
    {
        const tg::MemoryStats m = tg::memory_stats();
        cached_peak = std::max(cached_peak, m.cached_bytes);
        if (step == warmup) {
            rss_after_warmup = resident_kib();
            live_after_warmup = m.live_bytes;
        } else if (step > warmup && step % 500 == 0) {
            rss_max_after = std::max(rss_max_after, resident_kib());
        }
    }
    void check(const std::string& what) const
    {
        const double growth = double(rss_max_after - rss_after_warmup) / double(rss_after_warmup);
        MESSAGE(what, ": RSS ", rss_after_warmup, " KiB after warm-up, at most ", rss_max_after,
                " KiB later (", 100 * growth, "%); tensors hold ", tg::memory_stats().live_bytes,
                " bytes (", live_after_warmup, " after warm-up); buffer cache peak ", cached_peak, " bytes");
        REQUIRE(rss_after_warmup > 0);
        // ASan keeps freed memory in quarantine (256 MiB), so its RSS grows
        // by design; the byte counts below still hold there.
        if (asan)
            MESSAGE("RSS growth not checked under AddressSanitizer");
        else
            CHECK(growth < 0.01);
        CHECK(tg::memory_stats().live_bytes == live_after_warmup);
        CHECK(tg::live_tape_entries() == 0);
        // The cache keeps freed large buffers for reuse; a step's working set
        // is well under a megabyte here, so a growing cache would be a leak.
        CHECK(cached_peak < (int64_t(8) << 20));
    }
};

}  // namespace

TEST_CASE("long run: 10,000 training steps of a small CNN keep memory flat")
{
    using namespace tg::nn;
    tg::Generator gen(11);
    auto model = std::make_shared<Sequential>();
    model->add(make<Conv2d>(1, 4, 3, Conv2dOptions{.padding = 1}, &gen));
    model->add(make<BatchNorm2d>(4));
    model->add(make<ReLU>());
    model->add(make<MaxPool2d>(2));
    model->add(make<Flatten>());
    model->add(make<Linear>(4 * 6 * 6, 10, true, &gen));
    tg::optim::Adam opt(model->named_parameters(), {.lr = 1e-3});
    const Tensor x = tg::randn({8, 1, 12, 12}, tg::float32, &gen);
    Tensor y = tg::zeros({8}, tg::int64);
    for (int64_t i = 0; i < 8; ++i) y.data<int64_t>()[i] = i % 10;

    const int steps = 10000, warmup = 1000;
    Watch watch;
    double first_loss = 0, last_loss = 0;
    for (int step = 1; step <= steps; ++step) {
        Tensor loss = tg::cross_entropy(model->forward(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        (step == 1 ? first_loss : last_loss) = loss.item();
        loss = Tensor();
        REQUIRE(tg::live_tape_entries() == 0);
        watch.sample(step, warmup);
    }
    watch.check("10,000 steps");
    CHECK(last_loss < first_loss);  // it trained
}

TEST_CASE("long run: 10,000 gradcheck calls keep memory flat")
{
    tg::Generator gen(5);
    const Tensor a = tg::randn({3, 4}, tg::float64, &gen).requires_grad_();
    const Tensor b = tg::randn({4}, tg::float64, &gen).requires_grad_();
    const int calls = 10000, warmup = 500;
    Watch watch;
    int passed = 0;
    for (int call = 1; call <= calls; ++call) {
        tg::GradcheckResult r = tg::gradcheck(
            [](const tg::tensor_list& in) { return tg::sum(tg::tanh(tg::mul(in[0], in[1]))); }, {a, b});
        passed += r.passed();
        REQUIRE(tg::live_tape_entries() == 0);
        watch.sample(call, warmup);
    }
    watch.check("10,000 gradchecks");
    CHECK(passed == calls);
}
