// The gradient checker: compares the tape's analytic gradients with finite
// differences in float64, element by element, and says which input, which
// element and by how much when they disagree.
//
// What one check does (see GradcheckOptions for the numbers):
// - A non-scalar output is projected onto a few random cotangents u. The tape
//   gives uᵀJ for each (one backward each); every perturbed forward is
//   projected onto all of them, so no Jacobian is ever built and memory stays
//   proportional to the inputs plus the output.
// - The output's rounding noise is measured first: the forward at three tiny
//   displacements along each of three random directions, whose third
//   difference cancels the smooth change and leaves the noise. Everything
//   below allows for it (per element, from the outputs that element moves).
// - Full mode perturbs every element of every input that requires grad, with
//   central differences at a step h = 2^k (so x ± h is exact), starting near
//   cbrt(ε)·max(1, |x|), raised where the noise would matter and shrunk where
//   the stencil leaves the function's domain. One rule judges every element:
//   |analytic − numeric| ≤ atol + rtol·|numeric| + 2·(estimated error of
//   numeric), the error being truncation (from successive halvings,
//   Richardson's extrapolation) plus rounding (noise/h). An element well
//   inside the tolerance on the first step passes; any other is refined until
//   its error estimate is small. An element that cannot be judged (no finite
//   stencil, or no step accurate enough) is unchecked: counted, shown, and a
//   check with unchecked elements does not pass unless allowed. At a kink
//   (relu at 0, tied maxima, abs at 0) the one-sided derivatives differ: the
//   analytic value must lie between them, and tied elements are judged
//   together (along the direction that moves them all, the function is
//   smooth and the sum of their gradients must match), so giving the whole
//   gradient to every tied element fails. Perturbations run in parallel on
//   tapegrad's thread pool. An input's verdict follows from its elements'.
// - Fast mode probes each input along random Gaussian directions v (steps
//   2^-10 and 2^-11, extrapolated), comparing uᵀJv with the analytic
//   <uᵀJ, v> per input and per group of elements of similar tolerance. A probe
//   must agree to a tenth of the smallest per-element tolerance of its group
//   (plus the measured noise), never a tolerance grown by sums, so an error
//   the full check would flag in any one element passes a probe with
//   probability below 8%, and all `probes` of them below 0.08^probes. An
//   input with any disagreeing probe is checked again in full.
// - Cheap structural checks run every time: the backward is linear in the
//   upstream gradient, gives zeros for a zero upstream gradient, is
//   deterministic (to nondet_tol), leaves the inputs unchanged, returns
//   gradients of the inputs' shapes and dtypes, and the recorded forward
//   equals the forward without a tape. A check whose gradients are ~0
//   everywhere is flagged vacuous.
// - A forward that raises an error at the given point is reported as such; a
//   backward that raises where its forward did not is a failure.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "../core/registry.hpp"
#include "../core/tensor.hpp"

