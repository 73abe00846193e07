#include "engine/core/activation_checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "engine/core/op.hpp"
#include "engine/core/random.hpp"

namespace tg {

namespace {

thread_local int recomputing = 0;

// --- several outputs: parts of one flat tensor --------------------------------------------
// A tape entry has one output. With several differentiable outputs the
// checkpoint's entry outputs their elements end to end, and each output is a
// part of it. The parts' gradients meet there placed in -0.0, which adds
// exactly (x + -0 is x for every x, -0 included): the flat gradient holds,
// bit for bit, what arrived at each output.

void check_part(const char* op, int64_t offset, const shape_type& shape, int64_t total)
{
    for (int64_t d : shape) TG_CHECK(d >= 0, op, ": part of negative shape ", shape);
    const int64_t n = numel_of(shape, op);
    TG_CHECK(total >= 0 && offset >= 0 && offset <= total && n <= total - offset, op, ": part of shape ", shape,
             " at offset ", offset, " does not fit in ", total, " elements");
}

struct CheckpointOutput : Op<CheckpointOutput> {
    static constexpr const char* name = "checkpoint_output";
    struct Attrs {
        int64_t offset;
        shape_type shape;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& flat = in[0];
        TG_CHECK(flat.dim() == 1, name, ": the flat outputs must be 1-d, got ", flat.shape());
        check_part(name, a.offset, a.shape, flat.numel());
        Tensor out = Tensor::empty(a.shape, flat.dtype(), name);
        const size_t element = dtype_size(flat.dtype());
        if (out.numel())
            std::memcpy(out.raw_data(), static_cast<const char*>(flat.raw_data()) + size_t(a.offset) * element,
                        size_t(out.numel()) * element);
        return out;
    }
    static constexpr ReplayForm replay = ReplayForm::index_map;
    static tensor_list backward(const BackwardArgs& g, const Attrs& a);
    static std::vector<OpSample> samples()
    {
        return {sample("[10] -> [2,3] at 3", {real("flat", {10})}, Attrs{3, {2, 3}}),
                sample("[4] -> 0-d at 3", {real("flat", {4})}, Attrs{3, {}}),
                sample("[4] -> [0,2] at 4", {real("flat", {4})}, Attrs{4, {0, 2}})};
    }
};

struct CheckpointOutputGrad : Op<CheckpointOutputGrad> {
    static constexpr const char* name = "checkpoint_output_grad";
    struct Attrs {
        int64_t offset;
        int64_t total;
    };
    static Tensor forward(TensorRefs in, const Attrs& a)
    {
        const Tensor& part = in[0];
        check_part(name, a.offset, part.shape(), a.total);
        Tensor out = full({a.total}, -0.0, part.dtype());
        const size_t element = dtype_size(part.dtype());
        if (part.numel())
            std::memcpy(static_cast<char*>(out.raw_data()) + size_t(a.offset) * element, part.raw_data(),
                        size_t(part.numel()) * element);
        return out;
    }
    static constexpr ReplayForm replay = ReplayForm::index_map;
    static tensor_list backward(const BackwardArgs& g, const Attrs& a)
    {
        return {CheckpointOutput::call({g.grad}, {a.offset, g.input_shape(0)})};
    }
    static std::vector<OpSample> samples()
    {
        return {sample("[2,3] into [10] at 3", {real("part", {2, 3})}, Attrs{3, 10}),
                sample("0-d into [4] at 0", {real("part", {})}, Attrs{0, 4}),
                sample("[2] into [2] at 0", {real("part", {2})}, Attrs{0, 2})};
    }
};

tensor_list CheckpointOutput::backward(const BackwardArgs& g, const Attrs& a)
{
    return {CheckpointOutputGrad::call({g.grad}, {a.offset, g.input_shape(0)[0]})};
}

TG_REGISTER_OP(CheckpointOutput);
TG_REGISTER_OP(CheckpointOutputGrad);

// --- what a checkpoint keeps for its backward -------------------------------------------------

struct GeneratorReplay {
    Generator* generator;  // null: the default generator of the thread running the backward
    Generator::State before, after;  // around the forward's run of the function
};

struct Recipe {
    checkpoint_function fn;
    size_t inputs = 0;                   // the entry's first inputs are fn's; the leaves it uses follow
    size_t outputs = 0;                  // how many fn returned
    std::vector<size_t> differentiable;  // those that flow through the entry
    std::vector<shape_type> shapes;      // their shapes
    std::vector<GeneratorReplay> generators;
};

Generator& generator_of(const GeneratorReplay& g) { return g.generator ? *g.generator : default_generator(); }

bool same_state(const Generator::State& a, const Generator::State& b)
{
    return std::equal(a.s, a.s + 4, b.s) && a.has_spare == b.has_spare &&
           (!a.has_spare || std::memcmp(&a.spare, &b.spare, sizeof a.spare) == 0);
}

// The entries the function records.
class EntriesMade final : public TapeObserver {
public:
    void recorded(const std::shared_ptr<Node>& node, TensorRefs, const Tensor&) override { nodes.insert(node.get()); }
    std::unordered_set<const Node*> nodes;
};

// While the function runs: its entries are seen (and not shown to an outer
// observer: they are dropped), and the generators it draws from are logged.
class Recording {
public:
    Recording(EntriesMade& made, detail::GeneratorLog& log)
        : observer_(set_tape_observer(&made)), log_(detail::generator_log)
    {
        detail::generator_log = &log;
    }
    ~Recording()
    {
        set_tape_observer(observer_);
        detail::generator_log = log_;
    }
    Recording(const Recording&) = delete;
    Recording& operator=(const Recording&) = delete;

private:
    TapeObserver* observer_;
    detail::GeneratorLog* log_;
};

// The function's view of an input that requires grad: an entry of its own,
// which bounds the function's graph and, in the backward, the sweep of it.
Tensor input_of_function(const Tensor& x)
{
    if (!x.defined() || !x.requires_grad()) return x;
    return record("checkpoint_input", x.detach(), {x}, {}, [](const BackwardArgs& a) { return tensor_list{a.grad}; });
}

void check_returned(const tensor_list& outputs)
{
    TG_CHECK(!outputs.empty(), "checkpoint: the function returned no tensor");
    TG_CHECK(std::any_of(outputs.begin(), outputs.end(), [](const Tensor& t) { return t.defined(); }),
             "checkpoint: the function returned only undefined tensors");
}

std::vector<size_t> differentiable_outputs(const tensor_list& outputs)
{
    std::vector<size_t> d;
    for (size_t k = 0; k < outputs.size(); ++k)
        if (outputs[k].defined() && outputs[k].requires_grad()) d.push_back(k);
    return d;
}

// The leaves the function's graph reaches from its differentiable outputs, in
// the order found. The walk stops at the entries of the function's inputs,
// and refuses an entry recorded outside the function: its gradient would
// have to flow around the checkpoint.
tensor_list leaves_reached(const tensor_list& outputs, const std::vector<size_t>& differentiable,
                           const tensor_list& function_inputs, const EntriesMade& made)
{
    std::unordered_set<const Node*> bound, seen;
    for (const Tensor& b : function_inputs)
        if (b.defined() && b.grad_fn()) bound.insert(b.grad_fn().get());
    tensor_list leaves;
    std::unordered_set<const TensorImpl*> leaves_seen;
    std::vector<Node*> stack;
    auto leaf = [&](const std::shared_ptr<TensorImpl>& impl) {
        if (leaves_seen.insert(impl.get()).second) leaves.emplace_back(impl);
    };
    auto reach = [&](Node* n) {
        if (bound.count(n) || !seen.insert(n).second) return;
        TG_CHECK(made.nodes.count(n), "checkpoint: the function uses a tensor of shape ", n->shape,
                 " computed outside it (by op '", n->op, "') that requires grad, without receiving it in ",
                 "`inputs`; pass it as an input, so that its gradient flows through the checkpoint");
        stack.push_back(n);
    };
    for (size_t k : differentiable) {
        if (outputs[k].grad_fn()) reach(outputs[k].grad_fn().get());
        else leaf(outputs[k].impl_ptr());
    }
    while (!stack.empty()) {
        Node* n = stack.back();
        stack.pop_back();
        for (const Edge& e : n->inputs) {
            if (e.node) reach(e.node.get());
            else if (e.leaf) leaf(e.leaf);
        }
    }
    return leaves;
}

// For the backward's run of the function: each generator the forward drew
// from is set to its state before the forward, and put back afterwards.
class GeneratorsReplayed {
public:
    explicit GeneratorsReplayed(const std::vector<GeneratorReplay>& generators) : generators_(generators)
    {
        for (const GeneratorReplay& g : generators_) {
            Generator& gen = generator_of(g);
            detail::note_draw(gen);  // a checkpoint around this backward sees the state before
            current_.push_back(gen.state());
        }
        for (const GeneratorReplay& g : generators_) generator_of(g).set_state(g.before);
    }
    ~GeneratorsReplayed()
    {
        for (size_t i = 0; i < generators_.size(); ++i) generator_of(generators_[i]).set_state(current_[i]);
    }
    GeneratorsReplayed(const GeneratorsReplayed&) = delete;
    GeneratorsReplayed& operator=(const GeneratorsReplayed&) = delete;

