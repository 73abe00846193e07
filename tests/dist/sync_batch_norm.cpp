// tg::dist's synchronised batch norm across ranks against batch_norm in one
// process on the whole batch (shards of unequal size): outputs, running
// statistics and gradients to 1e-12 in float64; a lockstep gradcheck of the
// global function that passes, and fails on a planted bug (the mean's
// gradient dropped); data-parallel training with SyncBatchNorm2d equal to
// one process with BatchNorm2d; and the refusals (a split gradcheck of a
// function that communicates, a collective inside a parallel region).
#include "tests/dist/checks.hpp"

#include <cmath>

namespace dist = tg::dist;
namespace nn = tg::nn;

namespace dist_test {

namespace {

// This rank's rows of a global batch: r, r + n, ... (7 rows: unequal shares).
tg::Tensor rows_of_rank(int64_t global)
{
    return tg::arange(double(dist::rank()), double(global), double(dist::world_size()), tg::int64);
}

double max_rel(const tg::Tensor& a, const tg::Tensor& b)
{
    if (a.shape() != b.shape()) return INFINITY;
    const std::vector<double> x = a.to_vector(), y = b.to_vector();
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]) / std::max(1e-3, std::abs(y[i])));
    return worst;
}

// Sync batch norm written out with a planted bug: the mean's gradient dropped.
tg::Tensor planted_sync_batch_norm(const tg::Tensor& x)
{
    const tg::Tensor n = dist::all_reduce_sum(tg::scalar(double(x.numel() / x.shape()[1]), x.dtype()));
    const tg::Tensor mean = tg::div(dist::all_reduce_sum(tg::sum(x, {0, 2, 3})), n).detach();
    const tg::Tensor centered = tg::sub(x, tg::reshape(mean, {1, x.shape()[1], 1, 1}));
    const tg::Tensor var = tg::div(dist::all_reduce_sum(tg::sum(tg::mul(centered, centered), {0, 2, 3})), n);
    return tg::div(centered, tg::reshape(tg::sqrt(tg::add(var, tg::scalar(1e-5, x.dtype()))), {1, x.shape()[1], 1, 1}));
}

}  // namespace

