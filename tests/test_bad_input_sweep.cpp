// Every registered op fed bad input, automatically: each sample's inputs are
// mutated one at a time (wrong rank, a mismatched size, an empty tensor with a
// huge axis, int64 or the other float dtype, an undefined tensor, NaN and
// ±Inf, out-of-range class indices), and so is each attribute of each op
// defined with Op::sample (a stride of 0, an axis of 2^62, a NaN eps: see
// engine/core/attribute_edges.hpp). The call, and its backward when it
// succeeds, must either work or raise a tg::Error that names an op; never a
// crash, another exception, or a hang. CI runs it under ASan and UBSan too.
//
// What "work" means is checked where it is defined without an oracle: the
// output and every gradient are the same bits whether fresh buffers start as
// 0x00 or 0xff (nothing reads memory no one wrote, the way bmm of an empty
// batch once returned uninitialised numbers), a gradient has its input's
// shape, and an empty output gives all-zero gradients. The composites' own
// options (flatten's axes, select's index) reach the ops inside them, whose
// attributes are mutated here; test_op_errors.cpp names the composites' errors.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
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
    // Empty: a valid tensor, whose result has a defined meaning or an error.
    for (int axis = 0; axis < 4; ++axis)  // (no sample has an input of rank 5)
        m.push_back(shape_only("axis " + std::to_string(axis) + " of 0", [axis](tg::InputSpec& s) {
            if (int(s.shape.size()) <= axis) return false;
            s.shape[size_t(axis)] = 0;
            return true;
        }));
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
        const std::string value = tg::detail::describe_attribute(v);  // 1e+308, not 308 digits
        m.push_back(tensor_only("all " + value, [v](Tensor& t, const tg::InputSpec& s) {
            if (!s.differentiable()) return false;
            t = filled(t, v);
            return true;
        }));
        m.push_back(tensor_only("first element " + value, [v](Tensor& t, const tg::InputSpec& s) {
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

// The names a message may start with: the registered ops and the public
// functions and internal ops behind them.
std::set<std::string> known_op_names()
{
    std::set<std::string> names;
    for (const tg::OpInfo& op : tg::registered_ops()) names.insert(op.name);
    for (const char* extra : {"zeros", "empty", "to", "reshape", "expand", "sum_to", "broadcast", "matmul",
                              "cross_entropy", "nll_loss", "pick_rows", "place_rows", "conv2d", "im2col", "col2im",
                              "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "softmax", "log_softmax",
                              "batch_norm", "layer_norm", "linear", "dropout", "binary_cross_entropy_with_logits",
                              "backward", "gradient",
                              // helpers inside samples, which shape their inputs before the call
                              "with_nan", "with_targets", "window_indices", "distinct_indices", "repeat", "from_values"})
        names.insert(extra);
    return names;
}

// The slowest call of a sweep, timed on every path out of an iteration.
struct SlowestCall {
    int64_t us = 0;
    std::string what;
    struct Timer {
        SlowestCall& slowest;
        std::string what;
        std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
        Timer(SlowestCall& s, std::string w) : slowest(s), what(std::move(w)) {}
        ~Timer()
        {
            const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - start).count();
            if (us > slowest.us) slowest.us = us, slowest.what = what;
        }
    };
};

std::string bits_of(const Tensor& t)
{
    if (!t.defined()) return "undefined";
    const auto* p = static_cast<const char*>(t.raw_data());
    return tg::dtype_name(t.dtype()) + std::string(" ") + tg::detail::describe_attribute(t.shape()) + " " +
           std::string(p, p + t.numel() * int64_t(tg::dtype_size(t.dtype())));
}

// What one call did: its error, or the bits of its output and gradients.
struct Outcome {
    bool raised = false;
    std::string error;
    std::vector<std::string> bits;
};

// One run of fn on inputs made by make (false: the call does not apply),
// with fresh buffers filled with `fill`; the checks that hold for any op.
std::optional<Outcome> run_once(const std::function<bool(tg::tensor_list&)>& make, const tg::OpFn& fn,
                                const std::set<std::string>& op_names, int fill)
{
    struct FillGuard {
        explicit FillGuard(int byte) { tg::detail::set_fresh_buffer_fill(byte); }
        ~FillGuard() { tg::detail::set_fresh_buffer_fill(-1); }
    } guard(fill);
    Outcome o;
    try {
        tg::tensor_list inputs;
        if (!make(inputs)) return std::nullopt;
        Tensor out = fn(inputs);
        REQUIRE_MESSAGE(out.defined(), "an op returned an undefined tensor");
        o.bits.push_back(bits_of(out));
        if (out.requires_grad()) {
            out.backward(tg::ones_like(out));
            for (const Tensor& x : inputs) {
                if (!x.defined() || !x.requires_grad()) continue;
                const Tensor g = x.grad();
                o.bits.push_back(bits_of(g));
                if (!g.defined()) continue;
                CHECK(g.shape() == x.shape());
                if (out.numel() == 0) {
                    // Nothing flowed back: the gradient is zero (or -0), everywhere.
                    const Tensor g64 = g.to(tg::float64);
                    for (int64_t k = 0; k < g64.numel(); ++k)
                        if (g64.data<double>()[k] != 0) {
                            FAIL_CHECK("an empty output gave a nonzero gradient: ", g64.data<double>()[k]);
                            break;
                        }
                }
            }
        }
    } catch (const tg::Error& e) {
        o.raised = true;
        o.error = e.what();
        INFO(o.error);
        CHECK_MESSAGE(names_an_op(o.error, op_names), "the error does not start by naming an op");
        CHECK(o.error.find('\n') == std::string::npos);
    } catch (const std::exception& e) {
        FAIL_CHECK((std::string("not a tg::Error: ") + e.what()));
        o.raised = true;
    }
    return o;
}

// The call run twice, fresh buffers 0x00 then 0xff: the same error, or the
// same bits (a NaN fill read back would show as a difference).
std::optional<Outcome> probe(const std::function<bool(tg::tensor_list&)>& make, const tg::OpFn& fn,
                             const std::set<std::string>& op_names)
{
    std::optional<Outcome> zeros = run_once(make, fn, op_names, 0x00);
    if (!zeros) return zeros;
    std::optional<Outcome> ones = run_once(make, fn, op_names, 0xff);
    REQUIRE(ones);
    CHECK_MESSAGE(zeros->raised == ones->raised, "raised under one buffer fill only: ", zeros->error, ones->error);
    if (!zeros->raised && !ones->raised)
        CHECK_MESSAGE(zeros->bits == ones->bits, "the result depends on what fresh buffers held: uninitialised memory");
    return zeros;
}

// TG_SWEEP_LOG=text prints each call whose description contains text, and
// what it did: "TG_SWEEP_LOG='axis 0 of 0'" lists the ops that reject an empty batch.
void log_outcome(const std::string& call, const Outcome& o)
{
    static const char* filter = std::getenv("TG_SWEEP_LOG");
    if (filter == nullptr || call.find(filter) == std::string::npos) return;
    std::printf("%s: %s\n", call.c_str(), o.raised ? o.error.c_str() : o.bits.empty() ? "ok" : o.bits[0].substr(0, o.bits[0].find(']') + 1).c_str());
}

}  // namespace

TEST_CASE("bad input: every registry op x sample x mutation works or raises a tg::Error naming an op")
{
    const std::set<std::string> op_names = known_op_names();
    const std::vector<Mutation> all = mutations();
    std::map<std::string, int> tried, failed;  // per mutation
    int calls = 0, errors = 0;
    SlowestCall slowest;
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
                    const SlowestCall::Timer timer(slowest, op.name + " / " + sample.label + " / " + mutation.what);
                    // Made afresh for each run: a backward accumulates into the inputs' gradients.
                    auto make = [&](tg::tensor_list& inputs) {
                        try {
                            inputs = tg::make_inputs(mutated, tg::float64, 0);
                        } catch (const tg::Error&) {
                            return false;  // the mutated shape cannot be made (too large): not the op's call
                        }
                        return !mutation.spoil_tensor || mutation.spoil_tensor(inputs[i], sample.inputs[i]);
                    };
                    const std::optional<Outcome> outcome = probe(make, mutated.fn, op_names);
                    if (!outcome) continue;
                    ++calls;
                    ++tried[mutation.what];
                    if (outcome->raised) ++errors, ++failed[mutation.what];
                    log_outcome(op.name + " / " + sample.label + " / " + sample.inputs[i].name + " / " + mutation.what,
                                *outcome);
                    if (mutation.must_fail) CHECK_MESSAGE(outcome->raised, "an out-of-range index was accepted");
                }
    for (const auto& [what, n] : tried) MESSAGE(what, ": ", n, " calls, ", failed[what], " raised a tg::Error");
    MESSAGE(calls, " mutated calls, ", errors, " raised a tg::Error; slowest ", slowest.us, " us (", slowest.what, ")");
    // Each kind of mutation reached ops, and the sweep as a whole is not trivially small.
    for (const Mutation& m : all) CHECK_MESSAGE(tried[m.what] > 0, m.what);
    CHECK(calls >= 5000);
    // No call loops over a huge empty axis (a sanitizer build is about 10x slower).
    CHECK(slowest.us < 5'000'000);
}

