// Partial replay (engine/replay.hpp): every registered op keeps a forward that
// reproduces its recorded output, and every delta rule gives what a fresh
// forward on the changed inputs gives. The model gradcheck's numbers rest on both.
#include "tests/helpers.hpp"

#include <cmath>
#include <functional>
#include <utility>
#include <vector>

TEST_CASE("replay: every registered op replays its output, and partial replays equal fresh forwards")
{
    int64_t samples = 0, element_runs = 0, not_replayed = 0;
    for (const tg::OpInfo& op : tg::registered_ops()) {
        for (const tg::OpSample& sample : op.samples) {
            CAPTURE(op.name);
            CAPTURE(sample.label);
            tg::tensor_list inputs = tg::make_inputs(sample, tg::float64, 11);
            tg::tensor_list leaves;
            for (const tg::Tensor& t : inputs)
                if (t.requires_grad()) leaves.push_back(t);
            tg::Tensor out;
            tg::ReplayCapture capture;
            {
                tg::EnableGradGuard on;
                out = sample.fn(inputs);
            }
            capture.stop();
            if (!out.requires_grad() || out.is_leaf() || out.dtype() != tg::float64) continue;  // identity samples
            tg::ReplayTape tape(capture, out, leaves);
            if (!op.replays) {  // by design (a collective): the tape says so, and the checker re-runs
                CHECK_FALSE(tape.complete());
                CHECK(tape.missing().find(op.name) != std::string::npos);
                ++not_replayed;
                continue;
            }
            REQUIRE_MESSAGE(tape.complete(), "no replay closure for: ", tape.missing());
            CHECK(tape.verify() == "");

            tg::Replayer replayer(tape);
            tg::Generator gen(uint64_t(samples) + 1);
            for (size_t k = 0; k < leaves.size(); ++k) {
                CAPTURE(k);
                int64_t n = leaves[k].numel();
                // A few single elements (first, last, random), as the checker perturbs them.
                std::vector<int64_t> picks{0, n - 1, int64_t(gen.uniform() * double(n)) % n};
                for (int64_t e : picks) {
                    double x = leaves[k].data<double>()[e];
                    double v = x + 1e-3 * (1 + std::abs(x)) * (x >= 0 ? 1 : -1);  // stays in the sample's domain
                    tg::Tensor got = replayer.run_element(k, e, v).clone();
                    tg::tensor_list changed = inputs;
                    for (size_t i = 0; i < inputs.size(); ++i)
                        if (inputs[i].same(leaves[k])) {
                            changed[i] = inputs[i].detach().clone();
                            changed[i].data<double>()[e] = v;
                        }
                    tg::Tensor want;
                    {
                        tg::NoGradGuard off;
                        want = sample.fn(changed);
                    }
                    CHECK_MESSAGE(tg::rounding_difference(got, want, 1e-12, 1e-12) == "", "element ", e, ": ", tg::rounding_difference(got, want, 1e-12, 1e-12));
                    ++element_runs;
                }
                // Every element at once (a fast-mode probe), then back.
                double* xd = replayer.leaf_data(k);
                std::vector<double> saved(xd, xd + n);
                for (int64_t e = 0; e < n; ++e) xd[e] *= 1.001;
                tg::Tensor got = replayer.run().clone();
                tg::tensor_list changed = inputs;
                for (size_t i = 0; i < inputs.size(); ++i)
                    if (inputs[i].same(leaves[k])) {
                        changed[i] = inputs[i].detach().clone();
                        for (int64_t e = 0; e < n; ++e) changed[i].data<double>()[e] = xd[e];
                    }
                tg::Tensor want;
                {
                    tg::NoGradGuard off;
                    want = sample.fn(changed);
                }
                CHECK_MESSAGE(tg::rounding_difference(got, want, 1e-12, 1e-12) == "", "all elements: ", tg::rounding_difference(got, want, 1e-12, 1e-12));
                std::copy(saved.begin(), saved.end(), xd);
                // The recorded values are back: an unperturbed run gives the recorded output.
                CHECK(tg::rounding_difference(replayer.run(), out.detach(), 1e-12, 1e-12) == "");
            }
            ++samples;
        }
    }
    CHECK(samples > 150);
    CHECK(element_runs > 500);
    CHECK(not_replayed == 2);  // dist.all_reduce_sum's two samples: the only op that must not replay
}

