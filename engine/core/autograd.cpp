#include "engine/core/autograd.hpp"

#include <atomic>
#include <cstring>
#include <string_view>

#include "engine/core/op.hpp"
#include "engine/core/parallel.hpp"

namespace tg {

namespace {
thread_local bool grad_mode = true;
std::atomic<int64_t> live_nodes{0};
// The entries still to be released by the outermost ~Node running on this thread.
thread_local std::vector<std::shared_ptr<Node>>* teardown_list = nullptr;

void hand_over(std::vector<std::shared_ptr<Node>>& list, std::shared_ptr<Node>& node) noexcept
{
    try {
        list.push_back(std::move(node));
    } catch (...) {
        // Out of memory: the entry is released in place, recursively.
    }
}
}  // namespace

bool grad_enabled() { return grad_mode; }
void set_grad_enabled(bool enabled) { grad_mode = enabled; }

Node::Node() { live_nodes.fetch_add(1, std::memory_order_relaxed); }

Node::~Node()
{
    live_nodes.fetch_sub(1, std::memory_order_relaxed);
    // Dropping an input entry here would destroy it inside this destructor, and
    // its inputs inside that one: a chain of a million ops would recurse a
    // million deep. The outermost ~Node on the thread collects the inputs and
    // releases them one at a time; nested ones only hand theirs over.
    if (teardown_list) {
        for (Edge& e : inputs)
            if (e.node) hand_over(*teardown_list, e.node);
        return;
    }
    bool any = false;
    for (const Edge& e : inputs) any = any || e.node;
    if (!any) return;
    std::vector<std::shared_ptr<Node>> pending;
    teardown_list = &pending;
    for (Edge& e : inputs)
        if (e.node) hand_over(pending, e.node);
    // The saved inputs hold the same entries through their grad_fn: they go
    // now, while `pending` keeps those entries alive, rather than after this
    // body, where the last of them would start a teardown one level deeper.
    saved.clear();
    grad_sum = Tensor();
    while (!pending.empty()) {
        std::shared_ptr<Node> n = std::move(pending.back());
        pending.pop_back();
        n.reset();  // may append its own inputs to `pending`
    }
    teardown_list = nullptr;
}

int64_t live_tape_entries() { return live_nodes.load(); }

Tensor Node::forward_again(TensorRefs) const
{
    fail("replay: op '", op, "' was recorded with a bare rule and has no forward to replay");
}
double Node::pointwise(const double*) const { fail("replay: op '", op, "' is not pointwise"); }
bool Node::delta(DeltaArgs&) const { return false; }

bool SavedTensor::changed() const
{
    if (!data.defined()) return false;  // an optional input the op did not get
    return data.impl().storage.get() != storage || data.version() != version;
}

// --- what a rule reads -----------------------------------------------------------------

namespace {
[[noreturn]] void not_saved(const Node& n, const char* what)
{
    fail("backward of op '", n.op, "' reads ", what, ", which its definition does not save");
}
}  // namespace

namespace {
// Saved tensors before input i: the saved inputs of lower index (no popcount
// instruction on baseline x86-64, and at most a few bits set).
size_t saved_before(uint32_t mask, size_t i)
{
    size_t n = 0;
    for (size_t k = 0; k < i && k < 32; ++k) n += mask >> k & 1;
    return n;
}
}  // namespace

const Tensor& BackwardArgs::input(size_t i) const
{
    if (i >= 32 || !(node_.saved_inputs >> i & 1)) not_saved(node_, ("input " + std::to_string(i)).c_str());
    return saved[saved_before(node_.saved_inputs, i)];
}

const Tensor& BackwardArgs::output() const
{
    if (!node_.saved_output) not_saved(node_, "its output");
    return saved[saved_before(node_.saved_inputs, 32)];
}

const Tensor& BackwardArgs::kept(size_t k) const
{
    size_t at = saved_before(node_.saved_inputs, 32) + (node_.saved_output ? 1 : 0) + k;
    TG_CHECK(at < saved.size(), "backward of op '", node_.op, "' reads kept tensor ", k, ", which its forward did not keep");
    return saved[at];
}

void BackwardArgs::no_edge(size_t i) const
{
    fail("backward of op '", node_.op, "': the shape and dtype of input ", i,
         " are known only for inputs that need a gradient");
}

// --- recording -----------------------------------------------------------------------------

thread_local TapeObserver* detail::tape_observer = nullptr;

TapeObserver* set_tape_observer(TapeObserver* observer)
{
    TapeObserver* previous = detail::tape_observer;
    detail::tape_observer = observer;
    return previous;
}

namespace detail {

namespace {

SavedTensor save(const Tensor& s, const Tensor& out, const std::shared_ptr<Node>& node)
{
    SavedTensor st;
    if (s.defined()) {
        st.storage = s.impl().storage.get();
        st.version = s.version();
    }
    if (s.defined() && s.same(out)) {
        // Holding the output itself would be a cycle (output -> entry -> output).
        st.data = out.detach();
        st.output_of = node;
        st.is_output = true;
    } else {
        st.data = s;
    }
    return st;
}

// The output gets its own handle even when an op hands back an input or an alias.
inline void own_handle(Tensor& out)
{
    if (out.impl().grad_fn || out.impl().requires_grad) out = out.detach();
}

inline void link(Node& node, const char* op, const Tensor& out, TensorRefs inputs)
{
    node.op = op;
    node.scope = module_scope;
    node.shape = out.shape();
    node.dtype = out.dtype();
    node.inputs.resize(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
        const Tensor& t = inputs[i];
        if (!t.defined() || !t.requires_grad()) continue;
        if (t.grad_fn())
            node.inputs[i].node = t.grad_fn();
        else
            node.inputs[i].leaf = t.impl_ptr();
    }
}

inline void finish(std::shared_ptr<Node>& node, Tensor& out, TensorRefs inputs)
{
    if (tape_observer) tape_observer->recorded(node, inputs, out);
    out.impl().requires_grad = true;
    out.impl().grad_fn = std::move(node);
}

}  // namespace

Tensor attach(std::shared_ptr<Node> node, const char* op, Tensor out, TensorRefs inputs, TensorRefs save_list)
{
    own_handle(out);
    link(*node, op, out, inputs);
    node->saved.reserve(save_list.size());
    for (const Tensor& s : save_list) node->saved.push_back(save(s, out, node));
    finish(node, out, inputs);
    return out;
}

void rethrow_naming(const char* op)
{
    try {
        throw;
    } catch (const Error& e) {
        static constexpr std::string_view prefix = "tapegrad: ";
        std::string_view what = e.what();
        if (what.substr(0, prefix.size()) == prefix) what.remove_prefix(prefix.size());
        const size_t n = std::strlen(op);
        // Already named: "<op>: ..." or "<op> ..." (and "<op>_backward: ..." is another op).
        if (what.size() > n && what.compare(0, n, op) == 0 && (what[n] == ':' || what[n] == ' ')) throw;
        throw Error(std::string(prefix) + op + ": " + std::string(what));
    }
}

Tensor attach_op(std::shared_ptr<Node> node, const char* op, Tensor out, TensorRefs inputs, Saves saves,
                 TensorRefs kept)
{
    own_handle(out);
    link(*node, op, out, inputs);
    node->saved_inputs = saves.inputs;
    node->saved_output = saves.output;
    const size_t count = saved_before(saves.inputs, inputs.size()) + (saves.output ? 1 : 0) + kept.size();
    if (count) {
        node->saved.reserve(count);
        for (size_t i = 0; i < inputs.size() && i < 32; ++i)
            if (saves.inputs >> i & 1) node->saved.push_back(save(inputs[i], Tensor(), node));
        if (saves.output) node->saved.push_back(save(out, out, node));
        for (const Tensor& k : kept) node->saved.push_back(save(k, out, node));
    }
    finish(node, out, inputs);
    return out;
}

}  // namespace detail

// --- summing gradients ------------------------------------------------------------------------

namespace {

// The sum of two gradients of one tensor (same shape and dtype): the engine's
// own op, so a create_graph sweep records it without reaching up into ops/.
struct GradientSum : Op<GradientSum> {
    static constexpr const char* name = "gradient_sum";
    static Tensor forward(TensorRefs in)
    {
        const Tensor &a = in[0], &b = in[1];
        TG_CHECK(a.shape() == b.shape() && a.dtype() == b.dtype(), "gradient_sum: gradients of shape ", a.shape(),
                 " (", dtype_name(a.dtype()), ") and ", b.shape(), " (", dtype_name(b.dtype()), ")");
        Tensor out = Tensor::empty(a.shape(), a.dtype());
        TG_DISPATCH_FLOATING(a.dtype(), "gradient_sum", [&] {
            const scalar_t* p = a.data<scalar_t>();
            const scalar_t* q = b.data<scalar_t>();
            scalar_t* o = out.data<scalar_t>();
            parallel_for(a.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
                for (int64_t i = begin; i < end; ++i) o[i] = p[i] + q[i];
            });
        });
        return out;
    }
    static double pointwise(const double* x) { return x[0] + x[1]; }
    static tensor_list backward(const BackwardArgs& a) { return {a.grad, a.grad}; }
    static std::vector<OpSample> samples()
    {
        return {sample("[3,4] + [3,4]", {real("a", {3, 4}), real("b", {3, 4})}),
                sample("0-d + 0-d", {real("a", {}), real("b", {})})};
    }
};
TG_REGISTER_OP(GradientSum);

[[gnu::noinline]] Tensor add_gradients(const Tensor& a, const Tensor& b) { return call_op<GradientSum>({a, b}); }
inline Tensor sum_grads(const Tensor& a, Tensor b) { return a.defined() ? add_gradients(a, b) : b; }

}  // namespace

