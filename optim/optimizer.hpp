// Optimizers: SGD (momentum, Nesterov, weight decay), Adam and AdamW, each
// following the update rule PyTorch documents for it (torch.optim), and
// gradient clipping by norm and by value.
//
// An optimizer holds named parameters (what a Module's named_parameters()
// returns) in parameter groups, each with its own hyperparameters, and
// updates them in place from their grad(); a parameter whose gradient is
// undefined is skipped, as in PyTorch. As torch.optim's param_groups:
//
//   optim::SGD opt({{features, {.lr = 0.1}},                     // momentum 0.9 from the defaults
//                   {head, {.lr = 0.01, .momentum = 0.5}}},
//                  {.lr = 0.05, .momentum = 0.9});
//   opt.add_param_group(extra, {.weight_decay = 1e-4});        // lr 0.05, momentum 0.9
//
// A hyperparameter a group does not give is the optimizer's default (the
// second argument). Its per-parameter buffers are named "<parameter>.<buffer>"
// (e.g. "fc.weight.exp_avg") so a checkpoint can store them and check them
// when they are loaded back; parameter names are unique across all groups.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../engine/core/tensor.hpp"
#include "../engine/io/checkpoint.hpp"

namespace tg::optim {

// Hyperparameters by name, a flag as 0 or 1: {{"lr", 0.1}, {"momentum", 0.9}, ...}.
using named_values = std::vector<std::pair<std::string, double>>;

// What torch.optim.Optimizer.state_dict() holds: for each group its
// parameters (by name, in order) and its hyperparameters, and the buffers of
// every parameter updated so far as "<parameter>.<buffer>" ("<parameter>.step"
// a 0-d int64 tensor).
struct OptimizerState {
    struct Group {
        std::vector<std::string> params;
        named_values options;
    };
    std::vector<Group> groups;
    named_tensors state;
};

class Optimizer {
public:
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    // One update of every parameter that has a gradient.
    virtual void step() = 0;
    // Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
    void zero_grad();

    // --- parameter groups ------------------------------------------------------------
    size_t num_groups() const { return groups_.size(); }
    const named_tensors& group_params(size_t group) const;
    // Every parameter, group after group.
    const named_tensors& params() const { return params_; }
    // The group's hyperparameters by name, in a fixed order ("lr" first).
    virtual named_values group_options(size_t group) const = 0;
    double hyperparameter(size_t group, const std::string& name) const;
    // Sets one hyperparameter of a group, checked as the constructor checks it.
    void set_hyperparameter(size_t group, const std::string& name, double value);
    // The rate of a group, and of every group at once.
    double lr(size_t group) const { return hyperparameter(group, "lr"); }
    void set_lr(size_t group, double lr) { set_hyperparameter(group, "lr", lr); }
    // The rate all groups share; an error if they differ (ask lr(group) then).
    double lr() const;
    void set_lr(double lr);
    // The hyperparameter OneCycleLR cycles: "momentum" for SGD, "beta1" for Adam and AdamW.
    virtual const char* momentum_name() const = 0;
    const char* name() const { return name_; }

    // --- state ------------------------------------------------------------------------
    // The buffers of the parameters updated so far, named "<parameter>.<buffer>";
    // "<parameter>.step" is a 0-d int64 tensor. The tensors are the optimizer's
    // own (not copies).
    named_tensors state() const;
    // Replaces the whole state with `state` (as state() returns it), copying the
    // tensors. The names, shapes and dtypes are checked first; every problem is
    // listed in one tg::Error and nothing changes.
    void load_state(const named_tensors& state);

    // The groups (parameter names and hyperparameters) and the state, as
    // torch.optim.Optimizer.state_dict(); state tensors are the optimizer's own.
    OptimizerState state_dict() const;
    // Makes this optimizer continue exactly as the one that gave `sd`: it must
    // have as many groups, with the same parameters (names, in order) in each;
    // the hyperparameters must be this optimizer's and valid, the buffers as
    // load_state wants them. Every problem is listed in one tg::Error, and
    // nothing changes unless everything matches.
    void load_state_dict(const OptimizerState& sd);

