#include "engine/core/registry.hpp"

#include <algorithm>
#include <cmath>


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

OpRegistration::OpRegistration(std::string name, std::vector<OpSample> samples, bool replays)
{
    for (OpInfo& op : registry())
        if (op.name == name) {
            // Samples for one op may be registered in several places (an op
            // with overloads); they add up.
            op.samples.insert(op.samples.end(), samples.begin(), samples.end());
            op.replays = op.replays && replays;
            return;
        }
    registry().push_back({std::move(name), std::move(samples), replays});
}

}  // namespace tg