namespace {

std::atomic<uint64_t> sweep_counter{0};
// The callbacks of the innermost backward running on this thread
// (queue_backward_callback), or null outside one.
thread_local std::vector<std::function<void()>>* backward_callbacks = nullptr;

// A gradient after the hooks registered on its tensor (Tensor::register_hook).
Tensor run_grad_hooks(const GradHookList& hooks, Tensor g, const char* whose, const shape_type& shape)
{
    for (const GradHook& hook : hooks.snapshot()) {
        Tensor replaced = hook(g);
        if (!replaced.defined()) continue;
        TG_CHECK(replaced.shape() == g.shape() && replaced.dtype() == g.dtype(), "gradient hook on ",
                 whose == std::string_view("a leaf") ? "a leaf" : (std::string("the output of op '") + whose + "'"),
                 " of shape ", shape, " returned a gradient of shape ", replaced.shape(), " (",
                 dtype_name(replaced.dtype()), ") for one of shape ", g.shape(), " (", dtype_name(g.dtype()), ")");
        g = std::move(replaced);
    }
    return g;
}

// Names the entry whose rule runs, for the anomaly messages of the ops inside it.
class RunningBackward {
public:
    explicit RunningBackward(const Node& n) : previous_(detail::running_backward) { detail::running_backward = &n; }
    ~RunningBackward() { detail::running_backward = previous_; }

private:
    const Node* previous_;
};

// Only this handle sees t's elements: no other tensor shares its impl or its
// storage, and the memory is not someone else's (an adopted xarray).
bool sole_holder(const std::shared_ptr<TensorImpl>& t)
{
    return t.use_count() == 1 && t->storage.use_count() == 1 && !t->storage->owner;
}

// Gives a leaf its gradient, or adds to the one it has. Never writes into a
// tensor anyone else can see: the gradient arriving may be the caller's
// upstream tensor, an input's storage or another leaf's gradient (add and
// identities pass theirs on), and the leaf's gradient may be held by the
// caller (kept from a create_graph backward, or given with set_grad).
void accumulate_into_leaf(TensorImpl& leaf, Tensor g, bool create_graph)
{
    if (!leaf.grad) {
        // A private copy unless nobody else holds it; under create_graph a
        // recorded one, so the gradient stays differentiable.
        if (!sole_holder(g.impl_ptr()) || (!create_graph && g.grad_fn()))
            g = create_graph ? g.clone() : g.detach().clone();
        leaf.grad = g.impl_ptr();
        return;
    }
    if (create_graph || leaf.grad->grad_fn || !sole_holder(leaf.grad)) {
        leaf.grad = sum_grads(Tensor(leaf.grad), g).impl_ptr();
        return;
    }
    Tensor(leaf.grad).add_(g.detach());
}

class Sweep {
public:
    Sweep(bool keep_graph, bool create_graph)
        : keep_graph_(keep_graph), create_graph_(create_graph), outer_callbacks_(backward_callbacks)
    {
        epoch_ = ++sweep_counter;
        backward_callbacks = &callbacks_;
    }

