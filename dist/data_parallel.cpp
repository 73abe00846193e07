#include "dist/data_parallel.hpp"

#include <chrono>
#include <cstring>
#include <sstream>

#include "engine/core/autograd.hpp"
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"

namespace tg::dist {

namespace {

// "name [shape] dtype" per tensor: what must agree across ranks.
std::string signature(const named_tensors& params, const named_tensors& buffers)
{
    std::ostringstream s;
    for (const auto* list : {&params, &buffers})
        for (const auto& [name, t] : *list) s << name << ' ' << shape_str(t.shape()) << ' ' << dtype_name(t.dtype()) << '\n';
    return s.str();
}

double seconds_since(std::chrono::steady_clock::time_point t)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

DataParallel::DataParallel(std::shared_ptr<nn::Module> module, DataParallelOptions options)
    : module_(std::move(module)), options_(options)
{
    TG_CHECK(module_ != nullptr, "DataParallel: no module");
    TG_CHECK(options_.bucket_bytes > 0, "DataParallel: bucket_bytes ", options_.bucket_bytes, " must be positive");
    register_module("module", module_);
    const named_tensors params = module_->named_parameters(), buffers = module_->named_buffers();

    // The same model on every rank, or an error on every rank naming the first difference.
    const std::string difference = difference_across_ranks(signature(params, buffers));
    TG_CHECK(difference.empty(), "DataParallel: the model differs across ranks (parameter and buffer names, shapes and dtypes): ",
             difference);
    // Rank 0's values everywhere.
    for (const auto* list : {&params, &buffers})
        for (const auto& [name, t] : *list) {
            Tensor target = t;
            broadcast(target, 0);
        }

    for (const auto& [name, t] : params)
        if (t.requires_grad()) params_.push_back({name, t});
    is_ready_.assign(params_.size(), 0);
    std::vector<size_t> reverse;  // the backward mostly meets the last layers first
    for (size_t i = params_.size(); i-- > 0;) reverse.push_back(i);
    build_buckets(reverse);
    for (size_t i = 0; i < params_.size(); ++i)
        hooks_.push_back(params_[i].tensor.register_post_accumulate_grad_hook([this, i](const Tensor&) { on_ready(i); }));
}

DataParallel::~DataParallel()
{
    for (HookHandle& h : hooks_) h.remove();
}

Tensor DataParallel::forward(const Tensor& x)
{
    // A backward that raised ran no callback: finish what it started first.
    if (in_backward_) {
        in_backward_ = false;
        for (Bucket& b : buckets_) b.request = Request();  // waits (bounded by the timeout)
    }
    return (*module_)(x);
}

std::vector<std::vector<std::string>> DataParallel::buckets() const
{
    std::vector<std::vector<std::string>> out;
    for (const Bucket& b : buckets_) {
        out.emplace_back();
        for (size_t p : b.params) out.back().push_back("module." + params_[p].name);
    }
    return out;
}

void DataParallel::build_buckets(const std::vector<size_t>& order)
{
    buckets_.clear();
    int64_t bytes = 0;
    for (size_t p : order) {
        Param& param = params_[p];
        const Dtype dt = param.tensor.dtype();
        const int64_t size = param.tensor.numel() * int64_t(dtype_size(dt));
        if (buckets_.empty() || buckets_.back().dtype != dt || (bytes > 0 && bytes + size > options_.bucket_bytes)) {
            buckets_.emplace_back();
            buckets_.back().dtype = dt;
            bytes = 0;
        }
        Bucket& b = buckets_.back();
        param.bucket = int64_t(buckets_.size() - 1);
        param.offset = bytes / int64_t(dtype_size(dt));
        b.params.push_back(p);
        bytes += size;
    }
    for (Bucket& b : buckets_) {
        int64_t n = 0;
        for (size_t p : b.params) n += params_[p].tensor.numel();
        b.buffer = zeros({n}, b.dtype);
    }
}

void DataParallel::on_ready(size_t p)
{
    if (no_sync_depth_ > 0) return;
    if (!in_backward_) {
        in_backward_ = true;
        ready_order_.clear();
        next_bucket_ = 0;
        for (Bucket& b : buckets_) b.ready = 0, b.started = false;
        std::fill(is_ready_.begin(), is_ready_.end(), 0);
        queue_backward_callback([this] { finish(); });
    }
    Param& param = params_[p];
    Bucket& b = buckets_[size_t(param.bucket)];
    const size_t item = dtype_size(b.dtype);
    char* slot = static_cast<char*>(b.buffer.raw_data()) + size_t(param.offset) * item;
    const Tensor g = param.tensor.grad();
    if (g.defined()) std::memcpy(slot, g.raw_data(), size_t(g.numel()) * item);
    else std::memset(slot, 0, size_t(param.tensor.numel()) * item);
    is_ready_[p] = 1;
    ready_order_.push_back(p);
    ++b.ready;
    if (options_.overlap) {
        start_ready_buckets();
        // Moves the buckets in flight on (MPI progresses them only inside its calls).
        for (size_t i = 0; i < next_bucket_; ++i) buckets_[i].request.test();
    }
}

void DataParallel::start_ready_buckets()
{
    // In bucket order on every rank: MPI matches collectives by their order.
    while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].ready == int64_t(buckets_[next_bucket_].params.size())) {
        Bucket& b = buckets_[next_bucket_];
        b.request = allreduce_start(b.buffer.raw_data(), b.buffer.numel(), b.dtype, ReduceOp::sum,
                                    "DataParallel's allreduce of bucket " + std::to_string(next_bucket_));
        b.started = true;
        ++next_bucket_;
    }
}

