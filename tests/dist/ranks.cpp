// tg::dist across ranks: run by ctest under `mpirun -np 2` and `-np 3`, and
// alone (a world of one, where every check must hold as well). Each rank
// checks; the failures are summed over the ranks, rank 0 prints the count of
// checks run and failed, and the exit status is non-zero if any failed.
//
// Float64 data-parallel training is compared with one process training the
// same model on the same global batches: the parameters after several steps
// agree to 1e-12 relative, with buckets of one parameter, of a few and of all,
// and gradient accumulation under no_sync equals one big batch. The split
// gradcheck is compared with one process's report (tests/dist/gradcheck.cpp).
#include "tests/dist/checks.hpp"

#include <cmath>
#include <csignal>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <functional>
#include <string>

namespace dist = tg::dist;
namespace nn = tg::nn;

namespace dist_test {

namespace {
int checks = 0, failures = 0;
}  // namespace

void check(bool ok, const std::string& what)
{
    ++checks;
    if (ok) return;
    ++failures;
    std::fprintf(stderr, "rank %d: FAILED: %s\n", dist::rank(), what.c_str());
}

std::string error_of(const std::function<void()>& f)
{
    try {
        f();
    } catch (const tg::Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace dist_test

namespace {

using namespace dist_test;

void collectives()
{
    const int r = dist::rank(), n = dist::world_size();
    for (tg::Dtype dt : {tg::float32, tg::float64, tg::int64}) {
        tg::Tensor t = tg::full({3}, double(r + 1), dt);
        dist::allreduce(t);
        check(t.to_vector() == std::vector<double>(3, n * (n + 1) / 2.0), std::string("allreduce sum ") + tg::dtype_name(dt));
        tg::Tensor m = tg::full({2}, double(r), dt);
        dist::allreduce(m, dist::ReduceOp::max);
        check(m.to_vector() == std::vector<double>(2, n - 1), "allreduce max");
        tg::Tensor b = tg::full({4}, double(10 * r + 7), dt);
        dist::broadcast(b, n - 1);
        check(b.to_vector() == std::vector<double>(4, 10 * (n - 1) + 7), "broadcast from the last rank");
    }
    tg::Tensor avg = tg::full({2}, double(r), tg::float64);
    dist::allreduce(avg, dist::ReduceOp::average);
    check(avg.to_vector() == std::vector<double>(2, (n - 1) / 2.0), "allreduce average");
    const std::vector<double> g = dist::all_gather(double(r * r));
    bool ok = int(g.size()) == n;
    for (int i = 0; ok && i < n; ++i) ok = g[size_t(i)] == i * i;
    check(ok, "all_gather");
    check(dist::broadcast(r == 0 ? std::string("from rank 0, 23 chars") : std::string("x"), 0) == "from rank 0, 23 chars",
          "string broadcast");
    // A broadcast whose sizes differ is an error on every rank, not a corrupted buffer.
    tg::Tensor odd = tg::zeros({r == 0 ? 2 : 3});
    const std::string e = error_of([&] { dist::broadcast(odd, 0); });
    check(n == 1 ? e == "(no error)" : contains(e, "dist::broadcast: rank 1 has 3 elements, the root (rank 0) 2"),
          "broadcast of different sizes: " + e);
    dist::barrier();
}

std::shared_ptr<nn::Sequential> mlp(uint64_t seed)
{
    tg::Generator gen(seed);
    auto m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(5, 7, true, &gen), std::make_shared<nn::Tanh>(),
        std::make_shared<nn::Linear>(7, 3, true, &gen)});
    m->to(tg::float64);
    return m;
}

double max_rel_diff(const tg::named_tensors& a, const tg::named_tensors& b)
{
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const std::vector<double> x = a[i].second.to_vector(), y = b[i].second.to_vector();
        for (size_t j = 0; j < x.size(); ++j)
            worst = std::max(worst, std::abs(x[j] - y[j]) / std::max(1e-300, std::abs(y[j])));
    }
    return worst;
}

// Steps of SGD with momentum on global batches of 12 (each rank its strided
// share), against one process on the whole batch.
void training(int64_t bucket_bytes, const std::string& label)
{
    const int r = dist::rank(), n = dist::world_size();
    const int64_t global = 12, steps = 4;
    tg::Generator data_gen(5);
    const tg::Tensor x = tg::randn({steps * global, 5}, tg::float64, &data_gen);
    const tg::Tensor y = tg::randint(0, 3, {steps * global}, &data_gen);

    auto reference = mlp(1);
    // Every rank but 0 starts from other values: the construction's broadcast must fix that.
    auto local = mlp(r == 0 ? 1 : 100 + uint64_t(r));
    dist::DataParallel ddp(local, {.bucket_bytes = bucket_bytes});
    tg::optim::SGD ref_opt(reference->named_parameters(), {.lr = 0.1, .momentum = 0.9});
    tg::optim::SGD opt(ddp.named_parameters(), {.lr = 0.1, .momentum = 0.9});
    for (int64_t s = 0; s < steps; ++s) {
        const tg::Tensor xs = tg::slice(x, 0, s * global, (s + 1) * global), ys = tg::slice(y, 0, s * global, (s + 1) * global);
        ref_opt.zero_grad();
        tg::cross_entropy((*reference)(xs), ys).backward();
        ref_opt.step();
        // This rank's share: rows r, r + n, ... (equal shares: 12 divides by 1, 2 and 3).
        const tg::Tensor rows = tg::arange(double(r), double(global), double(n), tg::int64);
        opt.zero_grad();
        tg::cross_entropy(ddp(tg::index_select(xs, 0, rows)), tg::index_select(ys, 0, rows)).backward();
        opt.step();
    }
    if (bucket_bytes == 1) {
        // Rebuilt after the first backward in the order it produced the gradients: the last layer's first.
        const std::vector<std::vector<std::string>> b = ddp.buckets();
        check(b.size() == 4 && b.front()[0].rfind("module.2.", 0) == 0 && b.back()[0].rfind("module.0.", 0) == 0,
              "buckets in the backward's order, last layer first: " + b.front()[0] + " ... " + b.back()[0]);
    }
    const double diff = max_rel_diff(local->named_parameters(), reference->named_parameters());
    check(diff <= 1e-12, label + ": parameters after 4 steps differ from one process by " + std::to_string(diff));
}

void accumulation()
{
    // Two micro-batches under no_sync and one synchronised: the sum of the
    // three losses' gradients, averaged over the ranks, equals one process's
    // gradient of the sum over every rank's micro-batches, divided by n.
    const int r = dist::rank(), n = dist::world_size();
    tg::Generator gen(9);
    const tg::Tensor x = tg::randn({3 * n * 4, 5}, tg::float64, &gen);
    const tg::Tensor y = tg::randint(0, 3, {3 * n * 4}, &gen);
    auto reference = mlp(2);
    tg::cross_entropy((*reference)(x), y, {.reduction = tg::Reduction::sum}).backward();
    auto local = mlp(2);
    dist::DataParallel ddp(local, {.bucket_bytes = 64});
    for (int k = 0; k < 3; ++k) {
        const int64_t at = (k * n + r) * 4;
        const tg::Tensor loss = tg::cross_entropy(ddp(tg::slice(x, 0, at, at + 4)), tg::slice(y, 0, at, at + 4),
                                                  {.reduction = tg::Reduction::sum});
        if (k < 2) {
            auto guard = ddp.no_sync();
            loss.backward();
        } else {
            loss.backward();
        }
    }
    double worst = 0;
    const tg::named_tensors a = local->named_parameters(), b = reference->named_parameters();
    for (size_t i = 0; i < a.size(); ++i) {
        const std::vector<double> g = a[i].second.grad().to_vector(), want = b[i].second.grad().to_vector();
        for (size_t j = 0; j < g.size(); ++j) worst = std::max(worst, std::abs(g[j] - want[j] / n) / std::abs(want[j] / n));
    }
    check(worst <= 1e-12, "no_sync accumulation: gradients differ from the big batch by " + std::to_string(worst));
}

void faults()
{
    const int r = dist::rank(), n = dist::world_size();
    // A model of another shape on the last rank: refused on every rank.
    tg::Generator gen(3);
    std::shared_ptr<nn::Module> m = std::make_shared<nn::Linear>(4, r == n - 1 && n > 1 ? 5 : 6, true, &gen);
    const std::string e = error_of([&] { dist::DataParallel ddp(m); });
    check(n == 1 ? e == "(no error)" : contains(e, "DataParallel: the model differs across ranks"),
          "mismatched model: " + e);
    if (r == n - 1 && n > 1) check(contains(e, "rank 0 has 'weight [6, 4] float32', rank " + std::to_string(r) + " 'weight [5, 4] float32'"), "names the difference: " + e);
    // A backward that raised (in a hook) leaves no step half done: the next
    // synchronised backward still averages, so every rank holds the same gradients.
    {
        auto net = mlp(4);
        dist::DataParallel ddp(net);
        tg::HookHandle h = net->named_parameters()[0].second.register_hook([](const tg::Tensor&) -> tg::Tensor {
            tg::fail("planted failure in a hook");
        });
        const tg::Tensor x = tg::full({2, 5}, double(r + 1), tg::float64);
        check(contains(error_of([&] { tg::sum(ddp(x)).backward(); }), "planted failure in a hook"), "the hook raises");
        h.remove();
        net->zero_grad();
        tg::sum(ddp(x)).backward();
        double total = 0;
        for (const auto& [name, p] : net->named_parameters())
            for (double v : p.grad().to_vector()) total += v;
        const std::vector<double> totals = dist::all_gather(total);
        bool same = true;
        for (double t : totals) same = same && t == totals[0];
        check(same, "after a backward that raised, the next one averages the gradients on every rank");
    }
    // A parameter without a gradient: an error naming it, or zeros with find_unused_parameters.
    for (bool find_unused : {false, true}) {
        auto two = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
            std::make_shared<nn::Linear>(3, 3, true, &gen), std::make_shared<nn::Linear>(3, 2, true, &gen)});
        dist::DataParallel ddp(two, {.find_unused_parameters = find_unused});
        auto& first = static_cast<nn::Module&>(*two->children()[0].second);
        const std::string u = error_of([&] { tg::sum(first(tg::ones({2, 3}))).backward(); });
        if (find_unused) {
            check(u == "(no error)", "find_unused_parameters: " + u);
            const tg::Tensor g = two->named_parameters()[2].second.grad();
            check(g.defined() && g.to_vector() == std::vector<double>(6, 0.0), "an unused parameter's gradient is 0");
        } else {
            check(contains(u, "DataParallel: these parameters got no gradient in this backward: module.1.weight, module.1.bias"),
                  "unused parameters named: " + u);
        }
    }
}

