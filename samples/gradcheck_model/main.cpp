// gradcheck_model: checks the gradient of every parameter of a CNN with one
// call, and prints the report.
//
//   gradcheck_model [--model small|ref] [--batch 2] [--seed 0] [--threads N] [--mode full|fast|auto]
//
// small: the small CNN of ../shared/bench/torch_gradcheck.py (13,242
// parameters); ref: the reference CNN of the benchmarks (421,642). Inputs are
// random 28×28 images and labels, the loss is cross-entropy, as there.
// Under mpirun the elements are split over the ranks (tg::dist::gradcheck),
// and rank 0 prints the merged report:
//
//   mpirun -np 2 -x TG_NUM_THREADS=1 gradcheck_model --model ref
#include <tapegrad/tapegrad.hpp>

#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv)
{
    std::string model_name = "small", mode = "full";
    int64_t batch = 2;
    uint64_t seed = 0;
    int threads = 0;
    try {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            auto value = [&]() -> std::string {
                TG_CHECK(i + 1 < argc, "gradcheck_model: ", a, " needs a value");
                return argv[++i];
            };
            if (a == "--model") model_name = value();
            else if (a == "--batch") batch = std::stoll(value());
            else if (a == "--seed") seed = std::stoull(value());
            else if (a == "--threads") threads = std::stoi(value());
            else if (a == "--mode") mode = value();
            else {
                std::printf("usage: %s [--model small|ref] [--batch 2] [--seed 0] [--threads N] [--mode full|fast|auto]\n",
                            argv[0]);
                return a == "--help" || a == "-h" ? 0 : 2;
            }
        }
        TG_CHECK(model_name == "small" || model_name == "ref", "gradcheck_model: --model is small or ref, not ",
                 model_name);
        TG_CHECK(mode == "full" || mode == "fast" || mode == "auto", "gradcheck_model: --mode is full, fast or auto");
        if (threads > 0) tg::set_num_threads(threads);

        tg::Generator gen(seed);
        auto model = model_name == "small" ? tg::nn::small_cnn(&gen) : tg::nn::reference_cnn(&gen);
        tg::Batch data{tg::randn({batch, 1, 28, 28}, tg::float32, &gen), tg::randint(0, 10, {batch}, &gen)};
        auto loss = [](tg::nn::Module& m, const tg::Batch& b) { return tg::cross_entropy(m(b.x), b.y); };

        tg::GradcheckOptions options = tg::model_gradcheck_options();
        options.seed = seed;
        options.mode = mode == "full" ? tg::GradcheckMode::full
                       : mode == "fast" ? tg::GradcheckMode::fast
                                        : tg::GradcheckMode::automatic;
        const bool main = tg::dist::is_main();
        if (main)
            std::printf("%s CNN, %lld parameters, batch %lld, %d rank%s x %d threads\n", model_name.c_str(),
                        (long long)model->parameter_count(), (long long)batch, tg::dist::world_size(),
                        tg::dist::world_size() == 1 ? "" : "s", tg::num_threads());
        tg::GradcheckResult result = tg::dist::gradcheck(*model, loss, data, options);
        if (main) {
            std::printf("%s", result.to_string().c_str());
            std::printf("%s in %.3f s (%.2f us per evaluation)\n", result.passed() ? "passed" : "FAILED",
                        result.seconds, result.seconds * 1e6 / double(std::max<int64_t>(result.evaluations, 1)));
        }
        return result.passed() ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
    }
}