    // The run drew what the forward's did: from the same generators, as many numbers.
    void check(const detail::GeneratorLog& log) const
    {
        Generator* thread_default = &default_generator();
        for (const auto& use : log.uses) {
            Generator* g = use.generator == thread_default ? nullptr : use.generator;
            TG_CHECK(std::any_of(generators_.begin(), generators_.end(),
                                 [&](const GeneratorReplay& r) { return r.generator == g; }),
                     "checkpoint: recomputing the function in the backward drew from a generator its forward did ",
                     "not use; the function must compute the same thing when run again");
        }
        for (const GeneratorReplay& g : generators_)
            TG_CHECK(same_state(generator_of(g).state(), g.after), "checkpoint: recomputing the function in ",
                     "the backward drew other random numbers than its forward from ",
                     g.generator ? "a generator" : "the default generator",
                     "; the function must compute the same thing when run again");
    }

private:
    const std::vector<GeneratorReplay>& generators_;
    std::vector<Generator::State> current_;
};

class RecomputingScope {
public:
    RecomputingScope() { ++recomputing; }
    ~RecomputingScope() { --recomputing; }
    RecomputingScope(const RecomputingScope&) = delete;
    RecomputingScope& operator=(const RecomputingScope&) = delete;
};

// The checkpoint entry's backward: the function again on the saved inputs,
// and a sweep of what it recorded, bounded by its inputs' entries.
tensor_list recompute(const Recipe& recipe, const BackwardArgs& a)
{
    const size_t n = recipe.inputs;
    const tensor_list inputs(a.saved.begin(), a.saved.begin() + std::ptrdiff_t(n));
    const tensor_list leaves(a.saved.begin() + std::ptrdiff_t(n), a.saved.end());
    EnableGradGuard on;  // a first-order sweep runs without grad mode
    EntriesMade made;
    detail::GeneratorLog log;  // on its own: together the replay and its undoing draw nothing
    tensor_list function_inputs(n), outputs;
    {
        GeneratorsReplayed replay(recipe.generators);
        Recording recording(made, log);
        RecomputingScope scope;
        for (size_t i = 0; i < n; ++i) function_inputs[i] = input_of_function(inputs[i]);
        outputs = recipe.fn(function_inputs);
        replay.check(log);
    }
    std::vector<size_t> differentiable = differentiable_outputs(outputs);
    bool same = outputs.size() == recipe.outputs && differentiable == recipe.differentiable;
    for (size_t j = 0; same && j < differentiable.size(); ++j)
        same = outputs[differentiable[j]].shape() == recipe.shapes[j] &&
               outputs[differentiable[j]].dtype() == a.grad.dtype();
    TG_CHECK(same, "checkpoint: recomputing the function in the backward gave other outputs (their number, ",
             "shapes, dtypes or which require grad) than its forward; the function must compute the same ",
             "thing when run again");
    tensor_list reached = leaves_reached(outputs, differentiable, function_inputs, made);
    TG_CHECK(reached.size() == leaves.size() &&
                 std::equal(reached.begin(), reached.end(), leaves.begin(),
                            [](const Tensor& x, const Tensor& y) { return x.same(y); }),
             "checkpoint: recomputing the function in the backward used other tensors that require grad (",
             reached.size(), " leaves) than its forward (", leaves.size(), ")");

    tensor_list roots, upstream;
    int64_t offset = 0;
    for (size_t k : differentiable) {
        roots.push_back(outputs[k]);
        if (differentiable.size() == 1) {
            upstream.push_back(a.grad);
        } else {
            upstream.push_back(CheckpointOutput::call({a.grad}, {offset, outputs[k].shape()}));
            offset += outputs[k].numel();
        }
    }
    tensor_list wrt;
    std::vector<size_t> slot;
    for (size_t i = 0; i < n; ++i)
        if (function_inputs[i].defined() && function_inputs[i].grad_fn()) {
            wrt.push_back(function_inputs[i]);
            slot.push_back(i);
        }
    for (size_t j = 0; j < leaves.size(); ++j) {
        wrt.push_back(leaves[j]);
        slot.push_back(n + j);
    }
    tensor_list g = detail::grad_bounded(roots, wrt, upstream, a.create_graph());
    tensor_list grads(n + leaves.size());
    for (size_t m = 0; m < slot.size(); ++m) grads[slot[m]] = std::move(g[m]);
    return grads;
}

}  // namespace

bool checkpoint_recomputing() { return recomputing > 0; }

tensor_list checkpoint(const checkpoint_function& fn, const tensor_list& inputs)
{
    TG_CHECK(bool(fn), "checkpoint: no function given");
    if (!grad_enabled()) {
        tensor_list outputs = fn(inputs);
        check_returned(outputs);
        return outputs;
    }
    Generator& thread_default = default_generator();
    detail::GeneratorLog log;
    log.outer = detail::generator_log;
    log.uses.push_back({&thread_default, thread_default.state()});  // as PyTorch, even if no draw says so
    EntriesMade made;
    tensor_list function_inputs(inputs.size()), outputs;
    {
        Recording recording(made, log);
        for (size_t i = 0; i < inputs.size(); ++i) function_inputs[i] = input_of_function(inputs[i]);
        outputs = fn(function_inputs);
    }
    check_returned(outputs);
    Recipe recipe;
    recipe.differentiable = differentiable_outputs(outputs);
    if (recipe.differentiable.empty()) return outputs;  // nothing to differentiate: nothing to keep
    const Dtype dtype = outputs[recipe.differentiable[0]].dtype();
    for (size_t k : recipe.differentiable)
        TG_CHECK(outputs[k].dtype() == dtype, "checkpoint: outputs ", recipe.differentiable[0], " (",
                 dtype_name(dtype), ") and ", k, " (", dtype_name(outputs[k].dtype()),
                 ") require grad; they must have one dtype");
    tensor_list entry_inputs = inputs;
    for (Tensor& leaf : leaves_reached(outputs, recipe.differentiable, function_inputs, made))
        entry_inputs.push_back(std::move(leaf));

    // The entry's output: the function's own, cut from its graph, which goes with `outputs`.
    Tensor value;
    if (recipe.differentiable.size() == 1) {
        value = outputs[recipe.differentiable[0]].detach();
    } else {
        int64_t total = 0;
        for (size_t k : recipe.differentiable) total += outputs[k].numel();
        value = Tensor::empty({total}, dtype, "checkpoint");
        char* to = static_cast<char*>(value.raw_data());
        for (size_t k : recipe.differentiable) {
            const size_t bytes = size_t(outputs[k].numel()) * dtype_size(dtype);
            if (bytes) std::memcpy(to, outputs[k].raw_data(), bytes);
            to += bytes;
        }
    }
    recipe.fn = fn;
    recipe.inputs = inputs.size();
    recipe.outputs = outputs.size();
    for (size_t k : recipe.differentiable) recipe.shapes.push_back(outputs[k].shape());
    for (const auto& use : log.uses)
        recipe.generators.push_back(
            {use.generator == &thread_default ? nullptr : use.generator, use.before, use.generator->state()});
    // The inputs are saved for the recomputation; the leaves so that an
    // in-place change of one before the backward is refused, as an op that
    // saved it would, rather than recomputed from.
    Tensor entry = record("checkpoint", std::move(value), entry_inputs, entry_inputs,
                          [recipe = std::move(recipe)](const BackwardArgs& a) { return recompute(recipe, a); });

    tensor_list result = std::move(outputs);
    int64_t offset = 0;
    const std::vector<size_t>& differentiable = differentiable_outputs(result);
    for (size_t k : differentiable) {
        if (differentiable.size() == 1) {
            result[k] = entry;
        } else {
            shape_type shape = result[k].shape();
            const int64_t numel = result[k].numel();
            result[k] = CheckpointOutput::call({entry}, {offset, shape});
            offset += numel;
        }
    }
    return result;
}

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_activation_checkpoint_ops() {}
}  // namespace detail

}  // namespace tg
