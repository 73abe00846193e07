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
#include <utility>

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
using BackwardRule = std::function<tensor_list(const BackwardArgs&)>;

struct Node {
    const char* op;                    // the op's name, for messages
    std::vector<Edge> inputs;          // one per input of the op, in order
    std::vector<SavedTensor> saved;
    BackwardRule rule;
    shape_type shape;                  // of the output
    Dtype dtype;
    bool released = false;             // the saved tensors were freed by a backward

    // scratch of one backward sweep
    uint64_t epoch_seen = 0;           // the sweep that last discovered this entry
    int pending = 0;                   // gradients still to arrive from downstream entries
    Tensor grad_sum;                   // sum of the gradients arrived so far

    Node();
    ~Node();
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;
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

namespace detail {
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
Tensor attach(const char* op, Tensor out, const tensor_list& inputs, const tensor_list& save,
              BackwardRule rule);
}  // namespace detail

// Records one op on the tape: `out` was computed from `inputs`; `save` lists
// the tensors the rule reads back (inputs or `out` itself); `rule` maps the
// output's gradient to one gradient per input (an undefined Tensor for none).
// Does nothing when grad mode is off or no input requires grad.
template <class Rule>
Tensor record(const char* op, Tensor out, const tensor_list& inputs, const tensor_list& save,
              Rule&& rule)
{
    if (!grad_enabled()) return out;
    bool any = false;
    for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
    if (!any) return out;
    return detail::attach(op, std::move(out), inputs, save, BackwardRule(std::forward<Rule>(rule)));
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