void DataParallel::finish()
{
    in_backward_ = false;
    // Parameters the backward did not reach.
    std::string unused;
    for (size_t p = 0; p < params_.size(); ++p) {
        if (is_ready_[p]) continue;
        if (!options_.find_unused_parameters) {
            unused += (unused.empty() ? "" : ", ") + ("module." + params_[p].name);
            continue;
        }
        Bucket& b = buckets_[size_t(params_[p].bucket)];
        const size_t item = dtype_size(b.dtype);
        std::memset(static_cast<char*>(b.buffer.raw_data()) + size_t(params_[p].offset) * item, 0,
                    size_t(params_[p].tensor.numel()) * item);
        ++b.ready;
    }
    if (!unused.empty()) {
        for (Bucket& b : buckets_) b.request = Request();  // waits for the ones in flight
        fail("DataParallel: these parameters got no gradient in this backward: ", unused,
             ". Every rank must send every bucket: construct it with find_unused_parameters = true to count them "
             "as zero gradients, or leave them out of the module");
    }
    start_ready_buckets();
    const auto t0 = std::chrono::steady_clock::now();
    for (Bucket& b : buckets_) b.request.wait();
    last_wait_ = seconds_since(t0);

    // The average, back into each gradient.
    const double n = world_size();
    for (Bucket& b : buckets_) {
        if (n > 1) {
            if (b.dtype == float64)
                for (double *v = b.buffer.data<double>(), *e = v + b.buffer.numel(); v < e; ++v) *v /= n;
            else
                for (float *v = b.buffer.data<float>(), *e = v + b.buffer.numel(); v < e; ++v) *v = float(*v / n);
        }
        const size_t item = dtype_size(b.dtype);
        for (size_t p : b.params) {
            Param& param = params_[p];
            const char* slot = static_cast<const char*>(b.buffer.raw_data()) + size_t(param.offset) * item;
            Tensor g = param.tensor.grad();
            if (!g.defined() || g.requires_grad()) {  // none yet, or recorded (create_graph): a fresh one
                g = Tensor::empty(param.tensor.shape(), b.dtype, "DataParallel");
                param.tensor.set_grad(g);
            }
            std::memcpy(g.raw_data(), slot, size_t(g.numel()) * item);
        }
    }

    // After the first synchronised backward: buckets in the order gradients
    // became ready, rank 0's order on every rank.
    if (!rebuilt_) {
        rebuilt_ = true;
        std::string order;
        for (size_t p : ready_order_) order += std::to_string(p) + ' ';
        for (size_t p = 0; p < params_.size(); ++p)
            if (!is_ready_[p]) order += std::to_string(p) + ' ';
        std::istringstream in(broadcast(order, 0));
        std::vector<size_t> ordered;
        for (size_t p; in >> p;) ordered.push_back(p);
        TG_CHECK(ordered.size() == params_.size(), "DataParallel: rank 0's bucket order has ", ordered.size(),
                 " parameters, this rank ", params_.size());
        build_buckets(ordered);
    }
}

DistributedSampler::DistributedSampler(int64_t size, bool shuffle, uint64_t seed, bool drop_last, int rank, int world)
    : size_(size), shuffle_(shuffle), seed_(seed), drop_last_(drop_last), rank_(rank), world_(world)
{
    TG_CHECK(size >= 0, "DistributedSampler: size ", size, " is negative");
    TG_CHECK(world >= 1 && rank >= 0 && rank < world, "DistributedSampler: rank ", rank, " of a world of ", world);
}

int64_t DistributedSampler::samples_per_rank() const
{
    return drop_last_ ? size_ / world_ : (size_ + world_ - 1) / world_;
}

std::vector<int64_t> DistributedSampler::indices(int64_t epoch) const
{
    std::vector<int64_t> all(static_cast<size_t>(size_));
    for (int64_t i = 0; i < size_; ++i) all[size_t(i)] = i;
    if (shuffle_ && size_ > 1) {
        Generator gen(seed_ + uint64_t(epoch));
        const Tensor perm = randperm(size_, &gen);
        for (int64_t i = 0; i < size_; ++i) all[size_t(i)] = perm.data<int64_t>()[i];
    }
    const int64_t per = samples_per_rank(), total = per * world_;
    if (size_ > 0)
        for (int64_t i = size_; i < total; ++i) all.push_back(all[size_t(i % size_)]);  // padded
    std::vector<int64_t> mine;
    for (int64_t i = rank_; i < total; i += world_) mine.push_back(all[size_t(i)]);
    return mine;
}

}  // namespace tg::dist
