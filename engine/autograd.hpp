// The tape and reverse-mode autodiff.
//
// Every differentiable op that runs on a tensor requiring grad appends an entry
// (a Node) to the tape: the op's name, edges to the entries (or leaves) that
// produced its inputs, the tensors its backward rule needs, and the rule itself.
// An entry is owned by the tensors it produced and by the entries downstream
// of it, so it lives exactly as long as a backward could still reach it: a loop
// that runs forwards and never calls backward leaves nothing behind.
//
// backward() sweeps the entries reachable from the output in reverse order of
// their dependencies, calling each rule once with the sum of the gradients
// that flowed into it. Rules are written with tapegrad's own ops, so with
// create_graph the sweep is itself recorded and can be differentiated again.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <tuple>
#include <utility>

#include "engine/memory.hpp"
#include "engine/tensor.hpp"

namespace tg {

// --- grad mode ------------------------------------------------------------------
bool grad_enabled();
void set_grad_enabled(bool enabled);

// Ops run inside its scope are not recorded (evaluation, optimizer steps).
// Thread-local: each thread records its own tape.
class NoGradGuard {
public:
    NoGradGuard() : previous_(grad_enabled()) { set_grad_enabled(false); }
    ~NoGradGuard() { set_grad_enabled(previous_); }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool previous_;
};

class EnableGradGuard {
public:
    EnableGradGuard() : previous_(grad_enabled()) { set_grad_enabled(true); }
    ~EnableGradGuard() { set_grad_enabled(previous_); }
    EnableGradGuard(const EnableGradGuard&) = delete;
    EnableGradGuard& operator=(const EnableGradGuard&) = delete;

private:
    bool previous_;
};

// --- tape entries -------------------------------------------------------------------

// Where an input's gradient goes: the entry that produced it, or the leaf itself.
struct Edge {
    std::shared_ptr<Node> node;
    std::shared_ptr<TensorImpl> leaf;
    bool connected() const { return node || leaf; }
};

// A tensor kept for the backward rule, with the version it had when saved.
struct SavedTensor {
    Tensor data;                    // for a saved output: the data only, cut from the tape
    std::weak_ptr<Node> output_of;  // set when it is the entry's own output (no cycle)
    bool is_output = false;
    uint64_t version = 0;
};

class BackwardArgs;
struct ReplayInfo;  // engine/replay.hpp

struct Node {
    const char* op;                    // the op's name, for messages
    std::vector<Edge, detail::PoolAllocator<Edge>> inputs;  // one per input of the op, in order
    std::vector<SavedTensor, detail::PoolAllocator<SavedTensor>> saved;
    shape_type shape;                  // of the output
    Dtype dtype;
    bool released = false;             // the rule and saved tensors were freed by a backward
    std::unique_ptr<ReplayInfo> replay;  // only for ops recorded under a ReplayCapture

    // scratch of one backward sweep
    uint64_t epoch_seen = 0;           // the sweep that last discovered this entry
    int pending = 0;                   // gradients still to arrive from downstream entries
    Tensor grad_sum;                   // sum of the gradients arrived so far

