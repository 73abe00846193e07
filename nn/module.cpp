#include "nn/module.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <typeinfo>

#include "engine/core/autograd.hpp"
#include "engine/core/module_scope.hpp"
#include "engine/core/op.hpp"
#include "ops/conv.hpp"
#include "ops/elementwise.hpp"
#include "ops/indexing.hpp"
#include "ops/layers.hpp"
#include "ops/padding.hpp"
#include "ops/pool.hpp"
#include "ops/shape.hpp"

namespace tg::nn {

// --- Module -------------------------------------------------------------------------------

namespace {
// The module whose operator() runs on this thread: a module called inside it
// finds its own name among its children.
thread_local const Module* running_module = nullptr;

class RunningModule {
public:
    explicit RunningModule(const Module* m) : previous_(running_module) { running_module = m; }
    ~RunningModule() { running_module = previous_; }
    const Module* previous() const { return previous_; }

private:
    const Module* previous_;
};

// This module's name in the module that called it: "" for the outermost one,
// "(unregistered)" for one called inside a module that does not own it.
std::string_view name_in_caller(const Module* caller, const Module* self)
{
    if (!caller) return "";
    for (const auto& [name, child] : caller->children())
        if (child.get() == self) return name;
    return "(unregistered)";
}
}  // namespace

// PyTorch's full backward hooks: the input goes through an identity whose
// backward receives the gradient with respect to the input, the output through
// one that receives the gradient with respect to the output. The hooks run in
// the first, or in the second when the input needs no gradient.
class Module::BackwardHooks {
public:
    BackwardHooks(Module& m, std::vector<BackwardHook> hooks)
        : state_(std::make_shared<State>(State{&m, std::move(hooks), Tensor(), false}))
    {
    }

    Tensor wrap_input(const Tensor& x)
    {
        state_->input_needs_grad = x.defined() && x.requires_grad();
        if (!state_->input_needs_grad) return x;
        return record("module_backward_hook_input", x.detach(), {x}, {},
                      [s = state_](const BackwardArgs& a) -> tensor_list { return {s->run(a.grad)}; });
    }

    Tensor wrap_output(const Tensor& y)
    {
        if (!y.defined() || !y.requires_grad()) return y;  // no backward reaches the hooks
        return record("module_backward_hook_output", y.detach(), {y}, {},
                      [s = state_](const BackwardArgs& a) -> tensor_list {
                          s->grad_output = a.grad;
                          if (!s->input_needs_grad) s->run(Tensor());
                          return {a.grad};
                      });
    }

private:
    struct State {
        Module* module;
        std::vector<BackwardHook> hooks;
        Tensor grad_output;  // of the sweep under way
        bool input_needs_grad;

        Tensor run(Tensor grad_input)
        {
            for (const auto& hook : hooks)
                if (Tensor r = hook(*module, grad_input, grad_output); r.defined()) {
                    TG_CHECK(grad_input.defined() && r.shape() == grad_input.shape() &&
                                 r.dtype() == grad_input.dtype(),
                             "backward hook of module ", module->kind(), ": returned a gradient of shape ",
                             r.shape(), " (", dtype_name(r.dtype()), ") for an input gradient of ",
                             grad_input.defined() ? "shape " + shape_str(grad_input.shape()) + " (" +
                                                        dtype_name(grad_input.dtype()) + ")"
                                                  : std::string("none (the input needs no gradient)"));
                    grad_input = r;
                }
            grad_output = Tensor();
            return grad_input;
        }
    };
    std::shared_ptr<State> state_;
};

Tensor Module::operator()(const Tensor& x_given)
{
    RunningModule running(this);
    ModuleScopeGuard scope(name_in_caller(running.previous(), this), kind());
    Tensor x = x_given;
    if (pre_hooks_) [[unlikely]]
        for (const auto& hook : pre_hooks_->snapshot())
            if (Tensor r = hook(*this, x); r.defined()) x = r;
    std::optional<BackwardHooks> backward_hooks;
    if (backward_hooks_ && !backward_hooks_->empty() && grad_enabled()) [[unlikely]]
        backward_hooks.emplace(*this, backward_hooks_->snapshot());
    Tensor y = forward(backward_hooks ? backward_hooks->wrap_input(x) : x);
    if (forward_hooks_) [[unlikely]]
        for (const auto& hook : forward_hooks_->snapshot())
            if (Tensor r = hook(*this, x, y); r.defined()) y = r;
    if (backward_hooks) y = backward_hooks->wrap_output(y);
    last_output_shape_ = y.shape();
    ran_ = true;
    return y;
}

HookHandle Module::register_forward_pre_hook(ForwardPreHook hook)
{
    TG_CHECK(bool(hook), "register_forward_pre_hook: the hook is empty");
    return detail::add_hook(pre_hooks_, std::move(hook));
}

HookHandle Module::register_forward_hook(ForwardHook hook)
{
    TG_CHECK(bool(hook), "register_forward_hook: the hook is empty");
    return detail::add_hook(forward_hooks_, std::move(hook));
}

HookHandle Module::register_full_backward_hook(BackwardHook hook)
{
    TG_CHECK(bool(hook), "register_full_backward_hook: the hook is empty");
    return detail::add_hook(backward_hooks_, std::move(hook));
}

namespace {
void check_new_name(const named_tensors& list, const std::string& name, const char* what)
{
    TG_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module: ", what, " name '", name,
             "' must be non-empty and without '.'");
    for (const auto& [n, t] : list) TG_CHECK(n != name, "Module: ", what, " '", name, "' registered twice");
}
}  // namespace

