// Modules: layers that own named parameters, buffers and submodules, like
// PyTorch's nn.Module. Names give named_parameters() ("0.weight",
// "classifier.bias"), which the optimizers, checkpoints and the model
// gradcheck use.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/random.hpp"
#include "engine/tensor.hpp"

namespace tg::nn {

class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    // Not copyable: layers keep references (weight, bias) into their own
    // parameter list, which a copy would still point into. Share a module
    // through its shared_ptr instead.
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
    // The module's own slots holding each parameter (buffer), by the same
    // names: for code that swaps the tensors and puts them back (the model
    // gradcheck runs on float64 stand-ins). The pointers live as long as the module.
    std::vector<std::pair<std::string, Tensor*>> parameter_slots();
    std::vector<std::pair<std::string, Tensor*>> buffer_slots();

    void zero_grad();
    // Training mode (batch statistics, dropout) or evaluation mode; recursive.
    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }
    // Converts every parameter and floating buffer to `dtype`, float32 or
    // float64 (parameters stay leaves that require grad).
    void to(Dtype dtype);

    // One line describing this module alone: "Conv2d(1, 32, kernel=3, padding=1)".
    virtual std::string describe() const = 0;
    // The tree of modules with each one's last output shape and parameter
    // count; runs a forward on zeros of `input_shape` first (no tape).
    std::string summary(const shape_type& input_shape);

    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

protected:
    // The returned reference stays valid for the module's life.
    Tensor& register_parameter(const std::string& name, Tensor value);
    Tensor& register_buffer(const std::string& name, Tensor value);
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module)
    {
        children_.emplace_back(name, module);
        return module;
    }

private:
    void collect(const std::string& prefix, named_tensors& out, bool buffers) const;
    void collect_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out, bool buffers);
    void summarize(std::string& out, const std::string& name, int depth) const;

    std::deque<std::pair<std::string, Tensor>> parameters_, buffers_;
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
    Tensor& weight;
    Tensor* bias;  // null without bias

private:
    int64_t in_, out_;
};

struct Conv2dOptions {
    int64_t stride = 1, padding = 0, dilation = 1, groups = 1;
    bool bias = true;
};

class Conv2d : public Module {
public:
    Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv2dOptions options = {},
           Generator* gen = nullptr);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor& weight;
    Tensor* bias;

private:
    int64_t in_, out_, kernel_;
    Conv2dOptions options_;
};

class MaxPool2d : public Module {
public:
    explicit MaxPool2d(int64_t kernel_size, int64_t stride = -1, int64_t padding = 0);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    int64_t kernel_, stride_, padding_;
};

class AvgPool2d : public Module {
public:
    explicit AvgPool2d(int64_t kernel_size, int64_t stride = -1, int64_t padding = 0, bool count_include_pad = true);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    int64_t kernel_, stride_, padding_;
    bool count_include_pad_;
};

class AdaptiveAvgPool2d : public Module {
public:
    AdaptiveAvgPool2d(int64_t out_h, int64_t out_w);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

private:
    int64_t h_, w_;
};

class ReLU : public Module {
public:
    Tensor forward(const Tensor& x) override;
    std::string describe() const override { return "ReLU()"; }
};

class Tanh : public Module {
public:
    Tensor forward(const Tensor& x) override;
    std::string describe() const override { return "Tanh()"; }
};

class Sigmoid : public Module {
public:
    Tensor forward(const Tensor& x) override;
    std::string describe() const override { return "Sigmoid()"; }
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
    Tensor &weight, &bias, &running_mean, &running_var;

private:
    int64_t channels_;
    double eps_, momentum_;
};

class LayerNorm : public Module {
public:
    explicit LayerNorm(const shape_type& normalized_shape, double eps = 1e-5);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor &weight, &bias;

private:
    shape_type shape_;
    double eps_;
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
std::shared_ptr<Module> make(Args&&... args)
{
    return std::make_shared<M>(std::forward<Args>(args)...);
}

}  // namespace tg::nn
