#include "engine/replay.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <unordered_map>

#include "engine/autograd.hpp"

namespace tg {

namespace detail {
thread_local bool replay_capture_on = false;
}  // namespace detail

ReplayCapture::ReplayCapture() : previous_(detail::replay_capture_on) { detail::replay_capture_on = true; }
ReplayCapture::~ReplayCapture() { detail::replay_capture_on = previous_; }

namespace {

constexpr int constant_source = -1;
int leaf_source(size_t k) { return -2 - int(k); }
bool is_leaf_source(int s) { return s <= -2; }
size_t leaf_of(int s) { return size_t(-2 - s); }

}  // namespace

ReplayTape::ReplayTape(const Tensor& output, const tensor_list& leaves) : leaves_(leaves), output_(output)
{
    TG_CHECK(output.defined(), "replay: undefined output");
    std::unordered_map<const TensorImpl*, size_t> leaf_index;
    for (size_t k = 0; k < leaves.size(); ++k) {
        TG_CHECK(leaves[k].defined() && leaves[k].is_leaf(), "replay: input ", k, " is not a leaf tensor");
        TG_CHECK(leaves[k].dtype() == float64, "replay: leaf ", k, " is ", dtype_name(leaves[k].dtype()),
                 "; replay computes in float64");
        leaf_index.emplace(leaves[k].impl_ptr().get(), k);
    }
    downstream_.resize(leaves.size());
    TG_CHECK(output.grad_fn(), "replay: the output was not recorded from any leaf that requires grad");

    // Depth-first from the output, iteratively (a tape can be long): an entry
    // is numbered after all the entries it reads.
    std::unordered_map<const Node*, int> index;
    std::vector<std::pair<Node*, size_t>> stack{{output.grad_fn().get(), 0}};
    std::unordered_map<const Node*, bool> entered;
    entered[output.grad_fn().get()] = true;
    while (!stack.empty()) {
        auto& [node, next] = stack.back();
        if (next < node->inputs.size()) {
            Node* in = node->inputs[next++].node.get();
            if (in && !entered[in]) {
                entered[in] = true;
                stack.emplace_back(in, 0);
            }
            continue;
        }
        index[node] = int(nodes_.size());
        Entry e{node, node->replay.get(), {}};
        if (!e.info) missing_.emplace_back(node->op);
        else
            for (size_t i = 0; i < e.info->inputs.size(); ++i)
                TG_CHECK(!e.info->inputs[i].defined() || e.info->inputs[i].version() == e.info->input_versions[i],
                         "replay: input ", i, " of '", node->op, "' was modified in place after the op ran");
        if (e.info)
            TG_CHECK(e.info->output.version() == e.info->output_version, "replay: the output of '", node->op,
                     "' was modified in place after the op ran");
        e.sources.assign(node->inputs.size(), constant_source);
        for (size_t i = 0; i < node->inputs.size(); ++i) {
            const Edge& edge = node->inputs[i];
            if (edge.node) e.sources[i] = index.at(edge.node.get());
            else if (edge.leaf) {
                auto it = leaf_index.find(edge.leaf.get());
                if (it != leaf_index.end()) e.sources[i] = leaf_source(it->second);
            }
        }
        nodes_.push_back(std::move(e));
        stack.pop_back();
    }
    output_entry_ = index.at(output.grad_fn().get());

    // Entries downstream of each leaf, in order.
    std::vector<uint8_t> reached(nodes_.size());
    for (size_t k = 0; k < leaves.size(); ++k) {
        std::fill(reached.begin(), reached.end(), uint8_t(0));
        for (size_t n = 0; n < nodes_.size(); ++n) {
            for (int s : nodes_[n].sources)
                if (s == leaf_source(k) || (s >= 0 && reached[size_t(s)])) reached[n] = 1;
            if (reached[n]) downstream_[k].push_back(int(n));
        }
    }
}

std::string ReplayTape::missing() const
{
    std::map<std::string, int> count;
    for (const std::string& op : missing_) ++count[op];
    std::string s;
    for (const auto& [op, n] : count) s += (s.empty() ? "" : ", ") + op + (n > 1 ? " x" + std::to_string(n) : "");
    return s;
}

std::string ReplayTape::verify() const
{
    NoGradGuard off;
    for (const Entry& e : nodes_) {
        if (!e.info) continue;
        Tensor again = e.info->forward(e.info->inputs);
        const Tensor& want = e.info->output;
        if (!again.defined() || again.shape() != want.shape() || again.dtype() != want.dtype())
            return std::string("'") + e.node->op + "': replay gave " +
                   (again.defined() ? shape_str(again.shape()) + " " + dtype_name(again.dtype()) : "nothing") +
                   ", recorded " + shape_str(want.shape()) + " " + dtype_name(want.dtype());
        if (want.dtype() != float64) continue;
        const double* a = again.data<double>();
        const double* b = want.data<double>();
        double scale = 0;
        for (int64_t i = 0; i < want.numel(); ++i)
            if (std::isfinite(b[i])) scale = std::max(scale, std::abs(b[i]));
        for (int64_t i = 0; i < want.numel(); ++i) {
            bool same = a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]));
            if (!same && !(std::abs(a[i] - b[i]) <= 1e-12 * std::abs(b[i]) + 1e-14 * scale))
                return std::string("'") + e.node->op + "' element " + std::to_string(i) + ": replay gave " +
                       std::to_string(a[i]) + ", recorded " + std::to_string(b[i]);
        }
    }
    return "";
}

