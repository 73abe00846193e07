// Modules: layers that own named parameters, buffers and submodules, like
// PyTorch's nn.Module. Names give named_parameters() ("0.weight",
// "classifier.bias"), which the optimizers, checkpoints and the model
// gradcheck use.
#pragma once

#include <concepts>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../engine/core/hooks.hpp"
#include "../engine/core/random.hpp"
#include "../engine/core/tensor.hpp"
#include "../ops/options.hpp"

namespace tg::nn {

// How a model's tensors are named elsewhere, for state_dict and
// load_state_dict: a Sequential's "0.weight" may be PyTorch's
// "features.0.weight". Either entries (the model's name -> the other name)
// or a function of the model's name. An entry renames one tensor
// ("4.weight" -> "classifier.weight") or everything under a module
// ("4" -> "classifier": "4.weight" and "4.bias"); the longest entry that
// matches wins and names no entry matches stay as they are. An entry whose
// model name is neither a tensor nor a module of the model is an error.
class NameMap {
public:
    NameMap() = default;  // the names as they are
    NameMap(std::map<std::string, std::string> entries);
    NameMap(std::initializer_list<std::pair<const std::string, std::string>> entries)
        : NameMap(std::map<std::string, std::string>(entries))
    {
    }
    template <class F>
        requires std::is_invocable_r_v<std::string, const F&, const std::string&>
    NameMap(F rule) : rule_(std::move(rule))
    {
    }

    // The other name of the model's tensor `name`.
    std::string operator()(const std::string& name) const;
    const std::map<std::string, std::string>& entries() const { return entries_; }

private:
    std::map<std::string, std::string> entries_;
    std::function<std::string(const std::string&)> rule_;
};

struct LoadStateDictOptions {
    // Every tensor of the model must be given and every given tensor must be
    // the model's. Without it, those are returned instead of refused.
    bool strict = true;
    NameMap name_map = {};
};

// PyTorch's IncompatibleKeys: what strict = false let through.
struct LoadStateDictResult {
    std::vector<std::string> missing_keys;     // the model's names (as it names them) that were not given
    std::vector<std::string> unexpected_keys;  // given names that are none of the model's
};

class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    // Not copyable: a copy would share its parameters with the original (the
    // same tensors), which is what a shared_ptr to one module says better.
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    virtual Tensor forward(const Tensor& x) = 0;
    // Runs forward inside the module's scope (its path, for anomaly messages
    // and tg::to_dot), with the hooks below, and remembers the output shape
    // for summary().
    Tensor operator()(const Tensor& x);

    // --- hooks, as PyTorch's; each returns a handle whose remove() takes it out.
    // A hook returning an undefined Tensor changes nothing; otherwise its
    // result replaces the input, output or input gradient. Several of a kind
    // run in registration order, each on the previous one's result.
    //   pre-hook: before forward, sees (and may replace) the input;
    //   forward hook: after forward, sees the input and (may replace) the output;
    //   full backward hook: once the gradient with respect to the module's
    //     input is computed, sees it (undefined if the input needs no
    //     gradient) and the gradient with respect to the output, and may
    //     replace the first. It fires in every backward or tg::grad through
    //     a call made while it was registered.
    using ForwardPreHook = std::function<Tensor(Module&, const Tensor& input)>;
    using ForwardHook = std::function<Tensor(Module&, const Tensor& input, const Tensor& output)>;
    using BackwardHook = std::function<Tensor(Module&, const Tensor& grad_input, const Tensor& grad_output)>;
    HookHandle register_forward_pre_hook(ForwardPreHook hook);
    HookHandle register_forward_hook(ForwardHook hook);
    HookHandle register_full_backward_hook(BackwardHook hook);

    // Recursive, in registration order, names joined with '.'.
    named_tensors named_parameters() const;
    named_tensors named_buffers() const;
    tensor_list parameters() const;
    int64_t parameter_count() const;