Tensor Module::register_parameter(const std::string& name, Tensor value, bool requires_grad)
{
    if (!value.defined()) return value;
    check_new_name(parameters_, name, "parameter");
    value.requires_grad_(requires_grad);
    parameters_.emplace_back(name, value);
    return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value, Tensor when_missing)
{
    if (!value.defined()) return value;
    check_new_name(buffers_, name, "buffer");
    TG_CHECK(!when_missing.defined() || (when_missing.shape() == value.shape() && when_missing.dtype() == value.dtype()),
             "Module: buffer '", name, "' of shape ", value.shape(), " has a value when missing of another shape or dtype");
    buffers_.emplace_back(name, value);
    if (when_missing.defined()) buffer_values_when_missing_[name] = when_missing;
    return value;
}

const std::string& Module::kind() const
{
    std::call_once(kind_once_, [this] {
        int status = 0;
        char* demangled = abi::__cxa_demangle(typeid(*this).name(), nullptr, nullptr, &status);
        std::string name = status == 0 && demangled ? demangled : typeid(*this).name();
        std::free(demangled);
        if (size_t colon = name.rfind("::"); colon != std::string::npos) name = name.substr(colon + 2);
        kind_ = name;
    });
    return kind_;
}

std::string Module::describe() const { return kind() + "()"; }

void Module::collect(const std::string& prefix, named_tensors& out, bool buffers) const
{
    for (const auto& [name, t] : buffers ? buffers_ : parameters_) out.emplace_back(prefix + name, t);
    for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, buffers);
}

named_tensors Module::named_parameters() const
{
    named_tensors out;
    collect("", out, false);
    return out;
}

named_tensors Module::named_buffers() const
{
    named_tensors out;
    collect("", out, true);
    return out;
}

tensor_list Module::parameters() const
{
    tensor_list out;
    for (auto& [name, t] : named_parameters()) out.push_back(t);
    return out;
}

int64_t Module::parameter_count() const
{
    int64_t n = 0;
    for (auto& [name, t] : named_parameters()) n += t.numel();
    return n;
}

// --- state dicts ----------------------------------------------------------------------------

NameMap::NameMap(std::map<std::string, std::string> entries) : entries_(std::move(entries))
{
    for (const auto& [from, to] : entries_)
        TG_CHECK(!from.empty() && !to.empty(), "NameMap: entry ", quote(from), " -> ", quote(to),
                 " has an empty name");
}

std::string NameMap::operator()(const std::string& name) const
{
    if (rule_) return rule_(name);
    // The longest entry that is the name or one of its module prefixes ("4" for "4.weight").
    for (std::string prefix = name;;) {
        if (auto it = entries_.find(prefix); it != entries_.end()) return it->second + name.substr(prefix.size());
        size_t dot = prefix.rfind('.');
        if (dot == std::string::npos) return name;
        prefix.resize(dot);
    }
}

void Module::collect_state(const std::string& prefix, std::vector<StateEntry>& out) const
{
    for (const auto& [name, t] : parameters_) out.push_back({prefix + name, t, Tensor()});
    for (const auto& [name, t] : buffers_) {
        auto it = buffer_values_when_missing_.find(name);
        out.push_back({prefix + name, t, it == buffer_values_when_missing_.end() ? Tensor() : it->second});
    }
    for (const auto& [name, child] : children_) child->collect_state(prefix + name + ".", out);
}

