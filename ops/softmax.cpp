// softmax and log_softmax: the op definitions (the loops are in
// engine/kernels/softmax.cpp). The fused first-order backward runs a kernel;
// the differentiable one is the same formula in tapegrad ops.
#include "ops/softmax.hpp"

#include "engine/core/op.hpp"
#include "engine/kernels/softmax.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduction.hpp"

namespace tg {

namespace {

// softmax (Log = false) and log_softmax (Log = true) along one axis.
template <bool Log>
struct Softmax : Op<Softmax<Log>> {
    static constexpr const char* name = Log ? "log_softmax" : "softmax";
    static constexpr Saves saves = save_output;
    struct Attrs {
        int64_t axis;  // normalised by forward
    };
    static Tensor forward(TensorRefs in, Attrs& a)
    {
        const Tensor& x = in[0];
        TG_CHECK(x.defined(), name, ": undefined operand");
        a.axis = normalize_axis(a.axis, x.dim(), name);
        kernels::AxisSplit s = kernels::split_at(x.shape(), a.axis);
        Tensor out = Tensor::empty(x.shape(), x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), name, [&] { kernels::softmax_forward(x.data<scalar_t>(), out.data<scalar_t>(), s, Log); });
        return out;
    }
    // log_softmax: dx = g - e^y·Σ g; softmax: dx = y·(g - Σ g·y) (sums along the axis).
    static tensor_list backward(const BackwardArgs& b, const Attrs& a)
    {
        const Tensor &y = b.output(), &g = b.grad;
        if (Log) return {sub(g, mul(exp(y), sum(g, {a.axis}, true)))};
        return {mul(y, sub(g, sum(mul(g, y), {a.axis}, true)))};
    }
    static tensor_list fused_backward(const BackwardArgs& b, const Attrs& a)
    {
        const Tensor &y = b.output(), &g = b.grad;
        Tensor dx = Tensor::empty(y.shape(), y.dtype());
        kernels::AxisSplit s = kernels::split_at(y.shape(), a.axis);
        TG_DISPATCH_FLOATING(y.dtype(), name, [&] {
            kernels::softmax_backward(g.data<scalar_t>(), y.data<scalar_t>(), dx.data<scalar_t>(), s, Log);
        });
        return {dx};
    }
    static std::vector<OpSample> samples()
    {
        using S = Softmax<Log>;
        // Rows of the float exp kernel: shorter than a 4-lane vector (scalar),
        // shorter than 8 (4 lanes on AVX2), whole vectors, a partial last one;
        // and the strided loop for an axis that is not the last.
        std::vector<OpSample> out = {
            S::sample("[4,7] last axis", {real("x", {4, 7})}, Attrs{-1}),
            S::sample("[3,4,5] axis 1", {real("x", {3, 4, 5})}, Attrs{1}),
            S::sample("[5,3] axis 0", {real("x", {5, 3})}, Attrs{0}),
            S::sample("[2,19] last axis, row longer than 8", {real("x", {2, 19})}, Attrs{-1}),
            S::sample("[3,16] last axis, whole vectors", {real("x", {3, 16})}, Attrs{-1}),
            S::sample("[4,3] last axis, shorter than a vector", {real("x", {4, 3})}, Attrs{-1}),
        };
        if (!Log) out.push_back(S::sample("[6] 1-d", {real("x", {6})}, Attrs{0}));
        return out;
    }
};
TG_REGISTER_OP(Softmax<false>);
TG_REGISTER_OP(Softmax<true>);

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) { return Softmax<false>::call({x}, {axis}); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return Softmax<true>::call({x}, {axis}); }

// Referenced by link_builtin_ops (ops/builtin.cpp), so that a static link keeps
// this file, and with it its registrations.
namespace detail {
void link_softmax_ops() {}
}  // namespace detail

}  // namespace tg
