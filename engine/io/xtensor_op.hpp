// Custom ops written in xtensor: the forward and the backward are xtensor
// expressions over read-only views of the inputs, the saved tensors and the
// upstream gradient. Everything else comes from the op definition machinery
// (engine/core/op.hpp): recording, the registry's samples, the sweep,
// tg::gradcheck and the model gradcheck's replay.
//
//     struct Softplus : tg::XtensorOp<Softplus> {
//         static constexpr const char* name = "my_softplus";
//         static constexpr tg::Saves saves = tg::save_input(0);
//         template <class T>
//         static void forward_xt(tg::XtForward<T>& f) { f.set_output(xt::log1p(xt::exp(f.input(0)))); }
//         template <class T>
//         static void backward_xt(tg::XtBackward<T>& b)
//         {
//             b.set_grad(0, b.grad() / (1 + xt::exp(-b.input(0))));
//         }
//         static std::vector<tg::OpSample> samples() { return {sample("[5, 3]", {tg::real("x", {5, 3})})}; }
//     };
//     TG_REGISTER_OP(Softplus);
//     tg::Tensor y = Softplus::call({x});
//
// Results are handed over with set_output and set_grad, which evaluate the
// expression on the spot, while the views a rule named locally still live.
// forward_xt and backward_xt may take the op's Attrs as a second parameter.
// The op runs in the dtype of its first floating-point input; every other
// floating-point input must have the same dtype.
//
// First order only: the backward's result is not made of tapegrad ops, so a
// sweep recorded for higher orders (create_graph) marks it, and
// differentiating through it is an error naming the op. For second order,
// write the backward in tapegrad ops (tg::Op, engine/core/op.hpp).
#pragma once

#include <string>

#include "../core/op.hpp"
#include "../kernels/elementwise.hpp"
#include "xtensor.hpp"
#include "../../ops/shape.hpp"

namespace tg {

namespace detail {

template <class T>
auto xview_of(const Tensor& t, const char* op, const char* what, size_t i)
{
    TG_CHECK(t.dtype() == dtype_of<T>(), op, ": ", what, " ", i, " is ", dtype_name(t.dtype()), " of shape ",
             t.shape(), "; the op runs in ", dtype_name(dtype_of<T>()));
    return adapt<const T, any_rank>(t.data<T>(), t, op);
}

inline Dtype floating_dtype_of(TensorRefs in, const char* op)
{
    for (const Tensor& t : in)
        if (is_floating(t.dtype())) return t.dtype();
    fail(op, ": an xtensor op needs a float32 or float64 input; got ", in.size(), " inputs, none floating-point");
}

}  // namespace detail

// What forward_xt receives: the inputs, as xtensor views; set_output(e)
// gives the op its result, keep(e) hands a value to the backward.
template <class T>
class XtForward {
public:
    XtForward(const char* op, TensorRefs in, OpContext& ctx) : op_(op), in_(in), ctx_(ctx) {}
    size_t size() const { return in_.size(); }
    // Input i as a read-only view of element type T (the op's dtype).
    auto input(size_t i) const { return detail::xview_of<T>(tensor(i), op_, "input", i); }
    // Input i of another element type: input_as<int64_t>(1) for class targets.
    template <class U>
    auto input_as(size_t i) const
    {
        return detail::xview_of<U>(tensor(i), op_, "input", i);
    }
    const Tensor& tensor(size_t i) const
    {
        TG_CHECK(i < in_.size(), op_, ": forward_xt asks for input ", i, " of ", in_.size());
        return in_[i];
    }
    // Evaluates `e` as the op's output, in the op's dtype.
    template <class E>
    void set_output(E&& e)
    {
        out_ = from_xtensor<T>(std::forward<E>(e));
    }
    // The output as a tensor computed some other way (a loop, a tapegrad op).
    void set_output(Tensor t) { out_ = std::move(t); }
    // Evaluates `e` and keeps it for the backward (XtBackward::kept, in the
    // order kept): what the forward computed and the backward needs again.
    template <class E>
    void keep(E&& e)
    {
        ctx_.keep(from_xtensor<T>(std::forward<E>(e)));
    }
    Tensor take()
    {
        TG_CHECK(out_.defined(), op_, ": forward_xt did not call set_output");
        return std::move(out_);
    }

private:
    const char* op_;
    TensorRefs in_;
    OpContext& ctx_;
    Tensor out_;
};

// What backward_xt receives: the upstream gradient and what the op saved, as
// views; set_grad(i, e) gives input i its gradient.
template <class T>
class XtBackward {
public:
    XtBackward(const char* op, const BackwardArgs& a) : op_(op), a_(a), grads_(a.inputs()) {}