TEST_CASE("replay: delta rules touch only what the change reaches")
{
    // A linear layer's weight element reaches one output column: the replay
    // takes the bmm delta, not a GEMM.
    tg::Generator gen(3);
    tg::Tensor x = tg::randn({4, 7}, tg::float64, &gen);
    tg::Tensor w = tg::randn({5, 7}, tg::float64, &gen).requires_grad_();
    tg::Tensor b = tg::randn({5}, tg::float64, &gen).requires_grad_();
    tg::Tensor out;
    tg::ReplayCapture capture;
    out = tg::sum(tg::relu(tg::linear(x, w, b)));
    capture.stop();
    tg::ReplayTape tape(capture, out, {w, b});
    tg::Replayer replayer(tape);
    double base = out.item();
    double moved = replayer.run_element(0, 8, w.data<double>()[8] + 0.5).item();
    CHECK(replayer.delta_replays() >= 5);  // reshape, bmm, reshape, add, relu, sum
    CHECK(replayer.dense_replays() == 0);
    tg::Tensor w2 = w.detach().clone();
    w2.data<double>()[8] += 0.5;
    CHECK(moved == doctest::Approx(tg::sum(tg::relu(tg::linear(x, w2, b))).item()).epsilon(1e-13));
    CHECK(replayer.run().item() == base);
}

TEST_CASE("replay: after an op replayed densely, only the elements that changed go on as deltas")
{
    // log_softmax has no delta rule: it runs again whole. Moving x[2, 3]
    // changes row 2 only (5 of 40 elements), which the scan of its output finds,
    // so exp and the sum after it take deltas of those 5, not dense replays.
    tg::Generator gen(5);
    tg::Tensor x = tg::randn({8, 5}, tg::float64, &gen).requires_grad_();
    tg::Tensor out;
    tg::ReplayCapture capture;
    out = tg::sum(tg::exp(tg::mul(tg::log_softmax(x, 1), tg::scalar(0.5, tg::float64))));
    capture.stop();
    tg::ReplayTape tape(capture, out, {x});
    tg::Replayer replayer(tape);
    const double moved = replayer.run_element(0, 13, x.data<double>()[13] - 0.75).item();
    CHECK(replayer.dense_replays() == 1);
    CHECK(replayer.delta_replays() == 3);  // mul, exp, sum
    tg::Tensor x2 = x.detach().clone();
    x2.data<double>()[13] -= 0.75;
    CHECK(moved == doctest::Approx(tg::sum(tg::exp(tg::mul(tg::log_softmax(x2, 1), tg::scalar(0.5, tg::float64)))).item()).epsilon(1e-13));
}

TEST_CASE("replay: max_pool2d's delta over a window holding a NaN keeps the NaN, as its forward")
{
    // [1, 1, 4, 4], 2x2 windows; x[1] (window 0) is NaN. Moving x[0] up keeps
    // window 0 NaN; moving the NaN itself to a number makes it the maximum.
    tg::Tensor x = tg::reshape(tg::arange(16, tg::float64), {1, 1, 4, 4}).requires_grad_();
    x.data<double>()[1] = std::nan("");
    tg::Tensor out;
    tg::ReplayCapture capture;
    out = tg::max_pool2d(x, 2);
    capture.stop();
    tg::ReplayTape tape(capture, out, {x});
    tg::Replayer replayer(tape);
    for (auto [e, v] : {std::pair<int64_t, double>{0, 30.0}, {1, 40.0}, {5, -3.0}}) {
        CAPTURE(e);
        const std::vector<double> got = replayer.run_element(0, e, v).to_vector();
        tg::Tensor moved = x.detach().clone();
        moved.data<double>()[e] = v;
        const std::vector<double> want = tg::max_pool2d(moved, 2).to_vector();
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < got.size(); ++i) {
            CAPTURE(i);
            CHECK(std::isnan(got[i]) == std::isnan(want[i]));
            if (!std::isnan(want[i])) CHECK(got[i] == want[i]);
        }
    }
    CHECK(replayer.dense_replays() == 0);
    CHECK(std::isnan(replayer.run_element(0, 0, 30.0).data<double>()[0]));
    CHECK(replayer.run_element(0, 1, 40.0).data<double>()[0] == 40.0);
}

