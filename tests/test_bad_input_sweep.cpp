// Every registered op fed bad input, automatically: each sample's inputs are
// mutated one at a time (wrong rank, a mismatched size, an empty tensor with a
// huge axis, int64 or the other float dtype, an undefined tensor, NaN and
// ±Inf, out-of-range class indices) and the call, and its backward when it
// succeeds, must either work or raise a tg::Error that names an op; never a
// crash, another exception, or a hang. CI runs it under ASan and UBSan too.
// Options that cannot be mutated from outside a sample (strides, paddings,
// axes) are covered one by one in test_op_errors.cpp.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/helpers.hpp"

using tg::shape_type;
using tg::Tensor;

namespace {

// One way of spoiling input i of a sample. `spoil_shape` changes the spec
// before the inputs are made; `spoil_tensor` changes the made tensor.
struct Mutation {
    std::string what;
    std::function<bool(tg::InputSpec&)> spoil_shape;     // false: does not apply to this input
    std::function<bool(Tensor&, const tg::InputSpec&)> spoil_tensor;
    bool must_fail = false;  // no correct result exists: only a tg::Error will do
};

Tensor filled(const Tensor& like, double value)
{
    Tensor t = like.detach().clone();
    TG_DISPATCH_FLOATING(t.dtype(), "filled", [&] {
        scalar_t* p = t.data<scalar_t>();
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = scalar_t(value);
    });
    return t.requires_grad_(like.requires_grad());
}

// The first element set to `value`, the rest kept.
Tensor with_first(const Tensor& like, double value)
{
    Tensor t = like.detach().clone();
    if (t.numel() == 0) return t.requires_grad_(like.requires_grad());
    TG_DISPATCH_ALL(t.dtype(), "with_first", [&] { t.data<scalar_t>()[0] = scalar_t(value); });
    return t.requires_grad_(like.requires_grad() && tg::is_floating(t.dtype()));
}

std::vector<Mutation> mutations()
{
    std::vector<Mutation> m;
    auto shape_only = [](std::string what, std::function<bool(tg::InputSpec&)> f) {
        return Mutation{std::move(what), std::move(f), nullptr};
    };
    auto tensor_only = [](std::string what, std::function<bool(Tensor&, const tg::InputSpec&)> f, bool must_fail = false) {
        return Mutation{std::move(what), nullptr, std::move(f), must_fail};
    };
    m.push_back(shape_only("a leading axis of 2 added", [](tg::InputSpec& s) {
        s.shape.insert(s.shape.begin(), 2);
        return true;
    }));
    m.push_back(shape_only("the first axis dropped", [](tg::InputSpec& s) {
        if (s.shape.empty()) return false;
        s.shape.erase(s.shape.begin());
        return true;
    }));
    for (int axis = 0; axis < 4; ++axis) {
        m.push_back(shape_only("axis " + std::to_string(axis) + " one longer", [axis](tg::InputSpec& s) {
            if (int(s.shape.size()) <= axis) return false;
            s.shape[size_t(axis)] += 1;
            return true;
        }));
        // Empty, with another axis near 2^62: no element to touch, and nothing
        // may loop over the huge axis or size a buffer by it.
        m.push_back(shape_only("axis " + std::to_string(axis) + " of 2^62, another 0", [axis](tg::InputSpec& s) {
            if (int(s.shape.size()) <= axis || s.shape.size() < 2) return false;
            s.shape[size_t(axis)] = int64_t(1) << 62;
            s.shape[size_t(axis == 0 ? 1 : 0)] = 0;
            return true;
        }));
    }
    m.push_back(tensor_only("int64 instead of float", [](Tensor& t, const tg::InputSpec& s) {
        if (!s.differentiable()) return false;
        t = t.detach().to(tg::int64);
        return true;
    }));
    m.push_back(tensor_only("float32 among float64", [](Tensor& t, const tg::InputSpec& s) {
        if (!s.differentiable()) return false;
        t = t.detach().to(tg::float32).requires_grad_();
        return true;
    }));
    m.push_back(tensor_only("float64 instead of int64 indices", [](Tensor& t, const tg::InputSpec& s) {
        if (s.differentiable()) return false;
        t = t.to(tg::float64);
        return true;
    }));
    m.push_back(tensor_only("undefined", [](Tensor& t, const tg::InputSpec&) {
        t = Tensor();
        return true;
    }));
    for (double v : {double(NAN), double(INFINITY), -double(INFINITY), 1e308, -1e308}) {
        m.push_back(tensor_only("all " + std::to_string(v), [v](Tensor& t, const tg::InputSpec& s) {
            if (!s.differentiable()) return false;
            t = filled(t, v);
            return true;
        }));
        m.push_back(tensor_only("first element " + std::to_string(v), [v](Tensor& t, const tg::InputSpec& s) {
            if (!s.differentiable()) return false;
            t = with_first(t, v);
            return true;
        }));
    }
    // Class indices out of range (ignore_index is -100 by default, so -1 and the
    // extremes are never "ignored"): there is no right answer, only an error.
    for (int64_t v : {int64_t(-1), INT64_MIN, INT64_MAX}) {
        m.push_back(tensor_only("index " + std::to_string(v), [v](Tensor& t, const tg::InputSpec& s) {
            if (s.differentiable() || t.numel() == 0) return false;
            // Every element: a sample may set some of its targets itself (to ignore_index).
            t = t.clone();
            for (int64_t k = 0; k < t.numel(); ++k) t.data<int64_t>()[k] = v;
            return true;
        }, true));
    }
    m.push_back(tensor_only("index = the class count", [](Tensor& t, const tg::InputSpec& s) {
        if (s.differentiable() || t.numel() == 0 || s.high <= 0) return false;
        t = t.clone();
        for (int64_t k = 0; k < t.numel(); ++k) t.data<int64_t>()[k] = s.high;
        return true;
    }, true));
    return m;
}

bool names_an_op(const std::string& message, const std::set<std::string>& ops)
{
    static const std::string prefix = "tapegrad: ";
    if (message.compare(0, prefix.size(), prefix) != 0) return false;
    // A sample's own code met the undefined tensor: the Tensor method is named.
    if (message.rfind("tapegrad: use of an undefined tensor (in ", 0) == 0) return true;
    const size_t end = message.find_first_of(": ", prefix.size());
    return end != std::string::npos && ops.count(message.substr(prefix.size(), end - prefix.size())) != 0;
}

}  // namespace

