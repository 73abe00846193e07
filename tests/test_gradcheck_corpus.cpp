// The gradcheck corpus: what "a checker you can trust" means, as tests. At
// least 30 planted bugs that must be caught on every one of 20 random inputs,
// the report naming a faulty element, and at least 30 correct but
// numerically hard ops that must not be flagged on any of their 20 inputs.
// Each op is written the way users write them: an op definition
// (tg::Op<...>, not registered, so the registry sweep never sees the bugs)
// or a bare rule through tg::record; forwards are float64 loops, backwards
// tapegrad ops. The machinery (generators, judging, the tables) is in
// gradcheck_corpus.hpp; the checker runs at its default options.
//
// Run: tapegrad_tests -tc="gradcheck corpus*"; TG_CORPUS_CASE=name to run
// some cases only, TG_CORPUS_REPORTS=1 for the full report of every input
// that is not ok.
#include "gradcheck_corpus.hpp"

using namespace tg;
using namespace corpus;

namespace {

// --- forward helpers ------------------------------------------------------------------------

// y = f(x) elementwise, a float64 loop (forwards run off the tape).
template <class F>
Tensor map_loop(const Tensor& x, F f)
{
    Tensor y = Tensor::empty(x.shape(), float64);
    const double* v = x.data<double>();
    double* out = y.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) out[i] = f(v[i]);
    return y;
}

// An elementwise op the quick way: a loop forward, and rule(g, x, y) as its
// backward (saved: x, then the output).
template <class F, class R>
Tensor unary(const char* name, const Tensor& x, F f, R rule)
{
    Tensor y = map_loop(x, f);
    return record(name, y, {x}, {x, y},
                  [rule](const BackwardArgs& a) -> tensor_list { return {rule(a.grad, a.saved[0], a.saved[1])}; });
}

// Ones, but `factor` at the given flat indices: a gradient multiplied by it is wrong there only.
Tensor ones_but(const shape_type& shape, const std::vector<int64_t>& at, double factor)
{
    Values v(size_t(numel_of(shape)), 1.0);
    for (int64_t i : at) v[size_t(i)] = factor;
    return constant(v, shape);
}

Tensor ge(const Tensor& x, double v) { return tg::ge(x, full_like(x, v)); }
Tensor le(const Tensor& x, double v) { return tg::le(x, full_like(x, v)); }

// --- op definitions -------------------------------------------------------------------------

// tanh, correct (the link of the deep chains).
struct Tanh : Op<Tanh> {
    static constexpr const char* name = "corpus_tanh";
    static constexpr Saves saves = save_input(0);
    static Tensor forward(TensorRefs in) { return map_loop(in[0], [](double v) { return std::tanh(v); }); }
    static tensor_list backward(const BackwardArgs& a)
    {
        Tensor t = tanh(a.input(0));
        return {a.grad * (1.0 - t * t)};
    }
};
Tensor corpus_tanh(const Tensor& x) { return Tanh::call({x}); }

// log, sqrt and x·log x, whose backward reads x through max(x, floor): a
// floor of 0 is the correct op, a floor of 1e-5 the classic "avoid a division
// by zero" slip that is wrong below it.
struct Log : Op<Log> {
    static constexpr const char* name = "corpus_log";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        double floor = 0;
    };
    static Tensor forward(TensorRefs in, const Attrs&) { return map_loop(in[0], [](double v) { return std::log(v); }); }
    static tensor_list backward(const BackwardArgs& a, const Attrs& at)
    {
        const Tensor& x = a.input(0);
        return {a.grad / (at.floor > 0 ? maximum(x, full_like(x, at.floor)) : x)};
    }
};
struct Sqrt : Op<Sqrt> {
    static constexpr const char* name = "corpus_sqrt";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        double floor = 0;
    };
    static Tensor forward(TensorRefs in, const Attrs&) { return map_loop(in[0], [](double v) { return std::sqrt(v); }); }
    static tensor_list backward(const BackwardArgs& a, const Attrs& at)
    {
        const Tensor& x = a.input(0);
        return {a.grad * 0.5 / sqrt(at.floor > 0 ? maximum(x, full_like(x, at.floor)) : x)};
    }
};
struct XLogX : Op<XLogX> {
    static constexpr const char* name = "corpus_xlogx";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        double floor = 0;
    };
    static Tensor forward(TensorRefs in, const Attrs&)
    {
        return map_loop(in[0], [](double v) { return v * std::log(v); });
    }
    static tensor_list backward(const BackwardArgs& a, const Attrs& at)
    {
        const Tensor& x = a.input(0);
        return {a.grad * (log(at.floor > 0 ? maximum(x, full_like(x, at.floor)) : x) + 1.0)};
    }
};

// Huber loss (δ = 1): x²/2 inside, |x| − 1/2 outside. The bug: the outer
// branch for x < −1 has slope +1.
struct Huber : Op<Huber> {
    static constexpr const char* name = "corpus_huber";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        bool sign_bug = false;
    };
    static Tensor forward(TensorRefs in, const Attrs&)
    {
        return map_loop(in[0], [](double v) { return std::abs(v) <= 1 ? 0.5 * v * v : std::abs(v) - 0.5; });
    }
    static tensor_list backward(const BackwardArgs& a, const Attrs& at)
    {
        const Tensor& x = a.input(0);
        Tensor slope = clamp(x, -1.0, 1.0);
        if (at.sign_bug) slope = slope + 2.0 * lt(x, -1.0);
        return {a.grad * slope};
    }
};

// The max of each window of x, and a backward that gives each window's
// gradient to its maxima by a rule: a convex combination for the correct
// rules (first index, equal shares as PyTorch's max reduction does, shares by
// position), and for the two bugs 1 or 1/2 to every maximum, which per
// element looks like a subgradient of max(t, t) but is not one for the tie.
enum class TieRule { first_index, equal_share, by_position, full_to_each, half_to_each };
enum class Windows { all, rows, pool2x2, pool3s2 };