    // PyTorch's state_dict: every parameter and buffer, each module's own
    // parameters, then its own buffers, then its children's, in registration
    // order, names joined with '.' and spelled by `names`. The tensors are
    // the model's data, detached: save them (save_npz) or clone them to keep
    // a copy.
    named_tensors state_dict(const NameMap& names = {}) const;
    // PyTorch's load_state_dict: copies each given tensor into the model's
    // tensor of that name (as options.name_map spells it) in place, so the
    // model's members and an optimizer built before see the loaded values;
    // off the tape (the version counters record the change). float32 and
    // float64 convert to the model's dtype; values load as they are (NaN and
    // infinities too). Refused, with every problem in one tg::Error and
    // nothing changed: a shape that differs, a floating tensor for an int64
    // one or the reverse, a name given twice, an undefined tensor, two of the
    // model's names mapped to one, and, when strict, the model's names not
    // given and given names that are not the model's (otherwise returned).
    // A buffer registered with a value for when it is missing (BatchNorm2d's
    // num_batches_tracked, absent from old PyTorch checkpoints) takes that
    // value and is not reported missing, as PyTorch loads an unversioned
    // state dict.
    LoadStateDictResult load_state_dict(const named_tensors& state, const LoadStateDictOptions& options = {});

    void zero_grad();
    // Training mode (batch statistics, dropout) or evaluation mode; recursive.
    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }
    // Converts every parameter and floating buffer to `dtype`, float32 or
    // float64, in place (Tensor::set_data): members, an optimizer and any
    // other handle see the converted tensors.
    void to(Dtype dtype);

    // One line describing this module alone: "Conv2d(1, 32, kernel=3, padding=1)";
    // by default the class's name.
    virtual std::string describe() const;
    // The class's name: "Conv2d".
    const std::string& kind() const;
    // The tree of modules with each one's last output shape and parameter
    // count; runs a forward on zeros of `input_shape` first (no tape).
    std::string summary(const shape_type& input_shape);

    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

protected:
    // Registers `value` under `name` and returns it: keep it as a plain member
    // (`weight = register_parameter("weight", ...)`). An undefined value
    // registers nothing (an optional bias).
    Tensor register_parameter(const std::string& name, Tensor value, bool requires_grad = true);
    // `when_missing`, if defined, is the value load_state_dict gives the
    // buffer when the state dict lacks it (instead of reporting it missing).
    Tensor register_buffer(const std::string& name, Tensor value, Tensor when_missing = Tensor());
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module)
    {
        children_.emplace_back(name, module);
        return module;
    }

private:
    struct StateEntry {
        std::string name;
        Tensor tensor, when_missing;
    };
    void collect(const std::string& prefix, named_tensors& out, bool buffers) const;
    void collect_state(const std::string& prefix, std::vector<StateEntry>& out) const;
    void collect_module_names(const std::string& prefix, std::vector<std::string>& out) const;
    // The state's names as `names` spells them, after checking its entries.
    std::vector<std::string> mapped_state_names(const std::vector<StateEntry>& state, const NameMap& names,
                                                const char* caller) const;
    void summarize(std::string& out, const std::string& name, int depth) const;

    class BackwardHooks;

    named_tensors parameters_, buffers_;
    std::map<std::string, Tensor> buffer_values_when_missing_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    std::shared_ptr<detail::HookList<ForwardPreHook>> pre_hooks_;
    std::shared_ptr<detail::HookList<ForwardHook>> forward_hooks_;
    std::shared_ptr<detail::HookList<BackwardHook>> backward_hooks_;
    mutable std::once_flag kind_once_;
    mutable std::string kind_;
    bool training_ = true;
    shape_type last_output_shape_;
    bool ran_ = false;
};

// --- layers -----------------------------------------------------------------------------
// Weights are initialised as PyTorch initialises them (uniform in
// ±1/sqrt(fan_in) for Linear and Conv2d weights and biases), drawn from `gen`
// (the thread's default generator when null), so a seed fixes the model.

class Linear : public Module {
public:
    Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias;  // bias undefined without one

private:
    int64_t in_, out_;
};

// (height, width) pairs, or one number for both: {.stride = {2, 1}, .padding = 1}.
// padding may be tg::same (stride 1 only) or tg::valid, as in PyTorch; a
// padding_mode other than zeros pads the input with pad() in that mode, then
// convolves without padding: {.padding = tg::same, .padding_mode = PaddingMode::reflect}.
struct Conv2dOptions {
    Int2 stride = 1;
    ConvPadding padding = 0;
    Int2 dilation = 1;
    int64_t groups = 1;
    bool bias = true;
    PaddingMode padding_mode = PaddingMode::zeros;  // or reflect, replicate, circular
};

