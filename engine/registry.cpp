#include "engine/registry.hpp"

#include <algorithm>
#include <cmath>

#include "engine/random.hpp"

namespace tg {

namespace {
std::vector<OpInfo>& registry()
{
    static std::vector<OpInfo> ops;
    return ops;
}
}  // namespace

InputSpec real(const std::string& name, const shape_type& shape) { return {name, shape, Domain::real, 0}; }
InputSpec positive(const std::string& name, const shape_type& shape) { return {name, shape, Domain::positive, 0}; }
InputSpec away_from_zero(const std::string& name, const shape_type& shape) { return {name, shape, Domain::away_from_zero, 0}; }
InputSpec unit_interval(const std::string& name, const shape_type& shape) { return {name, shape, Domain::unit_interval, 0}; }
InputSpec index(const std::string& name, const shape_type& shape, int64_t high) { return {name, shape, Domain::index, high}; }

const std::vector<OpInfo>& registered_ops() { return registry(); }

const OpInfo* find_op(const std::string& name)
{
    for (const OpInfo& op : registry())
        if (op.name == name) return &op;
    return nullptr;
}

OpRegistration::OpRegistration(std::string name, std::vector<OpSample> samples)
{
    for (OpInfo& op : registry())
        if (op.name == name) {
            // Samples for one op may be registered in several places (an op
            // with overloads); they add up.
            op.samples.insert(op.samples.end(), samples.begin(), samples.end());
            return;
        }
    registry().push_back({std::move(name), std::move(samples)});
}

tensor_list make_inputs(const OpSample& sample, Dtype dtype, uint64_t seed)
{
    Generator gen(seed);
    tensor_list inputs;
    for (const InputSpec& spec : sample.inputs) {
        if (spec.domain == Domain::index) {
            inputs.push_back(randint(0, spec.high, spec.shape, &gen));
            continue;
        }
        Tensor t = Tensor::empty(spec.shape, float64);
        double* p = t.data<double>();
        for (int64_t i = 0; i < t.numel(); ++i) {
            double u = gen.uniform();
            switch (spec.domain) {
            case Domain::real: p[i] = gen.normal(); break;
            case Domain::positive: p[i] = 0.5 + 1.5 * u; break;
            case Domain::away_from_zero: p[i] = (0.2 + 1.3 * u) * (gen.uniform() < 0.5 ? -1 : 1); break;
            case Domain::unit_interval: p[i] = 0.05 + 0.9 * u; break;
            case Domain::index: break;
            }
        }
        t = t.to(dtype);
        t.requires_grad_(true);
        inputs.push_back(t);
    }
    return inputs;
}

}  // namespace tg
