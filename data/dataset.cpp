#include "data/dataset.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "data/idx.hpp"
#include "engine/core/autograd.hpp"

namespace tg {

namespace {

// `t` if it can be overwritten as a batch of this shape and dtype (nothing
// else, such as the tape or the caller, still holds it), else a new tensor.
Tensor reuse_or_new(const Tensor& t, const shape_type& shape, Dtype dtype)
{
    if (t.defined() && t.shape() == shape && t.dtype() == dtype && t.impl_ptr().use_count() == 1 &&
        t.impl().storage.use_count() == 1 && !t.requires_grad()) {
        t.bump_version();
        return t;
    }
    return Tensor::empty(shape, dtype);
}

void gather_rows(const Tensor& src, const int64_t* indices, int64_t count, Tensor& dst)
{
    shape_type shape = src.shape();
    shape[0] = count;
    dst = reuse_or_new(dst, shape, src.dtype());
    const size_t row = src.size(0) ? size_t(src.numel() / src.size(0)) * dtype_size(src.dtype()) : 0;
    const char* from = static_cast<const char*>(src.raw_data());
    char* to = static_cast<char*>(dst.raw_data());
    for (int64_t i = 0; i < count; ++i) std::memcpy(to + size_t(i) * row, from + size_t(indices[i]) * row, row);
}

}  // namespace

// --- TensorDataset ---------------------------------------------------------------------

TensorDataset::TensorDataset(Tensor inputs, Tensor targets) : inputs_(inputs.detach()), targets_(targets.detach())
{
    TG_CHECK(inputs_.dim() >= 1 && targets_.dim() >= 1, "TensorDataset: inputs ", inputs_.shape(), " and targets ",
             targets_.shape(), " need an example axis");
    TG_CHECK(inputs_.size(0) == targets_.size(0), "TensorDataset: inputs ", inputs_.shape(), " and targets ",
             targets_.shape(), " hold different numbers of examples");
}

void TensorDataset::get_batch(const int64_t* indices, int64_t count, Batch& out) const
{
    for (int64_t i = 0; i < count; ++i)
        TG_CHECK(indices[i] >= 0 && indices[i] < size(), "TensorDataset::get_batch: index ", indices[i],
                 " out of range for ", size(), " examples");
    gather_rows(inputs_, indices, count, out.x);
    gather_rows(targets_, indices, count, out.y);
}

void TensorDataset::normalize(double mean, double std)
{
    TG_CHECK(std > 0, "TensorDataset::normalize: std must be positive, got ", std);
    Tensor out = Tensor::empty(inputs_.shape(), inputs_.dtype());
    TG_DISPATCH_FLOATING(inputs_.dtype(), "TensorDataset::normalize", [&] {
        const scalar_t* p = inputs_.data<scalar_t>();
        scalar_t* q = out.data<scalar_t>();
        const scalar_t m = scalar_t(mean), s = scalar_t(std);
        for (int64_t i = 0; i < out.numel(); ++i) q[i] = (p[i] - m) / s;
    });
    inputs_ = out;
}

// --- DataLoader ------------------------------------------------------------------------

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(options), generator_(options.seed), epoch_start_(options.seed)
{
    TG_CHECK(dataset_, "DataLoader: no dataset");
    TG_CHECK(options.batch_size > 0, "DataLoader: batch_size must be positive, got ", options.batch_size);
}

DataLoader::DataLoader(const TensorDataset& dataset, DataLoaderOptions options)
    : DataLoader(std::make_shared<TensorDataset>(dataset), options)
{
}

int64_t DataLoader::batches_per_epoch() const
{
    const int64_t n = dataset_->size(), b = options_.batch_size;
    return options_.drop_last ? n / b : n / b + (n % b != 0);  // not (n + b - 1) / b: b may be near 2^63
}

void DataLoader::start_epoch()
{
    epoch_start_ = generator_;
    const int64_t n = dataset_->size();
    order_.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) order_[size_t(i)] = i;
    if (options_.shuffle) {
        // Fisher-Yates, as tg::randperm draws it.
        for (int64_t i = n - 1; i > 0; --i) std::swap(order_[size_t(i)], order_[size_t(generator_.integer(0, i + 1))]);
    }
    batch_index_ = -1;
}

DataLoader::Iterator DataLoader::begin()
{
    if (resume_) {
        resume_ = false;
        return Iterator(this, handed_out_);
    }
    start_epoch();
    ++epoch_;
    handed_out_ = 0;
    return Iterator(this, 0);
}

const Batch& DataLoader::Iterator::operator*() const { return loader_->fetch(index_); }

