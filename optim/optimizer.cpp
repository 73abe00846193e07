#include "optim/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "engine/core/autograd.hpp"
#include "engine/core/parallel.hpp"

namespace tg::optim {

namespace {

constexpr int64_t grain = 1 << 14;

// The gradient of parameter `name`, checked against it; undefined if it has none.
Tensor grad_of(const char* op, const std::string& name, const Tensor& p)
{
    Tensor g = p.grad();
    if (!g.defined()) return g;
    TG_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype(), op, ": the gradient of '", name, "' is ",
             dtype_name(g.dtype()), " ", g.shape(), " but the parameter is ", dtype_name(p.dtype()), " ",
             p.shape());
    return g;
}

}  // namespace

// --- Optimizer ---------------------------------------------------------------------------

Optimizer::Optimizer(const char* name, named_tensors params, double lr)
    : name_(name), params_(std::move(params)), lr_(0), state_(params_.size())
{
    set_lr(lr);
    std::set<std::string> names;
    std::set<const TensorImpl*> tensors;
    for (const auto& [pname, p] : params_) {
        TG_CHECK(!pname.empty(), name_, ": a parameter has an empty name");
        TG_CHECK(p.defined(), name_, ": parameter '", pname, "' is an undefined tensor");
        TG_CHECK(is_floating(p.dtype()), name_, ": parameter '", pname, "' is ", dtype_name(p.dtype()),
                 " ", p.shape(), "; only float32 and float64 tensors can be optimised");
        TG_CHECK(names.insert(pname).second, name_, ": two parameters are named '", pname, "'");
        TG_CHECK(tensors.insert(p.impl_ptr().get()).second, name_, ": parameter '", pname,
                 "' is the same tensor as an earlier one");
    }
}

void Optimizer::set_lr(double lr)
{
    TG_CHECK(std::isfinite(lr) && lr >= 0, name_, ": invalid learning rate ", lr);
    lr_ = lr;
}

void Optimizer::zero_grad()
{
    for (auto& [pname, p] : params_) p.zero_grad();
}

int64_t Optimizer::advance_step(size_t i)
{
    auto& st = state_[i];
    auto it = st.find("step");
    if (it == st.end()) it = st.emplace("step", zeros({}, int64)).first;
    int64_t* s = it->second.data<int64_t>();
    return ++*s;
}

named_tensors Optimizer::state() const
{
    named_tensors out;
    for (size_t i = 0; i < params_.size(); ++i)
        for (const auto& [buf, t] : state_[i]) out.emplace_back(params_[i].first + "." + buf, t);
    return out;
}

namespace {
// A parameter has state only after its first update, which counts as step 1.
std::string step_problem(const Tensor& step)
{
    const int64_t s = step.data<int64_t>()[0];
    return s >= 1 ? std::string() : "is " + std::to_string(s) + ", but a stored step count is at least 1";
}

// "holds nan at element 3": the first element for which bad(value) holds.
template <class Bad>
std::string first_bad(const Tensor& t, const char* what, Bad bad)
{
    std::string found;
    TG_DISPATCH_FLOATING(t.dtype(), "load_state", [&] {
        const scalar_t* p = t.data<scalar_t>();
        for (int64_t i = 0; i < t.numel(); ++i)
            if (bad(double(p[i]))) {
                std::ostringstream os;
                os << "holds " << double(p[i]) << " at element " << i << ", " << what;
                found = os.str();
                return;
            }
    });
    return found;
}
}  // namespace

std::string Optimizer::buffer_problem(const std::string&, const Tensor& t) const
{
    return first_bad(t, "and resuming would make the parameter non-finite", [](double v) { return !std::isfinite(v); });
}

