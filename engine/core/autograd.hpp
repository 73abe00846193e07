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

#include "hooks.hpp"
#include "memory.hpp"
#include "module_scope.hpp"
#include "tensor.hpp"

namespace tg {

struct AnomalyOptions;  // anomaly.hpp

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

// A read-only list of tensors given as {a, b} or as a tensor_list, without copying.
class TensorRefs {
public:
    TensorRefs() = default;
    // The list's array lives until the end of the call that received it, which
    // is as long as record() needs it.
#if defined(__GNUC__) && !defined(__clang__)  // a GCC-only warning
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winit-list-lifetime"
#endif
    TensorRefs(std::initializer_list<Tensor> l) : data_(l.begin()), size_(l.size()) {}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    TensorRefs(const tensor_list& v) : data_(v.data()), size_(v.size()) {}  // NOLINT
    TensorRefs(const Tensor* data, size_t size) : data_(data), size_(size) {}
    const Tensor* begin() const { return data_; }
    const Tensor* end() const { return data_ + size_; }
    size_t size() const { return size_; }
    const Tensor& operator[](size_t i) const { return data_[i]; }

private:
    const Tensor* data_ = nullptr;
    size_t size_ = 0;
};

// --- tape entries -------------------------------------------------------------------

// Where an input's gradient goes: the entry that produced it, or the leaf itself.
struct Edge {
    std::shared_ptr<Node> node;
    std::shared_ptr<TensorImpl> leaf;
    bool connected() const { return node || leaf; }
};

// A tensor kept for the backward rule, with the storage and version it had when
// saved: an in-place change bumps the version, a Tensor::set_data swaps the storage.
struct SavedTensor {
    Tensor data;                    // for a saved output: the data only, cut from the tape
    std::weak_ptr<Node> output_of;  // set when it is the entry's own output (no cycle)
    const Storage* storage = nullptr;
    uint64_t version = 0;
    bool is_output = false;
    bool changed() const;           // since it was saved
};

class BackwardArgs;
class DeltaArgs;  // engine/core/op.hpp

// How the model gradcheck's replay (engine/check/replay.hpp) may recompute an
// entry after a few of its input elements changed.
enum class ReplayForm : uint8_t {
    none,       // cannot be replayed (an op recorded with a bare rule)
    dense,      // only by running its forward again
    pointwise,  // output element o = f(input elements at o, broadcast): Node::pointwise
    index_map,  // every output element is a copy of one input element (or a constant)
    delta,      // its own rule for a few changed elements: Node::delta
};

struct Node {
    const char* op;                    // the op's name, for messages
    const ModuleScope* scope = nullptr;  // the module that ran the op (module_scope.hpp)
    std::shared_ptr<GradHookList> hooks;  // the output's gradient hooks (Tensor::register_hook)
    std::vector<Edge, detail::PoolAllocator<Edge>> inputs;  // one per input of the op, in order
    // What the rule reads back: for an op definition (engine/core/op.hpp) the
    // inputs of saved_inputs in order, then the output if saved_output, then
    // what its forward kept; for a bare rule, the `save` list of record().
    std::vector<SavedTensor, detail::PoolAllocator<SavedTensor>> saved;
    shape_type shape;                  // of the output
    Dtype dtype;
    bool released = false;             // the rule and saved tensors were freed by a backward
    bool saved_output = false;
    uint32_t saved_inputs = 0;         // bit i: input i is saved

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

    // --- replay: what an op definition provides (engine/core/op.hpp) ---
    virtual ReplayForm replay_form() const { return ReplayForm::none; }
    // The op's forward again, untaped, on other input values.
    virtual Tensor forward_again(TensorRefs inputs) const;
    // pointwise: the output element for these input elements (float64).
    virtual double pointwise(const double* args) const;
    // delta: updates the output for a few changed input elements; false to decline.
    virtual bool delta(DeltaArgs& d) const;
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
    BackwardArgs(const Node& node, const Tensor& grad, const tensor_list& saved, bool create_graph)
        : grad(grad), saved(saved), node_(node), create_graph_(create_graph)
    {
    }
    const Tensor& grad;          // gradient of the result with respect to the op's output
    const tensor_list& saved;    // what the forward saved, in order
    // Whether input i wants a gradient; a rule may skip the work for the others.
    bool needs_grad(size_t i) const { return i < node_.inputs.size() && node_.inputs[i].connected(); }
    // The number of inputs the op was called with (a rule returns at most that many gradients).
    size_t inputs() const { return node_.inputs.size(); }
    // The sweep is recorded (create_graph): gradients must come from tapegrad
    // ops so they can be differentiated again. The engine uses it to choose an
    // op's fused first-order backward; a rule rarely needs to ask.
    bool create_graph() const { return create_graph_; }