    Node();
    virtual ~Node();
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    // Runs the op's backward rule: one gradient per input.
    virtual tensor_list apply(const BackwardArgs& args) = 0;
    // Frees what the rule captured (after a backward without retain_graph).
    virtual void release_rule() = 0;
};

// The rule lives inside its entry: one allocation per recorded op.
template <class Rule>
struct RuleNode final : Node {
    explicit RuleNode(Rule&& r) : rule(std::move(r)) {}
    tensor_list apply(const BackwardArgs& args) override { return (*rule)(args); }
    void release_rule() override { rule.reset(); }
    std::optional<Rule> rule;
};

// What a backward rule receives.
class BackwardArgs {
public:
    BackwardArgs(const Node& node, const Tensor& grad, const tensor_list& saved)
        : grad(grad), saved(saved), node_(node)
    {
    }
    const Tensor& grad;          // gradient of the result with respect to the op's output
    const tensor_list& saved;    // what the forward saved, in order
    // Whether input i wants a gradient; a rule may skip the work for the others.
    bool needs_grad(size_t i) const { return i < node_.inputs.size() && node_.inputs[i].connected(); }

private:
    const Node& node_;
};

// Number of tape entries alive in the process (for tests of memory use).
int64_t live_tape_entries();

// A read-only list of tensors given as {a, b} or as a tensor_list, without copying.
class TensorRefs {
public:
    TensorRefs() = default;
    // The list's array lives until the end of the call that received it, which
    // is as long as record() needs it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winit-list-lifetime"
    TensorRefs(std::initializer_list<Tensor> l) : data_(l.begin()), size_(l.size()) {}
#pragma GCC diagnostic pop
    TensorRefs(const tensor_list& v) : data_(v.data()), size_(v.size()) {}  // NOLINT
    const Tensor* begin() const { return data_; }
    const Tensor* end() const { return data_ + size_; }
    size_t size() const { return size_; }
    const Tensor& operator[](size_t i) const { return data_[i]; }

private:
    const Tensor* data_ = nullptr;
    size_t size_ = 0;
};

using ReplayForward = std::function<Tensor(const tensor_list&)>;
class DeltaArgs;
using ReplayDelta = std::function<bool(DeltaArgs&)>;

namespace detail {
Tensor attach(std::shared_ptr<Node> node, const char* op, Tensor out, TensorRefs inputs, TensorRefs save);
extern thread_local bool replay_capture_on;
void keep_replay(Node& node, ReplayForward forward, ReplayDelta delta);
}  // namespace detail

// Records one op on the tape: `out` was computed from `inputs`; `save` lists
// the tensors the rule reads back (inputs or `out` itself); `rule` maps the
// output's gradient to one gradient per input (an undefined Tensor for none).
// `replay` is optional: the op's forward as a closure `Tensor(const
// tensor_list& inputs)` over its attributes, then optionally its delta rule
// `bool(DeltaArgs&)` (engine/replay.hpp); the model gradcheck replays parts of
// the tape with them. They are kept only under a ReplayCapture.
// Does nothing when grad mode is off or no input requires grad.
template <class Rule, class... Replay>
Tensor record(const char* op, Tensor out, TensorRefs inputs, TensorRefs save, Rule&& rule, Replay&&... replay)
{
    static_assert(sizeof...(Replay) <= 2, "record: replay is a forward closure and optionally a delta rule");
    if (!grad_enabled()) return out;
    bool any = false;
    for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
    if (!any) return out;
    using R = std::decay_t<Rule>;
    auto node = detail::make_pooled<RuleNode<R>>(R(std::forward<Rule>(rule)));
    if constexpr (sizeof...(Replay) > 0) {
        if (detail::replay_capture_on) {
            auto closures = std::forward_as_tuple(std::forward<Replay>(replay)...);
            if constexpr (sizeof...(Replay) == 1)
                detail::keep_replay(*node, ReplayForward(std::get<0>(closures)), ReplayDelta());
            else
                detail::keep_replay(*node, ReplayForward(std::get<0>(closures)), ReplayDelta(std::get<1>(closures)));
        }
    }
    return detail::attach(std::move(node), op, std::move(out), inputs, save);
}

// --- running backward ---------------------------------------------------------------

struct GradOptions {
    bool create_graph = false;              // record the backward sweep for higher orders
    std::optional<bool> retain_graph;       // keep saved tensors (default: create_graph)
};

// Gradients of `outputs` (weighted by `grad_outputs`, ones for scalars) with
// respect to `inputs`, without touching any grad(). An input the outputs do
// not depend on gets zeros.
tensor_list grad(const tensor_list& outputs, const tensor_list& inputs,
                 const tensor_list& grad_outputs = {}, GradOptions options = {});

// Accumulates d(root)/d(leaf), weighted by `gradient`, into every reachable leaf's grad().
void backward(const Tensor& root, const Tensor& gradient = Tensor(), bool retain_graph = false,
              bool create_graph = false);

}  // namespace tg