void Optimizer::load_state(const named_tensors& state)
{
    std::vector<std::string> buffers = buffer_names();
    buffers.push_back("step");
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < params_.size(); ++i) index[params_[i].first] = i;

    std::vector<std::string> problems;
    std::vector<std::map<std::string, Tensor>> next(params_.size());
    for (const auto& [name, t] : state) {
        // Split "<parameter>.<buffer>" at a known buffer name (parameter names hold dots too).
        bool matched = false;
        for (const std::string& buf : buffers) {
            if (name.size() <= buf.size() + 1 || name.compare(name.size() - buf.size(), buf.size(), buf) != 0 ||
                name[name.size() - buf.size() - 1] != '.')
                continue;
            std::string pname = name.substr(0, name.size() - buf.size() - 1);
            auto it = index.find(pname);
            if (it == index.end()) continue;
            matched = true;
            const Tensor& p = params_[it->second].second;
            shape_type want_shape = buf == "step" ? shape_type{} : p.shape();
            Dtype want_dtype = buf == "step" ? int64 : p.dtype();
            if (!t.defined())
                problems.push_back("'" + name + "' is an undefined tensor");
            else if (t.shape() != want_shape || t.dtype() != want_dtype)
                problems.push_back("'" + name + "' is " + dtype_name(t.dtype()) + " " + shape_str(t.shape()) +
                                   " but should be " + dtype_name(want_dtype) + " " + shape_str(want_shape) +
                                   (buf == "step" ? "" : " like parameter '" + pname + "'"));
            else if (std::string bad = buf == "step" ? step_problem(t) : buffer_problem(buf, t); !bad.empty())
                problems.push_back("'" + name + "' " + bad);
            else if (!next[it->second].emplace(buf, t.detach().clone()).second)
                problems.push_back("'" + name + "' appears twice");
            break;
        }
        if (!matched) {
            std::string known = join(buffers, ", ");
            problems.push_back("'" + name + "' is not <parameter>.<buffer> for a parameter of this optimizer and a " +
                               std::string(name_) + " buffer (" + known + ")");
        }
    }
    // A parameter has all its buffers or none (it was never updated).
    for (size_t i = 0; i < params_.size(); ++i) {
        if (next[i].empty()) continue;
        for (const std::string& buf : buffers)
            if (!next[i].count(buf))
                problems.push_back("parameter '" + params_[i].first + "' has state but no '" + params_[i].first +
                                   "." + buf + "'");
    }
    if (!problems.empty()) {
        fail(name_, ".load_state: ", list_problems(problems));
    }
    state_ = std::move(next);
}

void Optimizer::save_to(Checkpoint& ckpt, const std::string& prefix) const
{
    ckpt.set_double(prefix + "lr", lr_);
    ckpt.set_tensors(prefix + "state.", state());
}

void Optimizer::load_from(const Checkpoint& ckpt, const std::string& prefix)
{
    double lr = ckpt.get_double(prefix + "lr");
    load_state(ckpt.tensors(prefix + "state."));
    set_lr(lr);
}

// --- SGD --------------------------------------------------------------------------------------

SGD::SGD(named_tensors params, SgdOptions options) : Optimizer("SGD", std::move(params), options.lr), options_(options)
{
    TG_CHECK(std::isfinite(options.momentum) && options.momentum >= 0, "SGD: invalid momentum ", options.momentum);
    TG_CHECK(std::isfinite(options.dampening), "SGD: invalid dampening ", options.dampening);
    TG_CHECK(std::isfinite(options.weight_decay) && options.weight_decay >= 0, "SGD: invalid weight_decay ",
             options.weight_decay);
    TG_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
             "SGD: Nesterov momentum needs momentum > 0 and dampening 0, got momentum ", options.momentum,
             " and dampening ", options.dampening);
}

std::vector<std::string> SGD::buffer_names() const
{
    if (options_.momentum == 0) return {};
    return {"momentum_buffer"};
}

