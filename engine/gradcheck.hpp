// The gradient checker: compares the tape's analytic gradients with central
// finite differences, element by element, in float64.
//
// Every element of every input that requires grad is perturbed; the step is
// scaled to the element's magnitude and rounded so that x ± h is exact, and
// the step actually taken is the one divided by. A function with many outputs
// is projected onto a random cotangent u, so the check compares uᵀJ with the
// numeric derivative of <f(x), u> and never builds a Jacobian. Perturbations
// run in parallel on tapegrad's thread pool.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/registry.hpp"
#include "engine/tensor.hpp"

namespace tg {

struct GradcheckOptions {
    double atol = 1e-7;           // per element: |analytic - numeric| <= atol + rtol·|numeric| + 4·error estimate
    double rtol = 1e-6;
    double max_rel_error = 1e-7;  // per input: the summary ‖n−a‖/(‖n‖+‖a‖) must stay below this
    uint64_t seed = 0;            // draws the cotangents
    bool second_order = false;    // also check the gradient of a vector-Jacobian product
    int report_worst = 5;         // elements listed per failing input
    std::vector<std::string> names;  // input names for the report (default x0, x1, ...)
};

struct ElementReport {
    shape_type index;
    double value = 0, analytic = 0, numeric = 0, error_estimate = 0, abs_error = 0, rel_error = 0;
    bool passed = true;
};

struct InputReport {
    std::string name;
    shape_type shape;
    int64_t checked = 0;         // elements perturbed
    int64_t failures = 0;        // elements outside the tolerance
    double rel_error = 0;        // ‖n−a‖/(‖n‖+‖a‖) over the whole input
    double max_abs_analytic = 0, max_abs_numeric = 0;
    bool vacuous = false;        // analytic and numeric both ~0 everywhere: proves nothing
    bool passed = true;
    std::vector<ElementReport> worst;  // worst elements, failing first
};

struct GradcheckResult {
    bool passed = true;
    std::string what;            // "first order" or "second order (gradient of uᵀJ·w)"
    std::vector<InputReport> inputs;
    double base_step = 0;        // relative step: h = base_step·max(1, |x|)
    uint64_t seed = 0;
    std::string reproduce;       // one line that re-runs this check
    std::string to_string() const;
};

using GradcheckFn = std::function<Tensor(const tensor_list&)>;

// Checks the gradients of fn at `inputs` (converted to float64 copies).
GradcheckResult gradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options = {});

// Checks the gradient of x, u ↦ <∂<fn(x), u>/∂x, w>, that is the backward of
// fn differentiated once more (the backward must be recorded with create_graph).
GradcheckResult gradgradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options = {});

// Runs the checks of one registered sample: float64 first and second order,
// and its float32 gradients against the float64 ones.
struct SampleCheck {
    std::string op, sample;
    GradcheckResult first, second;
    bool float32_passed = true;
    double float32_max_rel_error = 0;
    std::string float32_message;
    double seconds = 0;
    bool passed() const { return first.passed && second.passed && float32_passed; }
};
SampleCheck check_sample(const OpInfo& op, const OpSample& sample, uint64_t seed = 0);

}  // namespace tg
