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

std::string num(double v)
{
    std::ostringstream os;
    os << v;
    return os.str();
}

// " in group 1" when there is more than one group to tell apart.
std::string in_group(size_t group, size_t groups)
{
    return groups > 1 ? " in group " + std::to_string(group) : std::string();
}

double value_of(const named_values& values, const std::string& name)
{
    for (const auto& [n, v] : values)
        if (n == name) return v;
    return 0;
}

// --- the hyperparameters of each kind of options, by name ---------------------------------

struct Field {
    const char* name;
    bool flag;  // a bool option, stored as 0 or 1
};

template <class O> struct Traits;

template <> struct Traits<SgdOptions> {
    static std::vector<Field> fields()
    {
        return {{"lr", false}, {"momentum", false}, {"dampening", false}, {"weight_decay", false}, {"nesterov", true}};
    }
    static named_values named(const SgdOptions& o)
    {
        return {{"lr", o.lr},
                {"momentum", o.momentum},
                {"dampening", o.dampening},
                {"weight_decay", o.weight_decay},
                {"nesterov", o.nesterov ? 1.0 : 0.0}};
    }
    static void assign(SgdOptions& o, const std::string& name, double v)
    {
        if (name == "lr") o.lr = v;
        else if (name == "momentum") o.momentum = v;
        else if (name == "dampening") o.dampening = v;
        else if (name == "weight_decay") o.weight_decay = v;
        else if (name == "nesterov") o.nesterov = v != 0;
    }
    static SgdOptions resolve(const SgdGroupOptions& g, SgdOptions d)
    {
        if (g.lr) d.lr = *g.lr;
        if (g.momentum) d.momentum = *g.momentum;
        if (g.dampening) d.dampening = *g.dampening;
        if (g.nesterov) d.nesterov = *g.nesterov;
        if (g.weight_decay) d.weight_decay = *g.weight_decay;
        return d;
    }
    static void problems(const SgdOptions& o, std::vector<std::string>& out)
    {
        if (!(std::isfinite(o.lr) && o.lr >= 0)) out.push_back("invalid learning rate " + num(o.lr));
        if (!(std::isfinite(o.momentum) && o.momentum >= 0)) out.push_back("invalid momentum " + num(o.momentum));
        if (!std::isfinite(o.dampening)) out.push_back("invalid dampening " + num(o.dampening));
        if (!(std::isfinite(o.weight_decay) && o.weight_decay >= 0))
            out.push_back("invalid weight_decay " + num(o.weight_decay));
        if (o.nesterov && !(o.momentum > 0 && o.dampening == 0))
            out.push_back("Nesterov momentum needs momentum > 0 and dampening 0, got momentum " + num(o.momentum) +
                          " and dampening " + num(o.dampening));
    }
};

template <> struct Traits<AdamOptions> {
    static std::vector<Field> fields()
    {
        return {{"lr", false}, {"beta1", false}, {"beta2", false}, {"eps", false}, {"weight_decay", false},
                {"amsgrad", true}};
    }
    static named_values named(const AdamOptions& o)
    {
        return {{"lr", o.lr},   {"beta1", o.beta1},           {"beta2", o.beta2},
                {"eps", o.eps}, {"weight_decay", o.weight_decay}, {"amsgrad", o.amsgrad ? 1.0 : 0.0}};
    }
    static void assign(AdamOptions& o, const std::string& name, double v)
    {
        if (name == "lr") o.lr = v;
        else if (name == "beta1") o.beta1 = v;
        else if (name == "beta2") o.beta2 = v;
        else if (name == "eps") o.eps = v;
        else if (name == "weight_decay") o.weight_decay = v;
        else if (name == "amsgrad") o.amsgrad = v != 0;
    }
    static AdamOptions resolve(const AdamGroupOptions& g, AdamOptions d)
    {
        if (g.lr) d.lr = *g.lr;
        if (g.beta1) d.beta1 = *g.beta1;
        if (g.beta2) d.beta2 = *g.beta2;
        if (g.eps) d.eps = *g.eps;
        if (g.weight_decay) d.weight_decay = *g.weight_decay;
        if (g.amsgrad) d.amsgrad = *g.amsgrad;
        return d;
    }
    static void problems(const AdamOptions& o, std::vector<std::string>& out)
    {
        if (!(std::isfinite(o.lr) && o.lr >= 0)) out.push_back("invalid learning rate " + num(o.lr));
        if (!(o.beta1 >= 0 && o.beta1 < 1)) out.push_back("invalid beta1 " + num(o.beta1) + " (must be in [0, 1))");
        if (!(o.beta2 >= 0 && o.beta2 < 1)) out.push_back("invalid beta2 " + num(o.beta2) + " (must be in [0, 1))");
        if (!(std::isfinite(o.eps) && o.eps >= 0)) out.push_back("invalid eps " + num(o.eps));
        if (!(std::isfinite(o.weight_decay) && o.weight_decay >= 0))
            out.push_back("invalid weight_decay " + num(o.weight_decay));
    }
};

