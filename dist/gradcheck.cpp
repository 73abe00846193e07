#include "dist/gradcheck.hpp"

#include <atomic>
#include <cstring>
#include <sstream>

#include "dist/communicator.hpp"
#include "dist/sync_batch_norm.hpp"
#include "engine/core/error.hpp"
#include "engine/core/parallel.hpp"
#include "ops/elementwise.hpp"

namespace tg::dist {

namespace {

// FNV-1a over a tensor's bytes: equal values to the bit, equal hashes.
uint64_t hash_bytes(const Tensor& t)
{
    const auto* b = static_cast<const unsigned char*>(t.raw_data());  // tensors are dense
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0, n = size_t(t.numel()) * dtype_size(t.dtype()); i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

// One line per tensor: "what name [shape] dtype values #hash".
void describe(std::ostringstream& s, const char* what, const std::string& name, const Tensor& t)
{
    s << what << " '" << name << "' ";
    if (!t.defined()) {
        s << "undefined\n";
        return;
    }
    s << shape_str(t.shape()) << ' ' << dtype_name(t.dtype()) << (t.requires_grad() ? " requires grad" : "")
      << " values #" << std::hex << hash_bytes(t) << std::dec << '\n';
}

// The same problem on every rank, or an error on every rank naming the
// first tensor that differs (a rank that went on alone would wait forever in
// the merge, or merge another problem's elements).
void require_same_everywhere(const std::string& mine)
{
    const std::string difference = difference_across_ranks(mine);
    TG_CHECK(difference.empty(), "tg::dist::gradcheck: every rank must check the same model on the same batch "
             "(parameters equal to the bit: seed them alike or broadcast them); ", difference);
}

std::atomic<int> split_checks{0};

// Marks this process as running a split check while it lives.
class SplitCheck {
public:
    SplitCheck() { ++split_checks; }
    ~SplitCheck() { --split_checks; }
    SplitCheck(const SplitCheck&) = delete;
    SplitCheck& operator=(const SplitCheck&) = delete;
};

// One thread while it lives: every evaluation on the caller's thread, in order.
class OneThread {
public:
    OneThread() : threads_(num_threads()) { set_num_threads(1); }
    ~OneThread() { set_num_threads(threads_); }
    OneThread(const OneThread&) = delete;
    OneThread& operator=(const OneThread&) = delete;

private:
    int threads_;
};

// x in value, exactly (a − a is 0), while its gradient is the average of
// every rank's: an input shared by every rank's part of a global function.
Tensor shared_by_ranks(const Tensor& x)
{
    if (!is_floating(x.dtype())) return x;
    const Tensor mean = mul(all_reduce_sum(x), scalar(1.0 / world_size(), x.dtype()));
    return add(x.detach(), sub(mean, mean.detach()));
}

}  // namespace

bool in_split_gradcheck() { return split_checks.load() > 0; }

GradcheckOptions::Partition gradcheck_partition()
{
    GradcheckOptions::Partition part;
    part.part = rank();
    part.parts = world_size();
    part.sum = [](std::vector<int64_t>& buffer) {
        const std::vector<int64_t> sizes = all_gather(int64_t(buffer.size()));
        for (size_t r = 0; r < sizes.size(); ++r)
            TG_CHECK(sizes[r] == int64_t(buffer.size()), "tg::dist::gradcheck: rank ", r, " merges ", sizes[r],
                     " numbers, rank ", rank(), " ", buffer.size(), " (the ranks checked different problems)");
        Tensor t = zeros({int64_t(buffer.size())}, int64);
        std::memcpy(t.data<int64_t>(), buffer.data(), buffer.size() * sizeof(int64_t));
        allreduce(t, ReduceOp::sum);
        std::memcpy(buffer.data(), t.data<int64_t>(), buffer.size() * sizeof(int64_t));
    };
    return part;
}

GradcheckResult gradcheck(nn::Module& model, const ModelLossFn& loss_fn, const Batch& batch, GradcheckOptions options)
{
    std::ostringstream s;
    for (const auto& [name, t] : model.named_parameters()) describe(s, "parameter", name, t);
    for (const auto& [name, t] : model.named_buffers()) describe(s, "buffer", name, t);
    describe(s, "batch", "x", batch.x);
    describe(s, "batch", "y", batch.y);
    s << "mode " << (model.is_training() ? "train" : "eval") << '\n';
    require_same_everywhere(s.str());
    options.partition = gradcheck_partition();
    if (options.reproduce.empty()) options.reproduce = "tg::dist::gradcheck(model, loss_fn, batch, options)";
    SplitCheck split;
    return tg::gradcheck(model, loss_fn, batch, options);
}

GradcheckResult gradcheck(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options)
{
    std::ostringstream s;
    for (size_t i = 0; i < inputs.size(); ++i) describe(s, "input", std::to_string(i), inputs[i]);
    require_same_everywhere(s.str());
    options.partition = gradcheck_partition();
    SplitCheck split;
    return tg::gradcheck(fn, inputs, options);
}

GradcheckResult gradcheck_in_lockstep(const GradcheckFn& fn, const tensor_list& inputs, GradcheckOptions options)
{
    TG_CHECK(!options.second_order, "tg::dist::gradcheck_in_lockstep: first order only");
    TG_CHECK(options.partition.parts == 1, "tg::dist::gradcheck_in_lockstep: every rank checks every element; "
             "no partition");
    std::ostringstream s;
    for (size_t i = 0; i < inputs.size(); ++i) describe(s, "input", std::to_string(i), inputs[i]);
    require_same_everywhere(s.str());
    OneThread one;
    auto global = [&fn](const tensor_list& xs) {
        tensor_list shared(xs.size());
        for (size_t i = 0; i < xs.size(); ++i) shared[i] = xs[i].defined() ? shared_by_ranks(xs[i]) : xs[i];
        return all_reduce_sum(fn(shared));
    };
    if (options.reproduce.empty()) options.reproduce = "tg::dist::gradcheck_in_lockstep(fn, inputs, options)";
    GradcheckResult result = tg::gradcheck(global, inputs, options);
    // In step only if every rank judged the same numbers: a gradient that
    // differs across ranks sends their refinements different ways.
    const std::vector<int64_t> evaluations = all_gather(result.evaluations);
    for (size_t r = 0; r < evaluations.size(); ++r)
        TG_CHECK(evaluations[r] == evaluations[0], "tg::dist::gradcheck_in_lockstep: the ranks fell out of step (rank ",
                 r, " made ", evaluations[r], " evaluations, rank 0 ", evaluations[0],
                 "): their analytic gradients differ, which a gradient that depends on the rank does");
    return result;
}

}  // namespace tg::dist