void SGD::step()
{
    NoGradGuard no_grad;
    const double lr = this->lr();
    const SgdOptions& o = options_;
    for (size_t i = 0; i < params().size(); ++i) {
        const auto& [pname, param] = params()[i];
        Tensor g = grad_of("SGD.step", pname, param);
        if (!g.defined()) continue;
        Tensor p = param;
        advance_step(i);
        auto& st = state_of(i);
        bool first = false;
        Tensor buf;
        if (o.momentum != 0) {
            auto it = st.find("momentum_buffer");
            first = it == st.end();
            if (first) it = st.emplace("momentum_buffer", Tensor::empty(p.shape(), p.dtype())).first;
            buf = it->second;
        }
        TG_DISPATCH_FLOATING(p.dtype(), "SGD.step", [&] {
            using T = scalar_t;
            T* pp = p.data<T>();
            const T* gp = g.data<T>();
            T* bp = buf.defined() ? buf.data<T>() : nullptr;
            const T wd = T(o.weight_decay), mom = T(o.momentum), keep = T(1 - o.dampening), step = T(lr);
            // The options as template flags: with tests in the loop it stayed scalar.
            auto update = [&]<bool Wd, bool Buf, bool First, bool Nesterov>() {
                parallel_for(p.numel(), grain, [&](int64_t begin, int64_t end) {
                    for (int64_t k = begin; k < end; ++k) {
                        T d = gp[k];
                        if constexpr (Wd) d += wd * pp[k];
                        if constexpr (Buf) {
                            const T b = First ? d : mom * bp[k] + keep * d;
                            bp[k] = b;
                            d = Nesterov ? d + mom * b : b;
                        }
                        pp[k] -= step * d;
                    }
                });
            };
            auto with_buf = [&]<bool Wd>() {
                if (!bp) update.template operator()<Wd, false, false, false>();
                else if (first && o.nesterov) update.template operator()<Wd, true, true, true>();
                else if (first) update.template operator()<Wd, true, true, false>();
                else if (o.nesterov) update.template operator()<Wd, true, false, true>();
                else update.template operator()<Wd, true, false, false>();
            };
            if (wd != 0) with_buf.template operator()<true>();
            else with_buf.template operator()<false>();
        });
        p.bump_version();
        if (buf.defined()) buf.bump_version();
    }
}

// --- Adam, AdamW --------------------------------------------------------------------------------

Adam::Adam(named_tensors params, AdamOptions options) : Adam("Adam", std::move(params), options, false) {}

Adam::Adam(const char* name, named_tensors params, AdamOptions options, bool decoupled)
    : Optimizer(name, std::move(params), options.lr), options_(options), decoupled_(decoupled)
{
    TG_CHECK(options.beta1 >= 0 && options.beta1 < 1, name, ": invalid beta1 ", options.beta1, " (must be in [0, 1))");
    TG_CHECK(options.beta2 >= 0 && options.beta2 < 1, name, ": invalid beta2 ", options.beta2, " (must be in [0, 1))");
    TG_CHECK(std::isfinite(options.eps) && options.eps >= 0, name, ": invalid eps ", options.eps);
    TG_CHECK(std::isfinite(options.weight_decay) && options.weight_decay >= 0, name, ": invalid weight_decay ",
             options.weight_decay);
}

AdamW::AdamW(named_tensors params, AdamWOptions o)
    : Adam("AdamW", std::move(params), AdamOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.amsgrad}, true)
{
}

std::vector<std::string> Adam::buffer_names() const
{
    if (options_.amsgrad) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    return {"exp_avg", "exp_avg_sq"};
}

std::string Adam::buffer_problem(const std::string& buffer, const Tensor& t) const
{
    if (buffer == "exp_avg") return Optimizer::buffer_problem(buffer, t);
    // A second moment is an average of squares: negative or NaN, the square
    // root of the next step is NaN.
    return first_bad(t, "but a second moment is a finite number >= 0", [](double v) { return !(v >= 0) || std::isinf(v); });
}

