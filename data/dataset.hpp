// Datasets and the loader that batches them.
//
//   tg::TensorDataset train = tg::load_fashion_mnist("train");
//   train.normalize(tg::fashion_mnist_mean, tg::fashion_mnist_std);
//   tg::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 1});
//   for (int epoch = 0; epoch < 10; ++epoch)
//       for (const tg::Batch& b : loader) { ... b.x [64, 1, 28, 28], b.y [64] ... }
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../engine/io/checkpoint.hpp"
#include "../engine/core/random.hpp"
#include "../engine/core/tensor.hpp"

namespace tg {

struct Batch {
    Tensor x;  // inputs, the examples stacked along axis 0
    Tensor y;  // targets, likewise
};

class Dataset {
public:
    virtual ~Dataset() = default;
    virtual int64_t size() const = 0;
    // Writes the examples at indices[0..count) into `out`, reusing its tensors
    // when they have the right shape and dtype and nothing else refers to them.
    virtual void get_batch(const int64_t* indices, int64_t count, Batch& out) const = 0;
};

// Examples stored as two tensors whose first axis indexes the example.
// Copies are cheap and share the tensors.
class TensorDataset : public Dataset {
public:
    TensorDataset(Tensor inputs, Tensor targets);
    int64_t size() const override { return inputs_.size(0); }
    void get_batch(const int64_t* indices, int64_t count, Batch& out) const override;
    const Tensor& inputs() const { return inputs_; }
    const Tensor& targets() const { return targets_; }
    // inputs = (inputs - mean) / std, into a new tensor (copies of this dataset
    // keep the old one).
    void normalize(double mean, double std);

private:
    Tensor inputs_, targets_;
};

struct DataLoaderOptions {
    int64_t batch_size = 64;
    bool shuffle = false;   // a new permutation every epoch, from a generator seeded with `seed`
    uint64_t seed = 0;
    bool drop_last = false; // drop the last batch when it is smaller than batch_size
};

// Batches of a dataset, epoch after epoch. Each range-for over the loader is
// one epoch: begin() starts it (drawing the permutation when shuffling), and
// the last partial batch comes last unless drop_last. The same seed gives the
// same batches on every run and machine.
class DataLoader {
public:
    DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options);
    DataLoader(const TensorDataset& dataset, DataLoaderOptions options);

    int64_t batches_per_epoch() const;
    int64_t epoch() const { return epoch_; }  // epochs begun so far
    const Dataset& dataset() const { return *dataset_; }
    const DataLoaderOptions& options() const { return options_; }

    class Iterator {
    public:
        const Batch& operator*() const;
        const Batch* operator->() const { return &**this; }
        Iterator& operator++()
        {
            ++index_;
            return *this;
        }
        bool operator==(const Iterator& other) const { return index_ == other.index_; }
        bool operator!=(const Iterator& other) const { return index_ != other.index_; }

    private:
        friend class DataLoader;
        Iterator(DataLoader* loader, int64_t index) : loader_(loader), index_(index) {}
        DataLoader* loader_;
        int64_t index_;
    };
    // Begins the next epoch, or continues the one a load_from() stopped in.
    Iterator begin();
    Iterator end() { return Iterator(this, batches_per_epoch()); }

    // Where the loader stands (epoch, batches handed out in it, the generator
    // as the epoch began) as "<prefix>epoch", "<prefix>batch", "<prefix>rng".
    // Saved in the middle of an epoch, a loader resumes with the next batch.
    void save_to(Checkpoint& ckpt, const std::string& prefix) const;
    void load_from(const Checkpoint& ckpt, const std::string& prefix);

private:
    void start_epoch();
    const Batch& fetch(int64_t index);

    std::shared_ptr<const Dataset> dataset_;
    DataLoaderOptions options_;
    Generator generator_;
    Generator epoch_start_;     // the generator as the current epoch began
    std::vector<int64_t> order_;
    int64_t epoch_ = 0;
    int64_t handed_out_ = 0;    // batches of the current epoch dereferenced so far
    bool resume_ = false;       // begin() continues the current epoch
    Batch batch_;
    int64_t batch_index_ = -1;  // which batch batch_ holds
};

// --- MNIST-format data ---------------------------------------------------------------

// Where the Debian package dataset-fashion-mnist puts the files.
inline const char* const fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";
// Mean and standard deviation of the training pixels scaled to [0, 1].
inline constexpr double fashion_mnist_mean = 0.2860;
inline constexpr double fashion_mnist_std = 0.3530;

// An IDX image file [N, H, W] and label file [N] (gzipped or not): inputs
// float32 [N, 1, H, W] scaled to [0, 1], targets int64 [N].
TensorDataset load_mnist_format(const std::string& images_path, const std::string& labels_path);

// Fashion-MNIST's "train" (60000 images) or "test" (10000) split from `dir`,
// which holds the four files under their usual names
// ({train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without .gz); any
// directory of MNIST-format files named that way works too.
TensorDataset load_fashion_mnist(const std::string& split = "train", const std::string& dir = fashion_mnist_dir);

}  // namespace tg
