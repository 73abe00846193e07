#include "engine/gradcheck.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/autograd.hpp"
#include "engine/parallel.hpp"
#include "engine/random.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduction.hpp"

namespace tg {

namespace {

// cbrt(machine epsilon of float64): balances truncation (h²) against rounding (ε/h).
const double base_step = std::cbrt(2.220446049250313e-16);

Tensor float64_copy(const Tensor& t)
{
    NoGradGuard off;
    Tensor c = is_floating(t.dtype()) ? t.detach().to(float64) : t.detach();
    return c.same(t) || c.impl().storage == t.impl().storage ? c.clone() : c;
}

// <fn(x), u> in double.
double project(const Tensor& out, const Tensor& u)
{
    const double* o = out.data<double>();
    const double* w = u.data<double>();
    double s = 0;
    for (int64_t i = 0; i < out.numel(); ++i) s += o[i] * w[i];
    return s;
}

Tensor evaluate(const GradcheckFn& fn, const tensor_list& xs, const char* who)
{
    Tensor out = fn(xs);
    TG_CHECK(out.defined(), who, ": the function returned an undefined tensor");
    TG_CHECK(out.dtype() == float64, who, ": the function returned ", dtype_name(out.dtype()),
             " for float64 inputs");
    return out;
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

// The core: analytic gradients against central differences for every element.
GradcheckResult check(const GradcheckFn& fn, const tensor_list& given, const GradcheckOptions& options,
                      const std::string& what)
{
    GradcheckResult result;
    result.what = what;
    result.base_step = base_step;
    result.seed = options.seed;

    tensor_list xs;
    std::vector<size_t> diff;  // inputs to perturb
    for (size_t i = 0; i < given.size(); ++i) {
        TG_CHECK(given[i].defined(), "gradcheck: input ", i, " is undefined");
        xs.push_back(float64_copy(given[i]));
        if (is_floating(given[i].dtype()) && given[i].requires_grad()) diff.push_back(i);
    }
    TG_CHECK(!diff.empty(), "gradcheck: no input requires grad; mark the inputs to check with requires_grad_()");

    // Analytic: uᵀJ through the tape.
    Tensor u;
    tensor_list analytic;
    {
        EnableGradGuard on;
        tensor_list leaves = xs;
        tensor_list wrt;
        for (size_t i : diff) {
            leaves[i] = xs[i].detach().requires_grad_(true);
            wrt.push_back(leaves[i]);
        }
        Tensor out = evaluate(fn, leaves, "gradcheck");
        Generator gen(options.seed);
        u = out.numel() == 1 ? ones_like(out) : randn(out.shape(), float64, &gen);
        TG_CHECK(out.requires_grad(), "gradcheck: the output does not depend on any input that requires grad");
        analytic = grad({out}, wrt, {u});
    }

    for (size_t k = 0; k < diff.size(); ++k) {
        size_t i = diff[k];
        const Tensor& x = xs[i];
        InputReport rep;
        rep.name = k < options.names.size() ? options.names[k]
                   : i < options.names.size() ? options.names[i] : "x" + std::to_string(i);
        rep.shape = x.shape();
        rep.checked = x.numel();
        std::vector<double> numeric(static_cast<size_t>(x.numel())), estimate(static_cast<size_t>(x.numel()));

        // Each chunk perturbs its own copy of the inputs.
        parallel_for(x.numel(), 1, [&](int64_t begin, int64_t end) {
            NoGradGuard off;
            tensor_list local = xs;
            local[i] = x.clone();
            double* p = local[i].data<double>();
            auto at = [&](int64_t e, double value) {
                double saved = p[e];
                p[e] = value;
                double v = project(evaluate(fn, local, "gradcheck"), u);
                p[e] = saved;
                return v;
            };
            for (int64_t e = begin; e < end; ++e) {
                double x0 = p[e];
                auto central = [&](double h) {
                    double up = x0 + h, down = x0 - h;  // the steps actually taken
                    return (at(e, up) - at(e, down)) / (up - down);
                };
                double h = base_step * std::max(1.0, std::abs(x0));
                double n1 = central(h);
                double a = analytic[k].data<double>()[e];
                if (std::abs(a - n1) <= options.atol + options.rtol * std::abs(n1)) {
                    numeric[size_t(e)] = n1;
                    continue;
                }
                // Outside the tolerance: a half step and Richardson's extrapolation
                // separate a truncation error from a wrong gradient.
                double n2 = central(h / 2);
                numeric[size_t(e)] = (4 * n2 - n1) / 3;
                estimate[size_t(e)] = std::abs(n1 - n2);
            }
        });

        const double* a = analytic[k].data<double>();
        const double* v = x.data<double>();
        double diff_norm = 0, n_norm = 0, a_norm = 0;
        std::vector<ElementReport> elements;
        for (int64_t e = 0; e < x.numel(); ++e) {
            double n = numeric[size_t(e)], an = a[e];
            double err = std::abs(an - n);
            diff_norm += err * err;
            n_norm += n * n;
            a_norm += an * an;
            rep.max_abs_analytic = std::max(rep.max_abs_analytic, std::abs(an));
            rep.max_abs_numeric = std::max(rep.max_abs_numeric, std::abs(n));
            bool ok = err <= options.atol + options.rtol * std::abs(n) && std::isfinite(an) == std::isfinite(n);
            if (!ok) rep.failures++;
            if (!ok || int(elements.size()) < options.report_worst || err > elements.back().abs_error) {
                ElementReport er;
                er.index = unravel(e, x.shape());
                er.value = v[e];
                er.analytic = an;
                er.numeric = n;
                er.error_estimate = estimate[size_t(e)];
                er.abs_error = err;
                er.rel_error = err / std::max(std::abs(n), 1e-300);
                er.passed = ok;
                elements.push_back(er);
                std::sort(elements.begin(), elements.end(), [](const ElementReport& l, const ElementReport& r) {
                    if (l.passed != r.passed) return !l.passed;
                    return l.abs_error > r.abs_error;
                });
                if (int(elements.size()) > options.report_worst) elements.resize(size_t(options.report_worst));
            }
        }
        double denom = std::sqrt(n_norm) + std::sqrt(a_norm);
        rep.rel_error = denom > 0 ? std::sqrt(diff_norm) / denom : 0.0;
        rep.vacuous = rep.max_abs_analytic < 1e-12 && rep.max_abs_numeric < 1e-12;
        rep.passed = rep.failures == 0 && rep.rel_error <= options.max_rel_error;
        rep.worst = std::move(elements);
        result.passed = result.passed && rep.passed;
        result.inputs.push_back(std::move(rep));
    }
    result.reproduce = "tg::gradcheck(fn, inputs, {.seed = " + std::to_string(options.seed) + "})";
    return result;
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options)
{
    GradcheckResult first = check(fn, inputs, options, "first order");
    if (!options.second_order || !first.passed) return first;
    GradcheckResult second = gradgradcheck(fn, inputs, options);
    return second.passed ? first : second;
}

GradcheckResult gradgradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options)
{
    std::vector<size_t> diff;
    tensor_list xs;
    for (size_t i = 0; i < inputs.size(); ++i) {
        xs.push_back(float64_copy(inputs[i]));
        if (is_floating(inputs[i].dtype()) && inputs[i].requires_grad()) diff.push_back(i);
    }
    TG_CHECK(!diff.empty(), "gradgradcheck: no input requires grad");
    // Fixed random cotangent u (an extra input) and weights w of the VJP.
    Generator gen(options.seed + 1);
    Tensor out0;
    {
        NoGradGuard off;
        out0 = evaluate(fn, xs, "gradgradcheck");
    }
    Tensor u = randn(out0.shape(), float64, &gen);
    tensor_list w;
    for (size_t i : diff) w.push_back(randn(xs[i].shape(), float64, &gen));

    size_t n_inputs = xs.size();
    GradcheckFn vjp = [&fn, diff, w, n_inputs](const tensor_list& args) -> Tensor {
        EnableGradGuard on;
        tensor_list x(args.begin(), args.begin() + long(n_inputs));
        const Tensor& cot = args[n_inputs];
        tensor_list wrt;
        for (size_t i : diff) {
            // Numeric evaluations pass plain copies: give them a place on the tape.
            if (!x[i].requires_grad()) x[i] = x[i].detach().requires_grad_(true);
            wrt.push_back(x[i]);
        }
        Tensor out = fn(x);
        tensor_list g = grad({out}, wrt, {cot}, GradOptions{.create_graph = true, .retain_graph = std::nullopt});
        Tensor total = scalar(0.0, float64);
        for (size_t k = 0; k < g.size(); ++k) total = add(total, sum(mul(g[k], w[k])));
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
    if (!o.names.empty()) {
        o.names.resize(n_inputs);
        o.names.push_back("upstream gradient");
    }
    GradcheckResult r = check(vjp, args, o, "second order (gradient of <uᵀJ, w>)");
    r.reproduce = "tg::gradgradcheck(fn, inputs, {.seed = " + std::to_string(options.seed) + "})";
    return r;
}

std::string GradcheckResult::to_string() const
{
    std::ostringstream os;
    os << "gradcheck " << what << ": " << (passed ? "pass" : "FAIL") << "  (float64, seed " << seed
       << ", step " << fmt(base_step, "%.3g") << "·max(1,|x|))\n";
    for (const InputReport& r : inputs) {
        os << "  " << r.name << " " << shape_str(r.shape) << ": " << (r.passed ? "pass" : "FAIL")
           << "  rel error " << fmt(r.rel_error, "%.2e") << "  (" << r.checked << " elements";
        if (r.failures) os << ", " << r.failures << " outside tolerance";
        os << ")";
        if (r.vacuous) os << "  VACUOUS: both gradients are ~0 everywhere";
        os << "\n";
        if (r.passed) continue;
        os << "      index              value      analytic       numeric   err.est   abs.err   rel.err\n";
        for (const ElementReport& e : r.worst) {
            char line[256];
            std::snprintf(line, sizeof line, "      %-16s %10.4g %13.6g %13.6g %9.2g %9.2g %9.2g  %s\n",
                          shape_str(e.index).c_str(), e.value, e.analytic, e.numeric, e.error_estimate,
                          e.abs_error, e.rel_error, e.passed ? "ok" : "FAIL");
            os << line;
        }
    }
    os << "  reproduce: " << reproduce << "\n";
    return os.str();
}

SampleCheck check_sample(const OpInfo& op, const OpSample& sample, uint64_t seed)
{
    auto t0 = std::chrono::steady_clock::now();
    SampleCheck sc;
    sc.op = op.name;
    sc.sample = sample.label;
    tensor_list inputs = make_inputs(sample, float64, seed);
    GradcheckOptions opts;
    opts.seed = seed;
    for (const InputSpec& s : sample.inputs) opts.names.push_back(s.name);
    std::string repro = "gradcheck_all --op " + op.name + " --sample '" + sample.label + "' --seed " + std::to_string(seed);
    sc.first = gradcheck(sample.fn, inputs, opts);
    sc.first.reproduce = repro;
    if (sample.second_order) {
        sc.second = gradgradcheck(sample.fn, inputs, opts);
        sc.second.reproduce = repro;
    } else {
        sc.second.what = "second order: not applicable";
    }

    // float32: the same gradients, computed in float32, against float64's.
    {
        EnableGradGuard on;
        tensor_list x64, x32, w64, w32;
        for (const Tensor& t : inputs) {
            Tensor a = t.detach(), b = is_floating(t.dtype()) ? t.detach().to(float32) : t.detach();
            if (t.requires_grad()) {
                a.requires_grad_(true);
                b.requires_grad_(true);
                w64.push_back(a);
                w32.push_back(b);
            }
            x64.push_back(a);
            x32.push_back(b);
        }
        Tensor o64 = sample.fn(x64), o32 = sample.fn(x32);
        Generator gen(seed + 2);
        Tensor u = randn(o64.shape(), float64, &gen);
        tensor_list g64 = grad({o64}, w64, {u});
        tensor_list g32 = grad({o32}, w32, {u.to(float32)});
        auto compare = [&](const Tensor& ref, const Tensor& got, const std::string& what) {
            std::vector<double> r = ref.to_vector(), g = got.to_vector();
            double scale = 0;
            for (double v : r) scale = std::max(scale, std::abs(v));
            for (size_t e = 0; e < r.size(); ++e) {
                double err = std::abs(r[e] - g[e]);
                double rel = err / std::max(scale, 1e-30);
                sc.float32_max_rel_error = std::max(sc.float32_max_rel_error, rel);
                if (err > 1e-4 * std::max(1.0, scale) + 1e-3 * std::abs(r[e]) && sc.float32_passed) {
                    sc.float32_passed = false;
                    sc.float32_message = what + " element " + shape_str(unravel(int64_t(e), ref.shape())) +
                                         ": float32 " + fmt(g[e], "%.7g") + " vs float64 " + fmt(r[e], "%.7g");
                }
            }
        };
        TG_CHECK(o32.dtype() == float32, op.name, ": float32 inputs gave a ", dtype_name(o32.dtype()), " output");
        compare(o64, o32, "output");
        for (size_t k = 0; k < g64.size(); ++k) {
            TG_CHECK(g32[k].dtype() == float32, op.name, ": float32 input got a ", dtype_name(g32[k].dtype()), " gradient");
            compare(g64[k], g32[k], "gradient of input " + std::to_string(k));
        }
    }
    sc.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return sc;
}

}  // namespace tg