    ~Sweep()
    {
        backward_callbacks = outer_callbacks_;
        // Leaves the scratch clean even when a rule threw.
        for (Node* n : nodes_) {
            n->pending = 0;
            n->grad_sum = Tensor();
        }
    }

    // Finds every entry reachable from the roots and counts the edges into each.
    void discover(const tensor_list& roots)
    {
        std::vector<Node*> stack;
        for (const Tensor& r : roots) {
            if (r.grad_fn() && !at_bound(r.grad_fn().get())) visit(r.grad_fn().get(), stack);
            if (!r.grad_fn()) expect_delivery(r.impl_ptr().get());
        }
        while (!stack.empty()) {
            Node* n = stack.back();
            stack.pop_back();
            for (Edge& e : n->inputs) {
                if (e.leaf) expect_delivery(e.leaf.get());
                if (!e.node || at_bound(e.node.get())) continue;
                visit(e.node.get(), stack);
                e.node->pending++;
            }
        }
        // The counts above include edges between roots; a root reached from
        // another root waits for it.
    }

    void seed(const Tensor& root, const Tensor& g)
    {
        if (root.grad_fn() && at_bound(root.grad_fn().get())) {
            capture_at(root.grad_fn().get(), g);
        } else if (root.grad_fn()) {
            Node* n = root.grad_fn().get();
            n->grad_sum = sum_grads(n->grad_sum, g);
        } else {
            deliver_to_leaf(root.impl_ptr(), g);
            leaf_done(root.impl_ptr());
        }
    }

