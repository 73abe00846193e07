// The op registry: the catalogue of differentiable ops, each with the sample
// inputs the registry sweep (engine/check/) gradchecks it with, first and
// second order, in both dtypes. An op definition registers its own samples
// (TG_REGISTER_OP, engine/core/op.hpp); a composite function registers
// samples for itself with TG_REGISTER_SAMPLES. A user's op registers the same
// way and is checked by the same sweep (see samples/custom_op).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tensor.hpp"

namespace tg {

// Where sample values are drawn from, chosen to keep an op away from the
// points where it is not differentiable or not defined.
enum class Domain {
    real,            // standard normal
    positive,        // in [0.5, 2]: log, sqrt, a pow base
    away_from_zero,  // |x| in [0.2, 1.5], either sign: relu, abs
    unit_interval,   // in (0.05, 0.95): probabilities
    index,           // int64 in [0, high): class targets; never differentiated
};

struct InputSpec {
    std::string name;
    shape_type shape;
    Domain domain = Domain::real;
    int64_t high = 0;  // upper bound of an index input
    bool differentiable() const { return domain != Domain::index; }
};

InputSpec real(const std::string& name, const shape_type& shape);
InputSpec positive(const std::string& name, const shape_type& shape);
InputSpec away_from_zero(const std::string& name, const shape_type& shape);
InputSpec unit_interval(const std::string& name, const shape_type& shape);
InputSpec index(const std::string& name, const shape_type& shape, int64_t high);

using OpFn = std::function<Tensor(const tensor_list&)>;

// The sample's op called with one attribute spoiled (engine/core/attribute_edges.hpp).
struct SpoiledCall {
    std::string what;  // "attribute 2 of 4: (1, 1) -> (0, 1)"
    OpFn fn;
};

struct OpSample {
    std::string label;               // what the sample exercises: "broadcast [3,1] x [4]"
    std::vector<InputSpec> inputs;
    OpFn fn;                         // calls the op with this sample's options
    bool second_order = true;        // false only for ops whose backward is not differentiable
    // Set by Op::sample from the op's Attrs; empty for samples written as a
    // function (composites), whose options are the inner ops' attributes.
    std::function<std::vector<SpoiledCall>()> spoiled_calls;
};

inline OpSample sample(std::string label, std::vector<InputSpec> inputs, OpFn fn, bool second_order = true)
{
    return OpSample{std::move(label), std::move(inputs), std::move(fn), second_order, {}};
}

struct OpInfo {
    std::string name;
    std::vector<OpSample> samples;
    // False for an op whose forward must not run again from the checker's
    // replay (a collective across processes, dist::all_reduce_sum): a model
    // gradcheck then re-runs the whole loss instead.
    bool replays = true;
};

// All ops registered so far (library and user), in registration order.
const std::vector<OpInfo>& registered_ops();
const OpInfo* find_op(const std::string& name);

// Registers an op at static-initialisation time; use through TG_REGISTER_OP.
struct OpRegistration {
    OpRegistration(std::string name, std::vector<OpSample> samples, bool replays = true);
};

}  // namespace tg

#define TG_CONCAT_INNER(a, b) a##b
#define TG_CONCAT(a, b) TG_CONCAT_INNER(a, b)
// TG_REGISTER_SAMPLES("name", { sample(...), ... }) at namespace scope, next
// to a composite function (its gradients come from the ops it calls).
#define TG_REGISTER_SAMPLES(name, ...) \
    static const ::tg::OpRegistration TG_CONCAT(tg_op_registration_, __COUNTER__)(name, __VA_ARGS__)
