// Partial replay of a recorded computation: what lets the model gradcheck
// perturb one parameter element and recompute only what lies downstream of it.
//
// While a ReplayCapture is installed on a thread, it records, for every op
// recorded there, the values its inputs and output had. A ReplayTape built from
// the capture then knows, for each leaf, which entries depend on it. A Replayer
// (one per thread) sets a leaf element and walks only those entries in order.
// How an entry is recomputed comes from its op definition (engine/core/op.hpp):
//   - pointwise ops (every elementwise op): only the output elements a changed
//     input element reaches through broadcasting, from the op's scalar function;
//   - index maps (reshape, permute, slice, concat, broadcast_to, ...): each
//     changed element is copied to the outputs it lands in, a map the tape
//     finds once by running the op on element numbers;
//   - ops with a delta rule of their own (bmm, conv2d, max_pool2d, sum);
//   - anything else, or an input that changed everywhere: the forward again on
//     the current values; the elements that came out different are found by
//     comparison, so the entries after it go back to deltas.
//
// Replays compute in float64 (the checker's dtype) and never touch the
// recorded tensors: a Replayer keeps its own copy of each value it changes and
// puts back the recorded values after each run.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../core/op.hpp"

namespace tg {

// Installed on this thread from construction to stop() (or destruction): the
// ops recorded meanwhile keep what replay needs, here (not in the tape entries).
class ReplayCapture final : public TapeObserver {
public:
    ReplayCapture();
    ~ReplayCapture() override { stop(); }
    // Records nothing more; what was recorded stays for ReplayTape.
    void stop();
    ReplayCapture(const ReplayCapture&) = delete;
    ReplayCapture& operator=(const ReplayCapture&) = delete;

    void recorded(const std::shared_ptr<Node>& node, TensorRefs inputs, const Tensor& output) override;

    // The values an entry saw when it was recorded.
    struct Record {
        std::weak_ptr<Node> node;
        tensor_list inputs;  // undefined where the op had none
        std::vector<uint64_t> input_versions;
        Tensor output;       // off the tape
        uint64_t output_version = 0;
    };
    // The record of a live entry recorded under this capture, or null.
    const Record* find(const Node* node) const;

private:
    TapeObserver* previous_;
    bool installed_ = true;
    std::unordered_map<const Node*, Record> records_;
};

// "" when `got` equals `want` to rounding (relative to each element and to the
// largest finite |want|), else what differs at the first element that does.
std::string rounding_difference(const Tensor& got, const Tensor& want, double rel = 1e-12, double of_scale = 1e-14);

// The computation recorded into `output` from `leaves` (float64 leaves that
// require grad; other tensors count as constants) under `capture`.
class ReplayTape {
public:
    ReplayTape(const ReplayCapture& capture, const Tensor& output, const tensor_list& leaves);

    // Every entry can be replayed (the ops were recorded under the capture,
    // from op definitions).
    bool complete() const { return missing_.empty(); }
    // The ops that cannot be ("custom_op x2, ...").
    std::string missing() const;
    int64_t entries() const { return int64_t(nodes_.size()); }
    // Entries downstream of leaf k (the ones a perturbation of it replays).
    int64_t downstream(size_t k) const { return int64_t(downstream_[k].size()); }

    // Runs every entry's forward on the recorded inputs and compares with the
    // recorded output; returns "" or what differed (op, element, values).
    std::string verify() const;

private:
    friend class Replayer;
    // Where the output elements of an index-map entry come from, inverted:
    // input k's element f lands in outputs[offsets[k][f] .. offsets[k][f+1]).
    struct IndexMap {
        std::vector<std::vector<int64_t>> offsets, outputs;
    };
    struct Entry {
        const Node* node;
        const ReplayCapture::Record* record;
        ReplayForm form;
        std::vector<int> sources;  // per input: >= 0 entry, < -1 leaf (-2 - k), -1 constant
        std::unique_ptr<IndexMap> map;
    };
    std::vector<Entry> nodes_;               // in an order where inputs come first
    tensor_list leaves_;
    std::vector<std::vector<int>> downstream_;  // per leaf: entry indices, in order
    int output_entry_ = -1;                  // -1: the output is a leaf itself
    Tensor output_;
    std::vector<std::string> missing_;
};

// Replays a ReplayTape with changed leaf values. One per thread.
class Replayer {
public:
    explicit Replayer(const ReplayTape& tape);

    // Leaf k's values for this replayer; a caller may change them and run().
    double* leaf_data(size_t k);
    // The output with element e of leaf k set to v (the leaf is put back after).
    const Tensor& run_element(size_t k, int64_t e, double v);
    // The output for the current leaf_data() values (changes found by comparison).
    const Tensor& run();

    int64_t dense_replays() const { return dense_replays_; }
    int64_t delta_replays() const { return delta_replays_; }

private:
    struct State {
        Tensor current;                 // lazily a copy of the recorded value
        std::vector<int64_t> changed;
        std::vector<uint8_t> marks;
        std::any cache;                 // the delta rule's (DeltaArgs::cache)
        bool dense = false, touched = false;
    };
    State& state(int source);
    void prepare(State& s, const Tensor& base);
    bool apply_delta(const ReplayTape::Entry& entry, DeltaArgs& args);
    void propagate(const std::vector<int>& order);
    void restore();
    const Tensor& result();

    const ReplayTape& tape_;
    std::vector<State> nodes_, leaves_;
    std::vector<int> touched_nodes_, touched_leaves_;
    std::vector<ReplayInput> inputs_;
    tensor_list forward_inputs_;
    std::vector<int> merged_;
    Tensor out_copy_;
    int64_t dense_replays_ = 0, delta_replays_ = 0;
};

}  // namespace tg