    // Runs the rules in an order where every entry has all its gradient before it runs.
    void run(const tensor_list& roots)
    {
        std::vector<Node*> ready;
        for (const Tensor& r : roots) {
            Node* n = r.grad_fn().get();
            if (n && !at_bound(n) && n->pending == 0) {
                n->pending = -1;  // queued
                ready.push_back(n);
            }
        }
        while (!ready.empty()) {
            Node* n = ready.back();
            ready.pop_back();
            tensor_list grads = call_rule(*n);
            for (size_t i = 0; i < n->inputs.size(); ++i) {
                Edge& e = n->inputs[i];
                Tensor g = i < grads.size() ? std::move(grads[i]) : Tensor();
                if (e.node && at_bound(e.node.get())) {
                    if (g.defined()) capture_at(e.node.get(), std::move(g));
                } else if (e.node) {
                    Node* next = e.node.get();
                    if (g.defined()) next->grad_sum = sum_grads(next->grad_sum, std::move(g));
                    if (--next->pending == 0) {
                        next->pending = -1;
                        ready.push_back(next);
                    }
                } else if (e.leaf) {
                    if (g.defined()) deliver_to_leaf(e.leaf, std::move(g));
                    leaf_done(e.leaf);
                }
            }
            if (!keep_graph_) {
                n->saved.clear();
                n->release_rule();
                n->released = true;
            }
        }
        // queue_backward_callback's, queued by hooks and rules (and by these).
        for (size_t i = 0; i < callbacks_.size(); ++i) {
            std::function<void()> fn = std::move(callbacks_[i]);
            fn();
        }
        callbacks_.clear();
    }

    // tg::grad mode: gradients are captured for these tensors and no grad() is
    // touched. `bounded`: their entries bound the sweep, which captures what
    // reaches them and goes no further (detail::grad_bounded).
    void capture(const tensor_list& inputs, bool bounded = false)
    {
        capture_ = true;
        bounded_ = bounded;
        for (size_t i = 0; i < inputs.size(); ++i) {
            if (inputs[i].grad_fn())
                capture_nodes_.emplace_back(inputs[i].grad_fn().get(), i);
            else
                capture_leaves_.emplace_back(inputs[i].impl_ptr().get(), i);
        }
        results_.resize(inputs.size());
    }
    tensor_list& results() { return results_; }

private:
    bool at_bound(const Node* n) const
    {
        if (!bounded_) return false;
        for (const auto& c : capture_nodes_)
            if (c.first == n) return true;
        return false;
    }
    void capture_at(const Node* n, const Tensor& g)
    {
        for (auto& [node, i] : capture_nodes_)
            if (node == n) results_[i] = sum_grads(results_[i], g);
    }

