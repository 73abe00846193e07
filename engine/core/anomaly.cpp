#include "engine/core/anomaly.hpp"

#include <cmath>
#include <sstream>

#include "engine/core/module_scope.hpp"

namespace tg {

thread_local const AnomalyOptions* detail::anomaly_options = nullptr;
thread_local const Node* detail::running_backward = nullptr;

DetectAnomalyGuard::DetectAnomalyGuard(AnomalyOptions options)
    : options_(options), previous_(detail::anomaly_options)
{
    detail::anomaly_options = &options_;
}

DetectAnomalyGuard::~DetectAnomalyGuard() { detail::anomaly_options = previous_; }

bool anomaly_detection_enabled() { return detail::anomaly_options != nullptr; }

namespace detail {

int64_t first_non_finite(const Tensor& t, bool nan, bool inf)
{
    if (!t.defined() || !is_floating(t.dtype())) return -1;
    return TG_DISPATCH_FLOATING(t.dtype(), "anomaly", [&]() -> int64_t {
        const scalar_t* p = t.data<scalar_t>();
        const int64_t n = t.numel();
        for (int64_t i = 0; i < n; ++i) {
            const scalar_t v = p[i];
            if (std::isfinite(v)) [[likely]]
                continue;
            if (std::isnan(v) ? nan : inf) return i;
        }
        return int64_t(-1);
    });
}

namespace {

// "NaN at [1, 2]" for the element at `flat` of `t`.
std::string where(const Tensor& t, int64_t flat)
{
    const double v = TG_DISPATCH_FLOATING(t.dtype(), "anomaly", [&] { return double(t.data<scalar_t>()[flat]); });
    shape_type index(t.shape().size());
    for (size_t k = index.size(); k-- > 0;) {
        index[k] = flat % t.shape()[k];
        flat /= t.shape()[k];
    }
    std::ostringstream os;
    os << (std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf") << " at " << shape_str(index);
    return os.str();
}

std::string in_module(const ModuleScope* scope)
{
    return scope ? " in module " + scope->describe() : std::string(" outside any module");
}

std::string shape_and_dtype(const shape_type& shape, Dtype dtype)
{
    std::ostringstream os;
    os << shape_str(shape) << " (" << dtype_name(dtype) << ")";
    return os.str();
}

// Where the op ran: its module, and the backward rule it is part of, if any.
std::string context()
{
    std::string s = in_module(current_module_scope());
    if (const Node* n = running_backward)
        s += ", while running the backward rule of op '" + std::string(n->op) + "' (its forward ran" +
             in_module(n->scope) + ", output " + shape_and_dtype(n->shape, n->dtype) + ")";
    return s;
}

}  // namespace

void check_forward_anomaly(const char* op, const Tensor& out, TensorRefs inputs)
{
    const AnomalyOptions& o = *anomaly_options;
    const int64_t at = first_non_finite(out, o.nan, o.inf);
    if (at < 0) [[likely]]
        return;
    std::ostringstream msg;
    msg << "anomaly detected: op '" << op << "' produced " << where(out, at) << " of its output of shape "
        << shape_and_dtype(out.shape(), out.dtype()) << context() << "; its inputs: ";
    std::string already;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const Tensor& t = inputs[i];
        msg << (i ? ", " : "") << i << ": ";
        if (!t.defined()) {
            msg << "none";
            continue;
        }
        msg << shape_and_dtype(t.shape(), t.dtype());
        const int64_t bad = first_non_finite(t, o.nan, o.inf);
        if (bad >= 0 && already.empty())
            already = "; input " + std::to_string(i) + " already held " + where(t, bad) +
                      " (it came from outside the ops checked: the data, or an op run without anomaly detection)";
    }
    throw AnomalyError("tapegrad: " + msg.str() + already);
}

void check_backward_anomaly(const Node& node, const Tensor& upstream, const tensor_list& grads)
{
    const AnomalyOptions& o = *anomaly_options;
    for (size_t i = 0; i < grads.size(); ++i) {
        const int64_t at = first_non_finite(grads[i], o.nan, o.inf);
        if (at < 0) [[likely]]
            continue;
        std::ostringstream msg;
        msg << "anomaly detected: the backward rule of op '" << node.op << "' produced " << where(grads[i], at)
            << " in the gradient of its input " << i << " of shape "
            << shape_and_dtype(grads[i].shape(), grads[i].dtype()) << "; the forward ran" << in_module(node.scope)
            << " with output " << shape_and_dtype(node.shape, node.dtype) << " and inputs ";
        for (size_t k = 0; k < node.inputs.size(); ++k) {
            const Edge& e = node.inputs[k];
            msg << (k ? ", " : "") << k << ": ";
            if (e.node) msg << shape_and_dtype(e.node->shape, e.node->dtype);
            else if (e.leaf) msg << shape_and_dtype(e.leaf->shape, e.leaf->dtype);
            else msg << "(needs no gradient)";
        }
        if (const int64_t bad = first_non_finite(upstream, o.nan, o.inf); bad >= 0)
            msg << "; the gradient it received already held " << where(upstream, bad)
                << " (an upstream gradient given to backward, or a hook's)";
        throw AnomalyError("tapegrad: " + msg.str());
    }
}

}  // namespace detail
}  // namespace tg
