// An op is one definition: a descriptor type that says in one place what the
// op computes and how it is differentiated, checked and replayed.
//
//     struct Exp : UnaryOp<Exp> {                        // ops/elementwise.cpp
//         static constexpr const char* name = "exp";
//         static constexpr Saves saves = save_output;
//         static auto f(auto x) { return std::exp(x); }
//         static tensor_list backward(const BackwardArgs& a) { return {a.grad * a.output()}; }
//     };
//     Tensor exp(const Tensor& x) { return Exp::call({x}); }
//     TG_REGISTER_OP(Exp);
//
// A descriptor Op (deriving from Op<Op>, or from UnaryOp/BinaryOp for
// elementwise ops, ops/elementwise.hpp) defines:
//
//   name        the op's name in messages, reports and the registry
//   Attrs       its attributes (stride, axis, ...): a copyable struct, no
//               tensors (those are inputs); omitted when it has none
//   forward     Tensor forward(TensorRefs in, Attrs&, OpContext&): the result,
//               computed with kernels, checking its arguments. It runs
//               untaped, so it may also use tapegrad ops. It may complete the
//               attributes with what it derived from the inputs (a conv's
//               geometry): the entry keeps them as forward leaves them. The
//               OpContext and Attrs parameters may be left out, and Attrs
//               may be taken as const&
//   saves       which inputs, and whether the output, the backward reads back
//   backward    tensor_list backward(const BackwardArgs&, const Attrs&): one
//               gradient per input, written in tapegrad ops, so it is
//               recorded under create_graph and differentiates again
//   samples     std::vector<OpSample> samples(): the inputs the registry
//               sweep gradchecks the op with (sample(label, inputs, attrs))
//
// and optionally:
//
//   fused_backward  the same gradients through kernels; the engine runs it
//                   instead of backward when no graph is being built
//   replay          ReplayForm::index_map for ops that only move elements
//                   (or replay_form(const Attrs&), where the attributes decide:
//                   pad, whose constant is not an element)
//   delta           bool delta(DeltaArgs&, const Attrs&): the output after a
//                   few input elements changed (engine/check/replay.hpp)
//
// call_op<Op>(inputs, attrs) (Op::call) runs the forward and records the
// entry; the entry keeps the attributes, so the registry's sample functions,
// the replay forward and the backward all come from this one type.
#pragma once

#include <any>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "attribute_edges.hpp"
#include "autograd.hpp"
#include "registry.hpp"

namespace tg {

// Which inputs, and whether the output, an op's backward reads back.
struct Saves {
    uint32_t inputs = 0;  // bit i: input i
    bool output = false;
    constexpr Saves operator|(Saves o) const { return {inputs | o.inputs, output || o.output}; }
};
constexpr Saves save_input(int i) { return {uint32_t(1) << i, false}; }
inline constexpr Saves save_output{0, true};
inline constexpr Saves save_nothing{};

// What a forward hands to its backward besides its inputs and output: the
// argmax of a max pool, the statistics of batch norm (BackwardArgs::kept).
class OpContext {
public:
    static constexpr size_t max_kept = 4;
    void keep(Tensor t)
    {
        TG_CHECK(count_ < max_kept, "OpContext::keep: an op keeps at most ", max_kept, " tensors");
        kept_[count_++] = std::move(t);
    }
    TensorRefs kept() const { return {kept_, count_}; }

private:
    Tensor kept_[max_kept];  // inline: most ops keep nothing, and a call must stay cheap
    size_t count_ = 0;
};

struct NoAttrs {};

// --- replay of a few changed elements (the model gradcheck, engine/check/replay.hpp) -------

// One input of an entry, as a delta rule sees it.
struct ReplayInput {
    const Tensor* base = nullptr;     // its value when the op was recorded
    const Tensor* current = nullptr;  // its value in this replay (float64)
    const std::vector<int64_t>* changed = nullptr;  // where current may differ from base (distinct flat indices)
    bool dense = false;               // may differ anywhere (changed is then not listed)

