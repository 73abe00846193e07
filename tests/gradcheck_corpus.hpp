// The machinery of the gradcheck corpus (test_gradcheck_corpus.cpp): a case
// is a function and a generator of inputs; each runs on seeds 0..19 through
// the public API only (tg::gradcheck, GradcheckResult::passed(),
// InputReport::verdict / worst, ElementReport::index / verdict), so the
// corpus keeps compiling while the checker's internals change.
//
// A planted bug must be caught on every input (passed() false) and the
// report must name a faulty element: an entry of some input's `worst` with
// verdict FAIL that is one of the elements the bug corrupts (each bug's
// generator says which, or "every"). A correct op must not be flagged on any
// input: passed(), and unless the case is checked at kinks or ties on
// purpose, no non-differentiable points, no vacuous warning and no element
// left unchecked either.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace corpus {

using tg::Generator;
using tg::GradcheckResult;
using tg::InputReport;
using tg::Tensor;
using tg::shape_type;
using tg::tensor_list;
using Values = std::vector<double>;

inline constexpr int seeds_per_case = 20;
inline constexpr size_t min_cases_per_category = 30;

// --- inputs ---------------------------------------------------------------------------------

inline Tensor leaf(const Values& v, const shape_type& shape)
{
    return tg::from_values(v, shape, tg::float64).requires_grad_();
}
inline Tensor constant(const Values& v, const shape_type& shape) { return tg::from_values(v, shape, tg::float64); }

inline Values normals(Generator& g, int64_t n, double scale = 1.0)
{
    Values v(static_cast<size_t>(n));
    for (double& x : v) x = scale * g.normal();
    return v;
}
inline Values uniforms(Generator& g, int64_t n, double lo, double hi)
{
    Values v(static_cast<size_t>(n));
    for (double& x : v) x = lo + (hi - lo) * g.uniform();
    return v;
}
// Magnitudes spread evenly over the decades between lo and hi.
inline Values log_uniforms(Generator& g, int64_t n, double lo, double hi)
{
    Values v(static_cast<size_t>(n));
    for (double& x : v) x = lo * std::pow(hi / lo, g.uniform());
    return v;
}
// Values of either sign with magnitudes in [lo, hi].
inline Values signed_uniforms(Generator& g, int64_t n, double lo, double hi)
{
    Values v = uniforms(g, n, lo, hi);
    for (double& x : v)
        if (g.uniform() < 0.5) x = -x;
    return v;
}
// k distinct indices in [0, n), in increasing order.
inline std::vector<int64_t> distinct(Generator& g, int64_t n, int64_t k)
{
    std::vector<int64_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    for (int64_t i = 0; i < k; ++i) std::swap(all[size_t(i)], all[size_t(g.integer(i, n))]);
    all.resize(static_cast<size_t>(k));
    std::sort(all.begin(), all.end());
    return all;
}
// Fisher-Yates, from g.
template <class T>
void shuffle(Generator& g, std::vector<T>& v)
{
    for (size_t i = 0; i + 1 < v.size(); ++i) std::swap(v[i], v[size_t(g.integer(int64_t(i), int64_t(v.size())))]);
}
inline std::vector<int64_t> where(const Values& v, const std::function<bool(double)>& pred)
{
    std::vector<int64_t> out;
    for (size_t i = 0; i < v.size(); ++i)
        if (pred(v[i])) out.push_back(int64_t(i));
    return out;
}

// --- cases ----------------------------------------------------------------------------------

// The elements of one checked input that a bug corrupts.
struct Touched {
    bool every = false;
    std::vector<int64_t> flat;
    bool contains(int64_t e) const { return every || std::find(flat.begin(), flat.end(), e) != flat.end(); }
};
inline Touched every_element() { return {true, {}}; }
inline Touched elements(std::vector<int64_t> flat) { return {false, std::move(flat)}; }
inline Touched no_element() { return {}; }

// One input of a case: the function, its inputs (the ones to check require
// grad) and, for a bug, which elements of which checked input are wrong, by
// position in the report's inputs (for a second-order bug, in the second-order
// report: the checked inputs, then "upstream gradient").
struct Instance {
    tg::GradcheckFn fn;
    tensor_list inputs;
    std::vector<Touched> touched;
};

struct Case {
    std::string name;
    std::string kind;               // what it exercises, for the table
    bool bug = false;               // a planted bug, or a correct op
    bool kinks = false;             // correct op checked at kinks or ties on purpose
    bool second_order = false;      // checked with options.second_order; a bug here is in second order only
    std::function<Instance(Generator&)> make;
};