class Conv2d : public Module {
public:
    Conv2d(int64_t in_channels, int64_t out_channels, Int2 kernel_size, Conv2dOptions options = {},
           Generator* gen = nullptr);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias;  // bias undefined without one

private:
    int64_t in_, out_;
    Int2 kernel_;
    Conv2dOptions options_;
};

// The pools' options, as Conv2dOptions: (height, width) pairs or one number
// for both. A stride not given is the kernel size, as in PyTorch.
struct MaxPool2dOptions {
    Int2 stride = Int2(), padding = 0, dilation = 1;
    bool ceil_mode = false;
};

struct AvgPool2dOptions {
    Int2 stride = Int2(), padding = 0;
    bool ceil_mode = false, count_include_pad = true;
    std::optional<int64_t> divisor_override = std::nullopt;  // not 0
};

// The options constructors are templates only so that a call with two braced
// lists, MaxPool2d({2, 3}, {1, 2}), keeps meaning kernel and stride: a
// non-template wins a tie, and a designated list, MaxPool2d(2, {.stride = 1,
// .ceil_mode = true}), reaches the options (an Int2 cannot take it).
class MaxPool2d : public Module {
public:
    explicit MaxPool2d(Int2 kernel_size, Int2 stride = Int2(), Int2 padding = 0);
    template <class Options = MaxPool2dOptions>
        requires std::same_as<Options, MaxPool2dOptions>
    MaxPool2d(Int2 kernel_size, Options options) : kernel_(kernel_size), options_(options)
    {
        if (!options_.stride.given()) options_.stride = kernel_;
    }
    Tensor forward(const Tensor& x) override;
    // PyTorch's return_indices=True: the values and each window's argmax in
    // its input plane (for MaxUnpool2d).
    std::pair<Tensor, Tensor> forward_with_indices(const Tensor& x);
    std::string describe() const override;

private:
    Int2 kernel_;
    MaxPool2dOptions options_;
};

class AvgPool2d : public Module {
public:
    explicit AvgPool2d(Int2 kernel_size, Int2 stride = Int2(), Int2 padding = 0, bool count_include_pad = true);
    template <class Options = AvgPool2dOptions>
        requires std::same_as<Options, AvgPool2dOptions>
    AvgPool2d(Int2 kernel_size, Options options) : kernel_(kernel_size), options_(options)
    {
        if (!options_.stride.given()) options_.stride = kernel_;
    }
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    Int2 kernel_;
    AvgPool2dOptions options_;
};

class AdaptiveAvgPool2d : public Module {
public:
    explicit AdaptiveAvgPool2d(Int2 output_size);
    AdaptiveAvgPool2d(int64_t out_h, int64_t out_w) : AdaptiveAvgPool2d(Int2{out_h, out_w}) {}
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    Int2 size_;
};

class AdaptiveMaxPool2d : public Module {
public:
    explicit AdaptiveMaxPool2d(Int2 output_size);
    AdaptiveMaxPool2d(int64_t out_h, int64_t out_w) : AdaptiveMaxPool2d(Int2{out_h, out_w}) {}
    Tensor forward(const Tensor& x) override;
    std::pair<Tensor, Tensor> forward_with_indices(const Tensor& x);
    std::string describe() const override;

private:
    Int2 size_;
};

struct MaxUnpool2dOptions {
    Int2 stride = Int2(), padding = 0;
};

// Takes the indices of a MaxPool2d (forward_with_indices) with the same
// kernel, stride and padding: forward(x, indices[, output_size]).
// forward(x) alone is an error: the indices are needed.
class MaxUnpool2d : public Module {
public:
    explicit MaxUnpool2d(Int2 kernel_size, MaxUnpool2dOptions options = {});
    Tensor forward(const Tensor& x) override;
    Tensor forward(const Tensor& x, const Tensor& indices, const shape_type& output_size = {});
    std::string describe() const override;

private:
    Int2 kernel_;
    MaxUnpool2dOptions options_;
};