std::vector<std::vector<int64_t>> windows_of(Windows w, const shape_type& s)
{
    std::vector<std::vector<int64_t>> out;
    switch (w) {
    case Windows::all: {
        std::vector<int64_t> all(static_cast<size_t>(numel_of(s)));
        std::iota(all.begin(), all.end(), 0);
        out.push_back(all);
        break;
    }
    case Windows::rows:
        for (int64_t r = 0; r < s[0]; ++r) {
            out.emplace_back();
            for (int64_t c = 0; c < s[1]; ++c) out.back().push_back(r * s[1] + c);
        }
        break;
    case Windows::pool2x2:
        for (int64_t i = 0; i + 2 <= s[0]; i += 2)
            for (int64_t j = 0; j + 2 <= s[1]; j += 2)
                out.push_back({i * s[1] + j, i * s[1] + j + 1, (i + 1) * s[1] + j, (i + 1) * s[1] + j + 1});
        break;
    case Windows::pool3s2:
        for (int64_t i = 0; i + 3 <= s[0]; i += 2) out.push_back({i, i + 1, i + 2});
        break;
    }
    return out;
}
shape_type window_output_shape(Windows w, const shape_type& s)
{
    switch (w) {
    case Windows::all: return {};
    case Windows::rows: return {s[0]};
    case Windows::pool2x2: return {s[0] / 2, s[1] / 2};
    case Windows::pool3s2: return {(s[0] - 3) / 2 + 1};
    }
    return {};
}
// Elements of x that are tied maxima of some window (two or more maxima).
std::vector<int64_t> tied_maxima(Windows w, const Values& x, const shape_type& s)
{
    std::vector<int64_t> out;
    for (const auto& win : windows_of(w, s)) {
        double m = -INFINITY;
        for (int64_t e : win) m = std::max(m, x[size_t(e)]);
        std::vector<int64_t> at;
        for (int64_t e : win)
            if (x[size_t(e)] == m) at.push_back(e);
        if (at.size() >= 2) out.insert(out.end(), at.begin(), at.end());
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

struct WindowMax : Op<WindowMax> {
    static constexpr const char* name = "corpus_window_max";
    static constexpr Saves saves = save_input(0);
    struct Attrs {
        Windows windows = Windows::all;
        TieRule rule = TieRule::first_index;
    };
    static Tensor forward(TensorRefs in, const Attrs& at)
    {
        const Tensor& x = in[0];
        const double* v = x.data<double>();
        auto wins = windows_of(at.windows, x.shape());
        Tensor y = Tensor::empty(window_output_shape(at.windows, x.shape()), float64);
        for (size_t o = 0; o < wins.size(); ++o) {
            double m = -INFINITY;
            for (int64_t e : wins[o]) m = std::max(m, v[e]);
            y.data<double>()[o] = m;
        }
        return y;
    }
    static tensor_list backward(const BackwardArgs& a, const Attrs& at)
    {
        const Tensor& x = a.input(0);
        const double* v = x.data<double>();
        auto wins = windows_of(at.windows, x.shape());
        int64_t m = int64_t(wins.size()), n = x.numel();
        // S[o, e]: the share of window o's gradient that element e gets.
        Values s(size_t(m * n), 0.0);
        for (int64_t o = 0; o < m; ++o) {
            const auto& win = wins[size_t(o)];
            double top = -INFINITY;
            for (int64_t e : win) top = std::max(top, v[e]);
            std::vector<int64_t> tied;
            for (int64_t e : win)
                if (v[e] == top) tied.push_back(e);
            double positions = 0;
            for (size_t j = 0; j < tied.size(); ++j) positions += double(j + 1);
            for (size_t j = 0; j < tied.size(); ++j) {
                double share = 0;
                switch (at.rule) {
                case TieRule::first_index: share = j == 0 ? 1 : 0; break;
                case TieRule::equal_share: share = 1.0 / double(tied.size()); break;
                case TieRule::by_position: share = double(j + 1) / positions; break;
                case TieRule::full_to_each: share = 1; break;
                case TieRule::half_to_each: share = tied.size() == 1 ? 1 : 0.5; break;
                }
                s[size_t(o * n + tied[j])] += share;
            }
        }
        return {reshape(matmul(reshape(a.grad, {1, m}), constant(s, {m, n})), x.shape())};
    }
};
Tensor window_max(const Tensor& x, Windows w, TieRule rule) { return WindowMax::call({x}, {w, rule}); }

// A 1-d valid convolution (cross-correlation) y_i = Σ_k w_k·x_{i+k}, with
// two off-by-one slips: the input's gradient leaves out the last window, or
// the weight's gradient reads the input one position to the right.
enum class ConvBug { none, input_grad_drops_last_window, weight_grad_shifted };
struct Conv1d : Op<Conv1d> {
    static constexpr const char* name = "corpus_conv1d";
    static constexpr Saves saves = save_input(0) | save_input(1);
    struct Attrs {
        ConvBug bug = ConvBug::none;
    };
    static Tensor forward(TensorRefs in, const Attrs&)
    {
        const Tensor &x = in[0], &w = in[1];
        int64_t n = x.numel(), K = w.numel(), m = n - K + 1;
        Tensor y = Tensor::empty({m}, float64);
        for (int64_t i = 0; i < m; ++i) {
            double s = 0;
            for (int64_t k = 0; k < K; ++k) s += w.data<double>()[k] * x.data<double>()[i + k];
            y.data<double>()[i] = s;
        }
        return y;
    }
    static tensor_list backward(const BackwardArgs& a, const Attrs& at)
    {
        const Tensor &x = a.input(0), &w = a.input(1);
        int64_t n = x.numel(), K = w.numel(), m = n - K + 1;
        tensor_list out(2);
        if (a.needs_grad(0)) {
            Tensor g = at.bug == ConvBug::input_grad_drops_last_window ? slice(a.grad, 0, 0, m - 1) : a.grad;
            for (int64_t k = 0; k < K; ++k) {
                Tensor term = unslice(g, {n}, 0, k) * select(w, 0, k);
                out[0] = k == 0 ? term : out[0] + term;
            }
        }
        if (a.needs_grad(1)) {
            tensor_list parts;
            for (int64_t k = 0; k < K; ++k) {
                int64_t from = at.bug == ConvBug::weight_grad_shifted ? k + 1 : k;
                int64_t len = std::min(m, n - from);
                parts.push_back(reshape(sum(slice(a.grad, 0, 0, len) * slice(x, 0, from, from + len)), {1}));
            }
            out[1] = concat(parts, 0);
        }
        return out;
    }
};

// --- bare rules -----------------------------------------------------------------------------

// Second-order helpers: right values, wrong backwards.
Tensor twice_bad(const Tensor& x)  // 2x, whose backward says 3
{
    return record("corpus_twice_bad", map_loop(x, [](double v) { return 2 * v; }), {x}, {},
                  [](const BackwardArgs& a) -> tensor_list { return {a.grad * 3.0}; });
}
Tensor one_minus_square_bad(const Tensor& t)  // 1 − t², whose backward has the wrong sign
{
    return record("corpus_one_minus_square_bad", map_loop(t, [](double v) { return 1 - v * v; }), {t}, {t},
                  [](const BackwardArgs& a) -> tensor_list { return {a.grad * 2.0 * a.saved[0]}; });
}
Tensor cos_rel(const Tensor& x, double delta)  // cos x, whose backward is off by 1 + δ
{
    return record("corpus_cos_rel", map_loop(x, [](double v) { return std::cos(v); }), {x}, {x},
                  [delta](const BackwardArgs& a) -> tensor_list {
                      return {-(a.grad * sin(a.saved[0])) * (1 + delta)};
                  });
}
Tensor exp_one_wrong(const Tensor& x, int64_t at)  // exp x, whose backward is off by 1e-3 at one element
{
    Tensor f = ones_but(x.shape(), {at}, 1 + 1e-3);
    return record("corpus_exp_one_wrong", map_loop(x, [](double v) { return std::exp(v); }), {x}, {x},
                  [f](const BackwardArgs& a) -> tensor_list { return {a.grad * exp(a.saved[0]) * f}; });
}

// Σ x² (or Σ eˣ) of a checked part x followed by `rest` terms that are not
// checked, summed in one pass as tg::sum does: one perturbed element moves the
// rounding of every term after it.
Tensor sum_with_rest(const Tensor& x, const Values& rest, bool exp_terms)
{
    double total = 0;
    const double* v = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) total += exp_terms ? std::exp(v[i]) : v[i] * v[i];
    for (double r : rest) total += r;  // the rest's terms, precomputed
    return record(exp_terms ? "corpus_sum_exp" : "corpus_sum_sq", scalar(total, float64), {x}, {x},
                  [exp_terms](const BackwardArgs& a) -> tensor_list {
                      const Tensor& x = a.saved[0];
                      return {a.grad * (exp_terms ? exp(x) : x * 2.0)};
                  });
}
Values squares(Values v)
{
    for (double& x : v) x *= x;
    return v;
}
Values exps(Values v)
{
    for (double& x : v) x = std::exp(x);
    return v;
}

// Σ_j (b_j + 1e-3·x_{j mod P})²: a parameter weakly felt by each of many terms.
Tensor weak_parameter_sum(const Tensor& x, const Tensor& b)
{
    const double* xv = x.data<double>();
    const double* bv = b.data<double>();
    int64_t P = x.numel(), N = b.numel();
    double total = 0;
    for (int64_t j = 0; j < N; ++j) {
        double t = bv[j] + 1e-3 * xv[j % P];
        total += t * t;
    }
    return record("corpus_weak_parameter_sum", scalar(total, float64), {x}, {x},
                  [b, P, N](const BackwardArgs& a) -> tensor_list {
                      Tensor t = reshape(b, {N / P, P}) + a.saved[0] * 1e-3;
                      return {a.grad * sum(t, {0}) * 2e-3};
                  });
}

// f = Σ c_i·e^{x_i} (scalar) with c spread over 1e-6 .. 1e6.
Tensor weighted_exp_sum(const Tensor& x, const Tensor& c)
{
    double total = 0;
    for (int64_t i = 0; i < x.numel(); ++i) total += c.data<double>()[i] * std::exp(x.data<double>()[i]);
    return record("corpus_weighted_exp_sum", scalar(total, float64), {x}, {x},
                  [c](const BackwardArgs& a) -> tensor_list { return {a.grad * c * exp(a.saved[0])}; });
}
// y_i = c_i·g(x_i) elementwise, g = tanh or exp, with the gradient scaled by `f`.
Tensor weighted_elementwise(const Tensor& x, const Tensor& c, bool exp_fn, const Tensor& f)
{
    Tensor y = Tensor::empty(x.shape(), float64);
    for (int64_t i = 0; i < x.numel(); ++i) {
        double v = x.data<double>()[i];
        y.data<double>()[i] = c.data<double>()[i] * (exp_fn ? std::exp(v) : std::tanh(v));
    }
    return record("corpus_weighted_elementwise", y, {x}, {x}, [c, exp_fn, f](const BackwardArgs& a) -> tensor_list {
        const Tensor& x = a.saved[0];
        Tensor d = exp_fn ? exp(x) : 1.0 - tanh(x) * tanh(x);
        return {a.grad * c * d * f};
    });
}

// maximum(a, b); at ties the gradient is split in halves, or (the bug) given whole to both.
Tensor maximum_ties(const Tensor& a, const Tensor& b, bool both_full)
{
    Tensor y = Tensor::empty(a.shape(), float64);
    for (int64_t i = 0; i < a.numel(); ++i) y.data<double>()[i] = std::max(a.data<double>()[i], b.data<double>()[i]);
    return record("corpus_maximum", y, {a, b}, {a, b}, [both_full](const BackwardArgs& g) -> tensor_list {
        const Tensor &a = g.saved[0], &b = g.saved[1];
        Tensor tie = eq(a, b) * (both_full ? 1.0 : 0.5);
        return {g.grad * (gt(a, b) + tie), g.grad * (gt(b, a) + tie)};
    });
}

// Elementwise product of four tensors.
Tensor product4(const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& d)
{
    Tensor y = Tensor::empty(a.shape(), float64);
    for (int64_t i = 0; i < a.numel(); ++i)
        y.data<double>()[i] = a.data<double>()[i] * b.data<double>()[i] * c.data<double>()[i] * d.data<double>()[i];
    return record("corpus_product4", y, {a, b, c, d}, {a, b, c, d}, [](const BackwardArgs& g) -> tensor_list {
        const tensor_list& s = g.saved;
        return {g.grad * s[1] * s[2] * s[3], g.grad * s[0] * s[2] * s[3], g.grad * s[0] * s[1] * s[3],
                g.grad * s[0] * s[1] * s[2]};
    });
}

// tanh(a·b)·c elementwise.
Tensor tanh_ab_c(const Tensor& a, const Tensor& b, const Tensor& c)
{
    Tensor y = Tensor::empty(a.shape(), float64);
    for (int64_t i = 0; i < a.numel(); ++i)
        y.data<double>()[i] = std::tanh(a.data<double>()[i] * b.data<double>()[i]) * c.data<double>()[i];
    return record("corpus_tanh_ab_c", y, {a, b, c}, {a, b, c}, [](const BackwardArgs& g) -> tensor_list {
        const tensor_list& s = g.saved;
        Tensor t = tanh(s[0] * s[1]);
        Tensor d = g.grad * s[2] * (1.0 - t * t);
        return {d * s[1], d * s[0], g.grad * t};
    });
}

// e^a·b elementwise.
Tensor exp_a_times_b(const Tensor& a, const Tensor& b)
{
    Tensor y = Tensor::empty(a.shape(), float64);
    for (int64_t i = 0; i < a.numel(); ++i) y.data<double>()[i] = std::exp(a.data<double>()[i]) * b.data<double>()[i];
    return record("corpus_exp_a_times_b", y, {a, b}, {a, b}, [](const BackwardArgs& g) -> tensor_list {
        Tensor e = exp(g.saved[0]);
        return {g.grad * e * g.saved[1], g.grad * e};
    });
}

// Row-wise log Σ exp, computed stably.
Tensor logsumexp_rows(const Tensor& x)
{
    int64_t r = x.shape()[0], c = x.shape()[1];
    Tensor y = Tensor::empty({r}, float64);
    for (int64_t i = 0; i < r; ++i) {
        const double* row = x.data<double>() + i * c;
        double m = *std::max_element(row, row + c), s = 0;
        for (int64_t j = 0; j < c; ++j) s += std::exp(row[j] - m);
        y.data<double>()[i] = m + std::log(s);
    }
    return record("corpus_logsumexp", y, {x}, {x, y}, [](const BackwardArgs& a) -> tensor_list {
        Tensor lse = unsqueeze(a.saved[1], 1);
        return {unsqueeze(a.grad, 1) * exp(a.saved[0] - lse)};
    });
}

// Row-wise softmax; the bug forgets the −y·Σ g·y term.
Tensor softmax_rows(const Tensor& x, bool missing_term)
{
    int64_t r = x.shape()[0], c = x.shape()[1];
    Tensor y = Tensor::empty(x.shape(), float64);
    for (int64_t i = 0; i < r; ++i) {
        const double* row = x.data<double>() + i * c;
        double m = *std::max_element(row, row + c), s = 0;
        for (int64_t j = 0; j < c; ++j) s += std::exp(row[j] - m);
        for (int64_t j = 0; j < c; ++j) y.data<double>()[i * c + j] = std::exp(row[j] - m) / s;
    }
    return record("corpus_softmax", y, {x}, {y}, [missing_term](const BackwardArgs& a) -> tensor_list {
        const Tensor& y = a.saved[0];
        if (missing_term) return {a.grad * y};
        return {y * (a.grad - sum(a.grad * y, {1}, true))};
    });
}

// ‖x‖₂.
Tensor norm2(const Tensor& x)
{
    double s = 0;
    for (int64_t i = 0; i < x.numel(); ++i) s += x.data<double>()[i] * x.data<double>()[i];
    Tensor y = scalar(std::sqrt(s), float64);
    return record("corpus_norm", y, {x}, {x, y},
                  [](const BackwardArgs& a) -> tensor_list { return {a.grad * a.saved[0] / a.saved[1]}; });
}

// x @ W + b (b broadcast over the batch), with two slips: the bias gradient
// written for a batch of one (row 0, no sum over the batch), or the weight
// gradient transposed (W square, so the shape is right).
enum class LinearBug { bias_no_batch_sum, weight_transposed, weight_rel_1e5 };
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, LinearBug bug)
{
    int64_t B = x.shape()[0], I = x.shape()[1], O = w.shape()[1];
    Tensor y = Tensor::empty({B, O}, float64);
    for (int64_t r = 0; r < B; ++r)
        for (int64_t o = 0; o < O; ++o) {
            double s = b.data<double>()[o];
            for (int64_t i = 0; i < I; ++i) s += x.data<double>()[r * I + i] * w.data<double>()[i * O + o];
            y.data<double>()[r * O + o] = s;
        }
    return record("corpus_linear", y, {x, w, b}, {x, w}, [bug](const BackwardArgs& a) -> tensor_list {
        const Tensor &x = a.saved[0], &w = a.saved[1];
        Tensor gx = matmul(a.grad, transpose(w));
        Tensor gw = matmul(transpose(x), a.grad);
        Tensor gb = sum(a.grad, {0});
        if (bug == LinearBug::bias_no_batch_sum) gb = select(a.grad, 0, 0);
        if (bug == LinearBug::weight_transposed) gw = transpose(gw);
        if (bug == LinearBug::weight_rel_1e5) gw = gw * (1 + 1e-5);
        return {gx, gw, gb};
    });
}

}  // namespace

