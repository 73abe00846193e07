// Sample inputs for the registry sweep, drawn from each input's domain.
#include "engine/check/gradcheck.hpp"

#include "engine/core/random.hpp"

namespace tg {

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
