// Modules: layers that own named parameters, buffers and submodules, like
// PyTorch's nn.Module. Names give named_parameters() ("0.weight",
// "classifier.bias"), which the optimizers, checkpoints and the model
// gradcheck use.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../engine/core/random.hpp"
#include "../engine/core/tensor.hpp"
#include "../ops/options.hpp"

namespace tg::nn {

class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    // Not copyable: a copy would share its parameters with the original (the
    // same tensors), which is what a shared_ptr to one module says better.
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    virtual Tensor forward(const Tensor& x) = 0;
    // Runs forward and remembers the output shape for summary().
    Tensor operator()(const Tensor& x);

    // Recursive, in registration order, names joined with '.'.
    named_tensors named_parameters() const;
    named_tensors named_buffers() const;
    tensor_list parameters() const;
    int64_t parameter_count() const;

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
    // The tree of modules with each one's last output shape and parameter
    // count; runs a forward on zeros of `input_shape` first (no tape).
    std::string summary(const shape_type& input_shape);

    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

protected:
    // Registers `value` under `name` and returns it: keep it as a plain member
    // (`weight = register_parameter("weight", ...)`). An undefined value
    // registers nothing (an optional bias).
    Tensor register_parameter(const std::string& name, Tensor value, bool requires_grad = true);
    Tensor register_buffer(const std::string& name, Tensor value);
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module)
    {
        children_.emplace_back(name, module);
        return module;
    }

private:
    void collect(const std::string& prefix, named_tensors& out, bool buffers) const;
    void summarize(std::string& out, const std::string& name, int depth) const;

    named_tensors parameters_, buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
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

// A stride not given is the kernel size, as in PyTorch.
class MaxPool2d : public Module {
public:
    explicit MaxPool2d(Int2 kernel_size, Int2 stride = Int2(), Int2 padding = 0);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    Int2 kernel_, stride_, padding_;
};

class AvgPool2d : public Module {
public:
    explicit AvgPool2d(Int2 kernel_size, Int2 stride = Int2(), Int2 padding = 0, bool count_include_pad = true);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    Int2 kernel_, stride_, padding_;
    bool count_include_pad_;
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

class BatchNorm2d : public Module {
public:
    explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias, running_mean, running_var;

private:
    int64_t channels_;
    double eps_, momentum_;
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
