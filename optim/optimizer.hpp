// Optimizers: SGD (momentum, Nesterov, weight decay), Adam and AdamW, each
// following the update rule PyTorch documents for it (torch.optim), and
// gradient clipping by norm.
//
// An optimizer holds named parameters (what a Module's named_parameters()
// returns) and updates them in place from their grad(); a parameter whose
// gradient is undefined is skipped, as in PyTorch. Its per-parameter buffers
// are named "<parameter>.<buffer>" (e.g. "fc.weight.exp_avg") so a
// checkpoint can store them and check them when they are loaded back.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "../engine/io/checkpoint.hpp"
#include "../engine/core/tensor.hpp"

namespace tg::optim {

class Optimizer {
public:
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    // One update of every parameter that has a gradient.
    virtual void step() = 0;
    // Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
    void zero_grad();

    double lr() const { return lr_; }
    void set_lr(double lr);
    const named_tensors& params() const { return params_; }
    const char* name() const { return name_; }

    // The buffers of the parameters updated so far, named "<parameter>.<buffer>";
    // "<parameter>.step" is a 0-d int64 tensor. The tensors are the optimizer's
    // own (not copies).
    named_tensors state() const;
    // Replaces the whole state with `state` (as state() returns it), copying the
    // tensors. The names, shapes and dtypes are checked first; every problem is
    // listed in one tg::Error and nothing changes.
    void load_state(const named_tensors& state);

    // The learning rate as "<prefix>lr" and the state as "<prefix>state.<name>".
    void save_to(Checkpoint& ckpt, const std::string& prefix) const;
    void load_from(const Checkpoint& ckpt, const std::string& prefix);

protected:
    Optimizer(const char* name, named_tensors params, double lr);
    // The buffers every updated parameter has, besides "step".
    virtual std::vector<std::string> buffer_names() const = 0;
    // What is wrong with a loaded buffer of the right shape and dtype that no
    // run of this optimizer can produce ("" if nothing): a checksum only
    // proves the file is intact, not that its numbers make sense. The base
    // rejects non-finite values; Adam also a negative second moment.
    virtual std::string buffer_problem(const std::string& buffer, const Tensor& t) const;
    // The state of parameter i; empty until its first update.
    std::map<std::string, Tensor>& state_of(size_t i) { return state_[i]; }
    // Steps taken by parameter i (its "step" entry), after adding one.
    int64_t advance_step(size_t i);

private:
    const char* name_;
    named_tensors params_;
    double lr_;
    std::vector<std::map<std::string, Tensor>> state_;
};

// --- SGD -------------------------------------------------------------------------------

struct SgdOptions {
    double lr = 0.01;
    double momentum = 0;
    double dampening = 0;
    bool nesterov = false;  // needs momentum > 0 and dampening 0
    double weight_decay = 0;
};

// torch.optim.SGD: g = grad + weight_decay * p;
//   with momentum: b = g on the first step, else b = momentum * b + (1 - dampening) * g;
//                  g = g + momentum * b (Nesterov) or g = b;
//   p = p - lr * g.
// Buffer: "momentum_buffer" (only with momentum).
class SGD : public Optimizer {
public:
    SGD(named_tensors params, SgdOptions options);
    void step() override;
    const SgdOptions& options() const { return options_; }

protected:
    std::vector<std::string> buffer_names() const override;

private:
    SgdOptions options_;
};

// --- Adam, AdamW -----------------------------------------------------------------------------

struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;  // L2: added to the gradient
    bool amsgrad = false;
};

struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 1e-2;  // decoupled: p = p * (1 - lr * weight_decay) before the Adam step
    bool amsgrad = false;
};

// torch.optim.Adam: t = t + 1; g = grad + weight_decay * p;
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2;
//   v_max = max(v_max, v) (amsgrad);
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v or v_max) / sqrt(1 - beta2^t) + eps).
// Buffers: "exp_avg", "exp_avg_sq", and "max_exp_avg_sq" with amsgrad.
class Adam : public Optimizer {
public:
    Adam(named_tensors params, AdamOptions options);
    void step() override;
    const AdamOptions& options() const { return options_; }

protected:
    Adam(const char* name, named_tensors params, AdamOptions options, bool decoupled);
    std::vector<std::string> buffer_names() const override;
    std::string buffer_problem(const std::string& buffer, const Tensor& t) const override;

private:
    AdamOptions options_;
    bool decoupled_;
};

// torch.optim.AdamW: Adam whose weight decay shrinks the parameters directly
// instead of entering the gradient (and so the moment estimates).
class AdamW : public Adam {
public:
    AdamW(named_tensors params, AdamWOptions options);
};

// --- gradient clipping -------------------------------------------------------------------------

// torch.nn.utils.clip_grad_norm_: the norm of all gradients taken together
// (norm_type 2, 1, any p >= 1, or infinity); when it exceeds max_norm every
// gradient is scaled by max_norm / (norm + 1e-6). Parameters without a
// gradient are ignored. Returns the norm before clipping.
double clip_grad_norm_(const named_tensors& params, double max_norm, double norm_type = 2.0);
double clip_grad_norm_(const tensor_list& params, double max_norm, double norm_type = 2.0);

}  // namespace tg::optim
