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