// The checker's defaults: the corpus judges them, not tolerances tuned per case.
inline tg::GradcheckOptions options_for(const Case& c, uint64_t seed)
{
    tg::GradcheckOptions o;
    o.seed = seed;
    o.second_order = c.second_order;
    return o;
}

inline uint64_t case_seed(const std::string& name, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a of the name, then the seed
    for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ULL;
    return (h ^ (seed + 1) * 0x9e3779b97f4a7c15ULL) * 0x100000001b3ULL;
}

// --- judging --------------------------------------------------------------------------------

// Elements the checker could not check (a stencil outside the domain that no
// smaller step fits), which a correct smooth op must not have and a bug must
// not hide behind.
inline int64_t unchecked_elements(const InputReport& in) { return in.unchecked; }

inline int64_t flat_index(const shape_type& index, const shape_type& shape)
{
    int64_t f = 0;
    for (size_t d = 0; d < shape.size() && d < index.size(); ++d) f = f * shape[d] + index[d];
    return f;
}

inline std::string num(double v, const char* f = "%.3g")
{
    char b[48];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// A few lines of what a report said: verdicts, counts, the worst element of each input not passing.
inline std::string brief(const GradcheckResult& r, const std::string& order = "")
{
    std::string s = order + tg::to_string(r.verdict) + (r.vacuous ? " (vacuous)" : "");
    for (const InputReport& in : r.inputs) {
        s += "; " + in.name + " " + tg::shape_str(in.shape) + ": " + tg::to_string(in.verdict);
        if (in.failures) s += ", " + std::to_string(in.failures) + " failing";
        if (in.kinks) s += ", " + std::to_string(in.kinks) + " kinks";
        if (in.unchecked) s += ", " + std::to_string(in.unchecked) + " unchecked";
        if (in.checked_by != tg::CheckedBy::full) s += in.checked_by == tg::CheckedBy::fast ? " (probes)" : " (probes escalated)";
        if (in.verdict == tg::Verdict::fail && in.failures == 0 && !in.note.empty()) s += " [" + in.note + "]";
        if (in.verdict != tg::Verdict::pass && !in.worst.empty()) {
            const tg::ElementReport& e = in.worst.front();
            s += " worst " + tg::shape_str(e.index) + " " + tg::to_string(e.verdict) + " x=" + num(e.value) +
                 " analytic=" + num(e.analytic, "%.6g") + " numeric=" + num(e.numeric, "%.6g") +
                 " rel=" + num(e.rel_error, "%.2g");
        }
    }
    for (const tg::StructuralCheck& c : r.structural)
        if (!c.passed) s += "; structural FAIL: " + c.name;
    for (const GradcheckResult& second : r.second_order) s += " | " + brief(second, "second order: ");
    return s;
}

struct Outcome {
    bool ok = false;       // bug: caught and a faulty element named; correct op: not flagged
    bool hit = false;      // bug: caught (not passed); correct op: flagged
    std::string what;      // why not ok
    int innocents = 0;     // bug: elements the bug does not touch reported FAIL (shown, not checked)
};

inline Outcome judge_bug(const Case& c, const Instance& in, const GradcheckResult& r)
{
    if (r.passed()) return {false, false, "MISSED: report said " + brief(r)};
    const GradcheckResult* target = &r;
    if (c.second_order) {
        if (r.second_order.empty())
            return {false, true, "first order failed, though the bug is in second order only: " + brief(r)};
        target = &r.second_order.front();
    }
    bool named = false;
    int innocents = 0;
    for (size_t k = 0; k < target->inputs.size(); ++k)
        for (const tg::ElementReport& e : target->inputs[k].worst) {
            if (e.verdict != tg::ElementVerdict::fail) continue;
            bool faulty = k < in.touched.size() && in.touched[k].contains(flat_index(e.index, target->inputs[k].shape));
            named = named || faulty;
            innocents += !faulty;
        }
    if (named) return {true, true, "", innocents};
    return {false, true, "caught, but no faulty element is reported FAIL: " + brief(r), innocents};
}

inline Outcome judge_correct(const Case& c, const GradcheckResult& r)
{
    std::string why;
    if (!r.passed()) why = "FALSE ALARM (not passed)";
    std::vector<const GradcheckResult*> reports{&r};
    for (const GradcheckResult& s : r.second_order) reports.push_back(&s);
    for (const GradcheckResult* p : reports) {
        if (p->vacuous && why.empty()) why = "flagged vacuous";
        if (c.kinks) continue;  // kinks and ties may be reported as such
        for (const InputReport& in : p->inputs) {
            if (in.verdict == tg::Verdict::nondifferentiable && why.empty())
                why = "flagged non-differentiable on a smooth op";
            if (unchecked_elements(in) > 0 && why.empty()) why = "elements left unchecked on a smooth op";
        }
    }
    if (why.empty()) return {true, false, ""};
    return {false, true, why + ": " + brief(r)};
}

// --- running a category ---------------------------------------------------------------------

struct Totals {
    int64_t bug_inputs = 0, caught = 0, named = 0;
    int64_t correct_inputs = 0, flagged = 0;
    std::string categories;
};
inline Totals& totals()
{
    static Totals t;  // the categories run in this process
    return t;
}

// TG_CORPUS_CASE=part runs only the cases whose name contains it;
// TG_CORPUS_REPORTS=1 prints the full report of every input that is not ok.
inline std::string env(const char* name)
{
    const char* v = std::getenv(name);
    return v ? v : "";
}

inline void run_category(const std::string& category, const std::vector<Case>& cases)
{
    const std::string only = env("TG_CORPUS_CASE");
    const bool reports = !env("TG_CORPUS_REPORTS").empty();
    auto t_all = std::chrono::steady_clock::now();
    std::string table = category + "\n";
    char line[320];
    std::snprintf(line, sizeof line, "  %-40s %-58s %-22s %8s\n", "case", "kind", "result (of 20 inputs)", "seconds");
    table += line;
    size_t ran_cases = 0;
    int64_t bug_inputs = 0, caught = 0, named = 0, correct_inputs = 0, flagged = 0;
    for (const Case& c : cases) {
        if (!only.empty() && c.name.find(only) == std::string::npos) continue;
        ++ran_cases;
        auto t0 = std::chrono::steady_clock::now();
        int ran = 0, hits = 0, oks = 0, blamed = 0;
        std::vector<std::string> bad_seeds;
        for (uint64_t seed = 0; seed < uint64_t(seeds_per_case); ++seed) {
            Generator gen(case_seed(c.name, seed));
            Outcome out;
            std::string full;
            try {
                Instance in = c.make(gen);
                GradcheckResult r = tg::gradcheck(in.fn, in.inputs, options_for(c, seed));
                out = c.bug ? judge_bug(c, in, r) : judge_correct(c, r);
                if (reports && !out.ok) full = r.to_string();
            } catch (const std::exception& e) {
                out = {false, !c.bug, std::string("threw: ") + e.what()};
            }
            ++ran;
            hits += out.hit;
            oks += out.ok;
            blamed += out.innocents > 0;
            if (!out.ok) bad_seeds.push_back(std::to_string(seed));
            CHECK_MESSAGE(out.ok, c.name << " seed " << seed << ": " << out.what);
            if (!full.empty()) MESSAGE(c.name << " seed " << seed << ", full report:\n" << full);
        }
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        CHECK_MESSAGE(ran == seeds_per_case, c.name << " ran " << ran << " inputs, not " << seeds_per_case);
        std::string result;
        if (c.bug) {
            bug_inputs += ran;
            caught += hits;
            named += oks;
            result = "caught " + std::to_string(hits) + ", named " + std::to_string(oks);
        } else {
            correct_inputs += ran;
            flagged += hits;
            result = "flagged " + std::to_string(hits);
        }
        std::string kind = (c.bug ? "bug: " : "ok: ") + c.kind;
        std::snprintf(line, sizeof line, "  %-40s %-58s %-22s %8.3f%s\n", c.name.c_str(), kind.c_str(),
                      result.c_str(), seconds, oks == ran ? "" : "  <-- not ok");
        table += line;
        if (blamed)
            table += "      on " + std::to_string(blamed) + " inputs the report also calls FAIL elements the bug does not touch\n";
        if (!bad_seeds.empty()) {
            std::string list;
            for (const std::string& s : bad_seeds) list += (list.empty() ? "" : ",") + s;
            table += "      seeds not ok: " + list + "\n";
        }
    }
    if (only.empty()) {
        CHECK_MESSAGE(ran_cases >= min_cases_per_category,
                      category << ": " << ran_cases << " cases, at least " << min_cases_per_category << " wanted");
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
    Totals& t = totals();
    t.bug_inputs += bug_inputs;
    t.caught += caught;
    t.named += named;
    t.correct_inputs += correct_inputs;
    t.flagged += flagged;
    t.categories += (t.categories.empty() ? "" : ", ") + category;
    MESSAGE(table << "  " << ran_cases << " cases, " << num(seconds, "%.1f") << " s");
    MESSAGE("gradcheck corpus (" << t.categories << "): bugs caught " << t.caught << "/" << t.bug_inputs
                                 << " inputs (faulty element named in " << t.named << "), false alarms " << t.flagged
                                 << "/" << t.correct_inputs << " inputs");
}

}  // namespace corpus