    // As entries of a checkpoint under `prefix`:
    //   <prefix>groups              int64, the number of groups G
    //   <prefix>group.<g>.params    bytes, the names of group g's parameters, each ended by a NUL
    //   <prefix>group.<g>.<option>  float64, each hyperparameter of group g
    //   <prefix>state.<p>.<buffer>  tensors, the state
    // A checkpoint written before parameter groups holds "<prefix>lr" and the
    // state only: it loads into an optimizer of one group (rate and state;
    // the other hyperparameters stay as constructed), and is an error for more.
    void save_to(Checkpoint& ckpt, const std::string& prefix) const;
    void load_from(const Checkpoint& ckpt, const std::string& prefix);

protected:
    explicit Optimizer(const char* name) : name_(name) {}
    // Appends a group of parameters (checked: names, dtypes, no parameter twice)
    // and returns its index; the derived class adds its options.
    size_t add_group(const named_tensors& params);
    // Replaces group g's hyperparameters; an error (naming each problem) if
    // a name is unknown, one is missing, or a value is invalid.
    virtual void set_group_options(size_t group, const named_values& options) = 0;
    // The options a group would have, checked, without changing anything: "" or the problems.
    virtual std::string check_group_options(size_t group, const named_values& options) const = 0;
    // The buffers, besides "step", that a parameter of a group with these
    // options has once updated, and every buffer this optimizer may keep.
    virtual std::vector<std::string> required_buffers(const named_values& options) const = 0;
    virtual std::vector<std::string> known_buffers() const = 0;
    // What is wrong with a loaded buffer of the right shape and dtype that no
    // run of this optimizer can produce ("" if nothing): a checksum only
    // proves the file is intact, not that its numbers make sense. The base
    // rejects non-finite values; Adam also a negative second moment.
    virtual std::string buffer_problem(const std::string& buffer, const Tensor& t) const;
    // The indices (into params()) of group g's parameters.
    const std::vector<size_t>& group_indices(size_t group) const { return groups_[group].indices; }
    // The state of parameter i; empty until its first update.
    std::map<std::string, Tensor>& state_of(size_t i) { return state_[i]; }
    // Steps taken by parameter i (its "step" entry), after adding one.
    int64_t advance_step(size_t i);
    void check_group(const char* what, size_t group) const;

private:
    struct Group {
        named_tensors params;
        std::vector<size_t> indices;
    };
    // The buffers of `state` checked against this optimizer with the groups'
    // options `options`; problems are appended.
    std::vector<std::map<std::string, Tensor>> checked_state(const named_tensors& state,
                                                             const std::vector<named_values>& options,
                                                             std::vector<std::string>& problems) const;
    // load_state_dict, its errors starting with `where`.
    void load_checked(const OptimizerState& sd, const std::string& where);