template <class O> std::string field_list()
{
    std::vector<std::string> names;
    for (const Field& f : Traits<O>::fields()) names.push_back(f.name);
    return join(names, ", ");
}

}  // namespace

// --- Optimizer ---------------------------------------------------------------------------

size_t Optimizer::add_group(const named_tensors& params)
{
    const size_t group = groups_.size();
    // Checked before anything changes, against every earlier group.
    std::map<std::string, size_t> names;
    std::map<const TensorImpl*, std::pair<std::string, size_t>> tensors;
    for (size_t g = 0; g < groups_.size(); ++g)
        for (const auto& [pname, p] : groups_[g].params) {
            names[pname] = g;
            tensors[p.impl_ptr().get()] = {pname, g};
        }
    for (const auto& [pname, p] : params) {
        TG_CHECK(!pname.empty(), name_, ": a parameter has an empty name");
        TG_CHECK(pname.find('\0') == std::string::npos, name_, ": parameter ", quote(pname), " has a NUL in its name");
        TG_CHECK(p.defined(), name_, ": parameter '", pname, "' is an undefined tensor");
        TG_CHECK(is_floating(p.dtype()), name_, ": parameter '", pname, "' is ", dtype_name(p.dtype()), " ", p.shape(),
                 "; only float32 and float64 tensors can be optimised");
        auto [at, fresh] = names.emplace(pname, group);
        TG_CHECK(fresh, name_, ": two parameters are named '", pname, "'",
                 at->second == group ? std::string() : " (in groups " + std::to_string(at->second) + " and " +
                                                            std::to_string(group) + ")");
        auto [same, new_tensor] = tensors.emplace(p.impl_ptr().get(), std::make_pair(pname, group));
        TG_CHECK(new_tensor, name_, ": parameter '", pname, "'", in_group(group, group + 1), " is the same tensor as '",
                 same->second.first, "'", in_group(same->second.second, group + 1),
                 same->second.second == group ? "" : "; a parameter can be in one group only");
    }
    Group grp;
    grp.params = params;
    for (const auto& entry : params) {
        grp.indices.push_back(params_.size());
        params_.push_back(entry);
        state_.emplace_back();
    }
    groups_.push_back(std::move(grp));
    return group;
}

void Optimizer::check_group(const char* what, size_t group) const
{
    TG_CHECK(group < groups_.size(), name_, ".", what, ": group ", group, " does not exist (the optimizer has ",
             groups_.size(), " group", groups_.size() == 1 ? "" : "s", ")");
}

const named_tensors& Optimizer::group_params(size_t group) const
{
    check_group("group_params", group);
    return groups_[group].params;
}

double Optimizer::hyperparameter(size_t group, const std::string& name) const
{
    check_group("hyperparameter", group);
    named_values values = group_options(group);
    std::vector<std::string> names;
    for (const auto& [n, v] : values) {
        if (n == name) return v;
        names.push_back(n);
    }
    fail(name_, ": no hyperparameter ", quote(name), " (", name_, " has ", join(names, ", "), ")");
}

void Optimizer::set_hyperparameter(size_t group, const std::string& name, double value)
{
    check_group("set_hyperparameter", group);
    named_values values = group_options(group);
    bool found = false;
    std::vector<std::string> names;
    for (auto& [n, v] : values) {
        names.push_back(n);
        if (n == name) v = value, found = true;
    }
    TG_CHECK(found, name_, ": no hyperparameter ", quote(name), " (", name_, " has ", join(names, ", "), ")");
    set_group_options(group, values);
}

double Optimizer::lr() const
{
    TG_CHECK(!groups_.empty(), name_, ".lr: the optimizer has no parameter groups");
    const double first = lr(0);
    for (size_t g = 1; g < groups_.size(); ++g)
        TG_CHECK(lr(g) == first, name_, ".lr: the groups have different rates (group 0 ", first, ", group ", g, " ",
                 lr(g), "); ask lr(group)");
    return first;
}

