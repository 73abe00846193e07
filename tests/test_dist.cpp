// tg::dist in one process: the world of one, the distributed sampler's shards
// for any rank and world size, and DataParallel's options and errors. Across
// processes: tests/dist/ranks.cpp, run under mpirun by ctest.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace dist = tg::dist;

TEST_CASE("dist: a program not started by mpirun is rank 0 of a world of one, where collectives change nothing")
{
    CHECK(dist::rank() == 0);
    CHECK(dist::world_size() == 1);
    CHECK(dist::is_main());
    tg::Tensor t = tg::from_values({1.5, -2}, {2}, tg::float64);
    dist::allreduce(t);
    dist::allreduce(t, dist::ReduceOp::average);
    dist::broadcast(t);
    dist::barrier();
    CHECK(t.to_vector() == Values{1.5, -2});
    CHECK(dist::all_gather(3.5) == Values{3.5});
    CHECK(contains(error_of([] { tg::Tensor u; dist::allreduce(u); }), "dist::allreduce: undefined tensor"));
    CHECK(contains(error_of([] { tg::Tensor b = tg::zeros({2}, tg::int64); dist::allreduce(b, dist::ReduceOp::average); }),
                   "dist::allreduce: the average of int64 tensors"));
    CHECK(contains(error_of([] { tg::Tensor b = tg::zeros({2}); dist::broadcast(b, 1); }),
                   "dist::broadcast: root 1 is not a rank of a world of 1"));
}

TEST_CASE("dist: DistributedSampler gives each rank a disjoint shard of every epoch, reshuffled per epoch, padded or dropped")
{
    for (int world : {1, 2, 3, 4})
        for (int64_t size : {0, 1, 7, 12, 13})
            for (bool drop_last : {false, true}) {
                CAPTURE(world);
                CAPTURE(size);
                CAPTURE(drop_last);
                std::vector<int64_t> all;
                std::vector<std::vector<int64_t>> shards;
                for (int r = 0; r < world; ++r) {
                    dist::DistributedSampler s(size, true, 42, drop_last, r, world);
                    shards.push_back(s.indices(3));
                    CHECK(int64_t(shards.back().size()) == s.samples_per_rank());
                    all.insert(all.end(), shards.back().begin(), shards.back().end());
                }
                const int64_t per = drop_last ? size / world : (size + world - 1) / world;
                CHECK(int64_t(all.size()) == per * world);
                const std::set<int64_t> distinct(all.begin(), all.end());
                for (int64_t i : all) CHECK((i >= 0 && i < size));
                if (drop_last) CHECK(distinct.size() == all.size());  // disjoint
                else CHECK(int64_t(distinct.size()) == size);          // everything, the padding repeating some
                // The same epoch is the same everywhere; another epoch another order.
                CHECK(dist::DistributedSampler(size, true, 42, drop_last, 0, world).indices(3) == shards[0]);
                if (size >= 7 && world == 1)
                    CHECK(dist::DistributedSampler(size, true, 42, drop_last, 0, world).indices(4) != shards[0]);
            }
    // Without shuffling: strided, as PyTorch's.
    CHECK(dist::DistributedSampler(7, false, 0, false, 1, 3).indices(0) == std::vector<int64_t>{1, 4, 0});
    CHECK(contains(error_of([] { dist::DistributedSampler(5, true, 0, false, 3, 3); }),
                   "DistributedSampler: rank 3 of a world of 3"));
}

TEST_CASE("dist: DataParallel in a world of one keeps the module's gradients, buckets by size, and refuses bad options")
{
    tg::Generator gen(1);
    auto net = std::make_shared<tg::nn::Sequential>(std::initializer_list<std::shared_ptr<tg::nn::Module>>{
        std::make_shared<tg::nn::Linear>(4, 3, true, &gen), std::make_shared<tg::nn::Linear>(3, 2, true, &gen)});
    const tg::Tensor x = tg::randn({5, 4}, tg::float32, &gen);
    tg::sum((*net)(x)).backward();
    std::vector<std::vector<double>> want;
    for (const auto& [name, p] : net->named_parameters()) want.push_back(p.grad().to_vector());
    net->zero_grad();
    // In reverse order before the first backward: 1.bias (8 bytes), 1.weight
    // (24), 0.bias (12) fill 44 of 64 bytes; 0.weight (48) starts the next.
    dist::DataParallel ddp(net, {.bucket_bytes = 64});
    CHECK(ddp.buckets() == std::vector<std::vector<std::string>>{{"module.1.bias", "module.1.weight", "module.0.bias"},
                                                                 {"module.0.weight"}});
    CHECK(ddp.named_parameters()[0].first == "module.0.weight");
    tg::sum(ddp(x)).backward();
    std::vector<std::vector<double>> got;
    for (const auto& [name, p] : net->named_parameters()) got.push_back(p.grad().to_vector());
    CHECK(got == want);
    CHECK(ddp.last_wait_seconds() >= 0);
    // A backward that raises (a hook here) leaves no step half done: the next one works.
    tg::HookHandle h = net->named_parameters()[0].second.register_hook([](const tg::Tensor&) -> tg::Tensor {
        tg::fail("planted failure in a hook");
    });
    CHECK(contains(error_of([&] { tg::sum(ddp(x)).backward(); }), "planted failure in a hook"));
    h.remove();
    net->zero_grad();
    tg::sum(ddp(x)).backward();
    got.clear();
    for (const auto& [name, p] : net->named_parameters()) got.push_back(p.grad().to_vector());
    CHECK(got == want);
    CHECK(contains(error_of([&] { dist::DataParallel bad(net, {.bucket_bytes = 0}); }),
                   "DataParallel: bucket_bytes 0 must be positive"));
    CHECK(contains(error_of([] { dist::DataParallel bad(nullptr); }), "DataParallel: no module"));
}