void Module::collect_module_names(const std::string& prefix, std::vector<std::string>& out) const
{
    for (const auto& [name, child] : children_) {
        out.push_back(prefix + name);
        child->collect_module_names(prefix + name + ".", out);
    }
}

std::vector<std::string> Module::mapped_state_names(const std::vector<StateEntry>& state, const NameMap& names,
                                                    const char* caller) const
{
    std::vector<std::string> problems;
    if (!names.entries().empty()) {
        std::set<std::string> known;
        for (const StateEntry& e : state) known.insert(e.name);
        std::vector<std::string> modules;
        collect_module_names("", modules);
        known.insert(modules.begin(), modules.end());
        for (const auto& [from, to] : names.entries())
            if (!known.count(from))
                problems.push_back("the name map's entry " + quote(from) + " -> " + quote(to) +
                                   " names no tensor or module of the model");
    }
    std::vector<std::string> mapped;
    std::map<std::string, std::string> taken;  // other name -> the model's name
    for (const StateEntry& e : state) {
        mapped.push_back(names(e.name));
        if (mapped.back().empty())
            problems.push_back("the name map gives " + quote(e.name) + " an empty name");
        else if (auto [it, fresh] = taken.emplace(mapped.back(), e.name); !fresh)
            problems.push_back("the name map gives " + quote(it->second) + " and " + quote(e.name) +
                               " the same name " + quote(mapped.back()));
    }
    if (!problems.empty()) fail(caller, " (", describe(), "): ", join(problems, "; "));
    return mapped;
}

named_tensors Module::state_dict(const NameMap& names) const
{
    std::vector<StateEntry> state;
    collect_state("", state);
    std::vector<std::string> mapped = mapped_state_names(state, names, "state_dict");
    named_tensors out;
    for (size_t i = 0; i < state.size(); ++i) out.emplace_back(mapped[i], state[i].tensor.detach());
    return out;
}

LoadStateDictResult Module::load_state_dict(const named_tensors& given, const LoadStateDictOptions& options)
{
    std::vector<StateEntry> state;
    collect_state("", state);
    const std::vector<std::string> mapped = mapped_state_names(state, options.name_map, "load_state_dict");

    std::vector<std::string> problems;
    std::map<std::string, size_t> given_at;  // a given name -> its index
    for (size_t i = 0; i < given.size(); ++i) {
        const auto& [name, t] = given[i];
        if (!given_at.emplace(name, i).second)
            problems.push_back(quote(name) + " is given twice");
        else if (!t.defined())
            problems.push_back(quote(name) + " is given an undefined tensor");
    }
    // What the model's name is called in messages: "features.1.weight" (the model's "1.weight").
    auto spelled = [&](size_t k) {
        return quote(mapped[k]) + (mapped[k] == state[k].name ? "" : " (the model's " + quote(state[k].name) + ")");
    };
    LoadStateDictResult result;
    std::vector<std::string> missing;
    std::vector<bool> used(given.size(), false);
    std::vector<std::pair<Tensor, Tensor>> copies;  // (the model's tensor, the value)
    for (size_t k = 0; k < state.size(); ++k) {
        const Tensor& target = state[k].tensor;
        auto it = given_at.find(mapped[k]);
        if (it == given_at.end()) {
            if (state[k].when_missing.defined()) {
                copies.emplace_back(target, state[k].when_missing);
            } else {
                result.missing_keys.push_back(state[k].name);
                missing.push_back(spelled(k));
            }
            continue;
        }
        used[it->second] = true;
        const Tensor& value = given[it->second].second;
        if (!value.defined()) continue;  // reported above
        if (is_floating(value.dtype()) != is_floating(target.dtype()))
            problems.push_back(spelled(k) + " is " + dtype_name(value.dtype()) + " given but " +
                               dtype_name(target.dtype()) + " in the model");
        else if (value.shape() != target.shape())
            problems.push_back(spelled(k) + " has shape " + shape_str(value.shape()) + " given but " +
                               shape_str(target.shape()) + " in the model");
        else
            copies.emplace_back(target, value);
    }
    std::vector<std::string> unexpected;
    for (size_t i = 0; i < given.size(); ++i)
        if (!used[i] && given_at.at(given[i].first) == i) {
            result.unexpected_keys.push_back(given[i].first);
            unexpected.push_back(quote(given[i].first));
        }
    size_t count = problems.size();
    if (options.strict) {
        count += missing.size() + unexpected.size();
        if (!missing.empty()) problems.push_back("missing (the model's, not given): " + join(missing, ", "));
        if (!unexpected.empty()) problems.push_back("unexpected (given, not the model's): " + join(unexpected, ", "));
    }
    if (count > 0)
        fail("load_state_dict (", describe(), "): ", count, count == 1 ? " problem: " : " problems: ",
             join(problems, "; "));

    // Every value first, converted or copied out of memory a target shares
    // (a state dict of the model itself, renamed), then the copies.
    NoGradGuard off;
    std::set<const Storage*> targets;
    for (const auto& [target, value] : copies) targets.insert(target.impl().storage.get());
    for (auto& [target, value] : copies) {
        if (value.dtype() != target.dtype())
            value = value.detach().to(target.dtype());
        else if (targets.count(value.impl().storage.get()))
            value = value.detach().clone();
    }
    for (auto& [target, value] : copies) target.copy_(value);
    return result;
}