namespace {

// --- input generators -----------------------------------------------------------------------

template <class F>
Tensor off_tape(F f)
{
    NoGradGuard off;
    return f();
}

// n normal values, k of them exactly 0 (the kinks of relu, abs, leaky relu).
Values with_zeros(Generator& g, int64_t n, int64_t k)
{
    Values x = normals(g, n);
    for (int64_t i : distinct(g, n, k)) x[size_t(i)] = 0.0;
    return x;
}
// n normal values, k of them equal to each other and above all the others.
Values with_top_ties(Generator& g, int64_t n, int64_t k)
{
    Values x = normals(g, n);
    double top = *std::max_element(x.begin(), x.end()) + 0.2 + 0.5 * g.uniform();
    for (int64_t i : distinct(g, n, k)) x[size_t(i)] = top;
    return x;
}
// [r, c]: in rows 0 and 2, and in each other row with probability 1/2, 2 or 3 tied maxima.
Values rows_with_ties(Generator& g, int64_t r, int64_t c)
{
    Values x = normals(g, r * c);
    for (int64_t i = 0; i < r; ++i) {
        if (!(i == 0 || i == 2 || g.uniform() < 0.5)) continue;
        double top = *std::max_element(x.begin() + i * c, x.begin() + (i + 1) * c) + 0.3;
        for (int64_t j : distinct(g, c, 2 + g.integer(0, 2))) x[size_t(i * c + j)] = top;
    }
    return x;
}
// [h, w] in 2x2 windows: windows 0 and 4, and each other with probability 1/2, get 2 to 4 tied maxima.
Values pool2x2_with_ties(Generator& g, int64_t h, int64_t w)
{
    Values x = normals(g, h * w);
    auto wins = windows_of(Windows::pool2x2, {h, w});
    for (size_t o = 0; o < wins.size(); ++o) {
        if (!(o == 0 || o == 4 || g.uniform() < 0.5)) continue;
        double top = -INFINITY;
        for (int64_t e : wins[o]) top = std::max(top, x[size_t(e)]);
        for (int64_t j : distinct(g, 4, 2 + g.integer(0, 3))) x[size_t(wins[o][size_t(j)])] = top + 0.2;
    }
    return x;
}
// [n] in windows of 3, stride 2 (neighbours share an element): windows 0 and 2,
// and windows 4 and 6 with probability 1/2, get two tied maxima. The windows
// given ties share no element, so no tie breaks another.
Values pool3s2_with_ties(Generator& g, int64_t n)
{
    Values x = normals(g, n);
    auto wins = windows_of(Windows::pool3s2, {n});
    for (size_t o = 0; o < wins.size(); o += 2) {
        if (!(o <= 2 || g.uniform() < 0.5)) continue;
        double top = -INFINITY;
        for (int64_t e : wins[o]) top = std::max(top, x[size_t(e)]);
        for (int64_t j : distinct(g, 3, 2)) x[size_t(wins[o][size_t(j)])] = top + 0.3;
    }
    return x;
}
// 12 values: 6 with magnitudes in [1e-6, 1e-4] (two of them below 1e-5) and 6 ordinary ones in [0.2, 3], shuffled.
Values small_and_ordinary(Generator& g)
{
    Values v = log_uniforms(g, 4, 1e-6, 1e-4), below = log_uniforms(g, 2, 1e-6, 8e-6), ordinary = uniforms(g, 6, 0.2, 3);
    v.insert(v.end(), below.begin(), below.end());
    v.insert(v.end(), ordinary.begin(), ordinary.end());
    shuffle(g, v);
    return v;
}
// n normal values, with k of them forced into (lo, hi).
Values normals_with(Generator& g, int64_t n, int64_t k, double lo, double hi, double scale = 1.0)
{
    Values x = normals(g, n, scale);
    for (int64_t i : distinct(g, n, k)) x[size_t(i)] = lo + (hi - lo) * g.uniform();
    return x;
}
// c_i = 10^-6 .. 10^6 in a random order (13 values).
Values decades(Generator& g)
{
    Values c;
    for (int e = -6; e <= 6; ++e) c.push_back(std::pow(10.0, e));
    shuffle(g, c);
    return c;
}
std::vector<int64_t> off_diagonal(int64_t n)
{
    std::vector<int64_t> out;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
            if (i != j) out.push_back(i * n + j);
    return out;
}

using Make = std::function<Instance(Generator&)>;

// --- the planted bugs -----------------------------------------------------------------------

std::vector<Case> planted_bugs()
{
    std::vector<Case> cs;
    auto bug = [&](std::string name, std::string kind, Make make, bool second_order = false) {
        cs.push_back({std::move(name), std::move(kind), true, false, second_order, std::move(make)});
    };
    // An elementwise op whose gradient is multiplied by a fixed tensor f (ones but where it is wrong).
    auto scaled_unary = [](const char* name, double (*fwd)(double), Tensor (*d)(const Tensor&, const Tensor&)) {
        return [=](const Tensor& x, const Tensor& f) {
            return unary(name, x, fwd, [d, f](const Tensor& g, const Tensor& x, const Tensor& y) { return g * d(x, y) * f; });
        };
    };
    static auto exp_fn = scaled_unary(
        "corpus_exp_scaled", [](double v) { return std::exp(v); }, [](const Tensor&, const Tensor& y) { return y; });
    static auto swish_fn = scaled_unary(
        "corpus_swish_scaled", [](double v) { return v / (1 + std::exp(-v)); },
        [](const Tensor& x, const Tensor&) {
            Tensor s = sigmoid(x);
            return s + x * s * (1.0 - s);
        });
    static auto sin_fn = scaled_unary(
        "corpus_sin_scaled", [](double v) { return std::sin(v); }, [](const Tensor& x, const Tensor&) { return cos(x); });
    static auto softplus_fn = scaled_unary(
        "corpus_softplus_scaled", [](double v) { return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v)); },
        [](const Tensor& x, const Tensor&) { return sigmoid(x); });
    static auto tanh_fn = scaled_unary(
        "corpus_tanh_scaled", [](double v) { return std::tanh(v); },
        [](const Tensor&, const Tensor& y) { return 1.0 - y * y; });

    // --- wrong in a few elements, or by a small relative error everywhere
    bug("mul_one_element_1e-3", "one element x(1+1e-3)", [](Generator& g) {
        Tensor a = leaf(normals(g, 12), {3, 4}), b = leaf(normals_with(g, 12, 12, 0.3, 2.0), {3, 4});
        int64_t k = g.integer(0, 12);
        Tensor f = ones_but({3, 4}, {k}, 1 + 1e-3);
        GradcheckFn fn = [f](const tensor_list& v) {
            Tensor y = off_tape([&] { return mul(v[0], v[1]); });
            return record("corpus_mul_one_scaled", y, {v[0], v[1]}, {v[0], v[1]},
                          [f](const BackwardArgs& a) -> tensor_list { return {a.grad * a.saved[1] * f, a.grad * a.saved[0]}; });
        };
        return Instance{fn, {a, b}, {elements({k}), no_element()}};
    });
    bug("exp_three_elements_1e-4", "three elements x(1+1e-4)", [](Generator& g) {
        Tensor x = leaf(normals(g, 30, 0.7), {5, 6});
        std::vector<int64_t> at = distinct(g, 30, 3);
        Tensor f = ones_but({5, 6}, at, 1 + 1e-4);
        return Instance{[f](const tensor_list& v) { return exp_fn(v[0], f); }, {x}, {elements(at)}};
    });
    bug("swish_one_element_rel_1e-5", "one element, relative error 1e-5", [](Generator& g) {
        Values xv = normals(g, 20);
        int64_t k = g.integer(0, 20);
        xv[size_t(k)] = uniforms(g, 1, 0.5, 2.0)[0];
        Tensor f = ones_but({4, 5}, {k}, 1 + 1e-5);
        return Instance{[f](const tensor_list& v) { return swish_fn(v[0], f); }, {leaf(xv, {4, 5})}, {elements({k})}};
    });
    bug("sin_one_element_rel_1e-6", "one element, relative error 1e-6", [](Generator& g) {
        Values xv = normals(g, 20);
        int64_t k = g.integer(0, 20);
        xv[size_t(k)] = uniforms(g, 1, 0.3, 1.2)[0];
        Tensor f = ones_but({4, 5}, {k}, 1 - 1e-6);
        return Instance{[f](const tensor_list& v) { return sin_fn(v[0], f); }, {leaf(xv, {4, 5})}, {elements({k})}};
    });
    bug("exp_whole_tensor_rel_1e-4", "whole tensor, relative error 1e-4", [](Generator& g) {
        Tensor f = full({3, 4}, 1 + 1e-4, float64);
        return Instance{[f](const tensor_list& v) { return exp_fn(v[0], f); }, {leaf(normals(g, 12), {3, 4})}, {every_element()}};
    });
    bug("softplus_whole_tensor_rel_1e-5", "whole tensor, relative error 1e-5", [](Generator& g) {
        Tensor f = full({3, 4}, 1 + 1e-5, float64);
        return Instance{[f](const tensor_list& v) { return softplus_fn(v[0], f); }, {leaf(normals(g, 12), {3, 4})},
                        {every_element()}};
    });
    bug("tanh_whole_tensor_rel_1e-6", "whole tensor, relative error 1e-6", [](Generator& g) {
        Tensor f = full({3, 4}, 1 + 1e-6, float64);
        return Instance{[f](const tensor_list& v) { return tanh_fn(v[0], f); }, {leaf(normals(g, 12), {3, 4})}, {every_element()}};
    });
    bug("linear_weight_rel_1e-5", "weight gradient, relative error 1e-5", [](Generator& g) {
        Tensor x = leaf(normals(g, 12), {4, 3}), w = leaf(normals(g, 15), {3, 5}), b = leaf(normals(g, 5), {5});
        return Instance{[](const tensor_list& v) { return linear(v[0], v[1], v[2], LinearBug::weight_rel_1e5); },
                        {x, w, b}, {no_element(), every_element(), no_element()}};
    });

    // --- a sign error in one branch of a piecewise function
    bug("huber_sign_in_outer_branch", "sign error in the x < -1 branch", [](Generator& g) {
        Values xv = normals_with(g, 12, 2, -3.0, -1.2, 1.5);
        return Instance{[](const tensor_list& v) { return Huber::call({v[0]}, {true}); }, {leaf(xv, {12})},
                        {elements(where(xv, [](double v) { return v < -1; }))}};
    });
    bug("piecewise_exp_sign_in_negative_branch", "exp(-x) for exp(x) in the x < 0 branch", [](Generator& g) {
        Values xv = normals_with(g, 12, 2, -2.0, -0.05);
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_piecewise", v[0], [](double x) { return x >= 0 ? x + 0.5 * x * x : std::exp(x) - 1; },
                         [](const Tensor& g, const Tensor& x, const Tensor&) {
                             Tensor neg = lt(x, 0.0);
                             return g * (neg * exp(-x) + (1.0 - neg) * (1.0 + x));
                         });
        };
        return Instance{fn, {leaf(xv, {12})}, {elements(where(xv, [](double v) { return v < 0; }))}};
    });
    bug("leaky_relu_sign_in_negative_branch", "slope -0.01 for 0.01 in the x < 0 branch", [](Generator& g) {
        Values xv = normals_with(g, 12, 2, -2.0, -0.05);
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_leaky_relu_bad", v[0], [](double x) { return x > 0 ? x : 0.01 * x; },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return g * (gt(x, 0.0) - 0.01 * lt(x, 0.0)); });
        };
        return Instance{fn, {leaf(xv, {12})}, {elements(where(xv, [](double v) { return v < 0; }))}};
    });

    // --- right first order, wrong second order (the backward's own backward)
    bug("square_second_order_wrong", "second order: 3 for 2 in the backward's backward", [](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return record("corpus_square_bad2", map_loop(v[0], [](double x) { return x * x; }), {v[0]}, {v[0]},
                          [](const BackwardArgs& a) -> tensor_list { return {a.grad * twice_bad(a.saved[0])}; });
        };
        return Instance{fn, {leaf(normals(g, 6), {6})}, {every_element(), no_element()}};
    }, true);
    bug("tanh_second_order_sign", "second order: sign error in d(1-t^2)/dt", [](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return record("corpus_tanh_bad2", map_loop(v[0], [](double x) { return std::tanh(x); }), {v[0]}, {v[0]},
                          [](const BackwardArgs& a) -> tensor_list {
                              return {a.grad * one_minus_square_bad(tanh(a.saved[0]))};
                          });
        };
        return Instance{fn, {leaf(normals(g, 6), {6})}, {every_element(), no_element()}};
    }, true);
    bug("sin_second_order_rel_1e-4", "second order: relative error 1e-4", [](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return record("corpus_sin_bad2", map_loop(v[0], [](double x) { return std::sin(x); }), {v[0]}, {v[0]},
                          [](const BackwardArgs& a) -> tensor_list { return {a.grad * cos_rel(a.saved[0], 1e-4)}; });
        };
        return Instance{fn, {leaf(normals_with(g, 6, 6, 0.5, 2.5), {6})}, {every_element(), no_element()}};
    }, true);
    bug("exp_second_order_one_element", "second order: one element x(1+1e-3)", [](Generator& g) {
        int64_t k = g.integer(0, 6);
        GradcheckFn fn = [k](const tensor_list& v) {
            return record("corpus_exp_bad2", map_loop(v[0], [](double x) { return std::exp(x); }), {v[0]}, {v[0]},
                          [k](const BackwardArgs& a) -> tensor_list { return {a.grad * exp_one_wrong(a.saved[0], k)}; });
        };
        return Instance{fn, {leaf(normals(g, 6), {6})}, {elements({k}), no_element()}};
    }, true);

    // --- wrong only at small inputs (values in [1e-6, 1e-4] among ordinary ones)
    auto below_1e5 = [](const Values& x) { return elements(where(x, [](double v) { return v < 1e-5; })); };
    bug("log_backward_floor_1e-5", "1/max(x, 1e-5): wrong below 1e-5", [below_1e5](Generator& g) {
        Values xv = small_and_ordinary(g);
        return Instance{[](const tensor_list& v) { return Log::call({v[0]}, {1e-5}); }, {leaf(xv, {12})}, {below_1e5(xv)}};
    });
    bug("sqrt_backward_floor_1e-5", "1/(2 sqrt(max(x, 1e-5))): wrong below 1e-5", [below_1e5](Generator& g) {
        Values xv = small_and_ordinary(g);
        return Instance{[](const tensor_list& v) { return Sqrt::call({v[0]}, {1e-5}); }, {leaf(xv, {12})}, {below_1e5(xv)}};
    });
    bug("xlogx_backward_floor_1e-5", "log(max(x, 1e-5)) + 1: wrong below 1e-5", [below_1e5](Generator& g) {
        Values xv = small_and_ordinary(g);
        return Instance{[](const tensor_list& v) { return XLogX::call({v[0]}, {1e-5}); }, {leaf(xv, {12})}, {below_1e5(xv)}};
    });
    bug("log_backward_eps_1e-8", "1/(x + 1e-8): wrong where x is small", [](Generator& g) {
        Values xv = small_and_ordinary(g);
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_log_eps", v[0], [](double x) { return std::log(x); },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return g / (x + 1e-8); });
        };
        return Instance{fn, {leaf(xv, {12})}, {elements(where(xv, [](double v) { return v < 1e-3; }))}};
    });

    // --- wrong only at ties: every tied maximum gets the whole gradient (or half of it, of three)
    bug("max_ties_full_to_each", "ties: every tied max gets all", [](Generator& g) {
        Values xv = with_top_ties(g, 12, 2 + g.integer(0, 2));
        return Instance{[](const tensor_list& v) { return window_max(v[0], Windows::all, TieRule::full_to_each); },
                        {leaf(xv, {12})}, {elements(tied_maxima(Windows::all, xv, {12}))}};
    });
    bug("max_three_ties_half_to_each", "ties: each of 3 tied maxima gets 1/2", [](Generator& g) {
        Values xv = with_top_ties(g, 12, 3);
        return Instance{[](const tensor_list& v) { return window_max(v[0], Windows::all, TieRule::half_to_each); },
                        {leaf(xv, {12})}, {elements(tied_maxima(Windows::all, xv, {12}))}};
    });
    bug("rowmax_ties_full_to_each", "ties: row max, every tied max gets all", [](Generator& g) {
        Values xv = rows_with_ties(g, 4, 6);
        return Instance{[](const tensor_list& v) { return window_max(v[0], Windows::rows, TieRule::full_to_each); },
                        {leaf(xv, {4, 6})}, {elements(tied_maxima(Windows::rows, xv, {4, 6}))}};
    });
    bug("maximum_ties_both_get_all", "ties: maximum(a, b) at a == b, both get all", [](Generator& g) {
        Values av = normals(g, 12), bv = normals(g, 12);
        std::vector<int64_t> at = distinct(g, 12, 3);
        for (int64_t i : at) bv[size_t(i)] = av[size_t(i)];
        return Instance{[](const tensor_list& v) { return maximum_ties(v[0], v[1], true); },
                        {leaf(av, {3, 4}), leaf(bv, {3, 4})}, {elements(at), elements(at)}};
    });
    bug("maxpool2x2_ties_full_to_each", "ties: 2x2 max pool, every tied max gets all", [](Generator& g) {
        Values xv = pool2x2_with_ties(g, 6, 6);
        return Instance{[](const tensor_list& v) { return window_max(v[0], Windows::pool2x2, TieRule::full_to_each); },
                        {leaf(xv, {6, 6})}, {elements(tied_maxima(Windows::pool2x2, xv, {6, 6}))}};
    });
    bug("maxpool3s2_ties_full_to_each", "ties: overlapping windows 3 stride 2, all to each", [](Generator& g) {
        Values xv = pool3s2_with_ties(g, 17);
        return Instance{[](const tensor_list& v) { return window_max(v[0], Windows::pool3s2, TieRule::full_to_each); },
                        {leaf(xv, {17})}, {elements(tied_maxima(Windows::pool3s2, xv, {17}))}};
    });

    // --- reductions, layouts, windows, a needle in a batch
    bug("broadcast_add_missing_reduction", "a[3,1] + b[3,4]: no sum over the broadcast axis", [](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            Tensor y = off_tape([&] { return add(v[0], v[1]); });
            return record("corpus_add_no_reduction", y, {v[0], v[1]}, {},
                          [](const BackwardArgs& a) -> tensor_list { return {slice(a.grad, 1, 0, 1), a.grad}; });
        };
        return Instance{fn, {leaf(normals(g, 3), {3, 1}), leaf(normals(g, 12), {3, 4})}, {every_element(), no_element()}};
    });
    bug("linear_bias_no_batch_sum", "bias gradient of row 0 only (no sum over the batch)", [](Generator& g) {
        Tensor x = leaf(normals(g, 12), {4, 3}), w = leaf(normals(g, 15), {3, 5}), b = leaf(normals(g, 5), {5});
        return Instance{[](const tensor_list& v) { return linear(v[0], v[1], v[2], LinearBug::bias_no_batch_sum); },
                        {x, w, b}, {no_element(), no_element(), every_element()}};
    });
    bug("linear_weight_transposed", "weight gradient transposed (square W)", [](Generator& g) {
        Tensor x = leaf(normals(g, 12), {4, 3}), w = leaf(normals(g, 9), {3, 3}), b = leaf(normals(g, 3), {3});
        return Instance{[](const tensor_list& v) { return linear(v[0], v[1], v[2], LinearBug::weight_transposed); },
                        {x, w, b}, {no_element(), elements(off_diagonal(3)), no_element()}};
    });
    bug("sum_axis0_backward_on_wrong_axis", "sum over axis 0, gradient broadcast on axis 1", [](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            Tensor y = off_tape([&] { return sum(v[0], {0}); });
            return record("corpus_sum_wrong_axis", y, {v[0]}, {}, [](const BackwardArgs& a) -> tensor_list {
                return {broadcast_to(reshape(a.grad, {4, 1}), {4, 4})};
            });
        };
        return Instance{fn, {leaf(normals(g, 16), {4, 4})}, {elements(off_diagonal(4))}};
    });
    bug("conv1d_input_grad_drops_last_window", "window off by one: last window left out", [](Generator& g) {
        Tensor x = leaf(normals(g, 12), {12}), w = leaf(normals(g, 3), {3});
        return Instance{[](const tensor_list& v) { return Conv1d::call({v[0], v[1]}, {ConvBug::input_grad_drops_last_window}); },
                        {x, w}, {elements({9, 10, 11}), no_element()}};
    });
    bug("conv1d_weight_grad_shifted", "window off by one: weight reads x one to the right", [](Generator& g) {
        Tensor x = leaf(normals(g, 12), {12}), w = leaf(normals(g, 3), {3});
        return Instance{[](const tensor_list& v) { return Conv1d::call({v[0], v[1]}, {ConvBug::weight_grad_shifted}); },
                        {x, w}, {no_element(), every_element()}};
    });
    bug("exp_gradient_shifted_by_one", "gradient rolled by one position", [](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_exp_shifted", v[0], [](double x) { return std::exp(x); },
                         [](const Tensor& g, const Tensor&, const Tensor& y) {
                             Tensor r = g * y;
                             return concat({slice(r, 0, 1, 10), slice(r, 0, 0, 1)}, 0);
                         });
        };
        return Instance{fn, {leaf(normals(g, 10), {10})}, {every_element()}};
    });
    bug("batch_1e4_one_element_wrong", "one wrong element x(1+1e-4) in 10^4", [](Generator& g) {
        constexpr int64_t n = 10000;
        Values xv = normals(g, n);
        int64_t k = g.integer(0, n);
        xv[size_t(k)] = signed_uniforms(g, 1, 0.5, 1.5)[0];
        Tensor f = ones_but({n}, {k}, 1 + 1e-4);
        GradcheckFn fn = [f](const tensor_list& v) {
            return unary("corpus_cube_one_wrong", v[0], [](double x) { return x * x * x / 3; },
                         [f](const Tensor& g, const Tensor& x, const Tensor&) { return g * x * x * f; });
        };
        return Instance{fn, {leaf(xv, {n})}, {elements({k})}};
    });
    bug("softmax_missing_term", "softmax backward without -y sum(g y)", [](Generator& g) {
        return Instance{[](const tensor_list& v) { return softmax_rows(v[0], true); }, {leaf(normals(g, 15), {3, 5})},
                        {every_element()}};
    });

    // --- wrong only at kinks, tiny or tiny-scaled elements
    bug("relu_subgradient_2_at_zero", "kink: slope 2 at x == 0 (outside [0, 1])", [](Generator& g) {
        Values xv = with_zeros(g, 12, 3);
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_relu_bad_at_zero", v[0], [](double x) { return x > 0 ? x : 0.0; },
                         [](const Tensor& g, const Tensor& x, const Tensor&) {
                             return g * (gt(x, 0.0) + 2.0 * eq(x, zeros_like(x)));
                         });
        };
        return Instance{fn, {leaf(xv, {12})}, {elements(where(xv, [](double v) { return v == 0; }))}};
    });
    bug("clamp_gradient_leaks_above_high", "clamp(x, -0.5, 0.5) passes gradient above 0.5", [](Generator& g) {
        Values xv = normals_with(g, 12, 2, 0.6, 1.5, 1.2);
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_clamp_leak", v[0], [](double x) { return std::min(std::max(x, -0.5), 0.5); },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return g * ge(x, -0.5); });
        };
        return Instance{fn, {leaf(xv, {12})}, {elements(where(xv, [](double v) { return v > 0.5; }))}};
    });
    bug("tiny_gradient_sign_flipped", "gradients ~1e-9, sign flipped", [](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_tiny_sin_flipped", v[0], [](double x) { return 1e-9 * std::sin(x); },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return -(g * cos(x) * 1e-9); });
        };
        return Instance{fn, {leaf(normals(g, 12), {12})}, {every_element()}};
    });
    bug("dynamic_range_smallest_element_1e-3", "gradients 1e-6..1e6: the 1e-6 one x(1+1e-3)", [](Generator& g) {
        Values c = decades(g);
        int64_t k = int64_t(std::min_element(c.begin(), c.end()) - c.begin());
        Tensor ct = constant(c, {13}), f = ones_but({13}, {k}, 1 + 1e-3);
        return Instance{[ct, f](const tensor_list& v) { return weighted_elementwise(v[0], ct, true, f); },
                        {leaf(normals(g, 13, 0.5), {13})}, {elements({k})}};
    });
    return cs;
}