const Batch& DataLoader::fetch(int64_t index)
{
    TG_CHECK(index >= 0 && index < batches_per_epoch(), "DataLoader: batch ", index, " of an epoch of ",
             batches_per_epoch());
    if (index != batch_index_) {
        const int64_t start = index * options_.batch_size;
        const int64_t count = std::min(options_.batch_size, dataset_->size() - start);
        dataset_->get_batch(order_.data() + start, count, batch_);
        batch_index_ = index;
    }
    handed_out_ = index + 1;
    return batch_;
}

void DataLoader::save_to(Checkpoint& ckpt, const std::string& prefix) const
{
    ckpt.set_int(prefix + "epoch", epoch_);
    ckpt.set_int(prefix + "batch", handed_out_);
    ckpt.set_int(prefix + "batch_size", options_.batch_size);
    ckpt.set_int(prefix + "size", dataset_->size());
    ckpt.set_generator(prefix + "rng", epoch_start_);
}

void DataLoader::load_from(const Checkpoint& ckpt, const std::string& prefix)
{
    const std::string file = ckpt.source().empty() ? "the checkpoint" : "checkpoint " + quote(ckpt.source());
    const int64_t batch_size = ckpt.get_int(prefix + "batch_size"), size = ckpt.get_int(prefix + "size");
    TG_CHECK(batch_size == options_.batch_size && size == dataset_->size(), "DataLoader::load_from: ", file,
             " was saved by a loader of batch_size ", batch_size, " over ", size, " examples, this one has batch_size ",
             options_.batch_size, " over ", dataset_->size());
    const int64_t epoch = ckpt.get_int(prefix + "epoch"), batch = ckpt.get_int(prefix + "batch");
    TG_CHECK(epoch >= 0 && batch >= 0 && batch <= batches_per_epoch() && (epoch > 0 || batch == 0),
             "DataLoader::load_from: ", file, " holds an impossible position: epoch ", epoch, ", batch ", batch,
             " of ", batches_per_epoch());
    Generator start;
    ckpt.get_generator(prefix + "rng", start);

    epoch_ = epoch;
    handed_out_ = batch;
    generator_ = start;
    if (epoch == 0) {
        epoch_start_ = start;
        resume_ = false;
        return;
    }
    start_epoch();  // redraws the epoch's order and leaves the generator where it was
    resume_ = batch < batches_per_epoch();
}

// --- MNIST-format data -------------------------------------------------------------------

TensorDataset load_mnist_format(const std::string& images_path, const std::string& labels_path)
{
    IdxArray images = read_idx(images_path);
    IdxArray labels = read_idx(labels_path);
    TG_CHECK(images.dims.size() == 3, "load_mnist_format: ", quote(images_path), " holds sizes ", images.dims,
             "; images must be [N, height, width]");
    TG_CHECK(labels.dims.size() == 1, "load_mnist_format: ", quote(labels_path), " holds sizes ", labels.dims,
             "; labels must be [N]");
    TG_CHECK(images.dims[0] == labels.dims[0], "load_mnist_format: ", quote(images_path), " holds ", images.dims[0],
             " images but ", quote(labels_path), " holds ", labels.dims[0], " labels");
    const int64_t n = images.dims[0];
    Tensor x = Tensor::empty({n, 1, images.dims[1], images.dims[2]}, float32);
    float* xp = x.data<float>();
    for (size_t i = 0; i < images.data.size(); ++i) xp[i] = float(images.data[i]) / 255.0f;
    Tensor y = Tensor::empty({n}, int64);
    int64_t* yp = y.data<int64_t>();
    for (int64_t i = 0; i < n; ++i) yp[i] = labels.data[size_t(i)];
    return TensorDataset(x, y);
}

TensorDataset load_fashion_mnist(const std::string& split, const std::string& dir)
{
    TG_CHECK(split == "train" || split == "test", "load_fashion_mnist: split must be \"train\" or \"test\", got \"",
             split, "\"");
    const std::string stem = split == "train" ? "train" : "t10k";
    auto find = [&](const std::string& name) {
        std::filesystem::path base = std::filesystem::path(dir) / name;
        for (const std::string& candidate : {base.string() + ".gz", base.string()})
            if (std::filesystem::exists(candidate)) return candidate;
        fail("load_fashion_mnist: cannot find '", base.string(), ".gz' (nor '", base.string(),
             "'); Fashion-MNIST comes with the Debian package dataset-fashion-mnist (apt install "
             "dataset-fashion-mnist puts it in ", fashion_mnist_dir,
             "), or pass the directory of other MNIST-format files named this way");
    };
    const std::string images = find(stem + "-images-idx3-ubyte");
    const std::string labels = find(stem + "-labels-idx1-ubyte");
    return load_mnist_format(images, labels);
}

}  // namespace tg
