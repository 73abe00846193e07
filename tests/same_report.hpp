// Two gradcheck reports compared field by field (a split check against one
// process's, in tests/dist and tests/test_gradcheck.cpp).
#pragma once

#include <cstring>
#include <string>

#include <tapegrad/tapegrad.hpp>

namespace tg_test {

inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// "" when two reports agree in everything but the time taken and the note:
// verdicts, counts, the evaluations made and every number of the worst
// elements, to the bit.
inline std::string report_difference(const tg::GradcheckResult& a, const tg::GradcheckResult& b)
{
    if (a.verdict != b.verdict) return std::string("verdict ") + tg::to_string(a.verdict) + " vs " + tg::to_string(b.verdict);
    if (a.evaluations != b.evaluations)
        return "evaluations " + std::to_string(a.evaluations) + " vs " + std::to_string(b.evaluations);
    if (!same_bits(a.noise, b.noise) || a.vacuous != b.vacuous) return "noise or vacuous";
    if (a.inputs.size() != b.inputs.size()) return "number of inputs";
    if (a.structural.size() != b.structural.size()) return "number of structural checks";
    for (size_t i = 0; i < a.structural.size(); ++i)
        if (a.structural[i].passed != b.structural[i].passed) return "structural check " + a.structural[i].name;
    for (size_t i = 0; i < a.inputs.size(); ++i) {
        const tg::InputReport &x = a.inputs[i], &y = b.inputs[i];
        const std::string at = "input " + x.name + ": ";
        if (x.name != y.name || x.verdict != y.verdict || x.elements != y.elements || x.failures != y.failures ||
            x.kinks != y.kinks || x.unchecked != y.unchecked || x.checked_by != y.checked_by || x.probes != y.probes)
            return at + "verdict or counts";
        if (!same_bits(x.rel_error, y.rel_error) || !same_bits(x.max_abs_numeric, y.max_abs_numeric) ||
            !same_bits(x.max_abs_analytic, y.max_abs_analytic))
            return at + "rel_error " + std::to_string(x.rel_error) + " vs " + std::to_string(y.rel_error);
        if (x.worst.size() != y.worst.size()) return at + "number of worst elements";
        for (size_t j = 0; j < x.worst.size(); ++j) {
            const tg::ElementReport &e = x.worst[j], &f = y.worst[j];
            if (e.index != f.index || e.verdict != f.verdict || e.cotangent != f.cotangent ||
                !same_bits(e.numeric, f.numeric) || !same_bits(e.analytic, f.analytic) || !same_bits(e.step, f.step) ||
                !same_bits(e.error_estimate, f.error_estimate) || !same_bits(e.left, f.left) || !same_bits(e.right, f.right))
                return at + "worst element " + std::to_string(j) + " at " + tg::shape_str(e.index) + " vs " +
                       tg::shape_str(f.index);
        }
    }
    if (a.second_order.size() != b.second_order.size()) return "number of second-order checks";
    for (size_t i = 0; i < a.second_order.size(); ++i) {
        const std::string d = report_difference(a.second_order[i], b.second_order[i]);
        if (!d.empty()) return "second order: " + d;
    }
    return "";
}

}  // namespace tg_test
