// What writing an op in xtensor (tg::XtensorOp) costs: one elementwise op
// (softplus) and one reduction (sum of squares along the last axis), each
// written three ways, forward and backward timed together:
//   xtensor   tg::XtensorOp, forward and backward as xtensor expressions
//   loop      tg::Op with a hand-written loop forward and fused loop backward
//   ops       a composition of tapegrad ops (its backward from theirs)
// And why tensors are not xt::xarrays: the "tiny" group's chain of 100 adds
// of 1x1 tensors, as xarrays (an allocation and an assignment loop each).
// Not a torch_ref.py group: run it by name, tapegrad_bench --groups xtensor_op.
#include <tapegrad/xtensor.hpp>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "bench/bench.hpp"

namespace {

// --- softplus(x) = max(x, 0) + log1p(exp(-|x|)), d/dx = σ(x) ---------------------------------

struct SoftplusXt : tg::XtensorOp<SoftplusXt> {
    static constexpr const char* name = "bench_softplus_xt";
    static constexpr tg::Saves saves = tg::save_input(0);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        auto x = f.input(0);
        f.set_output(xt::maximum(x, T(0)) + xt::log1p(xt::exp(-xt::abs(x))));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        b.set_grad(0, b.grad() / (T(1) + xt::exp(-b.input(0))));
    }
};

struct SoftplusLoop : tg::Op<SoftplusLoop> {
    static constexpr const char* name = "bench_softplus_loop";
    static constexpr tg::Saves saves = tg::save_input(0);
    static tg::Tensor forward(tg::TensorRefs in)
    {
        const tg::Tensor& x = in[0];
        tg::Tensor out = tg::Tensor::empty(x.shape(), x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), name, [&] {
            const scalar_t* v = x.data<scalar_t>();
            scalar_t* y = out.data<scalar_t>();
            for (int64_t i = 0; i < x.numel(); ++i)
                y[i] = std::max(v[i], scalar_t(0)) + std::log1p(std::exp(-std::abs(v[i])));
        });
        return out;
    }
    static tg::tensor_list fused_backward(const tg::BackwardArgs& a)
    {
        const tg::Tensor& x = a.input(0);
        tg::Tensor gx = tg::Tensor::empty(x.shape(), x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), name, [&] {
            const scalar_t* v = x.data<scalar_t>();
            const scalar_t* g = a.grad.data<scalar_t>();
            scalar_t* d = gx.data<scalar_t>();
            for (int64_t i = 0; i < x.numel(); ++i) d[i] = g[i] / (scalar_t(1) + std::exp(-v[i]));
        });
        return {gx};
    }
    static tg::tensor_list backward(const tg::BackwardArgs& a) { return {a.grad * tg::sigmoid(a.input(0))}; }
};

tg::Tensor softplus_ops(const tg::Tensor& x)
{
    return tg::maximum(x, tg::zeros_like(x)) + tg::log1p(tg::exp(-tg::abs(x)));
}

// --- y_i = Σ_j x_ij², d/dx_ij = 2 x_ij g_i --------------------------------------------------

struct SumSquaresXt : tg::XtensorOp<SumSquaresXt> {
    static constexpr const char* name = "bench_sum_squares_xt";
    static constexpr tg::Saves saves = tg::save_input(0);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        auto x = f.input(0);
        f.set_output(xt::sum(x * x, {x.dimension() - 1}));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        b.set_grad(0, T(2) * b.input(0) * xt::view(b.grad(), xt::all(), xt::newaxis()));
    }
};

// The same with fixed-rank views (tg::as_xtensor<T, 2>): xtensor's loops know
// the rank at compile time.
struct SumSquaresXtRank2 : tg::XtensorOp<SumSquaresXtRank2> {
    static constexpr const char* name = "bench_sum_squares_xt_rank2";
    static constexpr tg::Saves saves = tg::save_input(0);
    template <class T>
    static void forward_xt(tg::XtForward<T>& f)
    {
        auto x = tg::as_xtensor<T, 2>(f.tensor(0));
        f.set_output(xt::sum(x * x, {1}));
    }
    template <class T>
    static void backward_xt(tg::XtBackward<T>& b)
    {
        auto x = tg::as_xtensor<T, 2>(b.args().input(0));
        auto g = tg::as_xtensor<T, 1>(b.args().grad);
        b.set_grad(0, T(2) * x * xt::view(g, xt::all(), xt::newaxis()));
    }
};