void Module::zero_grad()
{
    for (auto& [name, t] : parameters_) t.zero_grad();
    for (auto& [name, child] : children_) child->zero_grad();
}

void Module::train(bool on)
{
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Dtype dtype)
{
    // Checked before anything changes: an int64 parameter cannot require grad,
    // and a half-converted model would be left behind.
    TG_CHECK(is_floating(dtype), "Module::to: parameters must be float32 or float64, got ", dtype_name(dtype));
    NoGradGuard off;
    for (auto& [name, t] : parameters_)
        if (t.dtype() != dtype) t.set_data(t.detach().to(dtype));
    for (auto& [name, t] : buffers_)
        if (t.dtype() != dtype && is_floating(t.dtype())) t.set_data(t.detach().to(dtype));
    for (auto& [name, child] : children_) child->to(dtype);
}

void Module::summarize(std::string& out, const std::string& name, int depth) const
{
    int64_t own = 0;
    for (const auto& [n, t] : parameters_) own += t.numel();
    std::ostringstream line;
    std::string label = std::string(size_t(depth) * 2, ' ') + (name.empty() ? "" : name + ": ") + describe();
    line << label;
    if (label.size() < 52) line << std::string(52 - label.size(), ' ');
    line << "  " << (ran_ ? shape_str(last_output_shape_) : std::string("-"));
    std::string s = line.str();
    if (own) {
        // the count under the header's "parameters" (column 78); no trailing blanks without one
        if (s.size() < 76) s += std::string(76 - s.size(), ' ');
        s += "  " + std::to_string(own);
    }
    out += s + "\n";
    for (const auto& [n, child] : children_) child->summarize(out, n, depth + 1);
}

std::string Module::summary(const shape_type& input_shape)
{
    Dtype dtype = float32;
    auto params = named_parameters();
    if (!params.empty()) dtype = params[0].second.dtype();
    bool was_training = training_;
    eval();
    {
        NoGradGuard off;
        (*this)(zeros(input_shape, dtype));
    }
    train(was_training);
    std::string out = "layer                                                 output shape            parameters\n";
    summarize(out, "", 0);
    out += "total parameters: " + std::to_string(parameter_count()) + "\n";
    return out;
}

// --- initialisation ---------------------------------------------------------------------