void Adam::step()
{
    NoGradGuard no_grad;
    const double lr = this->lr();
    const AdamOptions& o = options_;
    for (size_t i = 0; i < params().size(); ++i) {
        const auto& [pname, param] = params()[i];
        Tensor g = grad_of(name(), pname, param);
        if (!g.defined()) continue;
        Tensor p = param;
        const int64_t t = advance_step(i);
        auto& st = state_of(i);
        auto buffer = [&](const char* b) {
            auto it = st.find(b);
            if (it == st.end()) it = st.emplace(b, zeros(p.shape(), p.dtype())).first;
            return it->second;
        };
        Tensor m = buffer("exp_avg"), v = buffer("exp_avg_sq");
        Tensor vmax = o.amsgrad ? buffer("max_exp_avg_sq") : Tensor();
        const double bias1 = 1 - std::pow(o.beta1, double(t));
        const double bias2_sqrt = std::sqrt(1 - std::pow(o.beta2, double(t)));
        TG_DISPATCH_FLOATING(p.dtype(), name(), [&] {
            using T = scalar_t;
            T* pp = p.data<T>();
            const T* gp = g.data<T>();
            T* mp = m.data<T>();
            T* vp = v.data<T>();
            T* xp = vmax.defined() ? vmax.data<T>() : nullptr;
            const T b1 = T(o.beta1), b2 = T(o.beta2), c1 = T(1 - o.beta1), c2 = T(1 - o.beta2);
            const T l2 = decoupled_ ? T(0) : T(o.weight_decay);
            const T shrink = T(1 - lr * o.weight_decay);
            const T step_size = T(lr / bias1), bc2 = T(bias2_sqrt), eps = T(o.eps);
            const bool decay = decoupled_ && o.weight_decay != 0;
            parallel_for(p.numel(), grain, [&](int64_t begin, int64_t end) {
                for (int64_t k = begin; k < end; ++k) {
                    if (decay) pp[k] *= shrink;
                    T d = gp[k];
                    if (l2 != 0) d += l2 * pp[k];
                    mp[k] = b1 * mp[k] + c1 * d;
                    vp[k] = b2 * vp[k] + c2 * d * d;
                    T second = vp[k];
                    if (xp) second = xp[k] = std::max(xp[k], vp[k]);
                    pp[k] -= step_size * (mp[k] / (std::sqrt(second) / bc2 + eps));
                }
            });
        });
        p.bump_version();
        m.bump_version();
        v.bump_version();
        if (vmax.defined()) vmax.bump_version();
    }
}

// --- clipping ------------------------------------------------------------------------------------

double clip_grad_norm_(const tensor_list& params, double max_norm, double norm_type)
{
    TG_CHECK(norm_type >= 1 || std::isinf(norm_type), "clip_grad_norm_: norm_type ", norm_type,
             " is not a norm (must be >= 1 or infinity)");
    TG_CHECK(max_norm >= 0, "clip_grad_norm_: invalid max_norm ", max_norm);
    std::vector<Tensor> grads;
    for (const Tensor& p : params)
        if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
    if (grads.empty()) return 0.0;
    const bool inf = std::isinf(norm_type);
    double total = 0;
    for (const Tensor& g : grads) {
        TG_DISPATCH_FLOATING(g.dtype(), "clip_grad_norm_", [&] {
            const scalar_t* q = g.data<scalar_t>();
            for (int64_t k = 0; k < g.numel(); ++k) {
                double a = std::abs(double(q[k]));
                if (inf)
                    total = std::max(total, a);
                else if (norm_type == 2)
                    total += a * a;
                else if (norm_type == 1)
                    total += a;
                else
                    total += std::pow(a, norm_type);
            }
        });
    }
    if (!inf && norm_type != 1) total = norm_type == 2 ? std::sqrt(total) : std::pow(total, 1 / norm_type);
    // As PyTorch: a non-finite norm makes the scale non-finite too, which
    // shows up in the parameters rather than passing silently.
    const double coef = max_norm / (total + 1e-6);
    if (!(coef >= 1)) {
        NoGradGuard no_grad;
        for (Tensor& g : grads) g.mul_(coef);
    }
    return total;
}

double clip_grad_norm_(const named_tensors& params, double max_norm, double norm_type)
{
    tensor_list list;
    for (const auto& [name, p] : params) list.push_back(p);
    return clip_grad_norm_(list, max_norm, norm_type);
}

}  // namespace tg::optim
