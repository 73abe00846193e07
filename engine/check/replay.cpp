#include "engine/check/replay.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <unordered_map>

#include "engine/kernels/elementwise.hpp"

namespace tg {

// --- capture -----------------------------------------------------------------------------

ReplayCapture::ReplayCapture() : previous_(set_tape_observer(this)) {}

void ReplayCapture::stop()
{
    if (!installed_) return;
    installed_ = false;
    set_tape_observer(previous_);
}

void ReplayCapture::recorded(const std::shared_ptr<Node>& node, TensorRefs inputs, const Tensor& output)
{
    if (previous_) previous_->recorded(node, inputs, output);
    // A node address freed and reused during the capture is recorded again here.
    Record& r = records_[node.get()];
    r = Record{};
    r.node = node;
    for (const Tensor& t : inputs) {
        r.inputs.push_back(t.defined() ? t.detach() : Tensor());
        r.input_versions.push_back(t.defined() ? t.version() : 0);
    }
    r.output = output.detach();
    r.output_version = output.version();
}

const ReplayCapture::Record* ReplayCapture::find(const Node* node) const
{
    auto it = records_.find(node);
    if (it == records_.end() || it->second.node.lock().get() != node) return nullptr;
    return &it->second;
}

std::string rounding_difference(const Tensor& got, const Tensor& want, double rel, double of_scale)
{
    if (got.shape() != want.shape() || got.dtype() != want.dtype())
        return "gave " + shape_str(got.shape()) + " " + dtype_name(got.dtype()) + ", expected " +
               shape_str(want.shape()) + " " + dtype_name(want.dtype());
    if (want.dtype() != float64) return "";
    const double* a = got.data<double>();
    const double* b = want.data<double>();
    double scale = 0;
    for (int64_t i = 0; i < want.numel(); ++i)
        if (std::isfinite(b[i])) scale = std::max(scale, std::abs(b[i]));
    for (int64_t i = 0; i < want.numel(); ++i) {
        bool same = a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]));
        if (!same && !(std::abs(a[i] - b[i]) <= rel * std::abs(b[i]) + of_scale * scale)) {
            shape_type index(want.shape().size());
            for (size_t d = index.size(), r = size_t(i); d-- > 0; r /= size_t(want.shape()[d]))
                index[d] = int64_t(r % size_t(want.shape()[d]));
            char buf[96];
            std::snprintf(buf, sizeof buf, ": %.17g, expected %.17g", a[i], b[i]);
            return "element " + shape_str(index) + buf;
        }
    }
    return "";
}

namespace {

constexpr int constant_source = -1;
int leaf_source(size_t k) { return -2 - int(k); }
bool is_leaf_source(int s) { return s <= -2; }
size_t leaf_of(int s) { return size_t(-2 - s); }

}  // namespace

// --- the tape -----------------------------------------------------------------------------

ReplayTape::ReplayTape(const ReplayCapture& capture, const Tensor& output, const tensor_list& leaves)
    : leaves_(leaves), output_(output)
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
        Entry e{node, capture.find(node), node->replay_form(), {}, nullptr};
        if (!e.record || e.form == ReplayForm::none) {
            missing_.emplace_back(node->op);
            e.record = nullptr;
        } else {
            for (size_t i = 0; i < e.record->inputs.size(); ++i)
                TG_CHECK(!e.record->inputs[i].defined() || e.record->inputs[i].version() == e.record->input_versions[i],
                         "replay: input ", i, " of '", node->op, "' was modified in place after the op ran");
            TG_CHECK(e.record->output.version() == e.record->output_version, "replay: the output of '", node->op,
                     "' was modified in place after the op ran");
        }
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

    // Where each output element of an index map comes from: the op run on
    // element numbers (1-based, input k's after input k-1's; 0 is "none").
    NoGradGuard off;
    for (Entry& e : nodes_) {
        if (!e.record || e.form != ReplayForm::index_map) continue;
        const tensor_list& in = e.record->inputs;
        tensor_list numbered(in.size());
        std::vector<int64_t> first(in.size() + 1, 1);
        for (size_t k = 0; k < in.size(); ++k) {
            first[k + 1] = first[k];
            if (!in[k].defined() || in[k].dtype() != float64) {  // an index input: as recorded
                numbered[k] = in[k];
                continue;
            }
            numbered[k] = Tensor::empty(in[k].shape(), float64);
            double* p = numbered[k].data<double>();
            for (int64_t f = 0; f < in[k].numel(); ++f) p[f] = double(first[k] + f);
            first[k + 1] = first[k] + in[k].numel();
        }
        Tensor from = e.node->forward_again(numbered);
        auto map = std::make_unique<IndexMap>();
        map->offsets.resize(in.size());
        map->outputs.resize(in.size());
        const double* src = from.data<double>();
        const int64_t n = from.numel();
        for (size_t k = 0; k < in.size(); ++k) map->offsets[k].assign(size_t(first[k + 1] - first[k] + 1), 0);
        auto owner = [&](int64_t v) {  // the input of element number v
            return size_t(std::upper_bound(first.begin(), first.end(), v) - first.begin()) - 1;
        };
        for (int64_t o = 0; o < n; ++o) {
            auto v = int64_t(src[o]);
            if (v <= 0) continue;
            size_t k = owner(v);
            ++map->offsets[k][size_t(v - first[k] + 1)];
        }
        for (size_t k = 0; k < in.size(); ++k) {
            for (size_t f = 1; f < map->offsets[k].size(); ++f) map->offsets[k][f] += map->offsets[k][f - 1];
            map->outputs[k].resize(size_t(map->offsets[k].back()));
        }
        std::vector<std::vector<int64_t>> fill(in.size());
        for (size_t k = 0; k < in.size(); ++k) fill[k].assign(map->offsets[k].begin(), map->offsets[k].end() - 1);
        for (int64_t o = 0; o < n; ++o) {
            auto v = int64_t(src[o]);
            if (v <= 0) continue;
            size_t k = owner(v);
            map->outputs[k][size_t(fill[k][size_t(v - first[k])]++)] = o;
        }
        e.map = std::move(map);
    }

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
    std::vector<std::string> parts;
    for (const auto& [op, n] : count) parts.push_back(op + (n > 1 ? " x" + std::to_string(n) : ""));
    return join(parts, ", ");
}