    void visit(Node* n, std::vector<Node*>& stack)
    {
        if (n->epoch_seen == epoch_) return;
        n->epoch_seen = epoch_;
        n->pending = 0;
        n->grad_sum = Tensor();
        nodes_.push_back(n);
        stack.push_back(n);
    }

    // Post-accumulate hooks: a leaf with some is counted once per edge into it
    // (discover), and its hooks run when the last of them has delivered.
    void expect_delivery(TensorImpl* leaf)
    {
        if (capture_ || !leaf->post_accumulate_hooks || leaf->post_accumulate_hooks->empty()) [[likely]]
            return;
        for (auto& [l, count] : deliveries_)
            if (l == leaf) {
                ++count;
                return;
            }
        deliveries_.emplace_back(leaf, 1);
    }
    void leaf_done(const std::shared_ptr<TensorImpl>& leaf)
    {
        if (deliveries_.empty()) [[likely]]
            return;
        for (auto& [l, count] : deliveries_)
            if (l == leaf.get()) {
                if (--count == 0)
                    for (const PostAccumulateGradHook& hook : leaf->post_accumulate_hooks->snapshot()) hook(Tensor(leaf));
                return;
            }
    }

    void deliver_to_leaf(const std::shared_ptr<TensorImpl>& leaf, Tensor g)
    {
        if (leaf->hooks) [[unlikely]]
            g = run_grad_hooks(*leaf->hooks, std::move(g), "a leaf", leaf->shape);
        if (capture_) {
            for (auto& [impl, i] : capture_leaves_)
                if (impl == leaf.get()) results_[i] = sum_grads(results_[i], g);
            return;
        }
        accumulate_into_leaf(*leaf, std::move(g), create_graph_);
    }

    tensor_list call_rule(Node& n)
    {
        Tensor g = n.grad_sum;
        n.grad_sum = Tensor();
        if (n.hooks && g.defined()) [[unlikely]]
            g = run_grad_hooks(*n.hooks, std::move(g), n.op, n.shape);
        if (capture_)
            for (auto& [node, i] : capture_nodes_)
                if (node == &n && g.defined()) results_[i] = sum_grads(results_[i], g);
        if (!g.defined()) return {};  // nothing flowed here (an unused branch)
        TG_CHECK(!n.released, "backward through the tape entry of op '", n.op,
                 "' (output shape ", n.shape, ") whose saved tensors were already freed by an ",
                 "earlier backward; pass retain_graph=true to the first backward to go through ",
                 "the graph twice");
        tensor_list saved;
        saved.reserve(n.saved.size());
        for (size_t i = 0; i < n.saved.size(); ++i) {
            const SavedTensor& s = n.saved[i];
            TG_CHECK(!s.changed(), "backward of op '", n.op, "': saved tensor ",
                     i, s.is_output ? " (its output)" : "", " of shape ", s.data.shape(),
                     " was modified in place after the forward (version ", s.data.version(),
                     ", saved at version ", s.version,
                     s.data.impl().storage.get() != s.storage ? ", and its data was swapped by set_data" : "",
                     "); an optimizer step or another in-place op ran between forward and backward");
            if (s.is_output && create_graph_) {
                // Give the output back its place on the tape so the rule's own
                // use of it is differentiated too.
                Tensor t = s.data.detach();
                t.impl().grad_fn = s.output_of.lock();
                t.impl().requires_grad = t.impl().grad_fn != nullptr;
                saved.push_back(t);
            } else {
                saved.push_back(s.data);
            }
        }
        BackwardArgs args(n, g, saved, create_graph_);
        tensor_list grads;
        try {
            if (detail::anomaly_options) [[unlikely]] {
                RunningBackward running(n);
                grads = n.apply(args);
                detail::check_backward_anomaly(n, g, grads);
            } else {
                grads = n.apply(args);
            }
        } catch (const detail::AnomalyError&) {
            throw;  // it names the rule already
        } catch (const Error& e) {
            // Say whose backward it was, unless the message already does.
            if (std::string(e.what()).find(std::string("backward of op '") + n.op + "'") != std::string::npos) throw;
            std::string what = e.what();
            if (what.rfind("tapegrad: ", 0) == 0) what = what.substr(10);
            fail("backward of op '", n.op, "' (output shape ", n.shape, ") raised: ", what);
        } catch (const std::exception& e) {
            fail("backward of op '", n.op, "' (output shape ", n.shape, ") raised: ", e.what());
        }
        TG_CHECK(grads.size() <= n.inputs.size(), "backward of op '", n.op, "' returned ",
                 grads.size(), " gradients for ", n.inputs.size(), " inputs");
        for (size_t i = 0; i < grads.size(); ++i) {
            const Tensor& gi = grads[i];
            const Edge& e = n.inputs[i];
            if (!gi.defined() || !e.connected()) continue;
            const shape_type& want = e.node ? e.node->shape : e.leaf->shape;
            Dtype want_dtype = e.node ? e.node->dtype : e.leaf->dtype;
            TG_CHECK(gi.shape() == want && gi.dtype() == want_dtype, "backward of op '", n.op,
                     "' returned a gradient of shape ", gi.shape(), " (", dtype_name(gi.dtype()),
                     ") for input ", i, " of shape ", want, " (", dtype_name(want_dtype), ")");
        }
        return grads;
    }