namespace {
Tensor uniform(const shape_type& shape, double bound, Generator* gen)
{
    Generator& g = gen ? *gen : default_generator();
    Tensor t = Tensor::empty(shape, float32);
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = float((2 * g.uniform() - 1) * bound);
    return t;
}

// The arguments are checked here, in the member initialisers, before any
// parameter is allocated, so a bad size is reported as such and not as a
// failed allocation.
double linear_bound(int64_t in, int64_t out)
{
    TG_CHECK(in > 0 && out > 0, "Linear(", in, ", ", out, "): sizes must be positive");
    return 1 / std::sqrt(double(in));
}

// "3" for (3, 3), "(3, 1)" otherwise, as PyTorch prints them.
std::string pair_str(Int2 v) { return v.h == v.w ? std::to_string(v.h) : "(" + std::to_string(v.h) + ", " + std::to_string(v.w) + ")"; }

double conv_bound(int64_t in, int64_t out, Int2 k, const Conv2dOptions& o)
{
    const std::string what = "Conv2d(" + std::to_string(in) + ", " + std::to_string(out) + ", kernel=" + pair_str(k);
    TG_CHECK(in > 0 && out > 0 && k.h > 0 && k.w > 0, what, "): sizes must be positive");
    TG_CHECK(o.stride.h >= 1 && o.stride.w >= 1 && o.dilation.h >= 1 && o.dilation.w >= 1 &&
                 o.padding.sizes.h >= 0 && o.padding.sizes.w >= 0,
             what, "): stride ", pair_str(o.stride), " and dilation ", pair_str(o.dilation),
             " must be positive, padding ", pair_str(o.padding.sizes), " non-negative");
    TG_CHECK(o.padding.kind != ConvPadding::Kind::same || o.stride == Int2(1), what,
             "): padding=same is not supported for strided convolutions, got stride ", pair_str(o.stride));
    TG_CHECK(o.padding.kind <= ConvPadding::Kind::valid, what, "): unknown padding kind ", int64_t(o.padding.kind));
    TG_CHECK(padding_mode_name(o.padding_mode) != nullptr, what, "): padding_mode must be zeros, reflect, replicate ",
             "or circular, got ", int64_t(o.padding_mode));
    TG_CHECK(o.groups >= 1 && in % o.groups == 0 && out % o.groups == 0, what,
             "): channels must be divisible by groups = ", o.groups);
    return 1 / std::sqrt(double(in / o.groups) * double(k.h) * double(k.w));  // in doubles: the product may pass 2^63
}

void check_input_dtype(const Module& m, const Tensor& x, const Tensor& weight)
{
    TG_CHECK(x.dtype() == weight.dtype(), m.describe(), ": input of shape ", x.shape(), " is ", dtype_name(x.dtype()),
             " but the layer's parameters are ", dtype_name(weight.dtype()), " (convert one of them: x.to(), module.to())");
}
}  // namespace

// --- layers ---------------------------------------------------------------------------------

// Constructors allocate their parameters: a size too large to allocate is an
// error naming the layer (detail::rethrow_naming), not "empty: ...".
Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator* gen) try
    : in_(in_features), out_(out_features)
{
    double bound = linear_bound(in_features, out_features);
    weight = register_parameter("weight", uniform({out_features, in_features}, bound, gen));
    if (has_bias) bias = register_parameter("bias", uniform({out_features}, bound, gen));
} catch (const Error&) {
    detail::rethrow_naming("Linear");
}

Tensor Linear::forward(const Tensor& x)
{
    TG_CHECK(x.defined(), describe(), ": undefined input");
    TG_CHECK(x.dim() >= 1 && x.shape().back() == in_, describe(), ": input of shape ", x.shape(), " does not end in ",
             in_, " input features");
    check_input_dtype(*this, x, weight);
    return linear(x, weight, bias);
}

std::string Linear::describe() const
{
    return "Linear(" + std::to_string(in_) + ", " + std::to_string(out_) + (bias.defined() ? ")" : ", bias=false)");
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Int2 k, Conv2dOptions o, Generator* gen) try
    : in_(in_channels), out_(out_channels), kernel_(k), options_(o)
{
    double bound = conv_bound(in_channels, out_channels, k, o);
    weight = register_parameter("weight", uniform({out_channels, in_channels / o.groups, k.h, k.w}, bound, gen));
    if (o.bias) bias = register_parameter("bias", uniform({out_channels}, bound, gen));
} catch (const Error&) {
    detail::rethrow_naming("Conv2d");
}

Tensor Conv2d::forward(const Tensor& x)
{
    TG_CHECK(x.defined(), describe(), ": undefined input");
    // [N, C, H, W] or unbatched [C, H, W], as conv2d takes them.
    int64_t c_axis = x.dim() == 4 ? 1 : 0;
    TG_CHECK((x.dim() == 4 || x.dim() == 3) && x.shape()[size_t(c_axis)] == in_, describe(), ": expected an input [N, ",
             in_, ", H, W] (or [", in_, ", H, W]), got ", x.shape());
    check_input_dtype(*this, x, weight);
    const Conv2dOptions& o = options_;
    if (o.padding_mode == PaddingMode::zeros) return conv2d(x, weight, bias, o.stride, o.padding, o.dilation, o.groups);
    // As PyTorch: F.pad in the mode, then no padding in the convolution.
    const auto [before, after] = conv2d_padding_sides(o.padding, kernel_, o.dilation, "Conv2d");
    Tensor padded = pad(x, {before.w, after.w, before.h, after.h}, o.padding_mode);
    return conv2d(padded, weight, bias, o.stride, 0, o.dilation, o.groups);
}

