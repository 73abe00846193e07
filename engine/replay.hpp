// Partial replay of a recorded computation: what lets the model gradcheck
// perturb one parameter element and recompute only what lies downstream of it.
//
// While a ReplayCapture is alive on a thread, every op recorded there keeps,
// besides its backward rule, its forward (a closure over the op's
// attributes), the values its inputs and output had, and optionally a delta
// rule. A ReplayTape then knows, for each leaf, which entries depend on it.
// A Replayer (one per thread) sets a leaf element and walks only those
// entries in order. An entry whose inputs changed in a few elements runs its
// delta rule, which updates just the output elements those reach (a conv
// weight reaches one output channel, a linear weight one column); an entry
// without one, or whose input changed everywhere, runs its forward again on
// the current values, and the elements that came out different are found by
// comparison, so the entries after it can go back to deltas.
//
// Replays compute in float64 (the checker's dtype) and never touch the
// recorded tensors: a Replayer keeps its own copy of each value it changes
// and puts back the recorded values after each run.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace tg {

// Ops recorded on this thread while one is alive keep what replay needs.
class ReplayCapture {
public:
    ReplayCapture();
    ~ReplayCapture();
    ReplayCapture(const ReplayCapture&) = delete;
    ReplayCapture& operator=(const ReplayCapture&) = delete;

private:
    bool previous_;
};

namespace detail {
extern thread_local bool replay_capture_on;
}  // namespace detail
inline bool capturing_replay() { return detail::replay_capture_on; }

// One input of an entry, as a delta rule sees it.
struct ReplayInput {
    const Tensor* base = nullptr;     // its value when the op was recorded
    const Tensor* current = nullptr;  // its value in this replay (float64)
    const std::vector<int64_t>* changed = nullptr;  // where current may differ from base (distinct flat indices)
    bool dense = false;               // may differ anywhere (changed is then not listed)

    bool unchanged() const { return !dense && (changed == nullptr || changed->empty()); }
    const double* base_data() const { return base->data<double>(); }
    const double* data() const { return current->data<double>(); }
};

// What a delta rule receives: the inputs, and the output to update in place.
// The rule sets out[i] for every element its changed inputs reach, calls
// touch(i) for each, and returns true; or returns false (say, for a dense
// change, or more changes than a full replay would cost) to have the op's
// forward run again instead.
class DeltaArgs {
public:
    DeltaArgs(std::span<const ReplayInput> in, const Tensor& base_out, Tensor& out, std::vector<int64_t>& changed,
              std::vector<uint8_t>& marks)
        : inputs(in), base_out(base_out), out(out.data<double>()), changed_(changed), marks_(marks)
    {
    }
    std::span<const ReplayInput> inputs;
    const Tensor& base_out;
    double* out;  // the current output: equal to the recorded one where not touched
    void touch(int64_t i)
    {
        if (marks_[size_t(i)]) return;
        marks_[size_t(i)] = 1;
        changed_.push_back(i);
    }
    int64_t changes() const { return int64_t(changed_.size()); }

private:
    std::vector<int64_t>& changed_;
    std::vector<uint8_t>& marks_;
};

using ReplayForward = std::function<Tensor(const tensor_list&)>;
using ReplayDelta = std::function<bool(DeltaArgs&)>;

// What a captured entry keeps (Node::replay).
struct ReplayInfo {
    ReplayForward forward;   // recomputes the output from (new) input values
    ReplayDelta delta;       // optional: updates the output for a few changed input elements
    tensor_list inputs;      // the input values at record time (undefined where the op had none)
    std::vector<uint64_t> input_versions;
    Tensor output;           // the output value at record time, off the tape
    uint64_t output_version = 0;
};

// The computation recorded into `output` from `leaves` (float64 leaves that
// require grad; other tensors count as constants).
class ReplayTape {
public:
    ReplayTape(const Tensor& output, const tensor_list& leaves);

    // Every entry can be replayed (the ops were recorded under a ReplayCapture).
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
    struct Entry {
        Node* node;
        const ReplayInfo* info;
        std::vector<int> sources;  // per input: >= 0 entry, < -1 leaf (-2 - k), -1 constant
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
        bool dense = false, touched = false;
    };
    State& state(int source);
    void prepare(State& s, const Tensor& base);
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