void sync_batch_norm_checks()
{
    const int n = dist::world_size();
    const int64_t global = 7, c = 3;
    tg::Generator gen(17);
    const tg::Tensor X = tg::randn({global, c, 3, 2}, tg::float64, &gen);
    const tg::Tensor U = tg::randn({global, c, 3, 2}, tg::float64, &gen);
    const tg::Tensor w0 = tg::add(tg::ones({c}, tg::float64), tg::rand({c}, tg::float64, &gen));
    const tg::Tensor b0 = tg::randn({c}, tg::float64, &gen);
    const tg::Tensor rows = rows_of_rank(global);

    // Outputs, running statistics and gradients against one process on the whole batch.
    {
        tg::Tensor x = X.detach().clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
        tg::Tensor mean = tg::zeros({c}, tg::float64), var = tg::ones({c}, tg::float64), count = tg::scalar(0, tg::int64);
        const tg::Tensor y = tg::batch_norm(x, {&mean, &var, &count}, w, b, true, 0.25);
        tg::sum(tg::mul(y, U)).backward();

        tg::Tensor xs = tg::index_select(X, 0, rows).requires_grad_(), ws = w0.clone().requires_grad_(),
                   bs = b0.clone().requires_grad_();
        tg::Tensor smean = tg::zeros({c}, tg::float64), svar = tg::ones({c}, tg::float64), scount = tg::scalar(0, tg::int64);
        const tg::Tensor ys = dist::sync_batch_norm(xs, {&smean, &svar, &scount}, ws, bs, true, 0.25);
        tg::sum(tg::mul(ys, tg::index_select(U, 0, rows))).backward();
        check(max_rel(ys, tg::index_select(y, 0, rows)) <= 1e-12, "sync_batch_norm: this rank's rows of the output");
        check(max_rel(smean, mean) <= 1e-12 && max_rel(svar, var) <= 1e-12 && *scount.data<int64_t>() == 1,
              "sync_batch_norm: the running statistics are the global batch's");
        check(max_rel(xs.grad(), tg::index_select(x.grad(), 0, rows)) <= 1e-12,
              "sync_batch_norm: the input's gradient, this rank's rows");
        tg::Tensor gw = ws.grad().clone(), gb = bs.grad().clone();
        dist::allreduce(gw);
        dist::allreduce(gb);
        check(max_rel(gw, w.grad()) <= 1e-12 && max_rel(gb, b.grad()) <= 1e-12,
              "sync_batch_norm: weight and bias gradients summed over the ranks");
        // Evaluation: the running statistics, no communication.
        const tg::Tensor e = dist::sync_batch_norm(xs.detach(), {&smean, &svar, &scount}, ws, bs, false);
        check(max_rel(e, tg::batch_norm(xs.detach(), {&smean, &svar, &scount}, ws, bs, false)) == 0,
              "sync_batch_norm in evaluation is batch_norm");
    }
    // The global function, checked in lockstep; a planted bug fails, naming the input.
    {
        const tg::Tensor Ur = tg::index_select(U, 0, rows);
        auto part = [&](const tg::tensor_list& v) {
            const tg::Tensor y = dist::sync_batch_norm(tg::index_select(v[0], 0, rows), {}, v[1], v[2]);
            return tg::sum(tg::mul(y, Ur), {0, 2, 3});
        };
        tg::GradcheckOptions o;
        o.mode = tg::GradcheckMode::full;
        o.names = {"x", "weight", "bias"};
        const tg::GradcheckResult r = dist::gradcheck_in_lockstep(
            part, {X.detach().clone().requires_grad_(), w0.clone().requires_grad_(), b0.clone().requires_grad_()}, o);
        check(r.passed() && r.inputs.size() == 3 && r.input("x").elements == global * c * 6,
              "lockstep gradcheck of sync_batch_norm: " + r.to_string());
        auto planted = [&](const tg::tensor_list& v) {
            return tg::sum(tg::mul(planted_sync_batch_norm(tg::index_select(v[0], 0, rows)), Ur), {0, 2, 3});
        };
        tg::GradcheckOptions one = o;
        one.names = {"x"};
        const tg::GradcheckResult bad = dist::gradcheck_in_lockstep(planted, {X.detach().clone().requires_grad_()}, one);
        check(bad.failed_inputs() == std::vector<std::string>{"x"}, "the planted bug is found: " + bad.to_string());
        // A split check cannot evaluate a function that communicates: a clear error, the same on every rank.
        const tg::GradcheckResult split = dist::gradcheck(
            part, {X.detach().clone().requires_grad_(), w0.clone().requires_grad_(), b0.clone().requires_grad_()}, o);
        check(n == 1 ? split.passed() : contains(split.error, "tg::dist::gradcheck cannot split its elements"),
              "a split gradcheck of sync_batch_norm: " + split.error);
    }
    // Data-parallel training with SyncBatchNorm2d equals one process with BatchNorm2d on the global batches.
    {
        auto make = [](bool sync) {
            tg::Generator g(8);
            std::shared_ptr<nn::Module> norm =
                sync ? std::shared_ptr<nn::Module>(std::make_shared<dist::SyncBatchNorm2d>(4))
                     : std::shared_ptr<nn::Module>(std::make_shared<nn::BatchNorm2d>(4));
            auto m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
                std::make_shared<nn::Conv2d>(2, 4, 3, nn::Conv2dOptions{.padding = 1}, &g), norm,
                std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(4 * 9, 3, true, &g)});
            m->to(tg::float64);
            return m;
        };
        auto reference = make(false), local = make(true);
        dist::DataParallel ddp(local);
        tg::optim::SGD ref_opt(reference->named_parameters(), {.lr = 0.1, .momentum = 0.9});
        tg::optim::SGD opt(ddp.named_parameters(), {.lr = 0.1, .momentum = 0.9});
        const int64_t batch = 6;  // divisible by 1, 2 and 3: equal shares, so the averaged gradient is the batch's
        tg::Generator data(19);
        for (int step = 0; step < 3; ++step) {
            const tg::Tensor x = tg::randn({batch, 2, 3, 3}, tg::float64, &data), y = tg::randint(0, 3, {batch}, &data);
            ref_opt.zero_grad();
            tg::cross_entropy((*reference)(x), y).backward();
            ref_opt.step();
            const tg::Tensor mine = rows_of_rank(batch);
            opt.zero_grad();
            tg::cross_entropy(ddp(tg::index_select(x, 0, mine)), tg::index_select(y, 0, mine)).backward();
            opt.step();
        }
        double worst = 0;
        const tg::named_tensors a = local->named_parameters(), b = reference->named_parameters();
        for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, max_rel(a[i].second, b[i].second));
        const tg::named_tensors ba = local->named_buffers(), bb = reference->named_buffers();
        for (size_t i = 0; i < ba.size(); ++i) worst = std::max(worst, max_rel(ba[i].second, bb[i].second));
        check(worst <= 1e-12, "SyncBatchNorm2d training: parameters and running statistics after 3 steps differ from "
                              "one process by " + std::to_string(worst));
    }
    // A collective inside a parallel region is refused before it communicates.
    if (n > 1) {
        const int threads = tg::num_threads();
        tg::set_num_threads(2);
        const std::string e = error_of([] {
            tg::parallel_for(2, 1, [](int64_t, int64_t) { dist::all_reduce_sum(tg::ones({2}, tg::float64)); });
        });
        tg::set_num_threads(threads);
        check(contains(e, "dist::all_reduce_sum: called inside a parallel region"), "a collective on a worker: " + e);
    }
}

}  // namespace dist_test
