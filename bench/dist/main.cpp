// dist_bench: the train group of tapegrad_bench (torch_ref.py's "train" cases,
// same models, batches and SGD) run data-parallel: each global batch split
// over the ranks, tg::dist::DataParallel averaging the gradients. Prints, per
// case, the median step time (the slowest rank's, over samples of --steps
// steps), images/s of the global batch, and how long the end of each
// backward waited on its allreduces (DataParallel::last_wait_seconds), with
// the buckets' allreduces overlapped with the backward and without.
//
//   dist_bench [--samples 7] [--steps 10] [--overlap on|off|both] [--cases SUBSTRING] [--bucket-kb 25600]
//   mpirun -np 2 -x TG_NUM_THREADS=1 dist_bench        # against: TG_NUM_THREADS=2 dist_bench
//
// Every rank runs the same fixed number of steps (a calibrated loop, as
// tapegrad_bench's, could differ between ranks and leave one waiting).
#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace dist = tg::dist;

namespace {

struct Options {
    int samples = 7, steps = 10;
    std::vector<bool> overlap{true, false};
    std::string cases;
    int64_t bucket_bytes = int64_t(25) << 20;
};

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double max_over_ranks(double v)
{
    const std::vector<double> all = dist::all_gather(v);
    return *std::max_element(all.begin(), all.end());
}

void run_case(const std::string& name, const std::function<std::shared_ptr<tg::nn::Module>()>& make,
              const tg::shape_type& input, int64_t global, bool overlap, const Options& o)
{
    const int r = dist::rank(), n = dist::world_size();
    tg::Generator gen(0);
    tg::shape_type shape = input;
    shape.insert(shape.begin(), global);
    const tg::Tensor x = tg::randn(shape, tg::float32, &gen), y = tg::randint(0, 10, {global}, &gen);
    const tg::Tensor rows = tg::arange(double(r), double(global), double(n), tg::int64);
    const tg::Tensor xs = tg::index_select(x, 0, rows), ys = tg::index_select(y, 0, rows);
    dist::DataParallel model(make(), {.bucket_bytes = o.bucket_bytes, .overlap = overlap});
    tg::optim::SGD opt(model.named_parameters(), {.lr = 0.01, .momentum = 0.9});
    auto step = [&] {
        opt.zero_grad();
        tg::cross_entropy(model(xs), ys).backward();
        opt.step();
        return model.last_wait_seconds();
    };
    for (int i = 0; i < 3; ++i) step();  // warm-up: buffers, buckets rebuilt in backward order
    std::vector<double> times, waits;
    for (int s = 0; s < o.samples; ++s) {
        dist::barrier();
        double wait = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < o.steps; ++i) wait += step();
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / o.steps;
        times.push_back(max_over_ranks(t));
        waits.push_back(max_over_ranks(wait / o.steps));
    }
    const double t = median(times), w = median(waits);
    if (dist::is_main())
        std::printf("%-30s b%-4lld %d rank%s x %d thr  %2zu bucket%s overlap %-3s  %8.2f ms/step  %7.0f img/s  wait %6.3f ms/step "
                    "(%4.1f%%)  [%.2f-%.2f ms]\n",
                    name.c_str(), (long long)global, n, n == 1 ? " " : "s", tg::num_threads(), model.buckets().size(),
                    model.buckets().size() == 1 ? " " : "s", overlap ? "on" : "off",
                    t * 1e3, double(global) / t, w * 1e3, 100 * w / t, *std::min_element(times.begin(), times.end()) * 1e3,
                    *std::max_element(times.begin(), times.end()) * 1e3);
}

}  // namespace

int main(int argc, char** argv)
{
    Options o;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            auto value = [&]() -> std::string {
                TG_CHECK(i + 1 < argc, "dist_bench: ", a, " needs a value");
                return argv[++i];
            };
            if (a == "--samples") o.samples = std::stoi(value());
            else if (a == "--steps") o.steps = std::stoi(value());
            else if (a == "--cases") o.cases = value();
            else if (a == "--bucket-kb") o.bucket_bytes = std::stoll(value()) << 10;
            else if (a == "--overlap") {
                const std::string v = value();
                TG_CHECK(v == "on" || v == "off" || v == "both", "dist_bench: --overlap is on, off or both");
                o.overlap = v == "on" ? std::vector<bool>{true} : v == "off" ? std::vector<bool>{false}
                                                                             : std::vector<bool>{true, false};
            } else {
                std::printf("usage: %s [--samples 7] [--steps 10] [--overlap on|off|both] [--cases SUBSTRING] [--bucket-kb 25600]\n", argv[0]);
                return a == "--help" || a == "-h" ? 0 : 2;
            }
        }
        TG_CHECK(o.samples >= 1 && o.steps >= 1, "dist_bench: --samples and --steps must be >= 1");
        struct Spec {
            std::string name;
            std::function<std::shared_ptr<tg::nn::Module>()> make;
            tg::shape_type input;
            int64_t batch;
        };
        const std::vector<Spec> specs{
            {"train step RefCNN", [] { tg::Generator g(0); return std::shared_ptr<tg::nn::Module>(tg::nn::reference_cnn(&g)); }, {1, 28, 28}, 64},
            {"train step RefCNN", [] { tg::Generator g(0); return std::shared_ptr<tg::nn::Module>(tg::nn::reference_cnn(&g)); }, {1, 28, 28}, 256},
            {"train step MLP 784-256-128-10", [] { tg::Generator g(0); return std::shared_ptr<tg::nn::Module>(tg::nn::reference_mlp(&g)); }, {784}, 128},
        };
        for (const Spec& s : specs) {
            if (!o.cases.empty() && s.name.find(o.cases) == std::string::npos) continue;
            for (bool overlap : o.overlap) run_case(s.name, s.make, s.input, s.batch, overlap, o);
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", dist::rank(), e.what());
        return 2;
    }
}