struct SumSquaresLoop : tg::Op<SumSquaresLoop> {
    static constexpr const char* name = "bench_sum_squares_loop";
    static constexpr tg::Saves saves = tg::save_input(0);
    static tg::Tensor forward(tg::TensorRefs in)
    {
        const tg::Tensor& x = in[0];
        const int64_t rows = x.shape()[0], cols = x.shape()[1];
        tg::Tensor out = tg::Tensor::empty({rows}, x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), name, [&] {
            const scalar_t* v = x.data<scalar_t>();
            scalar_t* y = out.data<scalar_t>();
            for (int64_t i = 0; i < rows; ++i) {
                scalar_t s = 0;
                for (int64_t j = 0; j < cols; ++j) s += v[i * cols + j] * v[i * cols + j];
                y[i] = s;
            }
        });
        return out;
    }
    static tg::tensor_list fused_backward(const tg::BackwardArgs& a)
    {
        const tg::Tensor& x = a.input(0);
        const int64_t rows = x.shape()[0], cols = x.shape()[1];
        tg::Tensor gx = tg::Tensor::empty(x.shape(), x.dtype());
        TG_DISPATCH_FLOATING(x.dtype(), name, [&] {
            const scalar_t* v = x.data<scalar_t>();
            const scalar_t* g = a.grad.data<scalar_t>();
            scalar_t* d = gx.data<scalar_t>();
            for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < cols; ++j) d[i * cols + j] = 2 * v[i * cols + j] * g[i];
        });
        return {gx};
    }
    static tg::tensor_list backward(const tg::BackwardArgs& a)
    {
        return {2 * a.input(0) * tg::reshape(a.grad, {a.grad.shape()[0], 1})};
    }
};

tg::Tensor sum_squares_ops(const tg::Tensor& x) { return tg::sum(x * x, {1}); }

using OpFn = tg::Tensor (*)(const tg::Tensor&);
volatile float sink;

TG_BENCH_GROUP("xtensor_op", [] {
    tg::Generator gen(0);
    std::vector<bench::Case> cases;
    struct Way {
        const char* name;
        OpFn softplus, sum_squares;
    };
    const Way ways[] = {
        {"xtensor", [](const tg::Tensor& x) { return SoftplusXt::call({x}); },
         [](const tg::Tensor& x) { return SumSquaresXt::call({x}); }},
        // (softplus's views all have one shape: xtensor runs one flat loop whatever the rank)
        {"xtensor rank 2", nullptr, [](const tg::Tensor& x) { return SumSquaresXtRank2::call({x}); }},
        {"loop", [](const tg::Tensor& x) { return SoftplusLoop::call({x}); },
         [](const tg::Tensor& x) { return SumSquaresLoop::call({x}); }},
        {"ops", softplus_ops, sum_squares_ops},
    };
    for (int64_t rows : {int64_t(8), int64_t(256)}) {
        const int64_t cols = rows == 8 ? 8 : 1024;
        const std::string size = std::to_string(rows) + "x" + std::to_string(cols);
        tg::Tensor x = tg::randn({rows, cols}, tg::float32, &gen).requires_grad_();
        tg::Tensor gy = tg::randn({rows, cols}, tg::float32, &gen);
        tg::Tensor gr = tg::randn({rows}, tg::float32, &gen);
        for (const Way& w : ways) {
            if (w.softplus)
                cases.push_back({std::string("softplus (") + size + ") fwd+bwd: " + w.name, rows, 0, 0, 1,
                                 [x, gy, f = w.softplus] { tg::grad({f(x)}, {x}, {gy}); }});
            cases.push_back({std::string("row sum of squares (") + size + ") fwd+bwd: " + w.name, rows, 0, 0, 1,
                             [x, gr, f = w.sum_squares] { tg::grad({f(x)}, {x}, {gr}); }});
        }
    }
    xt::xarray<float> a = xt::ones<float>({1, 1}), c = xt::ones<float>({1, 1}) * 0.5f;
    cases.push_back({"100x xt::xarray add 1x1 (no tape) [per op]", 1, 0, 0, 100, [a, c] {
                         xt::xarray<float> y = a;
                         for (int i = 0; i < 100; ++i) y = y + c;
                         sink = y(0, 0);  // the result is used
                     }});
    return cases;
});

}  // namespace