// --- Replayer ------------------------------------------------------------------------------

Replayer::Replayer(const ReplayTape& tape)
    : tape_(tape), nodes_(tape.nodes_.size()), leaves_(tape.leaves_.size())
{
    TG_CHECK(tape.complete(), "replay: these ops were recorded without a replay closure: ", tape.missing());
}

void Replayer::prepare(State& s, const Tensor& base)
{
    if (!s.current.defined()) {
        NoGradGuard off;
        s.current = base.detach().clone();
        s.marks.assign(size_t(base.numel()), 0);
    }
}

Replayer::State& Replayer::state(int source)
{
    return is_leaf_source(source) ? leaves_[leaf_of(source)] : nodes_[size_t(source)];
}

double* Replayer::leaf_data(size_t k)
{
    State& s = leaves_[k];
    prepare(s, tape_.leaves_[k]);
    return s.current.data<double>();
}

const Tensor& Replayer::run_element(size_t k, int64_t e, double v)
{
    State& s = leaves_[k];
    prepare(s, tape_.leaves_[k]);
    double* x = s.current.data<double>();
    double saved = x[e];
    x[e] = v;
    s.changed.assign(1, e);
    s.touched = true;
    touched_leaves_.push_back(int(k));
    propagate(tape_.downstream_[k]);
    const Tensor& out = result();
    x[e] = saved;
    return out;
}

const Tensor& Replayer::run()
{
    // Which leaf elements the caller changed.
    merged_.clear();
    for (size_t k = 0; k < leaves_.size(); ++k) {
        State& s = leaves_[k];
        if (!s.current.defined()) continue;
        const double* x = s.current.data<double>();
        const double* b = tape_.leaves_[k].data<double>();
        s.changed.clear();
        for (int64_t i = 0; i < s.current.numel(); ++i)
            if (std::memcmp(&x[i], &b[i], sizeof(double)) != 0) s.changed.push_back(i);
        if (s.changed.empty()) continue;
        s.touched = true;
        touched_leaves_.push_back(int(k));
        for (int n : tape_.downstream_[k]) merged_.push_back(n);
    }
    std::sort(merged_.begin(), merged_.end());
    merged_.erase(std::unique(merged_.begin(), merged_.end()), merged_.end());
    propagate(merged_);
    return result();
}

