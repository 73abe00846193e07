#include "engine/check/gradcheck.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>

#include "engine/core/autograd.hpp"
#include "engine/core/parallel.hpp"
#include "engine/core/random.hpp"
#include "engine/check/replay.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduction.hpp"

namespace tg {

namespace {

constexpr double eps = std::numeric_limits<double>::epsilon();
constexpr double not_computed = std::numeric_limits<double>::quiet_NaN();
constexpr int max_cotangents = 8;
// Fast mode: a probe must agree to this fraction of the smallest per-element
// tolerance of its group, so an element that the full check would fail slips
// past one Gaussian probe with probability below 0.8·κ (and past P of them
// below (0.8·κ)^P).
constexpr double probe_fraction = 0.1;
// Probe steps: 2^-10 and 2^-11 along v, extrapolated (error ∝ s⁴). Steps
// larger than the per-element ones keep rounding small: a probe moves every
// element at once. Where the output's noise would still hide the group's
// tolerance the step is doubled, up to the largest step of the full check,
// so a probe resolves what the full check resolves.
constexpr double probe_step = 0x1p-10, largest_probe_step = 4;

// h: the power of two nearest cbrt(ε)·max(1, |x|), which balances truncation
// (∝ h²) against rounding (∝ ε/h). x ± h is then exact but for the last bit
// of some x, and the divisor is the difference of the points evaluated.
double step_for(double x)
{
    double target = std::cbrt(eps) * std::max(1.0, std::abs(x));
    int e = 0;
    double m = std::frexp(target, &e);  // target = m·2^e, m in [0.5, 1)
    return m < M_SQRT1_2 ? std::ldexp(1.0, e - 1) : std::ldexp(1.0, e);
}

int rank(ElementVerdict v)
{
    switch (v) {
    case ElementVerdict::pass: return 0;
    case ElementVerdict::kink: return 1;
    case ElementVerdict::unchecked: return 2;
    case ElementVerdict::fail: return 3;
    }
    return 3;
}

shape_type unravel(int64_t flat, const shape_type& shape)
{
    shape_type idx(shape.size());
    for (size_t d = shape.size(); d-- > 0;) {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    return idx;
}

std::string fmt(double v, const char* f = "%.4g")
{
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

Tensor float64_copy(const Tensor& t)
{
    NoGradGuard off;
    Tensor c = is_floating(t.dtype()) ? t.detach().to(float64) : t.detach();
    // A dense copy of its own: inputs may alias each other.
    return c.impl().storage == t.impl().storage ? c.clone() : c;
}

bool same_value(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

class Evaluator;

// Everything a check shares between threads; read-only once the perturbations start.
struct Problem {
    const GradcheckFn& fn;              // unused by a parameter check
    tensor_list xs;                  // float64 dense copies, off the tape
    std::vector<size_t> diff;        // positions of the inputs to check
    std::vector<std::string> names;  // by position
    Tensor out0;                     // fn(xs), no tape
    int64_t m = 0;                   // output elements
    int C = 1;                       // cotangents
    std::vector<double> u;           // cotangents interleaved: u[i·C + c]
    std::vector<std::vector<double>> analytic;  // per checked input: [e·C + c]
    std::vector<double> noise;       // per cotangent: rounding noise of one projected evaluation
    double noise_cap = 0;            // the most noise an evaluation can carry, per unit of Σ|o·u| changed
    std::vector<std::array<double, max_cotangents>> scale;  // per checked input and cotangent: max |analytic|
    std::atomic<int64_t> evaluations{0};
    // Makes one evaluator per chunk of work; `serial` when evaluators share
    // state (a re-run of a closure over the caller's parameters).
    std::function<std::unique_ptr<Evaluator>()> make_evaluator;
    bool serial = false;

    explicit Problem(const GradcheckFn& f) : fn(f) {}
    double tol(double n, const GradcheckOptions& o) const { return o.atol + o.rtol * std::abs(n); }
};

Tensor call(const GradcheckFn& fn, const tensor_list& xs, const char* who)
{
    Tensor out = fn(xs);
    TG_CHECK(out.defined(), who, ": the function returned an undefined tensor");
    TG_CHECK(out.dtype() == float64, who, ": the function returned ", dtype_name(out.dtype()),
             " for float64 inputs; compute in the inputs' dtype");
    return out;
}

// Σ_i (o_i − o0_i)·u_{i,c} for every c. Returns false when an output's
// finiteness differs from the base output's.
// Σ_i (o_i − o0_i)·u_{i,c} for every c, and Σ |o_i·u_{i,c}| over the outputs
// that changed (the size whose rounding the difference carries).
template <int C>
void project_fixed(const double* o, const double* o0, const double* u, int64_t m, double* out, double* size)
{
    double s[C] = {}, z[C] = {};
    constexpr int64_t block = 32;
    for (int64_t b = 0; b < m; b += block) {
        int64_t end = std::min(m, b + block);
        // A local op changes few outputs: skip the unchanged blocks fast.
        if (std::memcmp(o + b, o0 + b, size_t(end - b) * sizeof(double)) == 0) continue;
        for (int64_t i = b; i < end; ++i) {
            double d = o[i] - o0[i];
            const double w = d != 0 ? std::abs(o[i]) : 0.0;
            for (int c = 0; c < C; ++c) {
                s[c] += d * u[i * C + c];
                z[c] += w * std::abs(u[i * C + c]);
            }
        }
    }
    for (int c = 0; c < C; ++c) {
        out[c] = s[c];
        size[c] = z[c];
    }
}

bool project(const double* o, const double* o0, const double* u, int64_t m, int C, double* out, double* size)
{
    switch (C) {
    case 1: project_fixed<1>(o, o0, u, m, out, size); break;
    case 2: project_fixed<2>(o, o0, u, m, out, size); break;
    case 3: project_fixed<3>(o, o0, u, m, out, size); break;
    default:
        for (int c = 0; c < C; ++c) out[c] = size[c] = 0;
        for (int64_t i = 0; i < m; ++i)
            for (int c = 0; c < C; ++c) {
                out[c] += (o[i] - o0[i]) * u[i * C + c];
                if (o[i] != o0[i]) size[c] += std::abs(o[i] * u[i * C + c]);
            }
    }
    bool finite = true;
    for (int c = 0; c < C; ++c) finite = finite && std::isfinite(out[c]);
    if (finite) return true;
    // Slow path: outputs that are non-finite and unchanged do not count.
    bool changed = false;
    for (int c = 0; c < C; ++c) out[c] = 0;
    for (int64_t i = 0; i < m; ++i) {
        if (same_value(o[i], o0[i])) continue;
        if (!std::isfinite(o[i]) || !std::isfinite(o0[i])) {
            changed = true;
            continue;
        }
        for (int c = 0; c < C; ++c) out[c] += (o[i] - o0[i]) * u[i * C + c];
    }
    return !changed;
}

// Runs f; false when it raised a tapegrad error: at a perturbed point, an
// error is a step outside the function's domain, like a non-finite output.
template <class F>
bool raises_not(F&& f)
{
    try {
        f();
        return true;
    } catch (const Error&) {
        return false;
    }
}

// Projections of the output at a perturbed point. One per chunk of work, so
// threads never share the buffers they perturb.
class Evaluator {
public:
    explicit Evaluator(Problem& p) : p_(p) {}
    virtual ~Evaluator() = default;

    // Checked input k's values, which the caller may change before project_now().
    virtual double* data(size_t k) = 0;
    // Projections of f(current inputs) − f(x) onto the cotangents.
    virtual bool project_now(double* out) = 0;
    // The same with element e of checked input k set to v.
    virtual bool at(size_t k, int64_t e, double v, double* out)
    {
        double* x = data(k);
        double saved = x[e];
        x[e] = v;
        bool ok = project_now(out);
        x[e] = saved;
        return ok;
    }

protected:
    bool project_output(const Tensor& o, double* out)
    {
        p_.evaluations.fetch_add(1, std::memory_order_relaxed);
        TG_CHECK(o.defined() && o.dtype() == float64 && o.numel() == p_.m, "gradcheck: the function returned ",
                 o.defined() ? shape_str(o.shape()) : "an undefined tensor", " at a perturbed point, ",
                 shape_str(p_.out0.shape()), " at the unperturbed one");
        return project(o.data<double>(), p_.out0.data<double>(), p_.u.data(), p_.m, p_.C, out, size_.data());
    }
    Problem& p_;

public:
    // Σ |o·u| over the outputs the last evaluation changed, per cotangent.
    std::array<double, max_cotangents> size_{};
};

// Calls fn on its own perturbed copies of the inputs.
class CallEvaluator final : public Evaluator {
public:
    explicit CallEvaluator(Problem& p) : Evaluator(p), local_(p.xs)
    {
        for (size_t i : p.diff) local_[i] = p.xs[i].clone();
    }
    double* data(size_t k) override { return local_[p_.diff[k]].data<double>(); }
    bool project_now(double* out) override
    {
        Tensor o;
        if (!raises_not([&] { o = p_.fn(local_); })) return false;
        return project_output(o, out);
    }

private:
    tensor_list local_;
};

// Per-element results of one input in full mode, for every cotangent.
struct InputWork {
    size_t k = 0;  // which checked input
    int64_t n = 0;
    std::vector<double> numeric, estimate, left, right;  // [e·C + c]
    std::vector<uint8_t> verdict;                        // [e·C + c]
    std::vector<double> step;                            // [e]

    InputWork(size_t k_, int64_t n_, int C) : k(k_), n(n_)
    {
        size_t s = size_t(n_) * size_t(C);
        numeric.assign(s, not_computed);
        estimate.assign(s, 0.0);
        left.assign(s, not_computed);
        right.assign(s, not_computed);
        verdict.assign(s, uint8_t(ElementVerdict::pass));
        step.assign(size_t(n_), 0.0);
    }
};

// One element, every cotangent: central differences at a step that fits the
// point, refined where the first one does not settle the verdict.
//
// The tolerance is the same for every element, atol + rtol·|numeric|, plus
// twice the error estimated for the numeric value: the truncation error
// (from successive halvings, Richardson's extrapolation) and the rounding
// noise of the output measured at the start (noise/h). So a correct op passes
// at any scale of output, and an error larger than the tolerance fails.
//  1. The step starts at 2^k ≈ cbrt(ε)·max(1, |x|), raised where the
//     output's rounding noise would not be small against the tolerance, and
//     shrunk while the stencil leaves the domain (non-finite or an error).
//  2. An element well inside the tolerance with noise included, and with
//     matching one-sided slopes, passes on this step alone.
//  3. Any other is refined: halvings (or, where noise dominates, doublings)
//     extrapolated until the error estimate is small or stops falling; the
//     best extrapolation judges it. The one-sided slopes, extrapolated too,
//     tell a kink (their difference beyond the error) from a wrong gradient.
//  4. An element whose numeric value cannot be made accurate enough to judge
//     (its error estimate above the tolerance and no clear failure) is
//     unchecked, and so is one without a finite stencil down to the floor.
namespace {

// The derivative estimates of one step, per cotangent.
struct Difference {
    double step = 0;  // h
    std::array<double, max_cotangents> central{}, right{}, left{};
};

}  // namespace

void check_element(Evaluator& ev, const Problem& p, const GradcheckOptions& o, InputWork& w, int64_t e)
{
    const int C = p.C;
    const double* a = &p.analytic[w.k][size_t(e) * size_t(C)];
    const size_t base = size_t(e) * size_t(C);
    const double x0 = ev.data(w.k)[e];
    auto mark = [&](ElementVerdict v) {
        for (int c = 0; c < C; ++c) w.verdict[base + size_t(c)] = uint8_t(v);
    };
    if (!std::isfinite(x0)) {
        mark(ElementVerdict::unchecked);
        return;
    }
    const double scale = std::max(1.0, std::abs(x0)), largest = 4 * scale;
    auto tol = [&](double n) { return o.atol + o.rtol * std::abs(n); };
    // The rounding noise of one evaluation for this element: what was measured
    // for the whole output, but no more than the outputs this element changes
    // can carry (an elementwise op's small element is not as noisy as its large ones).
    std::array<double, max_cotangents> sigma{};
    // When no output changed at all, the change was below the output's
    // resolution: the whole output's noise applies.
    auto local_noise = [&](const std::array<double, max_cotangents>& size) {
        for (int c = 0; c < C; ++c) {
            const size_t i = size_t(c);
            const double local = size[i] > 0 ? std::min(p.noise[i], p.noise_cap * size[i]) : p.noise[i];
            sigma[i] = std::max(sigma[i], std::max(eps * size[i], local));
        }
    };
    // Rounding noise of a central difference at step h: two evaluations.
    auto noise = [&](int c, double h) { return 2 * sigma[size_t(c)] / h; };

    Difference d;
    auto evaluate = [&](double step, Difference& out) {
        std::array<double, max_cotangents> fp{}, fm{}, size{};
        const double up = x0 + step, down = x0 - step;
        bool finite = ev.at(w.k, e, up, fp.data());
        size = ev.size_;
        finite = ev.at(w.k, e, down, fm.data()) && finite;
        for (int c = 0; c < C; ++c) size[size_t(c)] = std::max(size[size_t(c)], ev.size_[size_t(c)]);
        if (!finite) return false;
        local_noise(size);
        out.step = step;
        for (int c = 0; c < C; ++c) {
            out.central[size_t(c)] = (fp[size_t(c)] - fm[size_t(c)]) / (up - down);
            out.right[size_t(c)] = fp[size_t(c)] / (up - x0);
            out.left[size_t(c)] = -fm[size_t(c)] / (x0 - down);
        }
        return true;
    };

    // 1. The first step: within a quarter of |x| (log, sqrt, 1/x turn singular
    // at 0, and a step as large as x reaches next to it), raised while the
    // output's measured noise would hide an error of 1e-6 relative (the
    // verdict allows for noise; a larger step is worth its truncation only
    // then), and shrunk while the stencil leaves the domain.
    auto too_noisy = [&](int c, double step) { return noise(c, step) > 2e-7 * std::abs(a[c]) + o.atol; };
    double h = step_for(x0);
    while (x0 != 0 && h > std::abs(x0) / 4) h /= 2;
    for (int c = 0; c < C; ++c) sigma[size_t(c)] = p.noise[size_t(c)];
    for (int c = 0; c < C; ++c)
        while (too_noisy(c, h) && h < largest) h *= 2;
    sigma.fill(0.0);  // from here on, the noise of the outputs this element changes
    const double floor = std::ldexp(scale, -44);  // below it, rounding alone is ~1e-3 relative
    while (!evaluate(h, d)) {
        h /= 4;
        if (h < floor) {
            w.step[size_t(e)] = h * 4;
            mark(ElementVerdict::unchecked);
            return;
        }
    }
    w.step[size_t(e)] = h;

    // 2. Settled by one step?
    bool settled = true;
    for (int c = 0; c < C; ++c) {
        const double n = d.central[size_t(c)], r = d.right[size_t(c)], l = d.left[size_t(c)];
        const double rho = noise(c, h);
        w.numeric[base + size_t(c)] = n;
        w.estimate[base + size_t(c)] = rho;
        w.right[base + size_t(c)] = r;
        w.left[base + size_t(c)] = l;
        // Well inside: a quarter of the tolerance, plus the noise the verdict
        // allows for anyway (truncation, unknown yet, is what the quarter is for).
        const bool inside = std::abs(a[c] - n) <= tol(n) / 4 + rho;
        const bool smooth = std::abs(r - l) <= 0.01 * std::max(std::abs(r), std::abs(l)) + tol(n) + 4 * rho;
        settled = settled && inside && smooth;
    }
    if (settled) return;  // every cotangent passes

    // 3. Refine: Ridders' tableau over halvings of the step. Column j removes
    // the h^(2j) term of the central differences (h^j of the one-sided ones);
    // each entry's error estimate is its distance to the two entries it came
    // from, and the entry with the smallest estimate (truncation plus the
    // noise of its steps) is kept. It stops when that is small, or when the
    // estimates grow again because rounding has taken over.
    constexpr int max_levels = 8;
    struct Best {
        double value = 0, error = std::numeric_limits<double>::infinity();
        double right = 0, left = 0, side_error = std::numeric_limits<double>::infinity();
    };
    std::array<Best, max_cotangents> best;
    // Tableau rows, per cotangent: previous and current; and the raw one-sided
    // gap r − l of the last two levels (a kink's stays, a smooth function's halves).
    std::array<std::array<double, max_levels>, max_cotangents> prev_c{}, prev_r{}, prev_l{}, cur_c{}, cur_r{}, cur_l{};
    std::array<double, max_cotangents> gap_first{}, gap_last{}, rho_first{}, rho_last{};
    for (int c = 0; c < C; ++c) {
        const size_t i2 = size_t(c);
        prev_c[i2][0] = d.central[i2];
        prev_r[i2][0] = d.right[i2];
        prev_l[i2][0] = d.left[i2];
        best[i2].value = d.central[i2];
        best[i2].right = d.right[i2];
        best[i2].left = d.left[i2];
        gap_first[i2] = gap_last[i2] = d.right[i2] - d.left[i2];
        rho_first[i2] = rho_last[i2] = noise(c, h);
    }
    int levels = 1;
    double step = h;
    for (int level = 1; level < max_levels; ++level) {
        step /= 2;
        if (step < floor) break;
        Difference next;
        if (!evaluate(step, next)) break;
        levels = level + 1;
        bool all_small = true, all_growing = true;
        for (int c = 0; c < C; ++c) {
            const size_t i2 = size_t(c);
            const double rho = noise(c, step);
            gap_last[i2] = next.right[i2] - next.left[i2];
            rho_last[i2] = rho;
            cur_c[i2][0] = next.central[i2];
            cur_r[i2][0] = next.right[i2];
            cur_l[i2][0] = next.left[i2];
            double fc = 4, fs = 2;
            for (int col = 1; col <= level; ++col, fc *= 4, fs *= 2) {
                cur_c[i2][col] = cur_c[i2][col - 1] + (cur_c[i2][col - 1] - prev_c[i2][col - 1]) / (fc - 1);
                cur_r[i2][col] = cur_r[i2][col - 1] + (cur_r[i2][col - 1] - prev_r[i2][col - 1]) / (fs - 1);
                cur_l[i2][col] = cur_l[i2][col - 1] + (cur_l[i2][col - 1] - prev_l[i2][col - 1]) / (fs - 1);
                const double err = std::max(std::abs(cur_c[i2][col] - cur_c[i2][col - 1]),
                                            std::abs(cur_c[i2][col] - prev_c[i2][col - 1])) +
                                   rho;
                if (err < best[i2].error) {
                    best[i2].value = cur_c[i2][col];
                    best[i2].error = err;
                }
                const double side = std::max(std::abs(cur_r[i2][col] - cur_r[i2][col - 1]),
                                             std::abs(cur_r[i2][col] - prev_r[i2][col - 1])) +
                                    std::max(std::abs(cur_l[i2][col] - cur_l[i2][col - 1]),
                                             std::abs(cur_l[i2][col] - prev_l[i2][col - 1])) +
                                    4 * rho;
                if (side < best[i2].side_error) {
                    best[i2].right = cur_r[i2][col];
                    best[i2].left = cur_l[i2][col];
                    best[i2].side_error = side;
                }
            }
            // Rounding takes over once the last diagonal is twice as bad as the
            // best and noise is most of it (earlier, far from a singularity's
            // asymptotic regime, estimates may grow before they fall).
            all_growing = all_growing && std::abs(cur_c[i2][level] - prev_c[i2][level - 1]) > 2 * best[i2].error &&
                          rho > 0.25 * best[i2].error;
            all_small = all_small && best[i2].error <= tol(best[i2].value) / 8;
            std::swap(prev_c[i2], cur_c[i2]);
            std::swap(prev_r[i2], cur_r[i2]);
            std::swap(prev_l[i2], cur_l[i2]);
        }
        // Enough when every estimate is small, unless a one-sided gap is still
        // open: whether it closes (smooth) or stays (a kink) takes one more level.
        bool gaps_open = false;
        for (int c = 0; c < C; ++c)
            gaps_open = gaps_open || std::abs(gap_last[size_t(c)]) > 8 * rho_last[size_t(c)] + tol(best[size_t(c)].value);
        if ((all_small && (!gaps_open || level >= 2)) || (level >= 2 && all_growing)) break;
    }

    // 4. The verdicts.
    for (int c = 0; c < C; ++c) {
        const size_t i = size_t(c), j = base + i;
        const Best& b = best[i];
        const double n = b.value;
        double err = b.error;
        if (!std::isfinite(err)) err = noise(c, h) + std::abs(d.central[i]) * 0.5;  // one step only: unknown
        w.numeric[j] = n;
        w.estimate[j] = err;
        w.right[j] = b.right;
        w.left[j] = b.left;
        // A kink: the one-sided gap r − l is the same at the first step and at
        // the finest (a smooth function's shrinks with the step, a noisy one's
        // grows), and larger than noise and tolerance at both.
        const double t = tol(std::max(std::abs(b.right), std::abs(b.left)));
        const double g0 = gap_first[i], g1 = gap_last[i];
        const bool kink = levels >= 2 && std::abs(g0) > 8 * rho_first[i] + t && std::abs(g1) > 8 * rho_last[i] + t &&
                          g1 / g0 > 0.75 && g1 / g0 < 1.33;
        if (kink) {
            // A subgradient lies between the one-sided derivatives (judged
            // again jointly with its tied elements, see check_ties).
            const double lo = std::min(b.left, b.right), hi = std::max(b.left, b.right);
            const double slack = tol(std::max(std::abs(lo), std::abs(hi))) + b.side_error;
            const bool inside = a[c] >= lo - slack && a[c] <= hi + slack;
            w.verdict[j] = uint8_t(inside ? ElementVerdict::kink : ElementVerdict::fail);
            continue;
        }
        const double miss = std::abs(a[c] - n);
        // Unchecked: the numeric value is too inaccurate to say anything, even
        // to 1e-3 of itself or to 1e-6 of the input's largest gradient.
        const double informative = std::max(tol(n), 1e-3 * std::abs(n) + 1e-6 * p.scale[w.k][i] + o.atol);
        if (miss > tol(n) + 2 * err)
            w.verdict[j] = uint8_t(ElementVerdict::fail);
        else if (err > informative)
            w.verdict[j] = uint8_t(ElementVerdict::unchecked);
        else
            w.verdict[j] = uint8_t(ElementVerdict::pass);
    }
}

// Kinks judged jointly: elements that are kinks and hold the same value are
// taken to be tied (max(t, t), maximum(a, b) at a == b, a max-pool window of
// equal values, a sort with equal keys), across all checked inputs. Moving
// all of them together by s, the function is smooth where the tie is what
// made each one a kink, and for any function the sum of a subgradient's
// entries along that direction lies between its one-sided derivatives. So
// the sum of their analytic gradients is checked against those derivatives:
// giving the whole gradient to every tied element fails, any convex split
// passes, and independent kinks at the same value (relu at 0 in several
// places) pass as they did alone.
void check_ties(Evaluator& ev, const Problem& p, const GradcheckOptions& o, std::vector<InputWork>& works)
{
    const int C = p.C;
    struct Kink {
        size_t work;
        int64_t e;
        double value;
    };
    std::vector<Kink> kinks;
    for (size_t wi = 0; wi < works.size(); ++wi) {
        const InputWork& w = works[wi];
        const double* x = p.xs[p.diff[w.k]].data<double>();
        for (int64_t e = 0; e < w.n; ++e)
            for (int c = 0; c < C; ++c)
                if (ElementVerdict(w.verdict[size_t(e) * size_t(C) + size_t(c)]) == ElementVerdict::kink) {
                    kinks.push_back({wi, e, x[e]});
                    break;
                }
    }
    std::stable_sort(kinks.begin(), kinks.end(), [](const Kink& l, const Kink& r) { return l.value < r.value; });
    auto tol = [&](double n) { return o.atol + o.rtol * std::abs(n); };
    auto set = [&](size_t b, size_t end, double v) {
        for (size_t t = b; t < end; ++t) ev.data(works[kinks[t].work].k)[kinks[t].e] = v;
    };
    for (size_t b = 0; b < kinks.size();) {
        size_t end = b + 1;
        while (end < kinks.size() && kinks[end].value == kinks[b].value) ++end;
        if (end - b < 2) {
            b = end;
            continue;
        }
        const double v = kinks[b].value;
        // One-sided directional derivatives at s and s/2, extrapolated (error ∝ s).
        std::array<std::array<double, max_cotangents>, 2> right{}, left{};
        bool finite = true;
        double s = step_for(v);
        for (int level = 0; level < 2; ++level, s /= 2) {
            std::array<double, max_cotangents> fp{}, fm{};
            set(b, end, v + s);
            finite = ev.project_now(fp.data()) && finite;
            set(b, end, v - s);
            finite = ev.project_now(fm.data()) && finite;
            set(b, end, v);
            const double up = (v + s) - v, down = v - (v - s);
            for (int c = 0; c < C; ++c) {
                right[size_t(level)][size_t(c)] = fp[size_t(c)] / up;
                left[size_t(level)][size_t(c)] = -fm[size_t(c)] / down;
            }
        }
        if (finite)
            for (int c = 0; c < C; ++c) {
                const size_t i = size_t(c);
                const double r = 2 * right[1][i] - right[0][i], l = 2 * left[1][i] - left[0][i];
                const double err = std::abs(r - right[1][i]) + std::abs(l - left[1][i]) +
                                   4 * p.noise[i] / std::ldexp(step_for(v), -1);
                double total = 0, tolerance = 0;
                for (size_t t = b; t < end; ++t) {
                    const double at = p.analytic[works[kinks[t].work].k][size_t(kinks[t].e) * size_t(C) + i];
                    total += at;
                    tolerance += tol(at);
                }
                const double lo = std::min(l, r), hi = std::max(l, r);
                if (total >= lo - tolerance - err && total <= hi + tolerance + err) continue;
                // Not a subgradient of the tie: every tied element's share is suspect.
                for (size_t t = b; t < end; ++t) {
                    InputWork& w = works[kinks[t].work];
                    const size_t j = size_t(kinks[t].e) * size_t(C) + i;
                    w.verdict[j] = uint8_t(ElementVerdict::fail);
                    w.left[j] = l;
                    w.right[j] = r;
                }
            }
        b = end;
    }
}

struct ProbeResult {
    bool agree = true;
    double ratio = 0;      // |D| / tolerance
    double noise = 0;      // error estimate of D (reported only)
    double rel = 0;        // |D| / (|numeric| + |analytic|)
    double max_abs_numeric = 0;
    double limited_to = 0; // > 0: the noise held the probe to this resolution, above the group's
    bool finite = true;    // the output's finiteness held along the probe
    double discrepancy = 0, tolerance = 0;
};

std::string why(const ProbeResult& r)
{
    if (!r.finite) return "the output's finiteness changed along the probe";
    return "discrepancy " + fmt(r.discrepancy, "%.2e") + " (error estimate " + fmt(r.noise, "%.1e") + "), tolerance " +
           fmt(r.tolerance, "%.1e");
}

// A double's bits as an int64 and back: what the parts of a split check sum
// (a part's own entries are non-zero in its buffer only, so the sum is exact).
int64_t bits_of(double v)
{
    int64_t b;
    std::memcpy(&b, &v, sizeof b);
    return b;
}
double from_bits(int64_t b)
{
    double v;
    std::memcpy(&v, &b, sizeof v);
    return v;
}

// Sums `buffer` over every part in place, checking that every part took part.
void sum_over_parts(const GradcheckOptions::Partition& part, std::vector<int64_t>& buffer)
{
    buffer.push_back(1);
    part.sum(buffer);
    TG_CHECK(buffer.back() == part.parts, "gradcheck: ", buffer.back(), " of ", part.parts,
             " parts contributed to the merged report");
    buffer.pop_back();
}

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL;
    for (uint64_t v : {a, b, c}) h = (h ^ v) * 0x100000001b3ULL + 0x9e3779b97f4a7c15ULL;
    return h;
}

// Fast mode for checked input k: random directions per tolerance group.
// Returns true when every probe agrees to a tenth of the group's smallest
// per-element tolerance (times the group's displacement scale), plus the
// output's rounding noise where no step could get under it (reported).
bool run_probes(Problem& p, const GradcheckOptions& o, size_t k, InputReport& rep)
{
    const int C = p.C;
    const Tensor& x = p.xs[p.diff[k]];
    const double* xv = x.data<double>();
    const std::vector<double>& a = p.analytic[k];
    int64_t n = x.numel();

    // Group the elements by tolerance, in factors of 16: each group costs its own
    // probes, and a probe only needs to resolve a tenth of the group's smallest.
    std::vector<std::vector<int64_t>> groups;
    std::vector<double> group_tol;
    // The smallest displacement scale max(1, |x|) in each group: a probe moves
    // element e by s·v_e with |v_e| ~ that scale, so an element off by its
    // tolerance shifts the probe by at least tolerance × the group's scale.
    std::vector<double> group_scale;
    for (int64_t e = 0; e < n; ++e) {
        double smallest = std::numeric_limits<double>::infinity();
        for (int c = 0; c < C; ++c) smallest = std::min(smallest, std::abs(a[size_t(e) * size_t(C) + size_t(c)]));
        double tau = o.atol + o.rtol * smallest;
        if (!std::isfinite(tau) || !std::isfinite(xv[e])) {
            rep.note = "an analytic gradient or input value is not finite";
            return false;
        }
        size_t g = size_t(std::max(0.0, std::floor(std::log(tau / o.atol) / std::log(16.0))));
        if (g >= groups.size()) {
            groups.resize(g + 1);
            group_tol.resize(g + 1);
            group_scale.resize(g + 1, std::numeric_limits<double>::infinity());
        }
        groups[g].push_back(e);
        group_tol[g] = o.atol * std::pow(16.0, double(g));
        group_scale[g] = std::min(group_scale[g], std::max(1.0, std::abs(xv[e])));
    }
    struct Task {
        size_t group;
        int probe;
    };
    std::vector<Task> tasks;
    for (size_t g = 0; g < groups.size(); ++g)
        if (!groups[g].empty())
            for (int q = 0; q < o.probes; ++q) tasks.push_back({g, q});
    std::vector<std::vector<ProbeResult>> results(tasks.size(), std::vector<ProbeResult>(size_t(C)));
    // A split check deals the probes round-robin to the parts.
    const GradcheckOptions::Partition& part = o.partition;
    std::vector<int64_t> mine;
    for (int64_t t = part.part; t < int64_t(tasks.size()); t += part.parts) mine.push_back(t);
    const int64_t before = p.evaluations.load();

    parallel_for(int64_t(mine.size()), p.serial ? int64_t(mine.size()) : 1, [&](int64_t j0, int64_t j1) {
        NoGradGuard off;
        std::unique_ptr<Evaluator> ev = p.make_evaluator();
        double* xd = ev->data(k);
        std::vector<double> v;
        for (int64_t j = j0; j < j1; ++j) {
            const int64_t t = mine[size_t(j)];
            const std::vector<int64_t>& els = groups[tasks[size_t(t)].group];
            Generator gen(mix_seed(o.seed, k, tasks[size_t(t)].group, uint64_t(tasks[size_t(t)].probe)));
            v.resize(els.size());
            for (size_t j = 0; j < els.size(); ++j) v[j] = gen.normal() * std::max(1.0, std::abs(xv[els[j]]));
            const size_t g = tasks[size_t(t)].group;
            const double group_tolerance = probe_fraction * group_tol[g] * group_scale[g];
            // The rounding noise of a probe whose finest step is s (two evaluations), with room.
            auto noise_term = [&](int c, double s) { return 8 * p.noise[size_t(c)] / s; };
            // One probe from `levels` steps halving from `step`: the extrapolated
            // discrepancy d per cotangent and its error estimate. With three steps
            // the two extrapolations' disagreement bounds what is left.
            struct Probe {
                double d[max_cotangents], err[max_cotangents], numeric[max_cotangents], analytic[max_cotangents];
                bool finite = true;
            };
            auto probe = [&](double step, int levels) {
                Probe q;
                double D[3][max_cotangents], N[3][max_cotangents];
                for (int level = 0; level < levels; ++level) {
                    double s = std::ldexp(step, -level);
                    std::array<double, max_cotangents> fp{}, fm{}, ap{}, am{};
                    for (int sign : {1, -1}) {
                        auto& acc = sign > 0 ? ap : am;
                        for (size_t j = 0; j < els.size(); ++j) {
                            int64_t e = els[j];
                            xd[e] = xv[e] + sign * s * v[j];
                            double dx = xd[e] - xv[e];
                            for (int c = 0; c < C; ++c) acc[size_t(c)] += a[size_t(e) * size_t(C) + size_t(c)] * dx;
                        }
                        q.finite = ev->project_now(sign > 0 ? fp.data() : fm.data()) && q.finite;
                    }
                    for (int64_t e : els) xd[e] = xv[e];
                    // D = (numeric − analytic) along the displacement actually taken, per unit step.
                    for (int c = 0; c < C; ++c) {
                        N[level][c] = (fp[size_t(c)] - fm[size_t(c)]) / (2 * s);
                        D[level][c] = N[level][c] - (ap[size_t(c)] - am[size_t(c)]) / (2 * s);
                    }
                }
                const int f = levels - 1;
                for (int c = 0; c < C; ++c) {
                    // Central differences err by ∝ s²: extrapolate.
                    q.d[c] = (4 * D[f][c] - D[f - 1][c]) / 3;
                    q.err[c] = levels == 3 ? std::abs(q.d[c] - (4 * D[1][c] - D[0][c]) / 3)
                                           : std::abs(D[f][c] - D[f - 1][c]) / 3;
                    q.numeric[c] = N[f][c];
                    q.analytic[c] = N[f][c] - D[f][c];
                }
                return q;
            };
            // Where the output's noise would hide the group's tolerance, a probe
            // at raised steps resolves it if the function is smooth enough at
            // that scale (measured, never assumed); if not, the standard probe
            // stands, with the resolution the noise allows, and says so.
            double raised = probe_step;
            for (int c = 0; c < C; ++c)
                while (noise_term(c, raised / 4) > group_tolerance && raised < largest_probe_step) raised *= 2;
            Probe q;
            bool use_raised = false;
            if (raised > probe_step) {
                q = probe(raised, 3);
                use_raised = q.finite;
                // Trusted when its own error estimate is inside the tolerance;
                // then a discrepancy it finds is the backward's, not the step's.
                for (int c = 0; c < C && use_raised; ++c)
                    use_raised = q.err[c] <= group_tolerance + noise_term(c, raised / 4);
            }
            if (!use_raised) q = probe(probe_step, 2);
            const bool finite = q.finite;
            for (int c = 0; c < C; ++c) {
                const double finest = use_raised ? raised / 4 : probe_step / 2;
                const double tolerance = group_tolerance + noise_term(c, finest);
                ProbeResult& r = results[size_t(t)][size_t(c)];
                const double d = q.d[c], noise = q.err[c];
                // A raised probe's measured error is allowed for, as the full
                // check allows for each element's: a wrong backward shifts d at
                // every step alike, so it shows in d and not in the error.
                r.ratio = std::abs(d) / (tolerance + (use_raised ? noise : 0.0));
                r.noise = noise;
                r.limited_to = tolerance > 2 * group_tolerance ? tolerance : 0;
                double nv = q.numeric[c], av = q.analytic[c];
                r.rel = std::abs(d) / std::max(std::abs(nv) + std::abs(av), 1e-300);
                r.max_abs_numeric = std::abs(nv);
                r.agree = finite && r.ratio <= 1;
                r.finite = finite;
                r.discrepancy = std::abs(d);
                r.tolerance = tolerance;
            }
        }
    });
    if (part.parts > 1) {  // every part's probes into every part's results, and their evaluations
        constexpr size_t fields = 9;
        std::vector<int64_t> buffer(tasks.size() * size_t(C) * fields + 1, 0);
        for (int64_t t : mine)
            for (int c = 0; c < C; ++c) {
                const ProbeResult& r = results[size_t(t)][size_t(c)];
                int64_t* out = &buffer[(size_t(t) * size_t(C) + size_t(c)) * fields];
                out[0] = r.agree;
                out[1] = r.finite;
                out[2] = bits_of(r.ratio);
                out[3] = bits_of(r.noise);
                out[4] = bits_of(r.rel);
                out[5] = bits_of(r.max_abs_numeric);
                out[6] = bits_of(r.limited_to);
                out[7] = bits_of(r.discrepancy);
                out[8] = bits_of(r.tolerance);
            }
        const int64_t evaluations = p.evaluations.load() - before;
        buffer.back() = evaluations;
        sum_over_parts(part, buffer);
        for (size_t t = 0; t < tasks.size(); ++t)
            for (int c = 0; c < C; ++c) {
                ProbeResult& r = results[t][size_t(c)];
                const int64_t* in = &buffer[(t * size_t(C) + size_t(c)) * fields];
                r.agree = in[0] != 0;
                r.finite = in[1] != 0;
                r.ratio = from_bits(in[2]);
                r.noise = from_bits(in[3]);
                r.rel = from_bits(in[4]);
                r.max_abs_numeric = from_bits(in[5]);
                r.limited_to = from_bits(in[6]);
                r.discrepancy = from_bits(in[7]);
                r.tolerance = from_bits(in[8]);
            }
        p.evaluations += buffer.back() - evaluations;
    }

    bool agree = true;
    for (size_t t = 0; t < tasks.size(); ++t)
        for (int c = 0; c < C; ++c) {
            const ProbeResult& r = results[t][size_t(c)];
            rep.probe_ratio = std::max(rep.probe_ratio, r.ratio);
            rep.probe_resolution = std::max(rep.probe_resolution, r.limited_to);
            rep.rel_error = std::max(rep.rel_error, r.rel);
            rep.max_abs_numeric = std::max(rep.max_abs_numeric, r.max_abs_numeric);
            if (!r.agree && agree) {
                agree = false;
                rep.note = "probe " + std::to_string(t) + " (cotangent " + std::to_string(c) + ", " +
                           std::to_string(groups[tasks[t].group].size()) + " elements): " + why(r);
            }
        }
    rep.probes = int(tasks.size());
    return agree;
}

// Fills an input's report from the per-element results of full mode.
void summarize(const Problem& p, const GradcheckOptions& o, const InputWork& w, InputReport& rep)
{
    const int C = p.C;
    const Tensor& x = p.xs[p.diff[w.k]];
    const double* xv = x.data<double>();
    const std::vector<double>& a = p.analytic[w.k];
    rep.elements = w.n;
    double diff2 = 0, n2 = 0, a2 = 0;
    struct Key {
        int rank;
        double ratio;
        int64_t e;
        int c;
    };
    auto better = [](const Key& l, const Key& r) {
        if (l.rank != r.rank) return l.rank > r.rank;
        if (l.ratio != r.ratio) return l.ratio > r.ratio;
        return l.e < r.e;
    };
    std::vector<Key> keys;
    keys.reserve(size_t(w.n));
    for (int64_t e = 0; e < w.n; ++e) {
        Key worst{-1, 0, e, 0};
        for (int c = 0; c < C; ++c) {
            size_t j = size_t(e) * size_t(C) + size_t(c);
            auto v = ElementVerdict(w.verdict[j]);
            double n = w.numeric[j], an = a[j];
            rep.max_abs_analytic = std::max(rep.max_abs_analytic, std::abs(an));
            if (std::isfinite(n)) rep.max_abs_numeric = std::max(rep.max_abs_numeric, std::abs(n));
            if (v == ElementVerdict::pass || v == ElementVerdict::fail) {
                diff2 += (n - an) * (n - an);
                n2 += n * n;
                a2 += an * an;
            }
            double ratio = std::abs(an - n) / (p.tol(n, o) + 2 * w.estimate[j]);
            if (std::isnan(ratio)) ratio = std::numeric_limits<double>::infinity();
            Key key{rank(v), ratio, e, c};
            if (better(key, worst)) worst = key;
        }
        keys.push_back(worst);
        switch (ElementVerdict(w.verdict[size_t(e) * size_t(C) + size_t(worst.c)])) {
        case ElementVerdict::fail: rep.failures++; break;
        case ElementVerdict::kink: rep.kinks++; break;
        case ElementVerdict::unchecked: rep.unchecked++; break;
        case ElementVerdict::pass: break;
        }
    }
    double denom = std::sqrt(n2) + std::sqrt(a2);
    rep.rel_error = denom > 0 ? std::sqrt(diff2) / denom : 0.0;
    if (!std::isfinite(rep.rel_error)) rep.rel_error = std::numeric_limits<double>::infinity();

    size_t keep = std::min(keys.size(), size_t(std::max(0, o.report_worst)));
    std::partial_sort(keys.begin(), keys.begin() + long(keep), keys.end(), better);
    for (size_t i = 0; i < keep; ++i) {
        const Key& k = keys[i];
        size_t j = size_t(k.e) * size_t(C) + size_t(k.c);
        ElementReport er;
        er.index = unravel(k.e, x.shape());
        er.cotangent = k.c;
        er.value = xv[k.e];
        er.step = w.step[size_t(k.e)];
        er.analytic = a[j];
        er.numeric = w.numeric[j];
        er.error_estimate = w.estimate[j];
        er.abs_error = std::abs(er.analytic - er.numeric);
        er.rel_error = er.abs_error == 0 ? 0.0 : er.abs_error / std::abs(er.numeric);  // inf if numeric is 0
        er.left = w.left[j];
        er.right = w.right[j];
        er.verdict = ElementVerdict(w.verdict[j]);
        rep.worst.push_back(er);
    }
    // The input's verdict is its elements': the summary only reports.
    if (rep.failures)
        rep.verdict = Verdict::fail;
    else if (rep.unchecked)
        rep.verdict = Verdict::incomplete;
    else if (rep.kinks)
        rep.verdict = Verdict::nondifferentiable;
}

std::string default_reproduce(const char* function, const GradcheckOptions& o)
{
    GradcheckOptions d;
    std::string s = std::string("tg::") + function + "(fn, inputs, {";
    if (o.atol != d.atol) s += ".atol = " + fmt(o.atol, "%g") + ", ";
    if (o.rtol != d.rtol) s += ".rtol = " + fmt(o.rtol, "%g") + ", ";
    s += ".seed = " + std::to_string(o.seed);
    if (o.mode != d.mode)
        s += std::string(", .mode = tg::GradcheckMode::") + (o.mode == GradcheckMode::full ? "full" : "fast");
    if (o.cotangents != d.cotangents) s += ", .cotangents = " + std::to_string(o.cotangents);
    return s + "})";
}

std::string index_str(int64_t flat, const shape_type& shape) { return shape_str(unravel(flat, shape)); }

// The analytic side: one backward per cotangent, and the structural checks.
using Bytes = std::vector<std::vector<unsigned char>>;

Bytes bytes_of(const tensor_list& ts)
{
    Bytes before;
    for (const Tensor& t : ts) {
        const auto* b = static_cast<const unsigned char*>(t.raw_data());
        before.emplace_back(b, b + size_t(t.numel()) * dtype_size(t.dtype()));
    }
    return before;
}

// "" when the recorded output equals the one computed without a tape, to rounding.
std::string compare_forwards(const Tensor& recorded, const Tensor& untaped)
{
    std::string diff = rounding_difference(untaped, recorded, 1e-10, 1e-13);
    return diff.empty() ? diff : "the forward without a tape, at " + diff + " recorded";
}

// The analytic side of a check and the structural checks. `out` was recorded
// from `wrt` (the checked inputs, in order); p.out0 is the output to compare
// perturbed evaluations with; `forward_check` names a check of the recorded
// forward and gives its failure ("" for none); `before` holds the inputs'
// bytes before anything ran.
void analyze(Problem& p, const GradcheckOptions& o, GradcheckResult& r, const Tensor& out, const tensor_list& wrt,
             const std::pair<std::string, std::string>& forward_check, const Bytes& before)
{
    EnableGradGuard on;
    p.m = out.numel();
    p.C = p.m == 1 ? 1 : o.cotangents;
    Generator gen(o.seed);
    tensor_list us;
    p.u.assign(size_t(p.m) * size_t(p.C), 1.0);
    for (int c = 0; c < p.C; ++c) {
        Tensor u = p.m == 1 ? ones_like(out) : randn(out.shape(), float64, &gen);
        const double* uv = u.data<double>();
        for (int64_t i = 0; i < p.m; ++i) p.u[size_t(i) * size_t(p.C) + size_t(c)] = uv[i];
        us.push_back(u);
    }
    GradOptions keep{.create_graph = false, .retain_graph = true};
    auto vjp = [&](const Tensor& u) { return grad({out}, wrt, {u}, keep); };

    std::vector<tensor_list> g(size_t(p.C));
    try {
        for (int c = 0; c < p.C; ++c) g[size_t(c)] = vjp(us[size_t(c)]);
    } catch (const Error& e) {
        // The forward ran; its backward did not. The engine's message names
        // the op (and for a gradient of the wrong shape, both shapes).
        const std::string what = e.what();
        const bool shapes = what.find("returned a gradient of shape") != std::string::npos;
        r.structural.push_back({shapes ? "gradient shapes and dtypes match the inputs" : "backward runs where the forward does",
                                false, what});
        r.error = "the backward raised where the forward did not: " + what;
        return;
    }
    bool shapes_ok = true;
    std::string shapes_detail;
    p.analytic.assign(p.diff.size(), {});
    for (size_t k = 0; k < p.diff.size(); ++k) {
        const Tensor& x = p.xs[p.diff[k]];
        for (int c = 0; c < p.C; ++c) {
            const Tensor& gk = g[size_t(c)][k];
            if (gk.shape() != x.shape() || gk.dtype() != float64) {
                shapes_ok = false;
                shapes_detail = "gradient of '" + p.names[p.diff[k]] + "' has shape " + shape_str(gk.shape()) + " (" +
                                dtype_name(gk.dtype()) + "), the input " + shape_str(x.shape()) + " (float64)";
            }
        }
        if (!shapes_ok) {
            r.structural.push_back({"gradient shapes and dtypes match the inputs", false, shapes_detail});
            r.error = "gradcheck: " + shapes_detail;
            return;
        }
        std::vector<double>& a = p.analytic[k];
        a.resize(size_t(x.numel()) * size_t(p.C));
        p.scale.resize(p.diff.size());
        p.scale[k].fill(0.0);
        for (int c = 0; c < p.C; ++c) {
            const double* gv = g[size_t(c)][k].data<double>();
            for (int64_t e = 0; e < x.numel(); ++e) {
                a[size_t(e) * size_t(p.C) + size_t(c)] = gv[e];
                if (std::isfinite(gv[e])) p.scale[k][size_t(c)] = std::max(p.scale[k][size_t(c)], std::abs(gv[e]));
            }
        }
    }
    if (!o.structural) return;

    auto record_check = [&](const std::string& name, bool ok, const std::string& detail) {
        r.structural.push_back({name, ok, ok ? "" : detail});
    };
    record_check("gradient shapes and dtypes match the inputs", true, "");
    record_check("backward runs where the forward does", true, "");

    record_check(forward_check.first, forward_check.second.empty(), forward_check.second);

    // Linear in the upstream gradient: vjp(α·u + β·v) = α·vjp(u) + β·vjp(v).
    {
        const double alpha = 0.75, beta = -1.25;
        Tensor v = p.m == 1 ? full_like(out, 0.6180339887) : randn(out.shape(), float64, &gen);
        tensor_list gv = vjp(v), gm;
        {
            NoGradGuard off;
            gm = vjp(add(mul(us[0], scalar(alpha, float64)), mul(v, scalar(beta, float64))));
        }
        std::string detail;
        // Rounding is relative to the largest gradient of any input: a
        // gradient that cancels to ~0 (a conv bias before batch norm) is
        // rounding noise of terms that size.
        double largest = 0;
        for (size_t k = 0; k < p.diff.size(); ++k) {
            const double* g0 = g[0][k].data<double>();
            const double* g1 = gv[k].data<double>();
            for (int64_t e = 0; e < gm[k].numel(); ++e)
                if (std::isfinite(g0[e]) && std::isfinite(g1[e]))
                    largest = std::max(largest, std::abs(alpha * g0[e]) + std::abs(beta * g1[e]));
        }
        for (size_t k = 0; k < p.diff.size() && detail.empty(); ++k) {
            const double* g0 = g[0][k].data<double>();
            const double* g1 = gv[k].data<double>();
            const double* gx = gm[k].data<double>();
            int64_t n = gm[k].numel();
            double scale = 0;
            for (int64_t e = 0; e < n; ++e) scale = std::max(scale, std::abs(alpha * g0[e]) + std::abs(beta * g1[e]));
            scale = std::max(scale, 1e-2 * largest);
            for (int64_t e = 0; e < n && detail.empty(); ++e) {
                if (!std::isfinite(g0[e]) || !std::isfinite(g1[e])) continue;  // flagged by the comparison
                double want = alpha * g0[e] + beta * g1[e];
                double tol = 1e-9 * (std::abs(alpha * g0[e]) + std::abs(beta * g1[e])) + 1e-12 * scale;
                if (!(std::abs(gx[e] - want) <= tol))
                    detail = "'" + p.names[p.diff[k]] + "' " + index_str(e, gm[k].shape()) + ": vjp(α·u+β·v) = " +
                             fmt(gx[e], "%.10g") + ", α·vjp(u)+β·vjp(v) = " + fmt(want, "%.10g");
            }
        }
        record_check("linear in the upstream gradient", detail.empty(), detail);
    }

    // A zero upstream gradient gives zero gradients.
    {
        tensor_list gz = vjp(zeros_like(out));
        std::string detail;
        for (size_t k = 0; k < p.diff.size() && detail.empty(); ++k) {
            const double* z = gz[k].data<double>();
            const double* g0 = g[0][k].data<double>();
            for (int64_t e = 0; e < gz[k].numel() && detail.empty(); ++e)
                if (z[e] != 0 && std::isfinite(g0[e]))  // 0·inf is NaN by IEEE
                    detail = "'" + p.names[p.diff[k]] + "' " + index_str(e, gz[k].shape()) + " got " + fmt(z[e], "%.6g");
        }
        record_check("zero upstream gradient gives zero", detail.empty(), detail);
    }

    // Deterministic: the same backward twice gives the same bits (or within nondet_tol).
    {
        tensor_list again = vjp(us[0]);
        std::string detail;
        for (size_t k = 0; k < p.diff.size() && detail.empty(); ++k) {
            const double* x1 = g[0][k].data<double>();
            const double* x2 = again[k].data<double>();
            double scale = 0;
            for (int64_t e = 0; e < again[k].numel(); ++e) scale = std::max(scale, std::abs(x1[e]));
            for (int64_t e = 0; e < again[k].numel() && detail.empty(); ++e) {
                if (std::memcmp(&x1[e], &x2[e], sizeof(double)) == 0) continue;
                if (o.nondet_tol > 0 && std::abs(x1[e] - x2[e]) <= o.nondet_tol * std::max(scale, 1e-300)) continue;
                detail = "'" + p.names[p.diff[k]] + "' " + index_str(e, again[k].shape()) + ": " +
                         fmt(x1[e], "%.17g") + " then " + fmt(x2[e], "%.17g") +
                         (o.nondet_tol > 0 ? " (beyond nondet_tol " + fmt(o.nondet_tol, "%.1e") + ")" : "");
            }
        }
        record_check("backward is deterministic", detail.empty(), detail);
    }

    // Inputs unchanged by the forward and the backwards.
    {
        std::string detail;
        for (size_t i = 0; i < p.xs.size() && detail.empty(); ++i)
            if (!before[i].empty() && std::memcmp(before[i].data(), p.xs[i].raw_data(), before[i].size()) != 0)
                detail = "input '" + p.names[i] + "' was modified in place";
        record_check("inputs unchanged by forward and backward", detail.empty(), detail);
    }
}

// Records fn on leaves cut from the float64 copies, and fn without a tape.
void analyze_call(Problem& p, const GradcheckOptions& o, GradcheckResult& r)
{
    EnableGradGuard on;
    Bytes before = bytes_of(p.xs);
    tensor_list leaves = p.xs, wrt;
    for (size_t i : p.diff) {
        leaves[i] = p.xs[i].detach().requires_grad_(true);
        wrt.push_back(leaves[i]);
    }
    Tensor out;
    try {
        out = p.fn(leaves);
    } catch (const Error& e) {
        r.error = std::string("the function raised at the given inputs, so nothing was checked: ") + e.what();
        return;
    }
    TG_CHECK(out.defined(), "gradcheck: the function returned an undefined tensor");
    TG_CHECK(out.dtype() == float64, "gradcheck: the function returned ", dtype_name(out.dtype()),
             " for float64 inputs; compute in the inputs' dtype");
    TG_CHECK(out.requires_grad(), "gradcheck: the output of shape ", out.shape(),
             " does not depend on any input that requires grad");
    {
        NoGradGuard off;
        p.out0 = call(p.fn, p.xs, "gradcheck");
    }
    TG_CHECK(p.out0.shape() == out.shape(), "gradcheck: the function returned shape ", out.shape(),
             " with the tape on and ", p.out0.shape(), " with it off");
    // An op may take a fused path when nothing is recorded; the results must agree.
    analyze(p, o, r, out, wrt, {"recorded forward equals the forward without a tape", compare_forwards(out, p.out0)},
            before);
}

// Forward mode: J·v from tg::jvp against (f(x + s·v) − f(x − s·v)) / 2s along
// one random direction v, output element by output element, with the same
// rule as the elements of the full check (Richardson over s and s/2).
StructuralCheck check_forward_mode(const Problem& p, const GradcheckOptions& o)
{
    StructuralCheck check{"forward mode: J·v matches finite differences along v", true, ""};
    NoGradGuard off;
    Generator gen(o.seed + 3);
    tensor_list tangents(p.xs.size());
    for (size_t i : p.diff) {
        Tensor v = randn(p.xs[i].shape(), float64, &gen);
        double* vp = v.data<double>();
        const double* xp = p.xs[i].data<double>();
        for (int64_t e = 0; e < v.numel(); ++e) vp[e] *= std::max(1.0, std::abs(xp[e]));
        tangents[i] = v;
    }
    JvpResult jv;
    try {
        jv = jvp(p.fn, p.xs, tangents);
    } catch (const Error& e) {
        check.passed = false;
        check.detail = std::string("tg::jvp raised: ") + e.what();
        return check;
    }
    auto along = [&](double s) {
        tensor_list plus = p.xs, minus = p.xs;
        for (size_t i : p.diff) {
            plus[i] = p.xs[i].clone();
            minus[i] = p.xs[i].clone();
            double* a = plus[i].data<double>();
            double* b = minus[i].data<double>();
            const double* v = tangents[i].data<double>();
            for (int64_t e = 0; e < plus[i].numel(); ++e) {
                a[e] += s * v[e];
                b[e] -= s * v[e];
            }
        }
        return std::pair{p.fn(plus), p.fn(minus)};
    };
    const double s = 0x1p-12;
    auto [p1, m1] = along(s);
    auto [p2, m2] = along(s / 2);
    const double *jp = jv.tangent.data<double>(), *a1 = p1.data<double>(), *b1 = m1.data<double>(),
                 *a2 = p2.data<double>(), *b2 = m2.data<double>();
    for (int64_t i = 0; i < p.m; ++i) {
        const double d1 = (a1[i] - b1[i]) / (2 * s), d2 = (a2[i] - b2[i]) / s;
        if (!std::isfinite(d1) || !std::isfinite(d2)) continue;  // the direction leaves the domain here
        const double n = d2 + (d2 - d1) / 3;
        const double err = std::abs(n - d2) + 16 * eps * (std::abs(a2[i]) + std::abs(b2[i])) / s;
        if (std::abs(jp[i] - n) <= o.atol + o.rtol * std::abs(n) + 2 * err) continue;
        check.passed = false;
        check.detail = "output " + index_str(i, p.out0.shape()) + ": J·v = " + fmt(jp[i], "%.10g") +
                       ", finite differences " + fmt(n, "%.10g") + " (error estimate " + fmt(err, "%.1e") + ")";
        break;
    }
    return check;
}

void run_checks(Problem& p, const GradcheckOptions& o, GradcheckResult& result);

// The core shared by gradcheck and gradgradcheck.
// Options out of range are the caller's mistake: say so, never clamp silently.
void validate(const GradcheckOptions& o)
{
    TG_CHECK(o.atol >= 0 && o.rtol >= 0, "gradcheck: atol and rtol must be >= 0, got ", o.atol, " and ", o.rtol);
    TG_CHECK(o.probes >= 1, "gradcheck: probes must be >= 1, got ", o.probes);
    TG_CHECK(o.cotangents >= 1 && o.cotangents <= max_cotangents, "gradcheck: cotangents must be from 1 to ",
             max_cotangents, ", got ", o.cotangents);
    TG_CHECK(o.nondet_tol >= 0, "gradcheck: nondet_tol must be >= 0, got ", o.nondet_tol);
    TG_CHECK(o.fast_above >= 0, "gradcheck: fast_above must be >= 0, got ", o.fast_above);
    const GradcheckOptions::Partition& part = o.partition;
    TG_CHECK(part.parts >= 1 && part.part >= 0 && part.part < part.parts, "gradcheck: partition part ", part.part,
             " of ", part.parts, " does not exist");
    TG_CHECK(part.parts == 1 || part.sum, "gradcheck: a partition over ", part.parts, " parts needs its sum");
}

GradcheckResult check(const GradcheckFn& fn, const tensor_list& given, const GradcheckOptions& o,
                      const std::string& what, const char* function)
{
    auto t0 = std::chrono::steady_clock::now();
    validate(o);
    GradcheckResult result;
    result.what = what;
    result.mode = o.mode;
    result.seed = o.seed;
    result.reproduce = o.reproduce.empty() ? default_reproduce(function, o) : o.reproduce;

    Problem p(fn);
    for (size_t i = 0; i < given.size(); ++i) {
        TG_CHECK(given[i].defined(), function, ": input ", i, " is undefined");
        p.xs.push_back(float64_copy(given[i]));
        p.names.push_back(i < o.names.size() && !o.names[i].empty() ? o.names[i] : std::string("x").append(std::to_string(i)));
        if (is_floating(given[i].dtype()) && given[i].requires_grad()) p.diff.push_back(i);
    }
    TG_CHECK(!p.diff.empty(), function, ": no input requires grad; mark the inputs to check with requires_grad_()");
    p.make_evaluator = [&p] { return std::make_unique<CallEvaluator>(p); };
    analyze_call(p, o, result);
    if (result.error.empty() && o.forward_ad) result.structural.push_back(check_forward_mode(p, o));
    if (result.error.empty())
        run_checks(p, o, result);
    else
        result.verdict = Verdict::fail;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
}

// The rounding noise of one projected evaluation, per cotangent: the output
// at x + δ·v, x + 2δ·v and x + 3δ·v (v random signs, δ of 2^-36 relative)
// gives Δ(3δ) − 3·Δ(2δ) + 3·Δ(δ), where the linear and quadratic changes
// cancel, leaving noise (√19 of one evaluation's). The largest of three
// directions, and never less than ε·Σ|o·u|. δ is small so that no kink is
// crossed (larger, relu and max-pool switches read as noise); a long sum
// may then look quieter than it is at the check's steps, which the
// refinement's own estimates (successive steps disagreeing) make up for.
void measure_noise(Problem& p)
{
    const int C = p.C;
    p.noise.assign(size_t(C), 0.0);
    const double* o0 = p.out0.data<double>();
    for (int c = 0; c < C; ++c) {
        double s = 0;
        for (int64_t i = 0; i < p.m; ++i) s += std::abs(o0[i] * p.u[size_t(i) * size_t(C) + size_t(c)]);
        p.noise[size_t(c)] = eps * s;
    }
    // Three random patterns, each on its own evaluator so they run in parallel.
    std::array<std::array<double, max_cotangents>, 3> third{};
    parallel_for(3, p.serial ? 3 : 1, [&](int64_t q0, int64_t q1) {
        NoGradGuard off;
        std::unique_ptr<Evaluator> ev = p.make_evaluator();
        std::vector<std::vector<double>> saved(p.diff.size()), dir(p.diff.size());
        for (size_t k = 0; k < p.diff.size(); ++k) {
            const double* x = ev->data(k);
            saved[k].assign(x, x + p.xs[p.diff[k]].numel());
        }
        for (int64_t pattern = q0; pattern < q1; ++pattern) {
            Generator gen(0x5eed ^ uint64_t(pattern));
            std::array<std::array<double, max_cotangents>, 3> delta{};
            bool finite = true;
            for (size_t k = 0; k < p.diff.size(); ++k) {
                dir[k].resize(saved[k].size());
                for (size_t e = 0; e < saved[k].size(); ++e)
                    dir[k][e] = (gen.uniform() < 0.5 ? -1 : 1) * std::ldexp(std::max(1.0, std::abs(saved[k][e])), -36);
            }
            for (int step = 1; step <= 3; ++step) {
                for (size_t k = 0; k < p.diff.size(); ++k) {
                    double* x = ev->data(k);
                    for (size_t e = 0; e < saved[k].size(); ++e) x[e] = saved[k][e] + step * dir[k][e];
                }
                finite = ev->project_now(delta[size_t(step - 1)].data()) && finite;
            }
            if (!finite) continue;
            // project_now is relative to the unperturbed output, so f(x) = 0 here.
            for (int c = 0; c < C; ++c) {
                const size_t i = size_t(c);
                third[size_t(pattern)][i] = std::abs(delta[2][i] - 3 * delta[1][i] + 3 * delta[0][i]) / std::sqrt(19.0);
            }
        }
        for (size_t k = 0; k < p.diff.size(); ++k) std::copy(saved[k].begin(), saved[k].end(), ev->data(k));
    });
    for (int c = 0; c < C; ++c)
        for (int q = 0; q < 3; ++q) p.noise[size_t(c)] = std::max(p.noise[size_t(c)], third[size_t(q)][size_t(c)]);
    // A point where the function is not smooth at the δ scale (sqrt at 0)
    // would read as noise: no more than a forward of this size can round.
    int64_t terms = p.m;
    for (size_t k = 0; k < p.diff.size(); ++k) terms += p.xs[p.diff[k]].numel();
    p.noise_cap = 64 * eps * std::sqrt(double(1 + terms));
    for (int c = 0; c < C; ++c) {
        double s = 0;
        for (int64_t i = 0; i < p.m; ++i) s += std::abs(o0[i] * p.u[size_t(i) * size_t(C) + size_t(c)]);
        p.noise[size_t(c)] = std::min(p.noise[size_t(c)], 64 * eps * std::max(s, 1e-300) * std::sqrt(double(1 + terms)));
    }
}

// The elements of full mode, numbered across the inputs, that `part` checks:
// blocks of 16 dealt round-robin, so every part gets its share of every
// input (their costs differ: a conv weight's element replays more than a
// bias's).
std::vector<int64_t> elements_of_part(int64_t total, const GradcheckOptions::Partition& part)
{
    constexpr int64_t block = 16;
    std::vector<int64_t> mine;
    for (int64_t b = int64_t(part.part) * block; b < total; b += block * part.parts)
        for (int64_t t = b; t < std::min(total, b + block); ++t) mine.push_back(t);
    return mine;
}

// Every part's element results into every part's works: the bits of each
// number (NaN payloads and -0 kept) summed as integers, a part's own
// elements non-zero in its buffer only; and the evaluations they took.
void merge_parts(Problem& p, std::vector<InputWork>& works, const std::vector<int64_t>& offsets,
                 const GradcheckOptions::Partition& part, int64_t evaluations)
{
    const size_t C = size_t(p.C), per = 5 * C + 1;
    std::vector<int64_t> buffer(size_t(offsets.back()) * per + 1, 0);
    auto bits = bits_of;
    auto value = from_bits;
    for (int64_t t : elements_of_part(offsets.back(), part)) {
        const size_t wi = size_t(std::upper_bound(offsets.begin(), offsets.end(), t) - offsets.begin()) - 1;
        const InputWork& w = works[wi];
        const size_t e = size_t(t - offsets[wi]);
        int64_t* out = &buffer[size_t(t) * per];
        for (size_t c = 0; c < C; ++c) {
            const size_t j = e * C + c;
            out[c] = bits(w.numeric[j]);
            out[C + c] = bits(w.estimate[j]);
            out[2 * C + c] = bits(w.left[j]);
            out[3 * C + c] = bits(w.right[j]);
            out[4 * C + c] = w.verdict[j];
        }
        out[5 * C] = bits(w.step[e]);
    }
    buffer.back() = evaluations;
    sum_over_parts(part, buffer);
    for (size_t wi = 0; wi < works.size(); ++wi) {
        InputWork& w = works[wi];
        for (int64_t e = 0; e < w.n; ++e) {
            const int64_t* in = &buffer[size_t(offsets[wi] + e) * per];
            for (size_t c = 0; c < C; ++c) {
                const size_t j = size_t(e) * C + c;
                w.numeric[j] = value(in[c]);
                w.estimate[j] = value(in[C + c]);
                w.left[j] = value(in[2 * C + c]);
                w.right[j] = value(in[3 * C + c]);
                TG_CHECK(in[4 * C + c] >= 0 && in[4 * C + c] <= int64_t(ElementVerdict::fail),
                         "gradcheck: the merged report has verdict ", in[4 * C + c], " (parts overlapped?)");
                w.verdict[j] = uint8_t(in[4 * C + c]);
            }
            w.step[size_t(e)] = value(in[5 * C]);
        }
    }
    p.evaluations += buffer.back() - evaluations;
}

// The finite differences of a check whose analytic side is done: fast probes
// where they apply, every element of the rest, then the verdicts.
void run_checks(Problem& p, const GradcheckOptions& o, GradcheckResult& result)
{
    result.cotangents = p.C;
    result.atol = o.atol;
    result.rtol = o.rtol;
    measure_noise(p);
    for (double v : p.noise) result.noise = std::max(result.noise, v);

    // Fast mode first, where it applies; full mode for the rest and the escalated.
    std::vector<InputReport> reports(p.diff.size());
    std::vector<InputWork> works;
    for (size_t k = 0; k < p.diff.size(); ++k) {
        const Tensor& x = p.xs[p.diff[k]];
        InputReport& rep = reports[k];
        rep.name = p.names[p.diff[k]];
        rep.shape = x.shape();
        // Probe tolerances are fractions of atol: without one, only the full check can judge.
        bool fast = o.atol > 0 &&
                    (o.mode == GradcheckMode::fast || (o.mode == GradcheckMode::automatic && x.numel() > o.fast_above));
        if (fast) {
            if (run_probes(p, o, k, rep)) {
                rep.checked_by = CheckedBy::fast;
                for (double v : p.analytic[k]) rep.max_abs_analytic = std::max(rep.max_abs_analytic, std::abs(v));
                continue;
            }
            rep.checked_by = CheckedBy::fast_then_full;
            rep.rel_error = 0;
            rep.max_abs_numeric = 0;
        }
        works.emplace_back(k, x.numel(), p.C);
    }
    std::vector<int64_t> offsets{0};
    for (const InputWork& w : works) offsets.push_back(offsets.back() + w.n);
    const std::vector<int64_t> mine = elements_of_part(offsets.back(), o.partition);
    const int64_t before_elements = p.evaluations.load();
    parallel_for(int64_t(mine.size()), p.serial ? int64_t(mine.size()) : 1, [&](int64_t begin, int64_t end) {
        NoGradGuard off;
        std::unique_ptr<Evaluator> holder = p.make_evaluator();
        Evaluator& ev = *holder;
        size_t wi = size_t(std::upper_bound(offsets.begin(), offsets.end(), mine[size_t(begin)]) - offsets.begin()) - 1;
        for (int64_t j = begin; j < end; ++j) {
            const int64_t t = mine[size_t(j)];  // increasing
            while (t >= offsets[wi + 1]) ++wi;
            check_element(ev, p, o, works[wi], t - offsets[wi]);
        }
    });
    if (o.partition.parts > 1) {
        merge_parts(p, works, offsets, o.partition, p.evaluations.load() - before_elements);
        result.note += std::string(result.note.empty() ? "" : "; ") + "elements split over " +
                       std::to_string(o.partition.parts) + " processes";
    }
    // Tied kinks, jointly across the inputs (a group is a few evaluations).
    {
        NoGradGuard off;
        std::unique_ptr<Evaluator> ev = p.make_evaluator();
        check_ties(*ev, p, o, works);
    }
    for (const InputWork& w : works) {
        std::string note = std::move(reports[w.k].note);
        reports[w.k].note.clear();
        summarize(p, o, w, reports[w.k]);
        if (!note.empty()) reports[w.k].note = "escalated to full: " + note + (reports[w.k].note.empty() ? "" : "; " + reports[w.k].note);
    }

    const double vacuous_below = 1e-3 * o.atol;
    result.vacuous = true;
    for (InputReport& rep : reports) {
        rep.vacuous = rep.max_abs_analytic <= vacuous_below && rep.max_abs_numeric <= vacuous_below;
        result.vacuous = result.vacuous && rep.vacuous;
        if (int(rep.verdict) > int(result.verdict)) result.verdict = rep.verdict;
    }
    for (const StructuralCheck& s : result.structural)
        if (!s.passed) result.verdict = Verdict::fail;
    if (result.vacuous && o.vacuous_fails) result.verdict = Verdict::fail;
    result.inputs = std::move(reports);
    result.unchecked_allowed = o.allow_unchecked;
    result.evaluations = p.evaluations.load();
}

// Replays the recorded tape from the perturbed element on (engine/replay.hpp).
class ReplayEvaluator final : public Evaluator {
public:
    ReplayEvaluator(Problem& p, const ReplayTape& tape) : Evaluator(p), replayer_(tape) {}
    double* data(size_t k) override { return replayer_.leaf_data(k); }
    bool project_now(double* out) override
    {
        const Tensor* o = nullptr;
        if (!raises_not([&] { o = &replayer_.run(); })) return false;
        return project_output(*o, out);
    }
    bool at(size_t k, int64_t e, double v, double* out) override
    {
        const Tensor* o = nullptr;
        if (!raises_not([&] { o = &replayer_.run_element(k, e, v); })) return false;
        return project_output(*o, out);
    }

private:
    Replayer replayer_;
};

// Runs the whole closure again with the caller's parameters perturbed in
// place: for tapes with ops that cannot be replayed. One at a time.
class RerunEvaluator final : public Evaluator {
public:
    RerunEvaluator(Problem& p, const std::function<Tensor()>& fn) : Evaluator(p), fn_(fn) {}
    double* data(size_t k) override { return p_.xs[p_.diff[k]].data<double>(); }
    bool project_now(double* out) override
    {
        NoGradGuard off;
        Tensor o;
        if (!raises_not([&] { o = fn_(); })) return false;
        return project_output(o, out);
    }

private:
    const std::function<Tensor()>& fn_;
};

}  // namespace

const char* to_string(ElementVerdict v)
{
    switch (v) {
    case ElementVerdict::pass: return "ok";
    case ElementVerdict::kink: return "kink";
    case ElementVerdict::unchecked: return "unchecked";
    case ElementVerdict::fail: return "FAIL";
    }
    return "?";
}

const char* to_string(Verdict v)
{
    switch (v) {
    case Verdict::pass: return "pass";
    case Verdict::nondifferentiable: return "non-differentiable points";
    case Verdict::incomplete: return "INCOMPLETE (elements that could not be checked)";
    case Verdict::fail: return "FAIL";
    }
    return "?";
}

bool GradcheckResult::passed() const
{
    if (verdict == Verdict::fail) return false;
    if (verdict == Verdict::incomplete && !unchecked_allowed) return false;
    for (const GradcheckResult& r : second_order)
        if (!r.passed()) return false;
    return true;
}

std::vector<std::string> GradcheckResult::failed_inputs() const
{
    std::vector<std::string> names;
    for (const InputReport& r : inputs)
        if (r.verdict == Verdict::fail) names.push_back(r.name);
    return names;
}

const InputReport& GradcheckResult::input(const std::string& name) const
{
    for (const InputReport& r : inputs)
        if (r.name == name) return r;
    fail("gradcheck result: no input named '", name, "'");
}

GradcheckResult gradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options)
{
    GradcheckResult first = check(fn, inputs, options, "first order", "gradcheck");
    if (options.second_order && first.passed()) first.second_order.push_back(gradgradcheck(fn, inputs, options));
    return first;
}

GradcheckResult gradcheck_parameters(const std::function<Tensor()>& fn, const named_tensors& parameters,
                                     GradcheckOptions o)
{
    auto t0 = std::chrono::steady_clock::now();
    validate(o);
    TG_CHECK(!parameters.empty(), "gradcheck: no parameters to check");
    static const GradcheckFn no_fn;
    Problem p(no_fn);
    for (const auto& [name, t] : parameters) {
        TG_CHECK(t.defined() && t.is_leaf() && t.requires_grad(), "gradcheck: parameter '", name,
                 "' must be a leaf tensor that requires grad");
        TG_CHECK(t.dtype() == float64, "gradcheck: parameter '", name, "' is ", dtype_name(t.dtype()),
                 "; finite differences need float64 (convert the model with to(float64))");
        p.diff.push_back(p.xs.size());
        p.xs.push_back(t);
        p.names.push_back(name);
    }
    GradcheckResult result;
    result.what = "first order";
    result.mode = o.mode;
    result.seed = o.seed;
    result.reproduce = o.reproduce.empty() ? default_reproduce("gradcheck", o) : o.reproduce;

    Bytes before = bytes_of(p.xs);
    Tensor out;
    ReplayCapture capture;
    try {
        EnableGradGuard on;
        out = fn();
    } catch (const Error& e) {
        result.error = std::string("the function raised at the given parameters, so nothing was checked: ") + e.what();
        result.verdict = Verdict::fail;
        return result;
    }
    capture.stop();
    TG_CHECK(out.defined() && out.dtype() == float64, "gradcheck: the function returned ",
             out.defined() ? dtype_name(out.dtype()) : "an undefined tensor", "; expected float64");
    TG_CHECK(out.requires_grad(), "gradcheck: the output of shape ", out.shape(),
             " does not depend on any of the parameters");
    p.out0 = out.detach();
    ReplayTape tape(capture, out, p.xs);
    std::pair<std::string, std::string> forward_check;
    if (tape.complete()) {
        forward_check = {"every op's replay reproduces its recorded output", tape.verify()};
        p.make_evaluator = [&p, &tape] { return std::make_unique<ReplayEvaluator>(p, tape); };
        result.note = "partial replay: " + std::to_string(tape.entries()) + " tape entries";
    } else {
        forward_check = {"the function is deterministic", ""};
        p.serial = true;
        p.make_evaluator = [&p, &fn] { return std::make_unique<RerunEvaluator>(p, fn); };
        result.note = "no replay for " + tape.missing() + ": re-ran the whole function for every perturbation";
    }
    analyze(p, o, result, out, p.xs, forward_check, before);
    if (!tape.complete()) {  // a re-run must give the recorded output, or nothing is comparable
        NoGradGuard off;
        Tensor again = fn();
        std::string detail = again.defined() && again.shape() == out.shape() && again.dtype() == float64
                                 ? compare_forwards(out, again)
                                 : "the function returned a different shape or dtype when run again";
        for (StructuralCheck& c : result.structural)
            if (c.name == forward_check.first) {
                c.passed = detail.empty();
                c.detail = detail;
            }
    }
    if (result.error.empty())
        run_checks(p, o, result);
    else
        result.verdict = Verdict::fail;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
}

GradcheckResult gradgradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options)
{
    std::vector<size_t> diff;
    tensor_list xs;
    for (size_t i = 0; i < inputs.size(); ++i) {
        TG_CHECK(inputs[i].defined(), "gradgradcheck: input ", i, " is undefined");
        xs.push_back(float64_copy(inputs[i]));
        if (is_floating(inputs[i].dtype()) && inputs[i].requires_grad()) diff.push_back(i);
    }
    TG_CHECK(!diff.empty(), "gradgradcheck: no input requires grad");
    // A random upstream gradient u (an extra input) and weights w of the VJP.
    Tensor out0;
    {
        NoGradGuard off;
        out0 = call(fn, xs, "gradgradcheck");
    }
    Generator gen(options.seed + 1);
    Tensor u = randn(out0.shape(), float64, &gen);
    tensor_list w;
    for (size_t i : diff) w.push_back(randn(xs[i].shape(), float64, &gen));

    size_t n_inputs = xs.size();
    GradcheckFn vjp = [&fn, diff, w, n_inputs](const tensor_list& args) -> Tensor {
        // Differentiable (create_graph) only when the checker records this call.
        bool record_backward = grad_enabled();
        EnableGradGuard on;
        tensor_list x(args.begin(), args.begin() + long(n_inputs));
        const Tensor& cot = args[n_inputs];
        tensor_list wrt;
        for (size_t i : diff) {
            if (!x[i].requires_grad()) x[i] = x[i].detach().requires_grad_(true);
            wrt.push_back(x[i]);
        }
        Tensor out = fn(x);
        TG_CHECK(out.requires_grad(), "gradgradcheck: the output does not depend on any input that requires grad");
        tensor_list g = grad({out}, wrt, {cot}, GradOptions{.create_graph = record_backward, .retain_graph = std::nullopt});
        std::optional<NoGradGuard> off;
        if (!record_backward) off.emplace();
        Tensor total = sum(mul(g[0], w[0]));
        for (size_t k = 1; k < g.size(); ++k) total = add(total, sum(mul(g[k], w[k])));
        return total;
    };
    tensor_list args;
    for (size_t i = 0; i < xs.size(); ++i) {
        Tensor t = xs[i];
        if (std::find(diff.begin(), diff.end(), i) != diff.end()) t.requires_grad_(true);
        args.push_back(t);
    }
    args.push_back(u.requires_grad_(true));
    GradcheckOptions o = options;
    o.names.resize(n_inputs);
    for (size_t i = 0; i < n_inputs; ++i)
        if (o.names[i].empty()) o.names[i] = "x" + std::to_string(i);
    o.names.push_back("upstream gradient");
    return check(vjp, args, o, "second order (gradient of Σ <∂<f,u>/∂x, w>)", "gradgradcheck");
}

std::string GradcheckResult::to_string() const
{
    std::ostringstream os;
    const char* mode_name = mode == GradcheckMode::full ? "full" : mode == GradcheckMode::fast ? "fast" : "auto";
    os << "gradcheck " << what << ": " << tg::to_string(verdict) << (vacuous ? " (VACUOUS)" : "") << "\n"
       << "  float64, mode " << mode_name << ", seed " << seed << ", " << cotangents << " cotangent"
       << (cotangents == 1 ? "" : "s") << ", " << evaluations << " evaluations, " << fmt(seconds * 1e3, "%.3g")
       << " ms\n"
       << "  pass iff |analytic - numeric| <= " << fmt(atol, "%.0e") << " + " << fmt(rtol, "%.0e")
       << "·|numeric| + 2·err.est; output noise " << fmt(noise, "%.1e") << "\n";
    if (!note.empty()) os << "  " << note << "\n";
    if (!error.empty()) os << "  " << error << "\n";
    for (const InputReport& r : inputs) {
        os << "  " << r.name << " " << shape_str(r.shape) << ": " << tg::to_string(r.verdict)
           << "  rel error " << fmt(r.rel_error, "%.1e") << "  (";
        if (r.checked_by == CheckedBy::fast)
        {
            os << r.probes << " probes, worst at " << fmt(r.probe_ratio, "%.2g") << " of tolerance";
            if (r.probe_resolution > 0)
                os << "; noise limits a probe to " << fmt(r.probe_resolution, "%.1e") << ", full mode resolves finer";
        } else {
            os << r.elements << " elements";
            if (r.checked_by == CheckedBy::fast_then_full) os << ", probes escalated";
            if (r.failures) os << ", " << r.failures << " failing";
            if (r.kinks) os << ", " << r.kinks << " kinks";
            if (r.unchecked) os << ", " << r.unchecked << " unchecked";
        }
        os << ")";
        if (r.vacuous) os << "  zero gradient everywhere";
        os << "\n";
        if (!r.note.empty() && r.verdict != Verdict::pass) os << "    " << r.note << "\n";
        if (r.verdict == Verdict::pass || r.worst.empty()) continue;
        os << "    index          u      value     step       analytic        numeric  err.est  abs.err  rel.err  verdict\n";
        for (const ElementReport& e : r.worst) {
            if (r.verdict == Verdict::nondifferentiable && e.verdict == ElementVerdict::pass) continue;
            char line[320];
            std::snprintf(line, sizeof line, "    %-14s %-2d %9.4g %8.2g %14.7g %14.7g %8.1e %8.1e %8.1e  %s", shape_str(e.index).c_str(),
                          e.cotangent, e.value, e.step, e.analytic, e.numeric, e.error_estimate, e.abs_error,
                          e.rel_error, tg::to_string(e.verdict));
            os << line;
            if (e.verdict == ElementVerdict::kink ||
                (e.verdict == ElementVerdict::fail && std::isfinite(e.left) && std::abs(e.left - e.right) >
                    1e-3 * (std::abs(e.left) + std::abs(e.right))))
                os << " (left " << fmt(e.left, "%.6g") << ", right " << fmt(e.right, "%.6g") << ")";
            os << "\n";
        }
    }
    int ok = 0;
    for (const StructuralCheck& s : structural) {
        if (s.passed) ++ok;
        else os << "  structural FAIL: " << s.name << ": " << s.detail << "\n";
    }
    if (!structural.empty()) os << "  structural: " << ok << " of " << structural.size() << " checks pass\n";
    os << "  reproduce: " << reproduce << "\n";
    for (const GradcheckResult& r : second_order) os << r.to_string();
    return os.str();
}

std::string PrecisionReport::to_string() const
{
    return std::string("float32 vs float64: ") + (passed ? "pass" : "FAIL") + "  max rel error " +
           fmt(max_rel_error, "%.1e") + (message.empty() ? "" : "\n  " + message) + "\n";
}

PrecisionReport check_float32(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options)
{
    PrecisionReport rep;
    EnableGradGuard on;
    tensor_list x64, x32, w64, w32;
    std::vector<std::string> names;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const Tensor& t = inputs[i];
        Tensor a = float64_copy(t), b = is_floating(t.dtype()) ? a.to(float32) : a;
        if (is_floating(t.dtype()) && t.requires_grad()) {
            a.requires_grad_(true);
            b.requires_grad_(true);
            w64.push_back(a);
            w32.push_back(b);
            names.push_back(i < options.names.size() && !options.names[i].empty() ? options.names[i]
                                                                                   : std::string("x").append(std::to_string(i)));
        }
        x64.push_back(a);
        x32.push_back(b);
    }
    TG_CHECK(!w64.empty(), "check_float32: no input requires grad");
    Tensor o64 = call(fn, x64, "check_float32"), o32 = fn(x32);
    // float64 only from an op that converts (to): its gradients are still float32.
    TG_CHECK(o32.defined() && is_floating(o32.dtype()), "check_float32: float32 inputs gave a ",
             o32.defined() ? dtype_name(o32.dtype()) : "undefined", " output");
    TG_CHECK(o32.shape() == o64.shape(), "check_float32: output shape ", o32.shape(), " in float32, ", o64.shape(),
             " in float64");
    Generator gen(options.seed + 2);
    Tensor u = randn(o64.shape(), float64, &gen);
    tensor_list g64 = grad({o64}, w64, {u});
    tensor_list g32 = grad({o32}, w32, {u.to(o32.dtype())});
    auto compare = [&](const Tensor& ref, const Tensor& got, const std::string& what) {
        TG_CHECK(got.dtype() == float32, "check_float32: ", what, " is ", dtype_name(got.dtype()), " for float32 inputs");
        const double* r = ref.data<double>();
        const float* g = got.data<float>();
        double scale = 0;
        for (int64_t e = 0; e < ref.numel(); ++e) scale = std::max(scale, std::abs(r[e]));
        double unit = std::max(1.0, scale);
        for (int64_t e = 0; e < ref.numel(); ++e) {
            double err = std::abs(r[e] - double(g[e]));
            if (std::isnan(err) && std::isnan(r[e]) && std::isnan(g[e])) continue;
            rep.max_rel_error = std::max(rep.max_rel_error, err / unit);
            if (!(err <= options.float32_atol * unit + options.float32_rtol * std::abs(r[e])) && rep.passed) {
                rep.passed = false;
                rep.message = what + " " + index_str(e, ref.shape()) + ": float32 " + fmt(g[e], "%.7g") +
                              " vs float64 " + fmt(r[e], "%.7g");
            }
        }
    };
    compare(o64, o32.to(float32), "output");
    for (size_t k = 0; k < g64.size(); ++k) compare(g64[k], g32[k], "gradient of '" + names[k] + "'");
    return rep;
}

