// Data-parallel training over the ranks of dist/communicator.hpp, as
// PyTorch's DistributedDataParallel: every rank holds the whole model, runs
// its share of the global batch, and the gradients are averaged across the
// ranks during the backward, so every rank takes the same optimizer step.
//
//   auto model = std::make_shared<tg::dist::DataParallel>(tg::nn::reference_cnn(&gen));
//   loss = cross_entropy((*model)(x_shard), y_shard);
//   loss.backward();     // buckets of gradients allreduced as they are ready
//   optimizer.step();    // every rank's gradients are the average
//
// At construction the parameters and buffers are broadcast from rank 0
// (a model whose parameter names, shapes or dtypes differ across ranks is an
// error on every rank, naming the first difference). Gradients are grouped
// into buckets of about bucket_bytes, filled in the order the backward
// produces them (from the first synchronised backward on; before, in reverse
// parameter order); a bucket's non-blocking allreduce starts when its last
// gradient is accumulated, and the end of the backward waits for all of
// them, averages, and writes the gradients back. Buckets start in the same
// order on every rank, as MPI needs.
//
// Where tapegrad differs from PyTorch: the buffers are broadcast at
// construction only (batch norm's running statistics stay local, PyTorch's
// broadcast_buffers=False), and a parameter that got no gradient is an error
// naming it unless find_unused_parameters is set (then it counts as a zero
// gradient); tapegrad finds them at the end of the backward, without a
// traversal of the graph after each forward.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../nn/module.hpp"
#include "communicator.hpp"

namespace tg::dist {

struct DataParallelOptions {
    int64_t bucket_bytes = int64_t(25) << 20;  // PyTorch's bucket_cap_mb = 25
    bool find_unused_parameters = false;
    bool overlap = true;  // false: every allreduce starts at the end of the backward (for measuring the overlap)
};

class DataParallel : public nn::Module {
public:
    explicit DataParallel(std::shared_ptr<nn::Module> module, DataParallelOptions options = {});
    ~DataParallel() override;
    Tensor forward(const Tensor& x) override;
    nn::Module& module() { return *module_; }

    // While the guard lives, backwards accumulate their gradients locally
    // (gradient accumulation); the first backward after it averages the sum.
    class NoSync {
    public:
        explicit NoSync(DataParallel& ddp) : ddp_(ddp) { ++ddp_.no_sync_depth_; }
        ~NoSync() { --ddp_.no_sync_depth_; }
        NoSync(const NoSync&) = delete;
        NoSync& operator=(const NoSync&) = delete;

    private:
        DataParallel& ddp_;
    };
    NoSync no_sync() { return NoSync(*this); }

    // The buckets, as parameter names in the order they fill and start.
    std::vector<std::vector<std::string>> buckets() const;
    // Of the last synchronised backward: seconds its end waited on the
    // allreduces, and seconds between its first ready gradient and its end.
    double last_wait_seconds() const { return last_wait_; }

private:
    struct Param {
        std::string name;
        Tensor tensor;
        int64_t bucket = -1, offset = 0;  // where its gradient sits in its bucket
    };
    struct Bucket {
        Dtype dtype = float32;
        std::vector<size_t> params;  // indices into params_
        Tensor buffer;               // the flat gradients
        int64_t ready = 0;           // of params, ready in this backward
        Request request;
        bool started = false;
    };
    void build_buckets(const std::vector<size_t>& order);
    void on_ready(size_t p);
    void start_ready_buckets();
    void finish();

    std::shared_ptr<nn::Module> module_;
    DataParallelOptions options_;
    std::vector<Param> params_;
    std::vector<Bucket> buckets_;
    std::vector<HookHandle> hooks_;
    std::vector<char> is_ready_;
    std::vector<size_t> ready_order_;  // this backward's, to rebuild the buckets after the first
    size_t next_bucket_ = 0;
    bool in_backward_ = false, rebuilt_ = false;
    int no_sync_depth_ = 0;
    double last_wait_ = 0;
};

// Which samples of a dataset of `size` each rank takes per epoch: a
// permutation drawn from `seed` and the epoch (the same on every rank; none
// when shuffle is off), split in world_size() strided shards. When the size
// does not divide, the last shard is padded with the first samples again (as
// PyTorch's DistributedSampler), or with drop_last every shard is cut to the
// floor.
class DistributedSampler {
public:
    DistributedSampler(int64_t size, bool shuffle = true, uint64_t seed = 0, bool drop_last = false,
                       int rank = dist::rank(), int world = dist::world_size());
    std::vector<int64_t> indices(int64_t epoch) const;
    int64_t samples_per_rank() const;

private:
    int64_t size_;
    bool shuffle_;
    uint64_t seed_;
    bool drop_last_;
    int rank_, world_;
};

}  // namespace tg::dist