void Replayer::propagate(const std::vector<int>& order)
{
    NoGradGuard off;
    for (int n : order) {
        const ReplayTape::Entry& entry = tape_.nodes_[size_t(n)];
        const ReplayInfo& info = *entry.info;
        // Inputs as the delta rule sees them.
        inputs_.assign(entry.sources.size(), ReplayInput{});
        bool any_changed = false, any_dense = false;
        for (size_t i = 0; i < entry.sources.size(); ++i) {
            ReplayInput& in = inputs_[i];
            in.base = &info.inputs[i];
            in.current = &info.inputs[i];
            int src = entry.sources[i];
            if (src == constant_source) continue;
            State& s = state(src);
            if (!s.touched) continue;
            in.current = &s.current;
            in.changed = &s.changed;
            in.dense = s.dense;
            any_changed = any_changed || !in.unchanged();
            any_dense = any_dense || s.dense;
        }
        if (!any_changed) continue;

        State& out = nodes_[size_t(n)];
        prepare(out, info.output);
        out.touched = true;
        touched_nodes_.push_back(n);
        if (!any_dense && info.delta) {
            DeltaArgs args(inputs_, info.output, out.current, out.changed, out.marks);
            if (info.delta(args)) {
                ++delta_replays_;
                continue;
            }
            // The rule declined: undo what it may have written.
            double* o = out.current.data<double>();
            const double* b = info.output.data<double>();
            for (int64_t i : out.changed) {
                o[i] = b[i];
                out.marks[size_t(i)] = 0;
            }
            out.changed.clear();
        }

        // Run the forward again on the current values.
        ++dense_replays_;
        forward_inputs_.resize(inputs_.size());
        for (size_t i = 0; i < inputs_.size(); ++i) forward_inputs_[i] = *inputs_[i].current;
        Tensor again = info.forward(forward_inputs_);
        TG_CHECK(again.defined() && again.shape() == info.output.shape() && again.dtype() == float64,
                 "replay: '", entry.node->op, "' gave ", again.defined() ? shape_str(again.shape()) : "nothing",
                 " on replay, ", shape_str(info.output.shape()), " when recorded");
        const double* a = again.data<double>();
        const double* b = info.output.data<double>();
        double* o = out.current.data<double>();
        int64_t n_el = again.numel();
        std::memcpy(o, a, size_t(n_el) * sizeof(double));
        // Find what changed, so the entries after this one can take deltas.
        out.changed.clear();
        int64_t limit = n_el / 4;
        for (int64_t i = 0; i < n_el; ++i) {
            if (std::memcmp(&a[i], &b[i], sizeof(double)) == 0) continue;
            if (int64_t(out.changed.size()) >= limit) {
                out.dense = true;
                break;
            }
            out.changed.push_back(i);
        }
        if (out.dense) {
            for (int64_t i : out.changed) out.marks[size_t(i)] = 0;
            out.changed.clear();
        } else {
            for (int64_t i : out.changed) out.marks[size_t(i)] = 1;
        }
    }
}

const Tensor& Replayer::result()
{
    // Copy out before restoring: the caller reads it after.
    const Tensor* out;
    if (tape_.output_entry_ < 0) out = &tape_.output_;
    else {
        State& s = nodes_[size_t(tape_.output_entry_)];
        out = s.touched ? &s.current : &tape_.nodes_[size_t(tape_.output_entry_)].info->output;
    }
    if (!out_copy_.defined() || out_copy_.numel() != out->numel()) {
        NoGradGuard off;
        out_copy_ = out->detach().clone();
    }
    else std::memcpy(out_copy_.data<double>(), out->data<double>(), size_t(out->numel()) * sizeof(double));
    restore();
    return out_copy_;
}

void Replayer::restore()
{
    for (int n : touched_nodes_) {
        State& s = nodes_[size_t(n)];
        const Tensor& base = tape_.nodes_[size_t(n)].info->output;
        double* o = s.current.data<double>();
        const double* b = base.data<double>();
        if (s.dense) std::memcpy(o, b, size_t(base.numel()) * sizeof(double));
        else
            for (int64_t i : s.changed) {
                o[i] = b[i];
                s.marks[size_t(i)] = 0;
            }
        s.changed.clear();
        s.dense = false;
        s.touched = false;
    }
    touched_nodes_.clear();
    for (int k : touched_leaves_) {
        leaves_[size_t(k)].changed.clear();
        leaves_[size_t(k)].touched = false;
    }
    touched_leaves_.clear();
}

}  // namespace tg