void Optimizer::set_lr(double lr)
{
    // Every group checked before any changes.
    for (size_t g = 0; g < groups_.size(); ++g) {
        named_values values = group_options(g);
        for (auto& [n, v] : values)
            if (n == "lr") v = lr;
        std::string bad = check_group_options(g, values);
        TG_CHECK(bad.empty(), name_, ": ", bad, in_group(g, groups_.size()));
    }
    for (size_t g = 0; g < groups_.size(); ++g) set_hyperparameter(g, "lr", lr);
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
    TG_CHECK(*s < INT64_MAX, name_, ".step: the step count of '", params_[i].first, "' is at its maximum");
    return ++*s;
}

named_tensors Optimizer::state() const
{
    named_tensors out;
    for (size_t i = 0; i < params_.size(); ++i)
        for (const auto& [buf, t] : state_[i]) out.emplace_back(params_[i].first + "." + buf, t);
    return out;
}

OptimizerState Optimizer::state_dict() const
{
    OptimizerState sd;
    for (size_t g = 0; g < groups_.size(); ++g) {
        OptimizerState::Group grp;
        for (const auto& [pname, p] : groups_[g].params) grp.params.push_back(pname);
        grp.options = group_options(g);
        sd.groups.push_back(std::move(grp));
    }
    sd.state = state();
    return sd;
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

std::vector<std::map<std::string, Tensor>> Optimizer::checked_state(const named_tensors& state,
                                                                    const std::vector<named_values>& options,
                                                                    std::vector<std::string>& problems) const
{
    std::vector<std::string> buffers = known_buffers();
    buffers.push_back("step");
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < params_.size(); ++i) index[params_[i].first] = i;

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
                problems.push_back(quote(name) + " is an undefined tensor");
            else if (t.shape() != want_shape || t.dtype() != want_dtype)
                problems.push_back(quote(name) + " is " + dtype_name(t.dtype()) + " " + shape_str(t.shape()) +
                                   " but should be " + dtype_name(want_dtype) + " " + shape_str(want_shape) +
                                   (buf == "step" ? "" : " like parameter '" + pname + "'"));
            else if (std::string bad = buf == "step" ? step_problem(t) : buffer_problem(buf, t); !bad.empty())
                problems.push_back(quote(name) + " " + bad);
            else if (!next[it->second].emplace(buf, t.detach().clone()).second)
                problems.push_back(quote(name) + " appears twice");
            break;
        }
        if (!matched) {
            std::string known = join(buffers, ", ");
            problems.push_back(quote(name) + " is not <parameter>.<buffer> for a parameter of this optimizer and a " +
                               std::string(name_) + " buffer (" + known + ")");
        }
    }
    // A parameter has all the buffers its group's options need, or none (it was never updated).
    for (size_t g = 0; g < groups_.size(); ++g) {
        std::vector<std::string> required = required_buffers(options[g]);
        required.push_back("step");
        for (size_t i : groups_[g].indices) {
            if (next[i].empty()) continue;
            for (const std::string& buf : required)
                if (!next[i].count(buf))
                    problems.push_back("parameter '" + params_[i].first + "' has state but no '" + params_[i].first +
                                       "." + buf + "'");
        }
    }
    return next;
}

void Optimizer::load_state(const named_tensors& state)
{
    std::vector<named_values> options;
    for (size_t g = 0; g < groups_.size(); ++g) options.push_back(group_options(g));
    std::vector<std::string> problems;
    auto next = checked_state(state, options, problems);
    if (!problems.empty()) fail(name_, ".load_state: ", list_problems(problems));
    state_ = std::move(next);
}

void Optimizer::load_state_dict(const OptimizerState& sd) { load_checked(sd, std::string(name_) + ".load_state_dict"); }