std::string SampleCheck::verdict() const
{
    if (!passed()) return "FAIL";
    if (first.vacuous || second.vacuous) return "warn: vacuous";
    if (first.verdict == Verdict::nondifferentiable || second.verdict == Verdict::nondifferentiable)
        return "pass (kinks)";
    return "pass";
}

std::string SampleCheck::to_string() const
{
    std::string s = op + " / " + sample + ": " + verdict() + "\n" + first.to_string();
    if (!second.inputs.empty()) s += second.to_string();
    return s + float32.to_string();
}

SampleCheck check_sample(const OpInfo& op, const OpSample& sample, uint64_t seed, GradcheckOptions options)
{
    auto t0 = std::chrono::steady_clock::now();
    SampleCheck sc;
    sc.op = op.name;
    sc.sample = sample.label;
    tensor_list inputs = make_inputs(sample, float64, seed);
    options.seed = seed;
    options.second_order = false;  // run separately below
    options.forward_ad = options.forward_ad || sample.second_order;  // built from the backward's own backward
    options.names.clear();
    for (const InputSpec& s : sample.inputs) options.names.push_back(s.name);
    if (options.reproduce.empty())
        options.reproduce = "gradcheck_all --op " + op.name + " --sample '" + sample.label + "' --seed " + std::to_string(seed);
    sc.first = gradcheck(sample.fn, inputs, options);
    if (sample.second_order)
        sc.second = gradgradcheck(sample.fn, inputs, options);
    else
        sc.second.what = "second order: not applicable";
    sc.float32 = check_float32(sample.fn, inputs, options);
    sc.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return sc;
}

}  // namespace tg