TEST_CASE("replay: one leaf feeding both inputs of bmm or conv2d changes both, cross term included")
{
    // The delta rules read layouts cached from the recorded weight, valid only
    // while the weight is as recorded: here it moves with the other input.
    tg::Generator gen(9);
    const tg::Tensor w = tg::randn({4, 5}, tg::float64, &gen).requires_grad_();
    const tg::Tensor x = tg::randn({1, 2, 3, 3}, tg::float64, &gen).requires_grad_();
    using Fn = std::function<tg::Tensor(const tg::Tensor&)>;
    const std::vector<std::pair<Fn, tg::Tensor>> cases = {
        {[](const tg::Tensor& t) { return tg::linear(t, t); }, w},
        {[](const tg::Tensor& t) { return tg::conv2d(t, tg::reshape(t, {2, 1, 3, 3}), tg::Tensor(), 1, 1, 1, 2); }, x},
    };
    int64_t runs = 0;
    for (const auto& [fn, leaf] : cases) {
        tg::Tensor out;
        tg::ReplayCapture capture;
        out = fn(leaf);
        capture.stop();
        tg::ReplayTape tape(capture, out, {leaf});
        tg::Replayer replayer(tape);
        for (int64_t e = 0; e < leaf.numel(); ++e) {
            CAPTURE(e);
            const double v = leaf.data<double>()[e] + 0.25;
            tg::Tensor got = replayer.run_element(0, e, v).clone();
            tg::Tensor moved = leaf.detach().clone();
            moved.data<double>()[e] = v;
            CHECK(tg::rounding_difference(got, fn(moved), 1e-12, 1e-12) == "");
            ++runs;
        }
        CHECK(replayer.dense_replays() == 0);
    }
    CHECK(runs == 20 + 18);
}

TEST_CASE("replay: clear errors")
{
    tg::Tensor w = tg::ones({3}, tg::float64).requires_grad_();
    tg::Tensor y = tg::mul(w, w);  // recorded without a capture
    tg::ReplayCapture empty;
    empty.stop();
    tg::ReplayTape tape(empty, y, {w});
    CHECK_FALSE(tape.complete());
    CHECK(tape.missing() == "mul");
    CHECK(contains(error_of([&] { tg::Replayer r(tape); }), "cannot be replayed (recorded with a bare rule, or outside the capture): mul"));
    CHECK(contains(error_of([&] { tg::ReplayTape t(empty, tg::ones({2}, tg::float64), {w}); }), "not recorded"));
    tg::Tensor captured;
    tg::ReplayCapture capture;
    captured = tg::mul(w, w);
    capture.stop();
    {
        tg::NoGradGuard off;
        captured.add_(tg::ones({3}, tg::float64));  // the recorded value is gone
    }
    CHECK(contains(error_of([&] { tg::ReplayTape t(capture, captured, {w}); }), "'mul' was modified in place"));
    tg::Tensor f = tg::ones({3}).requires_grad_();
    CHECK(contains(error_of([&] { tg::ReplayTape t(capture, y, {f}); }), "float64"));
}

TEST_CASE("replay: rounding_difference allows rel of each element plus of_scale of the largest finite one")
{
    // Outputs of 1e-10: the allowance scales with them, it is not an absolute 1e-12.
    const tg::Tensor want = tg::from_values({1e-10, -2e-10, INFINITY}, {3}, tg::float64);
    auto with = [&](double second) { return tg::from_values({1e-10, second, INFINITY}, {3}, tg::float64); };
    CHECK(tg::rounding_difference(want, want, 1e-12, 1e-12) == "");
    CHECK(tg::rounding_difference(with(-2e-10 * (1 + 1e-13)), want, 1e-12, 1e-12) == "");
    CHECK(tg::rounding_difference(with(-2e-10 - 1e-13), want, 1e-12, 1e-12).rfind("element [1]", 0) == 0);
    // of_scale is of the largest |element| (2e-10 here): 2e-22 more allowed with rel 0 and of_scale 1e-12.
    CHECK(tg::rounding_difference(with(-2e-10 - 1e-22), want, 0, 1e-12) == "");
    CHECK(tg::rounding_difference(with(-2e-10 - 4e-22), want, 0, 1e-12) != "");
    CHECK(tg::rounding_difference(with(NAN), want, 1e-12, 1e-12) != "");
}