std::string ReplayTape::verify() const
{
    NoGradGuard off;
    for (const Entry& e : nodes_) {
        if (!e.record) continue;
        Tensor again = e.node->forward_again(e.record->inputs);
        if (!again.defined()) return std::string("'") + e.node->op + "': replay gave nothing";
        std::string diff = rounding_difference(again, e.record->output);
        if (!diff.empty()) return std::string("'") + e.node->op + "' replay " + diff;
    }
    return "";
}

// --- Replayer ------------------------------------------------------------------------------

Replayer::Replayer(const ReplayTape& tape)
    : tape_(tape), nodes_(tape.nodes_.size()), leaves_(tape.leaves_.size())
{
    TG_CHECK(tape.complete(), "replay: these ops cannot be replayed (recorded with a bare rule, or outside the capture): ",
             tape.missing());
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
    try {
        propagate(tape_.downstream_[k]);
    } catch (...) {  // an op raised at this point: leave everything as recorded
        restore();
        x[e] = saved;
        throw;
    }
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
    try {
        propagate(merged_);
    } catch (...) {
        restore();
        throw;
    }
    return result();
}

namespace {

// out = f(inputs at o) again at every output element a changed input element
// reaches (all its broadcast copies): the delta rule of every pointwise op.
bool pointwise_delta(const Node& node, DeltaArgs& d)
{
    constexpr int max_rank = 8, max_inputs = 4;
    const shape_type& so = d.base_out.shape();
    const int rank = int(so.size());
    const size_t arity = d.inputs.size();
    if (rank > max_rank || arity > size_t(max_inputs)) return false;
    // Per input and output axis: the input's stride there (0 where it broadcasts).
    int64_t out_stride[max_rank], stride[max_inputs][max_rank];
    const double* value[max_inputs];
    bool all_full = true;  // no input broadcasts: output o reads element o of each
    for (size_t k = 0; k < arity; ++k) {
        const shape_type& sh = d.inputs[k].base->shape();
        kernels::broadcast_strides(sh, so, stride[k]);
        value[k] = d.inputs[k].data();
        all_full = all_full && sh == so;
    }
    double args[max_inputs];
    auto update = [&](int64_t o) {
        double y = node.pointwise(args);
        if (std::memcmp(&y, &d.out[o], sizeof y) == 0) return;
        d.out[o] = y;
        d.touch(o);
    };
    if (all_full) {
        // The common case (relu, an add of equal shapes), without coordinates.
        for (size_t k = 0; k < arity; ++k) {
            const ReplayInput& x = d.inputs[k];
            if (x.unchanged()) continue;
            if (int64_t(x.changed->size()) > d.base_out.numel() / 2) return false;  // a full replay is as cheap
            for (int64_t o : *x.changed) {
                for (size_t j = 0; j < arity; ++j) args[j] = value[j][o];
                update(o);
            }
        }
        return true;
    }
    for (int64_t st = 1, ax = rank - 1; ax >= 0; --ax) {
        out_stride[ax] = st;
        st *= so[size_t(ax)];
    }
    auto set = [&](int64_t o, const int64_t* coord) {
        for (size_t k = 0; k < arity; ++k) {
            int64_t at = 0;
            for (int ax = 0; ax < rank; ++ax) at += coord[ax] * stride[k][ax];
            args[k] = value[k][at];
        }
        update(o);
    };
    const int64_t budget = d.base_out.numel();
    int64_t work = 0;
    int64_t coord[max_rank];
    for (size_t k = 0; k < arity; ++k) {
        const ReplayInput& x = d.inputs[k];
        if (x.unchanged()) continue;
        const shape_type& sh = x.base->shape();
        // The element's coordinates on the axes it has; it is read by every
        // combination of the axes it is broadcast along.
        for (int64_t flat : *x.changed) {
            int64_t free_dims[max_rank];
            int free_axes[max_rank], nfree = 0;
            int64_t r = flat;
            for (int ax = rank - 1; ax >= 0; --ax) {
                int src = ax - (rank - int(sh.size()));
                int64_t dim = src >= 0 ? sh[size_t(src)] : 1;
                coord[ax] = r % dim;
                r /= dim;
                if (dim == 1 && so[size_t(ax)] > 1) {
                    free_axes[nfree] = ax;
                    free_dims[nfree++] = so[size_t(ax)];
                }
            }
            int64_t combos = 1;
            for (int f = 0; f < nfree; ++f) combos *= free_dims[f];
            work += combos;
            if (work > budget / 2) return false;  // a full replay is as cheap
            for (int64_t c = 0; c < combos; ++c) {
                int64_t rem = c;
                for (int f = nfree - 1; f >= 0; --f) {
                    coord[free_axes[f]] = rem % free_dims[f];
                    rem /= free_dims[f];
                }
                int64_t o = 0;
                for (int ax = 0; ax < rank; ++ax) o += coord[ax] * out_stride[ax];
                set(o, coord);
            }
        }
    }
    return true;
}

}  // namespace