    auto grad() const { return detail::xview_of<T>(a_.grad, op_, "upstream gradient", 0); }
    auto input(size_t i) const { return detail::xview_of<T>(a_.input(i), op_, "saved input", i); }
    template <class U>
    auto input_as(size_t i) const
    {
        return detail::xview_of<U>(a_.input(i), op_, "saved input", i);
    }
    auto output() const { return detail::xview_of<T>(a_.output(), op_, "saved output", 0); }
    // The k-th value the forward kept.
    auto kept(size_t k) const { return detail::xview_of<T>(a_.kept(k), op_, "kept value", k); }
    // The tensors themselves (for views of a fixed rank: as_xtensor<T, 2>(b.args().input(0))).
    const BackwardArgs& args() const { return a_; }
    // Whether input i wants a gradient; set_grad for the others is skipped.
    bool needs_grad(size_t i) const { return a_.needs_grad(i); }

    // Evaluates `e` as input i's gradient. It has input i's shape, or the
    // output's shape when input i was broadcast (it is then summed back).
    template <class E>
    void set_grad(size_t i, E&& e)
    {
        TG_CHECK(i < grads_.size(), op_, ": backward_xt sets the gradient of input ", i, " of ", grads_.size());
        if (!a_.needs_grad(i)) return;
        const shape_type& want = a_.input_shape(i);
        const shape_type got = detail::shape_of_expression(e);
        TG_CHECK(got == want || (got == a_.grad.shape() && kernels::broadcasts_to(want, got)), op_,
                 ": the gradient of input ", i, " has shape ", got, "; it needs the input's shape ", want,
                 " (or the output's, ", a_.grad.shape(), ", when the input was broadcast)");
        Tensor g = from_xtensor<T>(std::forward<E>(e));
        if (got != want) {
            NoGradGuard untaped;
            g = sum_to(g, want);
        }
        grads_[i] = std::move(g);
    }
    tensor_list take() { return std::move(grads_); }

private:
    const char* op_;
    const BackwardArgs& a_;
    tensor_list grads_;
};

namespace detail {

// Gradients from an xtensor backward, in a sweep recorded for higher orders:
// each is recorded as depending on the upstream gradient and the saved
// tensors, through a rule that refuses to run.
tensor_list mark_first_order_only(const char* op, tensor_list grads, const BackwardArgs& a);

// xtensor's own message on one line, as tapegrad's errors are (its broadcast
// error spreads the two shapes over three).
std::string one_line(const char* what);

// Runs an xtensor body; an exception of xtensor's own (a broadcast error on
// mismatched shapes, say) becomes a tg::Error naming the op.
template <class F>
void run_xtensor(const char* op, F body)
{
    try {
        body();
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        fail(op, ": ", one_line(e.what()));
    }
}

}  // namespace detail

// The base of an op definition in xtensor (see the top of this file).
template <class Derived>
struct XtensorOp : Op<Derived> {
    template <class Self = Derived>
    static Tensor forward(TensorRefs in, const detail::attrs_of<Self>& attrs, OpContext& ctx)
    {
        Tensor out;
        detail::run_xtensor(Derived::name, [&] {
            TG_DISPATCH_FLOATING(detail::floating_dtype_of(in, Derived::name), Derived::name, [&] {
                XtForward<scalar_t> f(Derived::name, in, ctx);
                if constexpr (requires { Derived::forward_xt(f, attrs); }) Derived::forward_xt(f, attrs);
                else Derived::forward_xt(f);
                out = f.take();
            });
        });
        return out;
    }

    template <class Self = Derived>
    static tensor_list backward(const BackwardArgs& a, const detail::attrs_of<Self>& attrs)
    {
        tensor_list grads;
        detail::run_xtensor(Derived::name, [&] {
            TG_DISPATCH_FLOATING(a.grad.dtype(), Derived::name, [&] {
                XtBackward<scalar_t> b(Derived::name, a);
                if constexpr (requires { Derived::backward_xt(b, attrs); }) Derived::backward_xt(b, attrs);
                else Derived::backward_xt(b);
                grads = b.take();
            });
        });
        if (a.create_graph()) grads = detail::mark_first_order_only(Derived::name, std::move(grads), a);
        return grads;
    }

    // A registry sample; first order only, unlike Op::sample's default.
    template <class Self = Derived>
    static OpSample sample(std::string label, std::vector<InputSpec> inputs, const detail::attrs_of<Self>& attrs = {})
    {
        return Op<Derived>::sample(std::move(label), std::move(inputs), attrs, /*second_order=*/false);
    }
};

}  // namespace tg