    bool unchanged() const { return !dense && (changed == nullptr || changed->empty()); }
    const double* base_data() const { return base->data<double>(); }
    const double* data() const { return current->data<double>(); }
};

// What a delta rule receives: the inputs, and the output to update in place.
// The rule sets out[i] for every element its changed inputs reach, calls
// touch(i) for each, and returns true; or returns false (say, for more
// changes than a full replay would cost) to have the forward run again.
class DeltaArgs {
public:
    DeltaArgs(std::span<const ReplayInput> in, const Tensor& base_out, Tensor& out, std::vector<int64_t>& changed,
              std::vector<uint8_t>& marks, std::any& cache)
        : inputs(in), base_out(base_out), out(out.data<double>()), changed_(changed), marks_(marks), cache_(cache)
    {
    }
    std::span<const ReplayInput> inputs;
    const Tensor& base_out;
    double* out;  // the current output: equal to the recorded one where not touched
    void touch(int64_t i)
    {
        if (marks_[size_t(i)]) return;
        marks_[size_t(i)] = 1;
        changed_.push_back(i);
    }
    int64_t changes() const { return int64_t(changed_.size()); }
    // Kept for this entry by the replayer across its runs, empty at first: for
    // what a rule derives from the attributes and the recorded inputs (base)
    // alone, say window tables or a layout its loops read faster, made once
    // instead of once per perturbed element.
    std::any& cache() { return cache_; }

private:
    std::vector<int64_t>& changed_;
    std::vector<uint8_t>& marks_;
    std::any& cache_;
};

// --- the machinery -------------------------------------------------------------------------

namespace detail {

template <class D>
using attrs_of = typename D::Attrs;

template <class D>
Tensor run_forward(TensorRefs in, attrs_of<D>& attrs, OpContext& ctx)
{
    if constexpr (requires { D::forward(in, attrs, ctx); }) return D::forward(in, attrs, ctx);
    else if constexpr (requires { D::forward(in, attrs); }) return D::forward(in, attrs);
    else return D::forward(in);
}

// What the forward computes is the output, not part of the tape; tapegrad
// ops it calls would only be recorded when the call itself is.
template <class D>
Tensor run_forward_untaped(TensorRefs in, attrs_of<D>& attrs, OpContext& ctx, bool recording)
{
    if (!recording) return run_forward<D>(in, attrs, ctx);
    NoGradGuard untaped;
    return run_forward<D>(in, attrs, ctx);
}

template <class D>
tensor_list run_backward(const BackwardArgs& a, const attrs_of<D>& attrs)
{
    if constexpr (requires { D::fused_backward(a, attrs); }) {
        if (!a.create_graph()) return D::fused_backward(a, attrs);
    } else if constexpr (requires { D::fused_backward(a); }) {
        if (!a.create_graph()) return D::fused_backward(a);
    }
    if constexpr (requires { D::backward(a, attrs); }) return D::backward(a, attrs);
    else return D::backward(a);
}

// The tape entry of one op call: the attributes, and the descriptor's rules.
template <class D>
struct OpNode final : Node {
    explicit OpNode(attrs_of<D>&& a) : attrs(std::move(a)) {}
    attrs_of<D> attrs;

    tensor_list apply(const BackwardArgs& args) override { return run_backward<D>(args, attrs); }
    void release_rule() override {}  // attributes are small values