bool Replayer::apply_delta(const ReplayTape::Entry& entry, DeltaArgs& d)
{
    switch (entry.form) {
    case ReplayForm::pointwise: return pointwise_delta(*entry.node, d);
    case ReplayForm::index_map: {
        // Each changed element is copied to the outputs it lands in.
        const ReplayTape::IndexMap& map = *entry.map;
        int64_t work = 0;
        for (size_t k = 0; k < d.inputs.size(); ++k) {
            const ReplayInput& x = d.inputs[k];
            if (x.unchanged()) continue;
            const double* v = x.data();
            for (int64_t f : *x.changed) {
                const int64_t b = map.offsets[k][size_t(f)], e = map.offsets[k][size_t(f) + 1];
                work += e - b;
                if (work > d.base_out.numel() / 2) return false;
                for (int64_t j = b; j < e; ++j) {
                    const int64_t o = map.outputs[k][size_t(j)];
                    d.out[o] = v[f];
                    d.touch(o);
                }
            }
        }
        return true;
    }
    case ReplayForm::delta: return entry.node->delta(d);
    default: return false;
    }
}

void Replayer::propagate(const std::vector<int>& order)
{
    NoGradGuard off;
    for (int n : order) {
        const ReplayTape::Entry& entry = tape_.nodes_[size_t(n)];
        const ReplayCapture::Record& rec = *entry.record;
        // Inputs as the delta rule sees them.
        inputs_.assign(entry.sources.size(), ReplayInput{});
        bool any_changed = false, any_dense = false;
        for (size_t i = 0; i < entry.sources.size(); ++i) {
            ReplayInput& in = inputs_[i];
            in.base = &rec.inputs[i];
            in.current = &rec.inputs[i];
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
        prepare(out, rec.output);
        out.touched = true;
        touched_nodes_.push_back(n);
        if (!any_dense && entry.form != ReplayForm::dense) {
            DeltaArgs args(inputs_, rec.output, out.current, out.changed, out.marks, out.cache);
            if (apply_delta(entry, args)) {
                ++delta_replays_;
                continue;
            }
            // The rule declined: undo what it may have written.
            double* o = out.current.data<double>();
            const double* b = rec.output.data<double>();
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
        Tensor again = entry.node->forward_again(forward_inputs_);
        TG_CHECK(again.defined() && again.shape() == rec.output.shape() && again.dtype() == float64,
                 "replay: '", entry.node->op, "' gave ", again.defined() ? shape_str(again.shape()) : "nothing",
                 " on replay, ", shape_str(rec.output.shape()), " when recorded");
        const double* a = again.data<double>();
        const double* b = rec.output.data<double>();
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
        out = s.touched ? &s.current : &tape_.nodes_[size_t(tape_.output_entry_)].record->output;
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
        const Tensor& base = tape_.nodes_[size_t(n)].record->output;
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