    // An op definition's saved tensors by what they are (engine/core/op.hpp).
    const Tensor& input(size_t i) const;
    const Tensor& output() const;
    const Tensor& kept(size_t k) const;  // the k-th tensor its forward kept
    // Shape and dtype of input i, for an input that needs a gradient.
    const shape_type& input_shape(size_t i) const
    {
        const Edge& e = input_edge(i);
        return e.node ? e.node->shape : e.leaf->shape;
    }
    Dtype input_dtype(size_t i) const
    {
        const Edge& e = input_edge(i);
        return e.node ? e.node->dtype : e.leaf->dtype;
    }

private:
    const Edge& input_edge(size_t i) const
    {
        if (!needs_grad(i)) no_edge(i);
        return node_.inputs[i];
    }
    [[noreturn]] void no_edge(size_t i) const;
    const Node& node_;
    bool create_graph_;
};

// Number of tape entries alive in the process (for tests of memory use).
int64_t live_tape_entries();

// Sees every entry recorded on this thread while it is installed (the model
// gradcheck's ReplayCapture, engine/check/replay.hpp).
class TapeObserver {
public:
    virtual ~TapeObserver() = default;
    virtual void recorded(const std::shared_ptr<Node>& node, TensorRefs inputs, const Tensor& output) = 0;
};
// Installs `observer` on this thread (null: none); returns the previous one.
TapeObserver* set_tape_observer(TapeObserver* observer);

namespace detail {
// Anomaly detection (anomaly.hpp): the options while a guard is alive, else null.
extern thread_local const AnomalyOptions* anomaly_options;
extern thread_local const Node* running_backward;  // the entry whose rule runs, under anomaly mode
// What the checks throw: a tg::Error that already says which op it is about,
// so an op's forward passes it on as it is.
class AnomalyError : public Error {
public:
    using Error::Error;
};
// Raises if `out` of op `op` holds a value the options call an anomaly.
void check_forward_anomaly(const char* op, const Tensor& out, TensorRefs inputs);
// Raises if a gradient that `node`'s rule returned holds one.
void check_backward_anomaly(const Node& node, const Tensor& upstream, const tensor_list& grads);
// The flat index of the first NaN (or ±Inf when `inf`) in t, or -1.
int64_t first_non_finite(const Tensor& t, bool nan, bool inf);

extern thread_local TapeObserver* tape_observer;
// True when an op on these inputs is recorded: grad mode is on and one requires grad.
inline bool should_record(TensorRefs inputs)
{
    if (!grad_enabled()) return false;
    for (const Tensor& t : inputs)
        if (t.defined() && t.requires_grad()) return true;
    return false;
}
// Links a new entry to its inputs, saves what its rule reads and makes it `out`'s grad_fn.
Tensor attach(std::shared_ptr<Node> node, const char* op, Tensor out, TensorRefs inputs, TensorRefs save);
}  // namespace detail

// Records one op on the tape with a bare rule: `out` was computed from
// `inputs`; `save` lists the tensors the rule reads back (inputs or `out`
// itself) as `saved`; `rule` maps the output's gradient to one gradient per
// input (an undefined Tensor for none). The quick way to try an op; an op
// definition (engine/core/op.hpp) also gets registry samples and replay.
// Does nothing when grad mode is off or no input requires grad.
template <class Rule>
Tensor record(const char* op, Tensor out, TensorRefs inputs, TensorRefs save, Rule&& rule)
{
    if (detail::anomaly_options) [[unlikely]]
        detail::check_forward_anomaly(op, out, inputs);
    if (!detail::should_record(inputs)) return out;
    using R = std::decay_t<Rule>;
    auto node = detail::make_pooled<RuleNode<R>>(R(std::forward<Rule>(rule)));
    return detail::attach(std::move(node), op, std::move(out), inputs, save);
}

// --- running backward ---------------------------------------------------------------

struct GradOptions {
    bool create_graph = false;              // record the backward sweep for higher orders
    std::optional<bool> retain_graph = {};  // keep saved tensors (default: create_graph)
};

// From inside a backward (a hook or a backward rule, on the thread running
// it): runs `fn` when that backward has swept the whole tape, after its last
// post-accumulate hook and before it returns. Callbacks queued by a callback
// run too, in order; none runs when the backward raises. Outside a backward,
// an error. (PyTorch's Variable._execution_engine.queue_callback, which its
// DistributedDataParallel waits on the last allreduce with.)
void queue_backward_callback(std::function<void()> fn);

// Gradients of `outputs` (weighted by `grad_outputs`, ones for scalars) with
// respect to `inputs`, without touching any grad(). An input the outputs do
// not depend on gets zeros.
tensor_list grad(const tensor_list& outputs, const tensor_list& inputs,
                 const tensor_list& grad_outputs = {}, GradOptions options = {});

namespace detail {
// tg::grad for a backward rule that sweeps a piece of the graph it recomputed
// (engine/core/activation_checkpoint.cpp): the entries of `inputs` bound the
// sweep, which captures the gradient reaching them and goes no further, so the
// graph around the piece is not touched; an input nothing reached gets an
// undefined tensor.
tensor_list grad_bounded(const tensor_list& outputs, const tensor_list& inputs, const tensor_list& grad_outputs,
                         bool create_graph);
}  // namespace detail

// Forward mode: fn's output at `inputs` and its directional derivative J·v
// along `tangents` (one per input; undefined for an input not moved). Built
// from the backward rules twice: g(u) = Jᵀu is linear in u, so J·v is the
// gradient of <g(u), v> with respect to u. It needs the rules of fn's ops to
// be differentiable, as second order does.
struct JvpResult {
    Tensor output, tangent;  // tangent has the output's shape
};
JvpResult jvp(const std::function<Tensor(const tensor_list&)>& fn, const tensor_list& inputs,
              const tensor_list& tangents);

// Accumulates d(root)/d(leaf), weighted by `gradient`, into every reachable leaf's grad().
void backward(const Tensor& root, const Tensor& gradient = Tensor(), bool retain_graph = false,
              bool create_graph = false);

}  // namespace tg