// --- the correct but numerically hard ops ---------------------------------------------------

std::vector<Case> correct_hard_ops()
{
    std::vector<Case> cs;
    auto ok = [&](std::string name, std::string kind, Make make, bool kinks = false, bool second_order = false) {
        cs.push_back({std::move(name), std::move(kind), false, kinks, second_order, std::move(make)});
    };
    auto single = [](GradcheckFn fn, Tensor x) { return Instance{std::move(fn), {std::move(x)}, {}}; };

    // --- large outputs: sums of 10^4 to 10^6 terms (rounding grows with |f|, not with the derivative)
    ok("sum_sq_1e4_all_checked", "large output: sum of x^2, 10^4 checked", [single](Generator& g) {
        return single([](const tensor_list& v) { return sum_with_rest(v[0], {}, false); }, leaf(normals(g, 10000), {10000}));
    });
    auto part = [single](int64_t checked, int64_t rest, bool exp_terms) {
        return [=](Generator& g) {
            Values r = normals(g, rest);
            auto terms = std::make_shared<const Values>(exp_terms ? exps(r) : squares(r));
            return single([terms, exp_terms](const tensor_list& v) { return sum_with_rest(v[0], *terms, exp_terms); },
                          leaf(normals(g, checked), {checked}));
        };
    };
    ok("sum_exp_1e4_64_checked", "large output: sum of exp over 10^4, 64 checked", part(64, 10000 - 64, true));
    ok("sum_sq_1e5_32_checked", "large output: sum of x^2 over 10^5, 32 checked", part(32, 100000, false));
    ok("sum_exp_1e5_16_checked", "large output: sum of exp over 10^5, 16 checked", part(16, 100000, true));
    ok("sum_sq_1e6_16_checked", "large output: sum of x^2 over 10^6, 16 checked", part(16, 1000000, false));
    ok("weak_parameter_sum_1e5", "large output: 10^5 terms, each weakly on 1 of 32", [single](Generator& g) {
        Tensor b = constant(normals(g, 100000), {100000});
        return single([b](const tensor_list& v) { return weak_parameter_sum(v[0], b); }, leaf(normals(g, 32), {32}));
    });

    // --- high frequency
    auto sine = [single](double w, double lo, double hi, bool large) {
        return [=](Generator& g) {
            Values xv = large ? signed_uniforms(g, 16, lo, hi) : uniforms(g, 16, lo, hi);
            GradcheckFn fn = [w](const tensor_list& v) {
                return unary("corpus_sin_wx", v[0], [w](double x) { return std::sin(w * x); },
                             [w](const Tensor& g, const Tensor& x, const Tensor&) { return g * cos(x * w) * w; });
            };
            return single(fn, leaf(xv, {16}));
        };
    };
    ok("sin_100x", "high frequency: sin(100 x), x in [-3, 3]", sine(100, -3, 3, false));
    ok("sin_200x", "high frequency: sin(200 x), x in [-3, 3]", sine(200, -3, 3, false));
    ok("sin_300x", "high frequency: sin(300 x), x in [-3, 3]", sine(300, -3, 3, false));
    ok("sin_200x_at_large_x", "high frequency: sin(200 x), |x| in [20, 50]", sine(200, 20, 50, true));

    // --- tiny gradients, huge dynamic range
    ok("tiny_gradient_1e-9_sin", "tiny gradients: 1e-9 sin x", [single](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_tiny_sin", v[0], [](double x) { return 1e-9 * std::sin(x); },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return g * cos(x) * 1e-9; });
        };
        return single(fn, leaf(normals(g, 12), {12}));
    });
    ok("tiny_gradient_exp_far_left", "tiny gradients: exp x, x in [-21.5, -20.5]", [single](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_exp", v[0], [](double x) { return std::exp(x); },
                         [](const Tensor& g, const Tensor&, const Tensor& y) { return g * y; });
        };
        return single(fn, leaf(uniforms(g, 12, -21.5, -20.5), {12}));
    });
    ok("range_1e-6_to_1e6_scalar", "dynamic range: sum c_i exp(x_i), c 1e-6..1e6", [single](Generator& g) {
        Tensor c = constant(decades(g), {13});
        return single([c](const tensor_list& v) { return weighted_exp_sum(v[0], c); }, leaf(normals(g, 13, 0.5), {13}));
    });
    ok("range_1e-6_to_1e6_elementwise", "dynamic range: c_i tanh(x_i), c 1e-6..1e6", [single](Generator& g) {
        Tensor c = constant(decades(g), {13}), f = ones({13}, float64);
        return single([c, f](const tensor_list& v) { return weighted_elementwise(v[0], c, false, f); },
                      leaf(normals(g, 13), {13}));
    });

    // --- near domain edges
    auto near0 = [](Generator& g) { return leaf(log_uniforms(g, 12, 1e-6, 1e-4), {12}); };
    ok("sqrt_near_0", "domain edge: sqrt, x in [1e-6, 1e-4]", [single, near0](Generator& g) {
        return single([](const tensor_list& v) { return Sqrt::call({v[0]}); }, near0(g));
    });
    ok("log_near_0", "domain edge: log, x in [1e-6, 1e-4]", [single, near0](Generator& g) {
        return single([](const tensor_list& v) { return Log::call({v[0]}); }, near0(g));
    });
    ok("xlogx_near_0", "domain edge: x log x, x in [1e-6, 1e-4]", [single, near0](Generator& g) {
        return single([](const tensor_list& v) { return XLogX::call({v[0]}); }, near0(g));
    });
    ok("pow_1.5_near_0", "domain edge: x^1.5, x in [1e-6, 1e-4]", [single, near0](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_pow_1_5", v[0], [](double x) { return x * std::sqrt(x); },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return g * sqrt(x) * 1.5; });
        };
        return single(fn, near0(g));
    });
    ok("reciprocal_near_1e-3", "domain edge: 1/x, |x| in [1e-3, 2e-3]", [single](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_reciprocal", v[0], [](double x) { return 1 / x; },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return -(g / (x * x)); });
        };
        return single(fn, leaf(signed_uniforms(g, 12, 1e-3, 2e-3), {12}));
    });
    ok("log1p_near_minus_1", "domain edge: log1p, x + 1 in [1e-6, 1e-4]", [single](Generator& g) {
        Values xv = log_uniforms(g, 12, 1e-6, 1e-4);
        for (double& x : xv) x -= 1;
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_log1p", v[0], [](double x) { return std::log1p(x); },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return g / (x + 1.0); });
        };
        return single(fn, leaf(xv, {12}));
    });
    ok("sqrt_near_0_second_order", "domain edge, second order: sqrt near 0", [single, near0](Generator& g) {
        return single([](const tensor_list& v) { return Sqrt::call({v[0]}); }, near0(g));
    }, false, true);

    // --- exact kinks and ties, with a correct (sub)gradient
    auto kink = [single](const char* name, double (*f)(double), Tensor (*d)(const Tensor&)) {
        return [=](Generator& g) {
            GradcheckFn fn = [=](const tensor_list& v) {
                return unary(name, v[0], f, [d](const Tensor& g, const Tensor& x, const Tensor&) { return g * d(x); });
            };
            return single(fn, leaf(with_zeros(g, 12, 3), {12}));
        };
    };
    ok("relu_at_exact_zeros", "kink: relu at 0 (slope 0)",
       kink("corpus_relu", [](double x) { return x > 0 ? x : 0.0; }, [](const Tensor& x) { return gt(x, 0.0); }), true);
    ok("abs_at_exact_zeros", "kink: abs at 0 (slope 0)",
       kink("corpus_abs", [](double x) { return std::abs(x); }, [](const Tensor& x) { return sign(x); }), true);
    ok("leaky_relu_at_exact_zeros", "kink: leaky relu at 0 (slope 0.01)",
       kink("corpus_leaky_relu", [](double x) { return x > 0 ? x : 0.01 * x; },
            [](const Tensor& x) { return gt(x, 0.0) * 0.99 + 0.01; }),
       true);
    ok("clamp_at_exact_bounds", "kink: clamp(x, -0.5, 0.5) at both bounds", [single](Generator& g) {
        Values xv = normals(g, 12);
        std::vector<int64_t> at = distinct(g, 12, 4);
        xv[size_t(at[0])] = xv[size_t(at[1])] = -0.5;
        xv[size_t(at[2])] = xv[size_t(at[3])] = 0.5;
        GradcheckFn fn = [](const tensor_list& v) {
            return unary("corpus_clamp", v[0], [](double x) { return std::min(std::max(x, -0.5), 0.5); },
                         [](const Tensor& g, const Tensor& x, const Tensor&) { return g * ge(x, -0.5) * le(x, 0.5); });
        };
        return single(fn, leaf(xv, {12}));
    }, true);
    auto ties = [single](Windows w, TieRule rule, const shape_type& shape) {
        return [=](Generator& g) {
            int64_t n = numel_of(shape);
            Values xv = w == Windows::all       ? with_top_ties(g, n, 2 + g.integer(0, 2))
                        : w == Windows::rows    ? rows_with_ties(g, shape[0], shape[1])
                        : w == Windows::pool2x2 ? pool2x2_with_ties(g, shape[0], shape[1])
                                                : pool3s2_with_ties(g, n);
            return single([w, rule](const tensor_list& v) { return window_max(v[0], w, rule); }, leaf(xv, shape));
        };
    };
    ok("max_ties_equal_share", "ties: max, equal shares (PyTorch's rule)", ties(Windows::all, TieRule::equal_share, {12}), true);
    ok("max_ties_first_index", "ties: max, first index gets all", ties(Windows::all, TieRule::first_index, {12}), true);
    ok("max_ties_by_position", "ties: max, shares by position (convex)", ties(Windows::all, TieRule::by_position, {12}), true);
    ok("rowmax_ties_equal_share", "ties: row max, equal shares", ties(Windows::rows, TieRule::equal_share, {4, 6}), true);
    ok("maxpool2x2_ties_first_index", "ties: 2x2 max pool, first index gets all",
       ties(Windows::pool2x2, TieRule::first_index, {6, 6}), true);
    ok("maxpool3s2_ties_equal_share", "ties: overlapping windows 3 stride 2, equal",
       ties(Windows::pool3s2, TieRule::equal_share, {17}), true);
    ok("maximum_ties_halves", "ties: maximum(a, b) at a == b, halves", [](Generator& g) {
        Values av = normals(g, 12), bv = normals(g, 12);
        for (int64_t i : distinct(g, 12, 3)) bv[size_t(i)] = av[size_t(i)];
        return Instance{[](const tensor_list& v) { return maximum_ties(v[0], v[1], false); },
                        {leaf(av, {3, 4}), leaf(bv, {3, 4})}, {}};
    }, true);

    // --- deep compositions, products of large and small factors, large logits
    ok("tanh_chain_20", "deep: 20 chained tanh", [single](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            Tensor y = v[0];
            for (int i = 0; i < 20; ++i) y = corpus_tanh(y);
            return y;
        };
        return single(fn, leaf(normals(g, 10, 1.5), {10}));
    });
    ok("tanh_affine_chain_20", "deep: 20 x tanh(1.3 y +- 0.2)", [single](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            Tensor y = v[0];
            for (int i = 0; i < 20; ++i) y = corpus_tanh(y * 1.3 + (i % 2 ? -0.2 : 0.2));
            return y;
        };
        return single(fn, leaf(normals(g, 10), {10}));
    });
    ok("product_of_1e6_1e-6_1e3_1e-3", "products: a b c d of scales 1e6, 1e-6, 1e3, 1e-3", [](Generator& g) {
        tensor_list in;
        for (double s : {1e6, 1e-6, 1e3, 1e-3}) in.push_back(leaf(signed_uniforms(g, 6, 0.5 * s, 2 * s), {6}));
        return Instance{[](const tensor_list& v) { return product4(v[0], v[1], v[2], v[3]); }, in, {}};
    });
    ok("tanh_of_1e4_times_1e-4", "products: tanh(a b) c, a ~ 1e4, b ~ 1e-4, c ~ 1e-3", [](Generator& g) {
        tensor_list in;
        for (double s : {1e4, 1e-4, 1e-3}) in.push_back(leaf(signed_uniforms(g, 8, 0.5 * s, 2 * s), {8}));
        return Instance{[](const tensor_list& v) { return tanh_ab_c(v[0], v[1], v[2]); }, in, {}};
    });
    ok("exp_of_large_times_tiny", "products: e^a b, a in [10, 14], |b| in [1e-7, 1e-5]", [](Generator& g) {
        Tensor a = leaf(uniforms(g, 8, 10, 14), {8}), b = leaf(signed_uniforms(g, 8, 1e-7, 1e-5), {8});
        return Instance{[](const tensor_list& v) { return exp_a_times_b(v[0], v[1]); }, {a, b}, {}};
    });
    ok("logsumexp_logits_near_400", "large logits: row logsumexp, |x| ~ 400", [single](Generator& g) {
        Values xv = normals(g, 24, 5.0);
        for (int64_t r = 0; r < 3; ++r) {
            double offset = g.uniform() < 0.5 ? -400 : 400;
            for (int64_t j = 0; j < 8; ++j) xv[size_t(r * 8 + j)] += offset;
        }
        return single([](const tensor_list& v) { return logsumexp_rows(v[0]); }, leaf(xv, {3, 8}));
    });
    ok("norm_of_small_vector", "near a singularity: |x| for |x| ~ 3e-3", [single](Generator& g) {
        return single([](const tensor_list& v) { return norm2(v[0]); }, leaf(normals(g, 8, 1e-3), {8}));
    });
    ok("tanh_chain_5_second_order", "deep, second order: 5 chained tanh", [single](Generator& g) {
        GradcheckFn fn = [](const tensor_list& v) {
            Tensor y = v[0];
            for (int i = 0; i < 5; ++i) y = corpus_tanh(y);
            return y;
        };
        return single(fn, leaf(normals(g, 6), {6}));
    }, false, true);
    return cs;
}

}  // namespace

TEST_CASE("gradcheck corpus: planted bugs are caught on every input and a faulty element is named")
{
    run_category("planted bugs", planted_bugs());
}

TEST_CASE("gradcheck corpus: correct but numerically hard ops are not flagged on any input")
{
    run_category("correct but hard ops", correct_hard_ops());
}