TEST_CASE("bad input: every registry op x sample x mutation works or raises a tg::Error naming an op")
{
    // The names a message may start with: the registered ops and the public
    // functions and internal ops behind them.
    std::set<std::string> op_names;
    for (const tg::OpInfo& op : tg::registered_ops()) op_names.insert(op.name);
    for (const char* extra : {"zeros", "empty", "to", "reshape", "expand", "sum_to", "broadcast", "matmul",
                              "cross_entropy", "nll_loss", "pick_rows", "place_rows", "conv2d", "im2col", "col2im",
                              "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "softmax", "log_softmax",
                              "batch_norm", "layer_norm", "linear", "dropout", "binary_cross_entropy_with_logits",
                              "backward", "gradient",
                              // helpers inside samples, which shape their inputs before the call
                              "with_nan", "with_targets", "window_indices", "repeat", "from_values"})
        op_names.insert(extra);

    const std::vector<Mutation> all = mutations();
    std::map<std::string, int> tried, failed;  // per mutation
    int calls = 0, errors = 0;
    int64_t slowest_us = 0;
    std::string slowest;
    for (const tg::OpInfo& op : tg::registered_ops())
        for (const tg::OpSample& sample : op.samples)
            for (size_t i = 0; i < sample.inputs.size(); ++i)
                for (const Mutation& mutation : all) {
                    tg::OpSample mutated = sample;
                    if (mutation.spoil_shape && !mutation.spoil_shape(mutated.inputs[i])) continue;
                    CAPTURE(op.name);
                    CAPTURE(sample.label);
                    CAPTURE(sample.inputs[i].name);
                    CAPTURE(mutation.what);
                    // Timed on every path out of this iteration, skips included.
                    struct Timer {
                        std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
                        std::function<void(int64_t)> done;
                        ~Timer()
                        {
                            done(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - start).count());
                        }
                    } timer{std::chrono::steady_clock::now(), [&](int64_t us) {
                        if (us > slowest_us) slowest_us = us, slowest = op.name + " / " + sample.label + " / " + mutation.what;
                    }};
                    bool raised = false;
                    try {
                        tg::tensor_list inputs;
                        try {
                            inputs = tg::make_inputs(mutated, tg::float64, 0);
                        } catch (const tg::Error&) {
                            continue;  // the mutated shape cannot be made (too large): not the op's call
                        }
                        if (mutation.spoil_tensor && !mutation.spoil_tensor(inputs[i], sample.inputs[i])) continue;
                        ++calls;
                        ++tried[mutation.what];
                        Tensor out = mutated.fn(inputs);
                        REQUIRE_MESSAGE(out.defined(), "an op returned an undefined tensor");
                        if (out.requires_grad()) {
                            out.backward(tg::ones_like(out));
                            for (const Tensor& x : inputs)
                                if (x.defined() && x.requires_grad() && x.grad().defined())
                                    CHECK(x.grad().shape() == x.shape());
                        }
                    } catch (const tg::Error& e) {
                        raised = true;
                        ++errors;
                        ++failed[mutation.what];
                        const std::string what = e.what();
                        INFO(what);
                        CHECK_MESSAGE(names_an_op(what, op_names), "the error does not start by naming an op");
                        CHECK(what.find('\n') == std::string::npos);
                    } catch (const std::exception& e) {
                        FAIL_CHECK((std::string("not a tg::Error: ") + e.what()));
                    }
                    if (mutation.must_fail) CHECK_MESSAGE(raised, "an out-of-range index was accepted");
                }
    for (const auto& [what, n] : tried) MESSAGE(what, ": ", n, " calls, ", failed[what], " raised a tg::Error");
    MESSAGE(calls, " mutated calls, ", errors, " raised a tg::Error; slowest ", slowest_us, " us (", slowest, ")");
    // Each kind of mutation reached ops, and the sweep as a whole is not trivially small.
    for (const Mutation& m : all) CHECK_MESSAGE(tried[m.what] > 0, m.what);
    CHECK(calls >= 5000);
    // No call loops over a huge empty axis (a sanitizer build is about 10x slower).
    CHECK(slowest_us < 5'000'000);
}