TEST_CASE("dist: sync_batch_norm in a world of one is batch_norm, in value, statistics and gradients, in both dtypes")
{
    for (tg::Dtype dt : {tg::float32, tg::float64}) {
        CAPTURE(tg::dtype_name(dt));
        const double tol = dt == tg::float32 ? 1e-5 : 1e-12;
        tg::Generator gen(3);
        const tg::Tensor x0 = tg::randn({5, 3, 2, 3}, dt, &gen), u = tg::randn({5, 3, 2, 3}, dt, &gen);
        for (std::optional<double> momentum : {std::optional<double>(0.3), std::optional<double>()}) {
            tg::Tensor x = x0.clone().requires_grad_(), w = tg::rand({3}, dt, &gen).requires_grad_();
            tg::Tensor b = tg::randn({3}, dt, &gen).requires_grad_();
            tg::Tensor xs = x.detach().clone().requires_grad_(), ws = w.detach().clone().requires_grad_(),
                       bs = b.detach().clone().requires_grad_();
            tg::Tensor m = tg::zeros({3}, dt), v = tg::ones({3}, dt), n = tg::scalar(2, tg::int64);
            tg::Tensor sm = m.clone(), sv = v.clone(), sn = n.clone();
            const tg::Tensor y = tg::batch_norm(x, {&m, &v, &n}, w, b, true, momentum);
            const tg::Tensor ys = dist::sync_batch_norm(xs, {&sm, &sv, &sn}, ws, bs, true, momentum);
            tg::sum(tg::mul(y, u)).backward();
            tg::sum(tg::mul(ys, u)).backward();
            check_close(ys.to_vector(), y.to_vector(), tol);
            check_close(sm.to_vector(), m.to_vector(), tol);
            check_close(sv.to_vector(), v.to_vector(), tol);
            CHECK(*sn.data<int64_t>() == 3);
            check_close(xs.grad().to_vector(), x.grad().to_vector(), tol * 10);
            check_close(ws.grad().to_vector(), w.grad().to_vector(), tol * 10);
            check_close(bs.grad().to_vector(), b.grad().to_vector(), tol * 10);
        }
    }
    // An empty batch counts a batch and changes nothing else; one value per channel is refused, as batch_norm.
    tg::Tensor m = tg::zeros({2}), v = tg::ones({2}), n = tg::scalar(0, tg::int64);
    CHECK(dist::sync_batch_norm(tg::zeros({0, 2, 3}), {&m, &v, &n}).shape() == tg::shape_type{0, 2, 3});
    CHECK(*n.data<int64_t>() == 1);
    CHECK(m.to_vector() == Values{0, 0});
    // No channels: an empty result, as batch_norm's (x.numel() is 0, the other axes' product need not fit).
    CHECK(dist::sync_batch_norm(tg::zeros({int64_t(1) << 40, 0, int64_t(1) << 40}), {}).shape() ==
          tg::shape_type{int64_t(1) << 40, 0, int64_t(1) << 40});
    CHECK(contains(error_of([] { dist::sync_batch_norm(tg::ones({1, 2}), {}); }),
                   "sync_batch_norm: expected more than 1 value per channel over all ranks"));
    CHECK(contains(error_of([] { dist::sync_batch_norm(tg::ones({4, 2}), {}, tg::ones({3})); }),
                   "batch_norm: weight of shape [3] for an input of shape [4, 2]"));
    CHECK(contains(error_of([] { dist::all_reduce_sum(tg::ones({2}, tg::int64)); }),
                   "dist::all_reduce_sum: expected float32 or float64, got int64"));

    // The module: BatchNorm2d's names and behaviour, so state dicts move between them.
    tg::Generator gen(4);
    dist::SyncBatchNorm2d sync(3);
    tg::nn::BatchNorm2d plain(3);
    CHECK(sync.describe() == "SyncBatchNorm2d(3)");
    const tg::Tensor x = tg::randn({4, 3, 2, 2}, tg::float32, &gen);
    check_close(sync(x).to_vector(), plain(x).to_vector(), 1e-6);
    plain.load_state_dict(sync.state_dict());
    CHECK(plain.running_mean.to_vector() == sync.running_mean.to_vector());
    sync.eval();
    plain.eval();
    check_close(sync(x).to_vector(), plain(x).to_vector(), 1e-6);
    CHECK(contains(error_of([&] { sync(tg::ones({2, 4, 1, 1})); }), "SyncBatchNorm2d(3): expected an input [N, 3, H, W]"));
    CHECK(contains(error_of([] { dist::SyncBatchNorm2d bad(0); }), "BatchNorm2d: channels must be positive"));
}

TEST_CASE("dist: gradcheck_in_lockstep in a world of one checks the function on one thread, first order only")
{
    tg::Generator gen(6);
    const tg::Tensor x = tg::randn({6, 2, 2}, tg::float64, &gen).requires_grad_();
    auto fn = [](const tg::tensor_list& v) { return dist::sync_batch_norm(v[0], {}); };
    const int threads = tg::num_threads();
    const tg::GradcheckResult r = dist::gradcheck_in_lockstep(fn, {x});
    INFO(r.to_string());
    CHECK(r.passed());
    CHECK(tg::num_threads() == threads);
    tg::GradcheckOptions second;
    second.second_order = true;
    CHECK(contains(error_of([&] { dist::gradcheck_in_lockstep(fn, {x}, second); }),
                   "tg::dist::gradcheck_in_lockstep: first order only"));
    // Split in a world of one: one part, tg::gradcheck's report.
    const tg::GradcheckResult split = dist::gradcheck(fn, {x});
    CHECK(split.passed());
    CHECK(split.evaluations == tg::gradcheck(fn, {x}).evaluations);
}