void Optimizer::load_checked(const OptimizerState& sd, const std::string& where)
{
    TG_CHECK(sd.groups.size() == groups_.size(), where, ": the state has ", sd.groups.size(), " parameter group",
             sd.groups.size() == 1 ? "" : "s", " but this optimizer has ", groups_.size());
    std::vector<std::string> problems;
    for (size_t g = 0; g < groups_.size(); ++g) {
        const auto& want = groups_[g].params;
        const auto& got = sd.groups[g].params;
        const std::string grp = "group " + std::to_string(g);
        if (got.size() != want.size()) {
            problems.push_back(grp + " has " + std::to_string(got.size()) + " parameters in the state but " +
                               std::to_string(want.size()) + " in this optimizer");
            continue;
        }
        for (size_t k = 0; k < want.size(); ++k)
            if (got[k] != want[k].first)
                problems.push_back(grp + "'s parameter " + std::to_string(k) + " is " + quote(got[k]) +
                                   " in the state but " + quote(want[k].first) + " in this optimizer");
        if (std::string bad = check_group_options(g, sd.groups[g].options); !bad.empty())
            problems.push_back(grp + ": " + bad);
    }
    // The buffers are checked against the options they will be used with,
    // unless those are already wrong.
    std::vector<named_values> options;
    for (size_t g = 0; g < groups_.size(); ++g)
        options.push_back(problems.empty() ? sd.groups[g].options : group_options(g));
    auto next = checked_state(sd.state, options, problems);
    if (!problems.empty()) fail(where, ": ", list_problems(problems));
    for (size_t g = 0; g < groups_.size(); ++g) set_group_options(g, sd.groups[g].options);
    state_ = std::move(next);
}

void Optimizer::save_to(Checkpoint& ckpt, const std::string& prefix) const
{
    ckpt.set_int(prefix + "groups", int64_t(groups_.size()));
    for (size_t g = 0; g < groups_.size(); ++g) {
        const std::string grp = prefix + "group." + std::to_string(g) + ".";
        std::vector<uint8_t> names;
        for (const auto& [pname, p] : groups_[g].params) {
            names.insert(names.end(), pname.begin(), pname.end());
            names.push_back(0);
        }
        ckpt.set_bytes(grp + "params", std::move(names));
        for (const auto& [n, v] : group_options(g)) ckpt.set_double(grp + n, v);
    }
    ckpt.set_tensors(prefix + "state.", state());
}

void Optimizer::load_from(const Checkpoint& ckpt, const std::string& prefix)
{
    const std::string where = std::string(name_) + ".load_from: " +
                              (ckpt.source().empty() ? std::string("checkpoint") : "checkpoint " + quote(ckpt.source()));
    if (!ckpt.contains(prefix + "groups")) {
        TG_CHECK(ckpt.contains(prefix + "lr"), where, " has no optimizer under ", quote(prefix), " (no ",
                 quote(prefix + "groups"), ")");
        // Written before parameter groups: one rate and the state.
        TG_CHECK(groups_.size() == 1, where, " was written before parameter groups (one rate, ", quote(prefix + "lr"),
                 "); it loads into an optimizer of one group, this one has ", groups_.size());
        OptimizerState sd = state_dict();
        for (auto& [n, v] : sd.groups[0].options)
            if (n == "lr") v = ckpt.get_double(prefix + "lr");
        sd.state = ckpt.tensors(prefix + "state.");
        load_checked(sd, where);
        return;
    }
    const int64_t count = ckpt.get_int(prefix + "groups");
    TG_CHECK(count == int64_t(groups_.size()), where, " holds ", count, " parameter groups but this optimizer has ",
             groups_.size());
    OptimizerState sd;
    sd.groups.resize(groups_.size());
    std::vector<std::string> problems;
    const std::string group_prefix = prefix + "group.";
    for (const std::string& entry : ckpt.names()) {
        if (entry.compare(0, group_prefix.size(), group_prefix) != 0) continue;
        // "<g>.<option>"
        const std::string rest = entry.substr(group_prefix.size());
        const size_t dot = rest.find('.');
        size_t g = groups_.size();
        if (dot != std::string::npos && dot > 0 && dot <= 9 &&
            std::all_of(rest.begin(), rest.begin() + std::ptrdiff_t(dot), [](char c) { return c >= '0' && c <= '9'; }) &&
            (dot == 1 || rest[0] != '0'))
            g = size_t(std::stoul(rest.substr(0, dot)));
        if (g >= groups_.size()) {
            problems.push_back("entry " + quote(entry) + " is not group.<g>.<option> for one of the " +
                               std::to_string(groups_.size()) + " groups");
            continue;
        }
        const std::string option = rest.substr(dot + 1);
        if (option == "params") {
            if (ckpt.kind(entry) != Checkpoint::Kind::bytes) {
                problems.push_back("entry " + quote(entry) + " is a " + checkpoint_kind_name(ckpt.kind(entry)) +
                                   ", not the bytes of parameter names");
                continue;
            }
            const std::vector<uint8_t>& b = ckpt.bytes(entry);
            if (!b.empty() && b.back() != 0) {
                problems.push_back("entry " + quote(entry) + " does not end with a NUL");
                continue;
            }
            std::string name;
            for (uint8_t c : b) {
                if (c != 0) {
                    name += char(c);
                    continue;
                }
                sd.groups[g].params.push_back(name);
                name.clear();
            }
        } else if (ckpt.kind(entry) != Checkpoint::Kind::float64) {
            problems.push_back("entry " + quote(entry) + " is a " + checkpoint_kind_name(ckpt.kind(entry)) +
                               ", not a float64 hyperparameter");
        } else {
            sd.groups[g].options.emplace_back(option, ckpt.get_double(entry));
        }
    }
    for (size_t g = 0; g < groups_.size(); ++g)
        if (!ckpt.contains(group_prefix + std::to_string(g) + ".params"))
            problems.push_back("no " + quote(group_prefix + std::to_string(g) + ".params"));
    if (!problems.empty()) fail(where, ": ", list_problems(problems));
    sd.state = ckpt.tensors(prefix + "state.");
    load_checked(sd, where);
}

