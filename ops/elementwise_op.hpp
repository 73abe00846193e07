// Defining an elementwise op: derive from UnaryOp or BinaryOp and give its
// scalar function f and its backward; the forward loop (with broadcasting),
// the replay rule and the registry samples come from the base.
//
//     struct Exp : UnaryOp<Exp> {
//         static constexpr const char* name = "exp";
//         static constexpr Saves saves = save_output;
//         static auto f(auto x) { return std::exp(x); }
//         static tensor_list backward(const BackwardArgs& a) { return {a.grad * a.output()}; }
//     };
//
// `domain` (default Domain::real, per operand for binary ops) says where the
// samples draw their inputs; a descriptor may list its own samples() instead.
#pragma once

#include <string>
#include <vector>

#include "../engine/core/op.hpp"
#include "../engine/kernels/elementwise.hpp"

namespace tg {

// out = f(a, b) with broadcasting, untaped; both operands of one floating dtype.
template <class F>
Tensor map_binary(const char* op, const Tensor& a, const Tensor& b, F f)
{
    TG_CHECK(a.defined() && b.defined(), op, ": undefined operand");
    TG_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch, ", dtype_name(a.dtype()), " ", a.shape(), " and ",
             dtype_name(b.dtype()), " ", b.shape(), " (convert one with .to(dtype))");
    shape_type shape = kernels::broadcast_shapes(a.shape(), b.shape(), op);
    Tensor out = Tensor::empty(shape, a.dtype());
    TG_DISPATCH_FLOATING(a.dtype(), op, [&] {
        kernels::map_binary(a.data<scalar_t>(), a.shape(), b.data<scalar_t>(), b.shape(), out.data<scalar_t>(),
                            shape, [&](scalar_t x, scalar_t y) { return f(x, y); });
    });
    return out;
}

// out = f(x), untaped.
template <class F>
Tensor map_unary(const char* op, const Tensor& x, F f)
{
    TG_CHECK(x.defined(), op, ": undefined operand");
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    TG_DISPATCH_FLOATING(x.dtype(), op, [&] {
        kernels::map_unary(x.data<scalar_t>(), out.data<scalar_t>(), x.numel(), [&](scalar_t v) { return f(v); });
    });
    return out;
}

// The sample inputs of an elementwise op: odd sizes, 3-d and 0-d (and, for
// binary ops, every way of broadcasting).
struct SampleInputs {
    std::string label;
    std::vector<InputSpec> inputs;
};

inline std::vector<SampleInputs> unary_inputs(Domain domain = Domain::real, std::string note = "")
{
    if (!note.empty()) note += ", ";
    auto x = [domain](shape_type s) { return InputSpec{"x", s, domain, 0}; };
    return {{note + "[3,5]", {x({3, 5})}}, {note + "[2,3,4]", {x({2, 3, 4})}}, {note + "0-d", {x({})}}};
}

inline std::vector<SampleInputs> binary_inputs(Domain a_domain = Domain::real, Domain b_domain = Domain::real)
{
    auto a = [a_domain](shape_type s) { return InputSpec{"a", s, a_domain, 0}; };
    auto b = [b_domain](shape_type s) { return InputSpec{"b", s, b_domain, 0}; };
    return {
        {"same shape [3,5]", {a({3, 5}), b({3, 5})}},
        {"broadcast [3,1] x [1,4]", {a({3, 1}), b({1, 4})}},
        {"broadcast [2,3,4] x [4]", {a({2, 3, 4}), b({4})}},
        {"broadcast [1] x [2,1,3]", {a({1}), b({2, 1, 3})}},
        {"0-d x [5]", {a({}), b({5})}},
    };
}

// Samples of op definition D on these inputs.
template <class D>
std::vector<OpSample> samples_of(const std::vector<SampleInputs>& sets)
{
    std::vector<OpSample> out;
    for (const SampleInputs& s : sets) out.push_back(D::sample(s.label, s.inputs));
    return out;
}

// Samples of a composite function on these inputs.
inline std::vector<OpSample> samples_of(const std::vector<SampleInputs>& sets, const OpFn& fn)
{
    std::vector<OpSample> out;
    for (const SampleInputs& s : sets) out.push_back(sample(s.label, s.inputs, fn));
    return out;
}

template <class D>
struct UnaryOp : Op<D> {
    static constexpr Domain domain = Domain::real;
    static Tensor forward(TensorRefs in) { return map_unary(D::name, in[0], [](auto v) { return D::f(v); }); }
    static double pointwise(const double* x) { return D::f(x[0]); }
    static std::vector<OpSample> samples() { return samples_of<D>(unary_inputs(D::domain)); }
};

template <class D>
struct BinaryOp : Op<D> {
    static constexpr Domain a_domain = Domain::real, b_domain = Domain::real;
    static Tensor forward(TensorRefs in)
    {
        return map_binary(D::name, in[0], in[1], [](auto x, auto y) { return D::f(x, y); });
    }
    static double pointwise(const double* x) { return D::f(x[0], x[1]); }
    static std::vector<OpSample> samples() { return samples_of<D>(binary_inputs(D::a_domain, D::b_domain)); }
};

}  // namespace tg