std::string Conv2d::describe() const
{
    std::string s = "Conv2d(" + std::to_string(in_) + ", " + std::to_string(out_) + ", kernel=" + pair_str(kernel_);
    if (options_.stride != 1) s += ", stride=" + pair_str(options_.stride);
    if (options_.padding == same) s += ", padding=same";
    else if (options_.padding == valid) s += ", padding=valid";
    else if (options_.padding != 0) s += ", padding=" + pair_str(options_.padding.sizes);
    if (options_.dilation != 1) s += ", dilation=" + pair_str(options_.dilation);
    if (options_.groups != 1) s += ", groups=" + std::to_string(options_.groups);
    if (!options_.bias) s += ", bias=false";
    if (options_.padding_mode != PaddingMode::zeros) s += std::string(", padding_mode=") + padding_mode_name(options_.padding_mode);
    return s + ")";
}

namespace {
// "2", "2, stride=1", "(2, 3), stride=(1, 2), padding=1": a pool's arguments as PyTorch prints them.
std::string pool_args(Int2 kernel, Int2 stride, Int2 padding)
{
    return pair_str(kernel) + (stride != kernel ? ", stride=" + pair_str(stride) : "") +
           (padding != 0 ? ", padding=" + pair_str(padding) : "");
}
}  // namespace

MaxPool2d::MaxPool2d(Int2 k, Int2 s, Int2 p) : kernel_(k), options_{.stride = s.given() ? s : k, .padding = p} {}
Tensor MaxPool2d::forward(const Tensor& x) { return forward_with_indices(x).first; }
std::pair<Tensor, Tensor> MaxPool2d::forward_with_indices(const Tensor& x)
{
    const MaxPool2dOptions& o = options_;
    return max_pool2d_with_indices(x, kernel_, o.stride, o.padding, o.dilation, o.ceil_mode);
}
std::string MaxPool2d::describe() const
{
    const MaxPool2dOptions& o = options_;
    return "MaxPool2d(" + pool_args(kernel_, o.stride, o.padding) +
           (o.dilation != 1 ? ", dilation=" + pair_str(o.dilation) : "") + (o.ceil_mode ? ", ceil_mode=true" : "") +
           ")";
}

AvgPool2d::AvgPool2d(Int2 k, Int2 s, Int2 p, bool cip)
    : kernel_(k), options_{.stride = s.given() ? s : k, .padding = p, .count_include_pad = cip}
{
}
Tensor AvgPool2d::forward(const Tensor& x)
{
    const AvgPool2dOptions& o = options_;
    return avg_pool2d(x, kernel_, o.stride, o.padding, o.count_include_pad, o.ceil_mode, o.divisor_override);
}
std::string AvgPool2d::describe() const
{
    const AvgPool2dOptions& o = options_;
    return "AvgPool2d(" + pool_args(kernel_, o.stride, o.padding) + (o.ceil_mode ? ", ceil_mode=true" : "") +
           (o.count_include_pad ? "" : ", count_include_pad=false") +
           (o.divisor_override ? ", divisor_override=" + std::to_string(*o.divisor_override) : "") + ")";
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Int2 size) : size_(size) {}
Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, size_); }
std::string AdaptiveAvgPool2d::describe() const { return "AdaptiveAvgPool2d(" + pair_str(size_) + ")"; }

AdaptiveMaxPool2d::AdaptiveMaxPool2d(Int2 size) : size_(size) {}
Tensor AdaptiveMaxPool2d::forward(const Tensor& x) { return adaptive_max_pool2d(x, size_); }
std::pair<Tensor, Tensor> AdaptiveMaxPool2d::forward_with_indices(const Tensor& x)
{
    return adaptive_max_pool2d_with_indices(x, size_);
}
std::string AdaptiveMaxPool2d::describe() const { return "AdaptiveMaxPool2d(" + pair_str(size_) + ")"; }

MaxUnpool2d::MaxUnpool2d(Int2 k, MaxUnpool2dOptions options) : kernel_(k), options_(options)
{
    if (!options_.stride.given()) options_.stride = kernel_;
}
Tensor MaxUnpool2d::forward(const Tensor&)
{
    TG_CHECK(false, describe(), ": needs the indices of the max pool: call forward(x, indices)");
    return {};
}
Tensor MaxUnpool2d::forward(const Tensor& x, const Tensor& indices, const shape_type& output_size)
{
    return max_unpool2d(x, indices, kernel_, options_.stride, options_.padding, output_size);
}
std::string MaxUnpool2d::describe() const { return "MaxUnpool2d(" + pool_args(kernel_, options_.stride, options_.padding) + ")"; }

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }

Tensor Flatten::forward(const Tensor& x) { return flatten(x, start_, end_); }
std::string Flatten::describe() const
{
    return start_ == 1 && end_ == -1 ? "Flatten()" : "Flatten(" + std::to_string(start_) + ", " + std::to_string(end_) + ")";
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training(), gen_); }
std::string Dropout::describe() const
{
    std::ostringstream s;
    s << "Dropout(p=" << p_ << ")";
    return s.str();
}

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, std::optional<double> momentum) try
    : weight(register_parameter("weight", ones({channels}))),
      bias(register_parameter("bias", zeros({channels}))),
      running_mean(register_buffer("running_mean", zeros({channels}))),
      running_var(register_buffer("running_var", ones({channels}))),
      // A state dict without it (PyTorch's before 0.4.1) loads as a count of 0, as PyTorch loads one.
      num_batches_tracked(register_buffer("num_batches_tracked", scalar(0, int64), scalar(0, int64))),
      channels_(channels),
      eps_(eps),
      momentum_(momentum)
{
    TG_CHECK(channels >= 1, "BatchNorm2d: channels must be positive, got ", channels);
    TG_CHECK(std::isfinite(eps) && eps >= 0, "BatchNorm2d: eps ", eps, " is not a finite number >= 0");
    TG_CHECK(!momentum || (*momentum >= 0 && *momentum <= 1), "BatchNorm2d: momentum ", momentum.value_or(0),
             " is outside [0, 1]");
} catch (const Error&) {
    detail::rethrow_naming("BatchNorm2d");
}

Tensor BatchNorm2d::check_input(const Tensor& x) const
{
    TG_CHECK(x.defined(), describe(), ": undefined input");
    TG_CHECK(x.dim() == 4 && x.shape()[1] == channels_, describe(), ": expected an input [N, ", channels_,
             ", H, W], got ", x.shape());
    return x;
}

Tensor BatchNorm2d::forward(const Tensor& x)
{
    return batch_norm(check_input(x), {&running_mean, &running_var, &num_batches_tracked}, weight, bias,
                      is_training(), momentum_, eps_);
}
std::string BatchNorm2d::describe() const
{
    return "BatchNorm2d(" + std::to_string(channels_) + (momentum_ ? "" : ", momentum=None") + ")";
}

LayerNorm::LayerNorm(const shape_type& shape, double eps) try
    : weight(register_parameter("weight", ones(shape))),
      bias(register_parameter("bias", zeros(shape))),
      shape_(shape),
      eps_(eps)
{
    TG_CHECK(!shape.empty() && numel_of(shape) >= 1, "LayerNorm: normalized_shape ", shape, " has no elements");
    TG_CHECK(std::isfinite(eps) && eps >= 0, "LayerNorm: eps ", eps, " is not a finite number >= 0");
} catch (const Error&) {
    detail::rethrow_naming("LayerNorm");
}
Tensor LayerNorm::forward(const Tensor& x)
{
    TG_CHECK(x.defined(), describe(), ": undefined input");
    bool fits = x.dim() >= int64_t(shape_.size()) &&
                std::equal(shape_.begin(), shape_.end(), x.shape().end() - int64_t(shape_.size()));
    TG_CHECK(fits, describe(), ": input of shape ", x.shape(), " does not end in ", shape_);
    return layer_norm(x, shape_, weight, bias, eps_);
}
std::string LayerNorm::describe() const { return "LayerNorm(" + shape_str(shape_) + ")"; }

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine) try
    : weight(affine ? register_parameter("weight", ones({num_channels})) : Tensor()),
      bias(affine ? register_parameter("bias", zeros({num_channels})) : Tensor()),
      groups_(num_groups),
      channels_(num_channels),
      eps_(eps)
{
    TG_CHECK(num_groups >= 1 && num_channels >= 1 && num_channels % num_groups == 0, "GroupNorm: ", num_channels,
             " channels do not divide into ", num_groups, " groups");
    TG_CHECK(std::isfinite(eps) && eps >= 0, "GroupNorm: eps ", eps, " is not a finite number >= 0");
} catch (const Error&) {
    detail::rethrow_naming("GroupNorm");
}
Tensor GroupNorm::forward(const Tensor& x)
{
    TG_CHECK(x.defined() && x.dim() >= 2 && x.shape()[1] == channels_, describe(), ": expected an input [N, ",
             channels_, ", ...], got ", x.defined() ? x.shape() : shape_type{});
    return group_norm(x, groups_, weight, bias, eps_);
}
std::string GroupNorm::describe() const
{
    return "GroupNorm(" + std::to_string(groups_) + ", " + std::to_string(channels_) + ")";
}