    bool keep_graph_, create_graph_;
    uint64_t epoch_;
    std::vector<Node*> nodes_;
    bool capture_ = false, bounded_ = false;
    std::vector<std::pair<Node*, size_t>> capture_nodes_;
    std::vector<std::pair<TensorImpl*, size_t>> capture_leaves_;
    tensor_list results_;
    std::vector<std::pair<TensorImpl*, int64_t>> deliveries_;  // leaves with post-accumulate hooks: edges to come
    std::vector<std::function<void()>> callbacks_;
    std::vector<std::function<void()>>* outer_callbacks_;
};

// Checks the roots and supplies the default upstream gradient (1 for a scalar).
tensor_list root_gradients(const tensor_list& roots, const tensor_list& given, const char* who)
{
    TG_CHECK(given.empty() || given.size() == roots.size(), who, ": ", given.size(),
             " upstream gradients for ", roots.size(), " outputs");
    tensor_list grads(roots.size());
    for (size_t i = 0; i < roots.size(); ++i) {
        const Tensor& r = roots[i];
        TG_CHECK(r.defined(), who, ": output ", i, " is undefined");
        TG_CHECK(r.requires_grad(), who, ": output ", i, " of shape ", r.shape(),
                 " does not require grad (no input it was computed from requires grad, or it ",
                 "was computed under a NoGradGuard)");
        Tensor g = i < given.size() ? given[i] : Tensor();
        if (!g.defined()) {
            TG_CHECK(r.numel() == 1, who, ": output ", i, " of shape ", r.shape(),
                     r.grad_fn() ? std::string(" (from op '") + r.grad_fn()->op + "')" : "",
                     " is not a scalar; pass the upstream gradient explicitly");
            g = ones_like(r);
        }
        TG_CHECK(g.shape() == r.shape(), who, ": upstream gradient of shape ", g.shape(),
                 " for output ", i, " of shape ", r.shape());
        TG_CHECK(g.dtype() == r.dtype(), who, ": upstream gradient of dtype ",
                 dtype_name(g.dtype()), " for output ", i, " of dtype ", dtype_name(r.dtype()));
        grads[i] = g;
    }
    return grads;
}

}  // namespace

void queue_backward_callback(std::function<void()> fn)
{
    TG_CHECK(backward_callbacks != nullptr, "queue_backward_callback: no backward is running on this thread");
    TG_CHECK(bool(fn), "queue_backward_callback: the callback is empty");
    backward_callbacks->push_back(std::move(fn));
}

void backward(const Tensor& root, const Tensor& gradient, bool retain_graph, bool create_graph)
{
    tensor_list roots{root};
    tensor_list grads = root_gradients(roots, {gradient}, "backward");
    std::optional<EnableGradGuard> on;
    std::optional<NoGradGuard> off;
    if (create_graph) on.emplace(); else off.emplace();
    Sweep sweep(retain_graph || create_graph, create_graph);
    sweep.discover(roots);
    sweep.seed(root, grads[0]);
    sweep.run(roots);
}