// --- OptimizerWith ---------------------------------------------------------------------------

template <class Options, class Overrides>
OptimizerWith<Options, Overrides>::OptimizerWith(const char* name, std::vector<ParamGroup> groups,
                                                 const Options& defaults)
    : Optimizer(name), defaults_(defaults)
{
    TG_CHECK(!groups.empty(), name, ": no parameter groups (an optimizer needs parameters to update)");
    // Every group's options are checked before any group is added.
    std::vector<Options> resolved;
    for (size_t g = 0; g < groups.size(); ++g) {
        resolved.push_back(Traits<Options>::resolve(groups[g].options, defaults));
        std::vector<std::string> problems;
        Traits<Options>::problems(resolved.back(), problems);
        TG_CHECK(problems.empty(), name, ": ", join(problems, "; "), in_group(g, groups.size()));
    }
    for (size_t g = 0; g < groups.size(); ++g) {
        add_group(groups[g].params);
        options_.push_back(resolved[g]);
    }
}

template <class Options, class Overrides>
void OptimizerWith<Options, Overrides>::add_param_group(const named_tensors& params, const Overrides& overrides)
{
    Options o = Traits<Options>::resolve(overrides, defaults_);
    std::vector<std::string> problems;
    Traits<Options>::problems(o, problems);
    TG_CHECK(problems.empty(), name(), ".add_param_group: ", join(problems, "; "));
    add_group(params);
    options_.push_back(o);
}

template <class Options, class Overrides>
const Options& OptimizerWith<Options, Overrides>::options(size_t group) const
{
    check_group("options", group);
    return options_[group];
}

template <class Options, class Overrides>
named_values OptimizerWith<Options, Overrides>::group_options(size_t group) const
{
    check_group("group_options", group);
    return Traits<Options>::named(options_[group]);
}

template <class Options, class Overrides>
std::string OptimizerWith<Options, Overrides>::check_group_options(size_t group, const named_values& values) const
{
    std::vector<std::string> problems;
    Options o{};
    std::set<std::string> seen;
    for (const auto& [n, v] : values) {
        const auto fields = Traits<Options>::fields();
        const std::string& wanted = n;  // (clang 14 cannot capture a structured binding)
        auto f = std::find_if(fields.begin(), fields.end(), [&](const Field& x) { return wanted == x.name; });
        if (f == fields.end()) {
            problems.push_back("unknown hyperparameter " + quote(n) + " (" + name() + " has " + field_list<Options>() + ")");
            continue;
        }
        if (!seen.insert(n).second) {
            problems.push_back("hyperparameter " + quote(n) + " appears twice");
            continue;
        }
        if (f->flag && v != 0 && v != 1) {
            problems.push_back(std::string(f->name) + " is " + num(v) + ", but a flag is 0 or 1");
            continue;
        }
        Traits<Options>::assign(o, n, v);
    }
    for (const Field& f : Traits<Options>::fields())
        if (!seen.count(f.name)) problems.push_back("no hyperparameter " + quote(f.name));
    if (problems.empty()) Traits<Options>::problems(o, problems);
    (void)group;
    return join(problems, "; ");
}