    const char* name_;
    std::vector<Group> groups_;
    named_tensors params_;
    std::vector<std::map<std::string, Tensor>> state_;
};

// The part shared by the optimizers of one kind of options: the groups'
// options, resolved from the defaults. `Options` holds every hyperparameter,
// `Overrides` the same ones as std::optional (what a group gives).
template <class Options, class Overrides>
class OptimizerWith : public Optimizer {
public:
    struct ParamGroup {
        named_tensors params;
        Overrides options{};
    };
    // torch.optim.Optimizer.add_param_group: what `overrides` leaves out comes
    // from the defaults the optimizer was built with.
    void add_param_group(const named_tensors& params, const Overrides& overrides = {});
    const Options& options(size_t group = 0) const;
    const Options& defaults() const { return defaults_; }
    named_values group_options(size_t group) const override;

protected:
    OptimizerWith(const char* name, std::vector<ParamGroup> groups, const Options& defaults);
    void set_group_options(size_t group, const named_values& options) override;
    std::string check_group_options(size_t group, const named_values& options) const override;

private:
    Options defaults_;
    std::vector<Options> options_;
};

// --- SGD -------------------------------------------------------------------------------

struct SgdOptions {
    double lr = 0.01;
    double momentum = 0;
    double dampening = 0;
    bool nesterov = false;  // needs momentum > 0 and dampening 0
    double weight_decay = 0;
};

// What one group of an SGD sets; the rest comes from the optimizer's defaults.
struct SgdGroupOptions {
    std::optional<double> lr = std::nullopt;
    std::optional<double> momentum = std::nullopt;
    std::optional<double> dampening = std::nullopt;
    std::optional<bool> nesterov = std::nullopt;
    std::optional<double> weight_decay = std::nullopt;
};

// torch.optim.SGD: g = grad + weight_decay * p;
//   with momentum: b = g on the first step, else b = momentum * b + (1 - dampening) * g;
//                  g = g + momentum * b (Nesterov) or g = b;
//   p = p - lr * g.
// Buffer: "momentum_buffer" (once a step ran with momentum).
// Hyperparameters: lr, momentum, dampening, weight_decay, nesterov.
class SGD : public OptimizerWith<SgdOptions, SgdGroupOptions> {
public:
    using ParamGroup = OptimizerWith<SgdOptions, SgdGroupOptions>::ParamGroup;
    // One group.
    SGD(const named_tensors& params, const SgdOptions& options);
    SGD(std::vector<ParamGroup> groups, const SgdOptions& defaults = {});
    void step() override;
    const char* momentum_name() const override { return "momentum"; }

protected:
    std::vector<std::string> required_buffers(const named_values& options) const override;
    std::vector<std::string> known_buffers() const override { return {"momentum_buffer"}; }
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

// What one group of an Adam or AdamW sets; the rest comes from the optimizer's defaults.
struct AdamGroupOptions {
    std::optional<double> lr = std::nullopt;
    std::optional<double> beta1 = std::nullopt;
    std::optional<double> beta2 = std::nullopt;
    std::optional<double> eps = std::nullopt;
    std::optional<double> weight_decay = std::nullopt;
    std::optional<bool> amsgrad = std::nullopt;
};

// torch.optim.Adam: t = t + 1; g = grad + weight_decay * p;
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2;
//   v_max = max(v_max, v) (amsgrad);
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v or v_max) / sqrt(1 - beta2^t) + eps).
// Buffers: "exp_avg", "exp_avg_sq", and "max_exp_avg_sq" with amsgrad.
// Hyperparameters: lr, beta1, beta2, eps, weight_decay, amsgrad.
class Adam : public OptimizerWith<AdamOptions, AdamGroupOptions> {
public:
    using ParamGroup = OptimizerWith<AdamOptions, AdamGroupOptions>::ParamGroup;
    Adam(const named_tensors& params, const AdamOptions& options);
    Adam(std::vector<ParamGroup> groups, const AdamOptions& defaults = {});
    void step() override;
    const char* momentum_name() const override { return "beta1"; }

protected:
    Adam(const char* name, std::vector<ParamGroup> groups, const AdamOptions& defaults, bool decoupled);
    std::vector<std::string> required_buffers(const named_values& options) const override;
    std::vector<std::string> known_buffers() const override { return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}; }
    std::string buffer_problem(const std::string& buffer, const Tensor& t) const override;

private:
    bool decoupled_;
};

// torch.optim.AdamW: Adam whose weight decay shrinks the parameters directly
// instead of entering the gradient (and so the moment estimates).
class AdamW : public Adam {
public:
    AdamW(const named_tensors& params, const AdamWOptions& options);
    AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults = {});
};

// --- gradient clipping -------------------------------------------------------------------------

// torch.nn.utils.clip_grad_norm_: the norm of all gradients taken together
// (norm_type 2, 1, any p >= 1, or infinity); when it exceeds max_norm every
// gradient is scaled by max_norm / (norm + 1e-6). Parameters without a
// gradient are ignored. Returns the norm before clipping.
double clip_grad_norm_(const named_tensors& params, double max_norm, double norm_type = 2.0);
double clip_grad_norm_(const tensor_list& params, double max_norm, double norm_type = 2.0);

// torch.nn.utils.clip_grad_value_: every gradient element clamped to
// [-clip_value, clip_value] in place (NaN stays NaN). Parameters without a
// gradient are ignored; clip_value must be a number >= 0.
void clip_grad_value_(const named_tensors& params, double clip_value);
void clip_grad_value_(const tensor_list& params, double clip_value);

}  // namespace tg::optim