TEST_CASE("bad attributes: every attribute of every op x sample spoiled works or raises a tg::Error naming an op")
{
    const std::set<std::string> op_names = known_op_names();
    std::map<std::string, int> per_op, raised_per_op;
    int calls = 0, errors = 0, samples_without = 0;
    SlowestCall slowest;
    for (const tg::OpInfo& op : tg::registered_ops())
        for (const tg::OpSample& sample : op.samples) {
            if (!sample.spoiled_calls) {
                ++samples_without;
                continue;
            }
            for (const tg::SpoiledCall& call : sample.spoiled_calls()) {
                CAPTURE(op.name);
                CAPTURE(sample.label);
                CAPTURE(call.what);
                const SlowestCall::Timer timer(slowest, op.name + " / " + sample.label + " / " + call.what);
                auto make = [&](tg::tensor_list& inputs) {
                    inputs = tg::make_inputs(sample, tg::float64, 0);
                    return true;
                };
                const std::optional<Outcome> outcome = probe(make, call.fn, op_names);
                ++calls;
                ++per_op[op.name];
                if (outcome->raised) ++errors, ++raised_per_op[op.name];
                log_outcome(op.name + " / " + sample.label + " / " + call.what, *outcome);
            }
        }
    for (const auto& [name, n] : per_op) MESSAGE(name, ": ", n, " spoiled calls, ", raised_per_op[name], " raised");
    MESSAGE(calls, " calls with a spoiled attribute over ", per_op.size(), " ops, ", errors, " raised a tg::Error; ",
            samples_without, " samples are functions without attributes; slowest ", slowest.us, " us (", slowest.what,
            ")");
    // The ops with options are reached: a change that stopped the reflection
    // from finding fields would leave these at zero.
    for (const char* name : {"conv2d", "im2col", "col2im", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
                             "softmax", "log_softmax", "sum", "max", "permute", "slice", "reshape", "concat",
                             "broadcast_to", "clamp", "bmm", "pick_rows", "place_rows", "unslice",
                             "max_pool2d_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward",
                             "adaptive_max_pool2d"})
        CHECK_MESSAGE(per_op[name] > 0, std::string(name));
    CHECK(slowest.us < 5'000'000);
}