template <class Options, class Overrides>
void OptimizerWith<Options, Overrides>::set_group_options(size_t group, const named_values& values)
{
    check_group("set_group_options", group);
    std::string bad = check_group_options(group, values);
    TG_CHECK(bad.empty(), name(), ": ", bad, in_group(group, num_groups()));
    Options o{};
    for (const auto& [n, v] : values) Traits<Options>::assign(o, n, v);
    options_[group] = o;
}

template class OptimizerWith<SgdOptions, SgdGroupOptions>;
template class OptimizerWith<AdamOptions, AdamGroupOptions>;

// --- SGD --------------------------------------------------------------------------------------

namespace {
std::vector<SGD::ParamGroup> one_group(const named_tensors& params)
{
    TG_CHECK(!params.empty(), "SGD: got an empty parameter list");
    return {SGD::ParamGroup{params, {}}};
}
std::vector<Adam::ParamGroup> one_adam_group(const char* name, const named_tensors& params)
{
    TG_CHECK(!params.empty(), name, ": got an empty parameter list");
    return {Adam::ParamGroup{params, {}}};
}
AdamOptions as_adam(const AdamWOptions& o) { return {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.amsgrad}; }
}  // namespace

SGD::SGD(const named_tensors& params, const SgdOptions& options) : SGD(one_group(params), options) {}

SGD::SGD(std::vector<ParamGroup> groups, const SgdOptions& defaults)
    : OptimizerWith<SgdOptions, SgdGroupOptions>("SGD", std::move(groups), defaults)
{
}

std::vector<std::string> SGD::required_buffers(const named_values& options) const
{
    if (value_of(options, "momentum") == 0) return {};
    return {"momentum_buffer"};
}

void SGD::step()
{
    NoGradGuard no_grad;
    for (size_t group = 0; group < num_groups(); ++group) {
        const SgdOptions& o = options(group);
        for (size_t i : group_indices(group)) {
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
                const T wd = T(o.weight_decay), mom = T(o.momentum), keep = T(1 - o.dampening), step = T(o.lr);
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
}

// --- Adam, AdamW --------------------------------------------------------------------------------

Adam::Adam(const named_tensors& params, const AdamOptions& options)
    : Adam("Adam", one_adam_group("Adam", params), options, false)
{
}

Adam::Adam(std::vector<ParamGroup> groups, const AdamOptions& defaults) : Adam("Adam", std::move(groups), defaults, false)
{
}

Adam::Adam(const char* name, std::vector<ParamGroup> groups, const AdamOptions& defaults, bool decoupled)
    : OptimizerWith<AdamOptions, AdamGroupOptions>(name, std::move(groups), defaults), decoupled_(decoupled)
{
}

AdamW::AdamW(const named_tensors& params, const AdamWOptions& o)
    : Adam("AdamW", one_adam_group("AdamW", params), as_adam(o), true)
{
}

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults)
    : Adam("AdamW", std::move(groups), as_adam(defaults), true)
{
}

std::vector<std::string> Adam::required_buffers(const named_values& options) const
{
    if (value_of(options, "amsgrad") != 0) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
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
    for (size_t group = 0; group < num_groups(); ++group) {
        const AdamOptions& o = options(group);
        const double lr = o.lr;
        for (size_t i : group_indices(group)) {
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

void clip_grad_value_(const tensor_list& params, double clip_value)
{
    TG_CHECK(clip_value >= 0 && !std::isinf(clip_value), "clip_grad_value_: invalid clip_value ", clip_value,
             " (must be a finite number >= 0)");
    NoGradGuard no_grad;
    for (const Tensor& p : params) {
        if (!p.defined() || !p.grad().defined()) continue;
        Tensor g = p.grad();
        TG_DISPATCH_FLOATING(g.dtype(), "clip_grad_value_", [&] {
            using T = scalar_t;
            T* q = g.data<T>();
            const T hi = T(clip_value), lo = T(-clip_value);
            // As torch.clamp: NaN stays NaN.
            for (int64_t k = 0; k < g.numel(); ++k) q[k] = q[k] < lo ? lo : q[k] > hi ? hi : q[k];
        });
        g.bump_version();
    }
}

void clip_grad_value_(const named_tensors& params, double clip_value)
{
    tensor_list list;
    for (const auto& [name, p] : params) list.push_back(p);
    clip_grad_value_(list, clip_value);
}

}  // namespace tg::optim