namespace {
// tg::grad without the zeros for the inputs nothing reached.
tensor_list captured_gradients(const tensor_list& outputs, const tensor_list& inputs,
                               const tensor_list& grad_outputs, GradOptions options, bool bounded)
{
    TG_CHECK(!outputs.empty(), "grad: no outputs");
    tensor_list grads = root_gradients(outputs, grad_outputs, "grad");
    for (size_t i = 0; i < inputs.size(); ++i) {
        TG_CHECK(inputs[i].defined(), "grad: input ", i, " is undefined");
        TG_CHECK(inputs[i].requires_grad(), "grad: input ", i, " of shape ", inputs[i].shape(),
                 " does not require grad");
    }
    bool keep = options.retain_graph.value_or(options.create_graph);
    std::optional<EnableGradGuard> on;
    std::optional<NoGradGuard> off;
    if (options.create_graph) on.emplace(); else off.emplace();
    Sweep sweep(keep, options.create_graph);
    sweep.capture(inputs, bounded);
    sweep.discover(outputs);
    for (size_t i = 0; i < outputs.size(); ++i) sweep.seed(outputs[i], grads[i]);
    sweep.run(outputs);
    return std::move(sweep.results());
}
}  // namespace

tensor_list detail::grad_bounded(const tensor_list& outputs, const tensor_list& inputs,
                                 const tensor_list& grad_outputs, bool create_graph)
{
    GradOptions options;
    options.create_graph = create_graph;
    return captured_gradients(outputs, inputs, grad_outputs, options, true);
}

tensor_list grad(const tensor_list& outputs, const tensor_list& inputs,
                 const tensor_list& grad_outputs, GradOptions options)
{
    tensor_list results = captured_gradients(outputs, inputs, grad_outputs, options, false);
    for (size_t i = 0; i < inputs.size(); ++i)
        if (!results[i].defined()) results[i] = zeros_like(inputs[i]);
    return results;
}

JvpResult jvp(const std::function<Tensor(const tensor_list&)>& fn, const tensor_list& inputs,
              const tensor_list& tangents)
{
    TG_CHECK(tangents.size() == inputs.size(), "jvp: ", tangents.size(), " tangents for ", inputs.size(), " inputs");
    EnableGradGuard on;
    tensor_list x(inputs.size()), moved, v;
    for (size_t i = 0; i < inputs.size(); ++i) {
        TG_CHECK(inputs[i].defined(), "jvp: input ", i, " is undefined");
        x[i] = inputs[i].detach();
        if (!tangents[i].defined()) continue;
        TG_CHECK(tangents[i].shape() == inputs[i].shape() && tangents[i].dtype() == inputs[i].dtype(),
                 "jvp: tangent ", i, " of shape ", tangents[i].shape(), " (", dtype_name(tangents[i].dtype()),
                 ") for input ", i, " of shape ", inputs[i].shape(), " (", dtype_name(inputs[i].dtype()), ")");
        x[i].requires_grad_(true);
        moved.push_back(x[i]);
        v.push_back(tangents[i].detach());
    }
    TG_CHECK(!moved.empty(), "jvp: no tangent given");
    Tensor out = fn(x);
    TG_CHECK(out.defined(), "jvp: the function returned an undefined tensor");
    JvpResult r{out.detach(), zeros_like(out)};
    if (!out.requires_grad()) return r;  // the output does not depend on the moved inputs
    // Any u will do (g is linear in it); it must be a leaf of the graph of g.
    Tensor u = zeros_like(out).requires_grad_(true);
    tensor_list g = grad({out}, moved, {u}, {.create_graph = true, .retain_graph = true});
    tensor_list outputs, weights;
    for (size_t i = 0; i < g.size(); ++i)
        if (g[i].requires_grad()) {
            outputs.push_back(g[i]);
            weights.push_back(v[i]);
        }
    if (!outputs.empty()) r.tangent = grad(outputs, {u}, weights)[0].detach();
    return r;
}

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_autograd_ops() {}
}  // namespace detail

}  // namespace tg