// A fault in rank R in the middle of a training step, before its backward:
// --die, it exits; --kill, it is killed (SIGKILL: no handler, no clean-up);
// --throw, a tg::Error ends its program as any error would; --stall, it
// stays, but never joins. The others must then stop with an error, not hang
// (tests/dist/fault.sh bounds the time).
int fault_in_step(const std::string& fault, int dying)
{
    auto local = mlp(1);
    dist::DataParallel ddp(local);
    for (int step = 0;; ++step) {
        const tg::Tensor loss = tg::sum(ddp(tg::ones({4, 5}, tg::float64)));
        if (step == 2 && dist::rank() == dying) {
            std::fprintf(stderr, "rank %d: %s in step %d, before its backward\n", dying, fault.c_str(), step);
            if (fault == "--stall") std::this_thread::sleep_for(std::chrono::seconds(600));  // the others time out
            if (fault == "--kill") std::raise(SIGKILL);
            if (fault == "--throw") tg::fail("a planted error in step ", step);
            std::_Exit(3);
        }
        loss.backward();
    }
}

}  // namespace

int main(int argc, char** argv)
{
    const std::string mode = argc == 3 ? argv[1] : "";
    if (mode == "--die" || mode == "--kill" || mode == "--throw" || mode == "--stall") {
        try {
            return fault_in_step(mode, std::stoi(argv[2]));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "rank %d: %s\n", dist::rank(), e.what());
            dist::abort(2);  // the others are in a collective: end the run now
        }
    }
    try {
        collectives();
        training(1, "a bucket per parameter");
        training(200, "buckets of about 200 bytes");
        training(int64_t(1) << 30, "one bucket");
        accumulation();
        faults();
        gradcheck_split();
        sync_batch_norm_checks();
    } catch (const std::exception& e) {
        ++failures;
        std::fprintf(stderr, "rank %d: FAILED with an exception: %s\n", dist::rank(), e.what());
    }
    const std::vector<double> failed = dist::all_gather(double(failures)), ran = dist::all_gather(double(checks));
    double total_failed = 0, total_ran = 0;
    for (size_t i = 0; i < failed.size(); ++i) total_failed += failed[i], total_ran += ran[i];
    if (dist::is_main())
        std::printf("dist ranks: %d ranks (MPI %s), %.0f checks, %.0f failed\n", dist::world_size(),
                    dist::built_with_mpi() ? "on" : "off", total_ran, total_failed);
    return total_failed == 0 && total_ran > 0 ? 0 : 1;
}