class ReLU : public Module {
public:
    Tensor forward(const Tensor& x) override;
};

class Tanh : public Module {
public:
    Tensor forward(const Tensor& x) override;
};

class Sigmoid : public Module {
public:
    Tensor forward(const Tensor& x) override;
};

class Flatten : public Module {
public:
    explicit Flatten(int64_t start_axis = 1, int64_t end_axis = -1) : start_(start_axis), end_(end_axis) {}
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    int64_t start_, end_;
};

// Drops elements with probability p in training mode, using its own
// generator (seeded), so a run is reproducible; identity in evaluation.
class Dropout : public Module {
public:
    // Without a seed, one is drawn from the thread's default generator: two
    // unseeded layers then drop different positions, and seeding the default
    // generator first still fixes them.
    explicit Dropout(double p = 0.5, std::optional<uint64_t> seed = std::nullopt)
        : p_(p), gen_(seed ? *seed : default_generator().next_u64())
    {
        TG_CHECK(p >= 0 && p <= 1, "Dropout: probability p = ", p, " is outside [0, 1]");
    }
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Generator& generator() { return gen_; }

private:
    double p_;
    Generator gen_;
};

// PyTorch's BatchNorm2d (affine, tracking running statistics). Buffers
// running_mean (zeros), running_var (ones) and num_batches_tracked (an int64
// 0-d count, +1 per training forward). momentum std::nullopt is PyTorch's
// None: the running statistics are the cumulative average of every batch.
class BatchNorm2d : public Module {
public:
    explicit BatchNorm2d(int64_t channels, double eps = 1e-5, std::optional<double> momentum = 0.1);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias, running_mean, running_var, num_batches_tracked;

protected:  // for variants that gather the statistics another way (tg::dist::SyncBatchNorm2d)
    Tensor check_input(const Tensor& x) const;
    int64_t channels_;
    double eps_;
    std::optional<double> momentum_;
};

class LayerNorm : public Module {
public:
    explicit LayerNorm(const shape_type& normalized_shape, double eps = 1e-5);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias;

private:
    shape_type shape_;
    double eps_;
};

// torch.nn's GroupNorm: weight (ones) and bias (zeros) of [num_channels]
// unless affine is false.
class GroupNorm : public Module {
public:
    GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias;  // undefined without affine

private:
    int64_t groups_, channels_;
    double eps_;
};

// torch.nn's InstanceNorm2d without running statistics (its default):
// affine is false by default, as there.
class InstanceNorm2d : public Module {
public:
    explicit InstanceNorm2d(int64_t num_features, double eps = 1e-5, bool affine = false);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias;  // undefined without affine

private:
    int64_t channels_;
    double eps_;
};

// A table of num_embeddings rows of embedding_dim, drawn from N(0, 1) as
// PyTorch does; the row at padding_idx starts at zero and is never trained.
// Its input is int64 indices of any shape.
class Embedding : public Module {
public:
    Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx = std::nullopt,
              Generator* gen = nullptr);
    Tensor forward(const Tensor& indices) override;
    std::string describe() const override;
    Tensor weight;

private:
    int64_t rows_, dim_;
    std::optional<int64_t> padding_idx_;
};

class GELU : public Module {
public:
    explicit GELU(bool tanh_approximation = false) : tanh_(tanh_approximation) {}
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    bool tanh_;
};

class SiLU : public Module {
public:
    Tensor forward(const Tensor& x) override;
};

class ELU : public Module {
public:
    explicit ELU(double alpha = 1.0);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    double alpha_;
};

class Hardtanh : public Module {
public:
    explicit Hardtanh(double min_val = -1.0, double max_val = 1.0);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    double min_, max_;
};

class ReLU6 : public Module {
public:
    Tensor forward(const Tensor& x) override;
};

// Runs its modules in order; they are named "0", "1", ...
class Sequential : public Module {
public:
    Sequential() = default;
    Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
    Sequential& add(std::shared_ptr<Module> module);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override { return "Sequential"; }
};

template <class M, class... Args>
std::shared_ptr<M> make(Args&&... args)
{
    return std::make_shared<M>(std::forward<Args>(args)...);
}

}  // namespace tg::nn