namespace tg {

enum class GradcheckMode {
    full,       // every element of every input
    fast,       // random directional probes, escalating to full on any doubt
    automatic,  // full for inputs up to fast_above elements, fast above
};

struct GradcheckOptions {
    // Per element: |analytic − numeric| ≤ atol + rtol·|numeric| + 2·(the
    // estimated error of numeric).
    double atol = 1e-10;
    double rtol = 1e-7;
    // A check with elements that could not be judged passes only if allowed.
    bool allow_unchecked = false;
    // The structural check "backward is deterministic": the same backward
    // twice may differ by this much, relative to the gradient (0: bit for bit).
    double nondet_tol = 0;
    uint64_t seed = 0;                // draws the cotangents and the probe directions
    GradcheckMode mode = GradcheckMode::automatic;
    int64_t fast_above = 4096;        // automatic mode: larger inputs are probed first
    int cotangents = 2;               // random projections of a non-scalar output (1 for a scalar; at most 8)
    int probes = 4;                   // fast mode: directions per input and tolerance group
    bool second_order = false;        // gradcheck() also runs gradgradcheck() if first order passes
    // gradcheck() also checks forward mode: tg::jvp's J·v along a random v
    // against finite differences along v (a structural check). The registry
    // sweep turns it on for every sample with second order.
    bool forward_ad = false;
    bool structural = true;           // run the cheap structural checks
    bool vacuous_fails = false;       // a vacuous check fails instead of warning
    int report_worst = 5;             // elements listed per input in the report
    std::vector<std::string> names;   // one per input, by position (default x0, x1, ...)
    std::string reproduce;            // the line the report prints to re-run the check
    // check_float32: |g32 − g64| ≤ float32_atol·max(1, max|g64|) + float32_rtol·|g64|
    // per element, for the output and each gradient.
    double float32_atol = 1e-4;
    double float32_rtol = 1e-3;
    // Splits the perturbations over processes (tg::dist::gradcheck fills it
    // in): this process checks its part of full mode's elements and of fast
    // mode's probes, then `sum` adds a buffer up over every part in place.
    // Each result is in its own part's buffer only (zeros elsewhere), so
    // every process ends with the whole report, the one a single process
    // gives. The noise measurement and tied kinks, a few evaluations each,
    // run in every process alike.
    struct Partition {
        int part = 0, parts = 1;
        std::function<void(std::vector<int64_t>&)> sum;
    } partition;
};

// What was found for one element (for the cotangent where it looked worst).
enum class ElementVerdict {
    pass,
    kink,       // left and right derivatives differ; the analytic value lies between them
    unchecked,  // no finite stencil, or no step accurate enough to judge it
    fail,
};

// An input's or a whole check's verdict.
enum class Verdict {
    pass,
    nondifferentiable,  // no failure, but kinks were found (the gradients there are subgradients)
    incomplete,         // no failure, but some elements could not be judged
    fail,
};

enum class CheckedBy { full, fast, fast_then_full };

const char* to_string(ElementVerdict v);
const char* to_string(Verdict v);

struct ElementReport {
    shape_type index;
    int cotangent = 0;           // which projection the numbers are for
    double value = 0;            // the input element
    double step = 0;             // h
    double analytic = 0, numeric = 0;
    double error_estimate = 0;   // of numeric: truncation (from the steps taken) plus rounding noise
    double abs_error = 0, rel_error = 0;
    double left = 0, right = 0;  // one-sided derivatives (kinks; NaN if not computed)
    ElementVerdict verdict = ElementVerdict::pass;
};

struct InputReport {
    std::string name;
    shape_type shape;
    Verdict verdict = Verdict::pass;
    CheckedBy checked_by = CheckedBy::full;
    int64_t elements = 0;          // elements perturbed one by one (0 when probes sufficed)
    int64_t failures = 0, kinks = 0, unchecked = 0;
    double rel_error = 0;          // ‖n − a‖ / (‖n‖ + ‖a‖) (fast: the worst probe's)
    double max_abs_analytic = 0, max_abs_numeric = 0;
    bool vacuous = false;          // both gradients ~0 everywhere
    int probes = 0;                // directional probes run
    double probe_ratio = 0;        // worst probe |discrepancy| + noise, over its tolerance
    double probe_resolution = 0;   // > 0: the output's noise held some probe to this |discrepancy|,
                                   // coarser than its group's tolerance (full mode resolves finer)
    std::string note;              // why probes escalated, or why the summary failed
    std::vector<ElementReport> worst;  // failing first, then kinks, then the largest errors
};

struct StructuralCheck {
    std::string name;    // "linear in the upstream gradient", ...
    bool passed = true;
    std::string detail;  // what went wrong
};

struct GradcheckResult {
    Verdict verdict = Verdict::pass;
    bool unchecked_allowed = false;  // options.allow_unchecked: an incomplete check passes
    bool vacuous = false;        // every input's gradients are ~0 everywhere: proves nothing
    std::string what;            // "first order" or "second order (...)"
    GradcheckMode mode = GradcheckMode::automatic;
    int cotangents = 0;
    uint64_t seed = 0;
    double atol = 0, rtol = 0;   // the options the elements were judged by
    double noise = 0;            // measured rounding noise of <f(x), u> (the largest over the cotangents)
    std::vector<InputReport> inputs;  // the inputs that require grad, in order
    std::vector<StructuralCheck> structural;
    std::vector<GradcheckResult> second_order;  // gradcheck with options.second_order
    int64_t evaluations = 0;     // forward calls made for finite differences
    std::string note;            // how the evaluations were made, when it matters
    std::string error;           // why the check could not run (the forward or the backward raised)
    double seconds = 0;
    std::string reproduce;

    bool passed() const;
    // Names of the failing inputs, and the report of one input by name (throws if absent).
    std::vector<std::string> failed_inputs() const;
    const InputReport& input(const std::string& name) const;
    std::string to_string() const;
};

using GradcheckFn = std::function<Tensor(const tensor_list&)>;

// Checks the gradients of fn at `inputs` (as float64 copies) with respect to
// the inputs that require grad. fn must return one tensor, and is called from
// several threads at once on separate copies of the inputs: it must not change
// shared state. Errors raised by fn or by a backward rule propagate.
GradcheckResult gradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options = {});

// Checks the gradients of fn() with respect to tensors it reads (a model's
// parameters, by name): float64 leaves that require grad, which fn must not
// change. fn runs once with the tape on; each perturbed evaluation then
// replays only the entries downstream of the perturbed parameter, on every
// thread at once, never touching the parameters (engine/replay.hpp). Ops
// recorded without a replay closure make it fall back to calling fn again for
// each perturbation, one at a time, with the parameter changed in place.
// The model version, tg::gradcheck(model, loss_fn, batch), is in nn/gradcheck.hpp.
GradcheckResult gradcheck_parameters(const std::function<Tensor()>& fn, const named_tensors& parameters,
                                     GradcheckOptions options = {});

// Second order: checks the gradients of (x, u) ↦ Σ_i <∂<fn(x), u>/∂x_i, w_i>
// (random u and w) with respect to x and u, i.e. the backward of fn
// differentiated once more through create_graph.
GradcheckResult gradgradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options = {});

// fn's output and gradients computed in float32 against the same in float64
// (no float32 finite differences: those are what gives false alarms).
struct PrecisionReport {
    bool passed = true;
    double max_rel_error = 0;  // max |g32 − g64| / max(1, max|g64|) over outputs and gradients
    std::string message;       // the first element out of tolerance
    std::string to_string() const;
};
PrecisionReport check_float32(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options = {});

// All checks of one registered sample: float64 first and second order, and float32 vs float64.
struct SampleCheck {
    std::string op, sample;
    GradcheckResult first, second;  // second.what is "not applicable" for ops without second order
    PrecisionReport float32;
    double seconds = 0;
    bool passed() const { return first.passed() && second.passed() && float32.passed; }
    // "pass", "pass (kinks)", "warn: vacuous", "FAIL"
    std::string verdict() const;
    std::string to_string() const;  // every part's report
};
// Draws a sample's inputs in `dtype` (index inputs are int64) from `seed`;
// differentiable inputs require grad.
tensor_list make_inputs(const OpSample& sample, Dtype dtype, uint64_t seed);

SampleCheck check_sample(const OpInfo& op, const OpSample& sample, uint64_t seed = 0,
                         GradcheckOptions options = {});

}  // namespace tg