InstanceNorm2d::InstanceNorm2d(int64_t num_features, double eps, bool affine) try
    : weight(affine ? register_parameter("weight", ones({num_features})) : Tensor()),
      bias(affine ? register_parameter("bias", zeros({num_features})) : Tensor()),
      channels_(num_features),
      eps_(eps)
{
    TG_CHECK(num_features >= 1, "InstanceNorm2d: num_features must be positive, got ", num_features);
    TG_CHECK(std::isfinite(eps) && eps >= 0, "InstanceNorm2d: eps ", eps, " is not a finite number >= 0");
} catch (const Error&) {
    detail::rethrow_naming("InstanceNorm2d");
}
Tensor InstanceNorm2d::forward(const Tensor& x)
{
    TG_CHECK(x.defined() && x.dim() == 4 && x.shape()[1] == channels_, describe(), ": expected an input [N, ",
             channels_, ", H, W], got ", x.defined() ? x.shape() : shape_type{});
    return instance_norm(x, weight, bias, eps_);
}
std::string InstanceNorm2d::describe() const { return "InstanceNorm2d(" + std::to_string(channels_) + ")"; }

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx,
                     Generator* gen) try
    : rows_(num_embeddings), dim_(embedding_dim), padding_idx_(padding_idx)
{
    TG_CHECK(num_embeddings >= 1 && embedding_dim >= 1, "Embedding: sizes (", num_embeddings, ", ", embedding_dim,
             ") must be positive");
    TG_CHECK(!padding_idx || (*padding_idx >= -num_embeddings && *padding_idx < num_embeddings),
             "Embedding: padding_idx ", padding_idx.value_or(0), " is out of range for ", num_embeddings, " rows");
    Generator& g = gen ? *gen : default_generator();
    Tensor w = Tensor::empty({num_embeddings, embedding_dim}, float32, "Embedding");
    float* p = w.data<float>();
    for (int64_t i = 0; i < w.numel(); ++i) p[i] = float(g.normal());
    if (padding_idx) {
        const int64_t row = *padding_idx < 0 ? *padding_idx + num_embeddings : *padding_idx;
        std::fill(p + row * embedding_dim, p + (row + 1) * embedding_dim, 0.0f);
    }
    weight = register_parameter("weight", w);
} catch (const Error&) {
    detail::rethrow_naming("Embedding");
}
Tensor Embedding::forward(const Tensor& indices) { return embedding(indices, weight, padding_idx_); }
std::string Embedding::describe() const
{
    return "Embedding(" + std::to_string(rows_) + ", " + std::to_string(dim_) +
           (padding_idx_ ? ", padding_idx=" + std::to_string(*padding_idx_) : "") + ")";
}

Tensor GELU::forward(const Tensor& x) { return gelu(x, tanh_ ? GeluApproximate::tanh : GeluApproximate::none); }
std::string GELU::describe() const { return tanh_ ? "GELU(approximate=tanh)" : "GELU"; }
Tensor SiLU::forward(const Tensor& x) { return silu(x); }
ELU::ELU(double alpha) : alpha_(alpha) { TG_CHECK(std::isfinite(alpha), "ELU: alpha ", alpha, " is not finite"); }
Tensor ELU::forward(const Tensor& x) { return elu(x, alpha_); }
std::string ELU::describe() const
{
    std::ostringstream os;
    os << "ELU(alpha=" << alpha_ << ")";
    return os.str();
}
Hardtanh::Hardtanh(double min_val, double max_val) : min_(min_val), max_(max_val)
{
    TG_CHECK(min_val <= max_val, "Hardtanh: min_val ", min_val, " is above max_val ", max_val);
}
Tensor Hardtanh::forward(const Tensor& x) { return hardtanh(x, min_, max_); }
std::string Hardtanh::describe() const
{
    std::ostringstream os;
    os << "Hardtanh(" << min_ << ", " << max_ << ")";
    return os.str();
}
Tensor ReLU6::forward(const Tensor& x) { return relu6(x); }

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules)
{
    for (auto& m : modules) add(m);
}

Sequential& Sequential::add(std::shared_ptr<Module> module)
{
    TG_CHECK(module != nullptr, "Sequential::add: null module");
    register_module(std::to_string(children().size()), std::move(module));
    return *this;
}

Tensor Sequential::forward(const Tensor& x)
{
    Tensor y = x;
    for (const auto& [name, child] : children()) y = (*child)(y);
    return y;
}

}  // namespace tg::nn
