#include "nn/module.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <typeinfo>

#include "engine/core/autograd.hpp"
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

Tensor Module::operator()(const Tensor& x)
{
    Tensor y = forward(x);
    last_output_shape_ = y.shape();
    ran_ = true;
    return y;
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

Tensor Module::register_buffer(const std::string& name, Tensor value)
{
    if (!value.defined()) return value;
    check_new_name(buffers_, name, "buffer");
    buffers_.emplace_back(name, value);
    return value;
}

std::string Module::describe() const
{
    int status = 0;
    char* demangled = abi::__cxa_demangle(typeid(*this).name(), nullptr, nullptr, &status);
    std::string name = status == 0 && demangled ? demangled : typeid(*this).name();
    std::free(demangled);
    if (size_t colon = name.rfind("::"); colon != std::string::npos) name = name.substr(colon + 2);
    return name + "()";
}

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

MaxPool2d::MaxPool2d(Int2 k, Int2 s, Int2 p) : kernel_(k), stride_(s.given() ? s : k), padding_(p) {}
Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, kernel_, stride_, padding_); }
std::string MaxPool2d::describe() const { return "MaxPool2d(" + pool_args(kernel_, stride_, padding_) + ")"; }

AvgPool2d::AvgPool2d(Int2 k, Int2 s, Int2 p, bool cip) : kernel_(k), stride_(s.given() ? s : k), padding_(p), count_include_pad_(cip)
{
}
Tensor AvgPool2d::forward(const Tensor& x) { return avg_pool2d(x, kernel_, stride_, padding_, count_include_pad_); }
std::string AvgPool2d::describe() const
{
    return "AvgPool2d(" + pool_args(kernel_, stride_, padding_) + (count_include_pad_ ? "" : ", count_include_pad=false") +
           ")";
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Int2 size) : size_(size) {}
Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, size_); }
std::string AdaptiveAvgPool2d::describe() const { return "AdaptiveAvgPool2d(" + pair_str(size_) + ")"; }

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

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum) try
    : weight(register_parameter("weight", ones({channels}))),
      bias(register_parameter("bias", zeros({channels}))),
      running_mean(register_buffer("running_mean", zeros({channels}))),
      running_var(register_buffer("running_var", ones({channels}))),
      channels_(channels),
      eps_(eps),
      momentum_(momentum)
{
    TG_CHECK(channels >= 1, "BatchNorm2d: channels must be positive, got ", channels);
    TG_CHECK(std::isfinite(eps) && eps >= 0, "BatchNorm2d: eps ", eps, " is not a finite number >= 0");
    TG_CHECK(momentum >= 0 && momentum <= 1, "BatchNorm2d: momentum ", momentum, " is outside [0, 1]");
} catch (const Error&) {
    detail::rethrow_naming("BatchNorm2d");
}

Tensor BatchNorm2d::forward(const Tensor& x)
{
    TG_CHECK(x.defined(), describe(), ": undefined input");
    TG_CHECK(x.dim() == 4 && x.shape()[1] == channels_, describe(), ": expected an input [N, ", channels_,
             ", H, W], got ", x.shape());
    return batch_norm(x, running_mean, running_var, weight, bias, is_training(), momentum_, eps_);
}
std::string BatchNorm2d::describe() const { return "BatchNorm2d(" + std::to_string(channels_) + ")"; }

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