    ReplayForm replay_form() const override
    {
        if constexpr (requires { D::replay_form(attrs); }) return D::replay_form(attrs);
        else if constexpr (requires { D::replay; }) return D::replay;
        else if constexpr (requires(const double* p) { D::pointwise(p); }) return ReplayForm::pointwise;
        else if constexpr (requires(DeltaArgs& d) { D::delta(d, attrs); }) return ReplayForm::delta;
        else return ReplayForm::dense;
    }
    Tensor forward_again(TensorRefs in) const override
    {
        attrs_of<D> again = attrs;
        OpContext ctx;
        NoGradGuard untaped;
        return run_forward<D>(in, again, ctx);
    }
    double pointwise(const double* args) const override
    {
        if constexpr (requires { D::pointwise(args); }) return D::pointwise(args);
        else return Node::pointwise(args);
    }
    bool delta(DeltaArgs& d) const override
    {
        if constexpr (requires { D::delta(d, attrs); }) return D::delta(d, attrs);
        else return Node::delta(d);
    }
};

// attach() for an op definition: saves what `saves` names, then what the forward kept.
Tensor attach_op(std::shared_ptr<Node> node, const char* op, Tensor out, TensorRefs inputs, Saves saves,
                 TensorRefs kept);

}  // namespace detail

// The output of one op call and what its forward kept (a max pool's argmax).
struct OpResult {
    Tensor output;
    tensor_list kept;
};

namespace detail {
// Rethrows the tg::Error being handled so that it names `op`: a check deep in
// a forward (an allocation, an inner op) reports "tapegrad: <op>: <what>".
[[noreturn]] void rethrow_naming(const char* op);

template <class D>
Tensor call(TensorRefs inputs, attrs_of<D>& attrs, OpContext& ctx)
{
    try {
        const bool recording = should_record(inputs);
        Tensor out = run_forward_untaped<D>(inputs, attrs, ctx, recording);
        if (anomaly_options) [[unlikely]]
            check_forward_anomaly(D::name, out, inputs);
        if (!recording) return out;
        auto node = make_pooled<OpNode<D>>(std::move(attrs));
        return attach_op(std::move(node), D::name, std::move(out), inputs, D::saves, ctx.kept());
    } catch (const AnomalyError&) {
        throw;
    } catch (const Error&) {
        rethrow_naming(D::name);
    }
}
}  // namespace detail

// Runs op D on `inputs` with `attrs`, and records it when an input requires grad.
template <class D>
Tensor call_op(TensorRefs inputs, detail::attrs_of<D> attrs = {})
{
    OpContext ctx;
    return detail::call<D>(inputs, attrs, ctx);
}

// The same, with what the forward kept (a max pool's argmax).
template <class D>
OpResult call_op_kept(TensorRefs inputs, detail::attrs_of<D> attrs = {})
{
    OpContext ctx;
    Tensor out = detail::call<D>(inputs, attrs, ctx);
    TensorRefs kept = ctx.kept();
    return {std::move(out), tensor_list(kept.begin(), kept.end())};
}

// The base of a descriptor: defaults, and call() and sample() for it.
template <class Derived>
struct Op {
    using Attrs = NoAttrs;
    static constexpr Saves saves = save_nothing;

    // (Self defers naming Derived::Attrs until Derived is complete.)
    template <class Self = Derived>
    static Tensor call(TensorRefs inputs, const detail::attrs_of<Self>& attrs = {})
    {
        return call_op<Derived>(inputs, attrs);
    }
    // A registry sample whose function calls this op with `attrs`.
    template <class Self = Derived>
    static OpSample sample(std::string label, std::vector<InputSpec> inputs, const detail::attrs_of<Self>& attrs = {},
                           bool second_order = true)
    {
        using Attrs = detail::attrs_of<Self>;
        auto spoiled = [attrs] {
            std::vector<SpoiledCall> calls;
            for (auto& s : detail::spoiled_attrs<Attrs>(attrs))
                calls.push_back({std::move(s.what),
                                 [a = std::move(s.attrs)](const tensor_list& in) { return call_op<Derived>(in, a); }});
            return calls;
        };
        return OpSample{std::move(label), std::move(inputs),
                        [attrs](const tensor_list& in) { return call_op<Derived>(in, attrs); }, second_order,
                        std::move(spoiled)};
    }
};

// The registration of a descriptor's samples under its name; at namespace
// scope next to the definition: TG_REGISTER_OP(Exp);
template <class D>
OpRegistration register_op()
{
    constexpr bool replays = [] {
        if constexpr (requires { D::replay; }) return D::replay != ReplayForm::none;
        else return true;
    }();
    return OpRegistration(D::name, D::samples(), replays);
}

}  // namespace tg

#define TG_REGISTER_OP(Descriptor) \
    static const ::tg::OpRegistration TG_CONCAT(tg_op_registration_, __COUNTER__) = ::tg::register_op<Descriptor>()
