// The main job: train a CNN on the real Fashion-MNIST (Debian package
// dataset-fashion-mnist), evaluate on the 10,000 test images every epoch,
// save a checkpoint, and write metrics.csv and metrics.svg.
//
//   train_fashion_mnist [--epochs 5] [--batch-size 64] [--lr 0.002] [--optimizer adamw|adam|sgd]
//                       [--model default|ref] [--threads N] [--seed 0] [--data DIR]
//                       [--out DIR] [--resume CHECKPOINT] [--graph FILE] [--distributed [--sync-bn]]
//                       [--subset N] [--stop-after EPOCH]
//
// --distributed (under mpirun -np N): every global batch of --batch-size is
// split across the N ranks (rank r takes rows r, r + N, ...), the gradients
// averaged by tg::dist::DataParallel, so the ranks train one model as one
// process would; rank 0 alone prints, draws the progress bar and writes the
// checkpoint and metrics, and the metrics are summed over the ranks.
// --sync-bn: the default model's batch norms normalise with the global
// batch's statistics (tg::dist::SyncBatchNorm2d) instead of each rank's.
//
// --graph FILE writes the tape of the first training step (Graphviz DOT: ops,
// shapes, modules, parameters by name), and FILE.svg when Graphviz's dot is installed.
//
// One training step, from the model through the tape to the optimizer, is the
// body of train_epoch() below.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace nn = tg::nn;
using Clock = std::chrono::steady_clock;

struct Settings {
    int epochs = 5;
    int64_t batch_size = 64;
    double lr = -1;  // per optimizer default
    std::string optimizer = "";
    std::string model = "default";
    int threads = 0;
    uint64_t seed = 0;
    std::string data = tg::fashion_mnist_dir;
    std::string out = "fashion_mnist_run";
    std::string resume;
    std::string graph;  // DOT file for the first step's tape
    bool distributed = false;
    bool sync_bn = false;
    int64_t subset = 0;  // > 0: the first N training and test images only (quick runs, the resume test)
    int stop_after = 0;  // > 0: stop after this epoch's checkpoint, as an interrupted run would
};

// The default: two conv blocks of two 3×3 convolutions with batch norm, and
// dropout before each linear layer.
std::shared_ptr<nn::Sequential> default_cnn(uint64_t seed, bool sync_bn)
{
    auto norm = [sync_bn](int64_t channels) -> std::shared_ptr<nn::Module> {
        if (sync_bn) return nn::make<tg::dist::SyncBatchNorm2d>(channels);
        return nn::make<nn::BatchNorm2d>(channels);
    };
    auto conv = [](int64_t in, int64_t out) {
        return nn::make<nn::Conv2d>(in, out, 3, nn::Conv2dOptions{.padding = 1, .bias = false});
    };
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        conv(1, 32), norm(32), nn::make<nn::ReLU>(),
        conv(32, 32), norm(32), nn::make<nn::ReLU>(), nn::make<nn::MaxPool2d>(2),
        conv(32, 64), norm(64), nn::make<nn::ReLU>(),
        conv(64, 64), norm(64), nn::make<nn::ReLU>(), nn::make<nn::MaxPool2d>(2),
        nn::make<nn::Flatten>(), nn::make<nn::Dropout>(0.25, seed + 1), nn::make<nn::Linear>(64 * 7 * 7, 256),
        nn::make<nn::ReLU>(), nn::make<nn::Dropout>(0.25, seed + 2), nn::make<nn::Linear>(256, 10)});
}

// The generators a run draws from: the default one, and each dropout
// layer's own (its masks). Each rank has its own states; a checkpoint keeps
// every rank's, so a resumed run draws what the uninterrupted one would.
std::vector<std::pair<std::string, tg::Generator*>> generators(nn::Module& model)
{
    std::vector<std::pair<std::string, tg::Generator*>> out{{"rng", &tg::default_generator()}};
    std::function<void(nn::Module&, const std::string&)> visit = [&](nn::Module& m, const std::string& name) {
        if (auto* d = dynamic_cast<nn::Dropout*>(&m)) out.emplace_back("dropout." + name, &d->generator());
        for (auto& [child, module] : m.children()) visit(*module, name.empty() ? child : name + "." + child);
    };
    visit(model, "");
    return out;
}

// Rank r's generators as "rank<r>.<name>", gathered on rank 0 (the writer).
void save_generators(tg::Checkpoint& ck, nn::Module& model)
{
    for (int r = 0; r < tg::dist::world_size(); ++r)
        for (auto& [name, gen] : generators(model)) {
            const tg::Generator::State st = gen->state();
            tg::Tensor words = tg::zeros({6}, tg::int64);
            int64_t* w = words.data<int64_t>();
            for (int i = 0; i < 4; ++i) std::memcpy(&w[i], &st.s[i], sizeof(uint64_t));
            w[4] = st.has_spare;
            std::memcpy(&w[5], &st.spare, sizeof(double));
            tg::dist::broadcast(words, r);
            tg::Generator::State got;
            for (int i = 0; i < 4; ++i) std::memcpy(&got.s[i], &w[i], sizeof(uint64_t));
            got.has_spare = w[4] != 0;
            std::memcpy(&got.spare, &w[5], sizeof(double));
            tg::Generator g;
            g.set_state(got);
            ck.set_generator("rank" + std::to_string(r) + "." + name, g);
        }
}

// This rank's generators back; a checkpoint of another world size, or from
// before they were saved per rank, gives what it has (rank 0's, or "rng").
void load_generators(const tg::Checkpoint& ck, nn::Module& model)
{
    for (auto& [name, gen] : generators(model)) {
        const std::string mine = "rank" + std::to_string(tg::dist::rank()) + "." + name;
        if (ck.contains(mine)) ck.get_generator(mine, *gen);
        else if (ck.contains("rank0." + name)) ck.get_generator("rank0." + name, *gen);
        else if (ck.contains(name)) ck.get_generator(name, *gen);
    }
}

// FNV-1a over the bytes of the parameters and (rank 0's) buffers: two runs
// print the same fingerprint only if they ended with the same bits.
uint64_t fingerprint(nn::Module& model)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const tg::named_tensors& list : {model.named_parameters(), model.named_buffers()})
        for (const auto& [name, t] : list) {
            const auto* b = static_cast<const unsigned char*>(t.raw_data());
            for (size_t i = 0, n = size_t(t.numel()) * tg::dtype_size(t.dtype()); i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
        }
    return h;
}

struct EpochStats {
    double loss = 0, accuracy = 0, seconds = 0;
    double wait_seconds = 0;  // data-parallel: the backwards' ends waiting on the allreduces, summed
};

// Draws "epoch 2/5 [=====>      ] 412/938  loss 0.3121  acc 88.7%  2480 img/s  0:21 left".
class Progress {
public:
    Progress(int epoch, int epochs, int64_t total) : epoch_(epoch), epochs_(epochs), total_(total), tty_(isatty(1))
    {
        start_ = Clock::now();
    }
    void update(int64_t done, int64_t images, double loss, double acc, bool last)
    {
        if (!tg::dist::is_main()) return;
        double secs = std::chrono::duration<double>(Clock::now() - start_).count();
        bool due = last || (tty_ ? secs - drawn_ > 0.1 : done % std::max<int64_t>(total_ / 10, 1) == 0);
        if (!due) return;
        drawn_ = secs;
        double rate = secs > 0 ? double(images) / secs : 0;
        double left = done > 0 ? secs / double(done) * double(total_ - done) : 0;
        const int width = 30;
        int filled = int(double(width) * double(done) / double(std::max<int64_t>(total_, 1)));
        std::string bar(size_t(filled), '=');
        if (filled < width) bar += '>' + std::string(size_t(width - filled - 1), ' ');
        std::printf("%sepoch %d/%d [%s] %lld/%lld  loss %.4f  acc %5.1f%%  %6.0f img/s  %d:%02d left%s", tty_ ? "\r" : "",
                    epoch_, epochs_, bar.c_str(), (long long)done, (long long)total_, loss, 100 * acc, rate,
                    int(left) / 60, int(left) % 60, tty_ && !last ? "" : "\n");
        std::fflush(stdout);
    }

private:
    int epoch_, epochs_;
    int64_t total_;
    bool tty_;
    Clock::time_point start_;
    double drawn_ = -1;
};

// Fraction of rows of `logits` whose largest entry is the target.
int64_t correct(const tg::Tensor& logits, const tg::Tensor& targets)
{
    tg::Tensor pred = tg::argmax(logits, 1);
    const int64_t* p = pred.data<int64_t>();
    const int64_t* t = targets.data<int64_t>();
    int64_t n = 0;
    for (int64_t i = 0; i < pred.numel(); ++i) n += p[i] == t[i];
    return n;
}

// The first step's tape, drawn before its backward frees what it saved.
void draw_tape(const std::string& path, const tg::Tensor& loss, const nn::Module& model)
{
    tg::named_tensors names = model.named_parameters();
    const std::string svg = tg::write_dot(path, loss, {.names = names, .title = "one training step"});
    std::printf("wrote the tape of the first step to %s%s\n", path.c_str(),
                svg.empty() ? " (no SVG: Graphviz's dot is not installed)" : (" and " + svg).c_str());
}

// This rank's rows of a global batch: all of them in a world of one.
tg::Batch shard(const tg::Batch& batch)
{
    const int r = tg::dist::rank(), n = tg::dist::world_size();
    if (n == 1) return batch;
    const tg::Tensor rows = tg::arange(double(r), double(batch.x.size(0)), double(n), tg::int64);
    return {tg::index_select(batch.x, 0, rows), tg::index_select(batch.y, 0, rows)};
}

// Sums of loss, correct and seen over the ranks (this rank's alone in a world of one).
void sum_over_ranks(double& loss_sum, int64_t& right, int64_t& seen)
{
    tg::Tensor t = tg::from_values({loss_sum, double(right), double(seen)}, {3}, tg::float64);
    tg::dist::allreduce(t);
    loss_sum = t.data<double>()[0];
    right = int64_t(t.data<double>()[1]);
    seen = int64_t(t.data<double>()[2]);
}

EpochStats train_epoch(nn::Module& model, tg::optim::Optimizer& optimizer, tg::optim::LrScheduler& schedule,
                       tg::DataLoader& loader, int epoch, int epochs, const std::string& graph = "")
{
    model.train();
    EpochStats s;
    auto t0 = Clock::now();
    Progress progress(epoch, epochs, loader.batches_per_epoch());
    double loss_sum = 0;
    int64_t seen = 0, right = 0, step = 0, images = 0;  // images: of the global batches
    for (const tg::Batch& global : loader) {
        const tg::Batch batch = shard(global);
        tg::Tensor logits = model(batch.x);                   // forward: every op is recorded on the tape
        tg::Tensor loss = tg::cross_entropy(logits, batch.y);
        // Across ranks the gradients are averaged: weighting each rank's mean
        // by its share of the global batch makes that the global batch's mean.
        const int64_t world = tg::dist::world_size();
        const tg::Tensor objective = world == 1 ? loss
                                     : tg::mul(loss, tg::scalar(double(batch.x.size(0) * world) / double(global.x.size(0)),
                                                                loss.dtype()));
        if (step == 0 && !graph.empty() && tg::dist::is_main()) draw_tape(graph, objective, model);
        optimizer.zero_grad();
        objective.backward();                                 // reverse sweep: fills each parameter's grad()
        if (auto* ddp = dynamic_cast<tg::dist::DataParallel*>(&model)) s.wait_seconds += ddp->last_wait_seconds();
        optimizer.step();                                     // in-place update, off the tape
        schedule.step();

        int64_t n = batch.x.size(0);
        loss_sum += loss.item() * double(n);
        right += correct(logits, batch.y);
        seen += n;
        images += global.x.size(0);
        ++step;
        // (The running loss and accuracy shown are rank 0's; the epoch's are every rank's.)
        progress.update(step, images, loss_sum / double(seen), double(right) / double(seen),
                        step == loader.batches_per_epoch());
    }
    sum_over_ranks(loss_sum, right, seen);
    s.loss = loss_sum / double(std::max<int64_t>(seen, 1));
    s.accuracy = double(right) / double(std::max<int64_t>(seen, 1));
    s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return s;
}

EpochStats evaluate(nn::Module& model, const tg::TensorDataset& test)
{
    model.eval();
    tg::NoGradGuard no_grad;
    tg::DataLoader loader(test, {.batch_size = 1000});
    EpochStats s;
    auto t0 = Clock::now();
    double loss_sum = 0;
    int64_t seen = 0, right = 0;
    for (const tg::Batch& global : loader) {
        const tg::Batch batch = shard(global);
        tg::Tensor logits = model(batch.x);
        loss_sum += tg::cross_entropy(logits, batch.y, tg::Reduction::sum).item();
        right += correct(logits, batch.y);
        seen += batch.x.size(0);
    }
    sum_over_ranks(loss_sum, right, seen);
    s.loss = loss_sum / double(seen);
    s.accuracy = double(right) / double(seen);
    s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return s;
}

struct Row {
    int epoch;
    EpochStats train, test;
    double lr;
};

void write_csv(const std::string& path, const std::vector<Row>& rows, int64_t images)
{
    std::ofstream f(path);
    f << "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,train_seconds,images_per_second\n";
    for (const Row& r : rows)
        f << r.epoch << ',' << r.train.loss << ',' << r.train.accuracy << ',' << r.test.loss << ',' << r.test.accuracy
          << ',' << r.lr << ',' << r.train.seconds << ',' << double(images) / r.train.seconds << '\n';
}

// Two panels (loss, accuracy), train and test curves, in plain SVG.
void write_svg(const std::string& path, const std::vector<Row>& rows)
{
    std::ofstream f(path);
    const int W = 900, H = 380, pad = 50, pw = (W - 3 * pad) / 2, ph = H - 2 * pad;
    f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
    auto panel = [&](int x0, const char* title, auto value_of, bool percent) {
        double lo = 1e300, hi = -1e300;
        for (const Row& r : rows)
            for (int k = 0; k < 2; ++k) {
                lo = std::min(lo, value_of(r, k));
                hi = std::max(hi, value_of(r, k));
            }
        if (hi - lo < 1e-9) hi = lo + 1e-3;
        double margin = (hi - lo) * 0.1;
        lo -= margin;
        hi += margin;
        int n = int(rows.size());
        auto px = [&](int i) { return x0 + (n > 1 ? double(i) * pw / (n - 1) : pw / 2.0); };
        auto py = [&](double v) { return pad + ph - (v - lo) / (hi - lo) * ph; };
        f << "<text x='" << x0 << "' y='" << pad - 15 << "' font-size='14'>" << title << "</text>\n";
        f << "<rect x='" << x0 << "' y='" << pad << "' width='" << pw << "' height='" << ph
          << "' fill='none' stroke='#888'/>\n";
        for (int t = 0; t <= 4; ++t) {
            double v = lo + (hi - lo) * t / 4;
            char label[32];
            std::snprintf(label, sizeof label, percent ? "%.1f%%" : "%.3f", percent ? 100 * v : v);
            f << "<text x='" << x0 - 5 << "' y='" << py(v) + 4 << "' text-anchor='end'>" << label << "</text>\n";
        }
        for (int i = 0; i < n; ++i)
            f << "<text x='" << px(i) << "' y='" << pad + ph + 16 << "' text-anchor='middle'>" << rows[size_t(i)].epoch
              << "</text>\n";
        const char* colors[2] = {"#1f77b4", "#d62728"};
        const char* names[2] = {"train", "test"};
        for (int k = 0; k < 2; ++k) {
            f << "<polyline fill='none' stroke='" << colors[k] << "' stroke-width='2' points='";
            for (int i = 0; i < n; ++i) f << px(i) << ',' << py(value_of(rows[size_t(i)], k)) << ' ';
            f << "'/>\n";
            for (int i = 0; i < n; ++i)
                f << "<circle cx='" << px(i) << "' cy='" << py(value_of(rows[size_t(i)], k)) << "' r='3' fill='"
                  << colors[k] << "'/>\n";
            f << "<text x='" << x0 + pw - 60 << "' y='" << pad + 18 + 16 * k << "' fill='" << colors[k] << "'>"
              << names[k] << "</text>\n";
        }
        f << "<text x='" << x0 + pw / 2 << "' y='" << H - 10 << "' text-anchor='middle'>epoch</text>\n";
    };
    panel(pad, "loss", [](const Row& r, int k) { return k ? r.test.loss : r.train.loss; }, false);
    panel(2 * pad + pw, "accuracy", [](const Row& r, int k) { return k ? r.test.accuracy : r.train.accuracy; }, true);
    f << "</svg>\n";
}

Settings parse(int argc, char** argv)
{
    Settings s;
    auto need = [&](int& i) -> std::string {
        if (i + 1 >= argc) tg::fail("train_fashion_mnist: ", argv[i], " needs a value");
        return argv[++i];
    };
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--epochs") s.epochs = std::stoi(need(i));
        else if (a == "--batch-size") s.batch_size = std::stoll(need(i));
        else if (a == "--lr") s.lr = std::stod(need(i));
        else if (a == "--optimizer") s.optimizer = need(i);
        else if (a == "--model") s.model = need(i);
        else if (a == "--threads") s.threads = std::stoi(need(i));
        else if (a == "--seed") s.seed = std::stoull(need(i));
        else if (a == "--data") s.data = need(i);
        else if (a == "--out") s.out = need(i);
        else if (a == "--resume") s.resume = need(i);
        else if (a == "--graph") s.graph = need(i);
        else if (a == "--distributed") s.distributed = true;
        else if (a == "--sync-bn") s.sync_bn = true;
        else if (a == "--subset") s.subset = std::stoll(need(i));
        else if (a == "--stop-after") s.stop_after = std::stoi(need(i));
        else if (a == "--help" || a == "-h") {
            std::printf("usage: %s [--epochs N] [--batch-size N] [--lr X] [--optimizer adamw|adam|sgd]\n"
                        "          [--model default|ref] [--threads N] [--seed N] [--data DIR] [--out DIR] "
                        "[--resume CHECKPOINT] [--graph FILE] [--distributed [--sync-bn]] [--subset N] [--stop-after EPOCH]\n",
                        argv[0]);
            std::exit(0);
        } else
            tg::fail("train_fashion_mnist: unknown option ", a, " (see --help)");
    }
    TG_CHECK(s.model == "default" || s.model == "ref", "train_fashion_mnist: --model is default or ref, not ", s.model);
    if (s.optimizer.empty()) s.optimizer = s.model == "ref" ? "sgd" : "adamw";
    if (s.lr < 0) s.lr = s.optimizer == "sgd" ? 0.01 : 2e-3;
    TG_CHECK(s.epochs >= 1 && s.batch_size >= 1, "train_fashion_mnist: --epochs and --batch-size must be positive");
    return s;
}

int run(int argc, char** argv)
{
    Settings s = parse(argc, argv);
    if (s.threads > 0) tg::set_num_threads(s.threads);
    const bool main_rank = tg::dist::is_main();
    TG_CHECK(s.distributed || tg::dist::world_size() == 1, "train_fashion_mnist: started on ",
             tg::dist::world_size(), " ranks without --distributed (each would train alone)");
    TG_CHECK(s.batch_size >= tg::dist::world_size(), "train_fashion_mnist: --batch-size ", s.batch_size,
             " is smaller than the ", tg::dist::world_size(), " ranks it is split across");
    TG_CHECK(s.subset >= 0 && s.stop_after >= 0, "train_fashion_mnist: --subset and --stop-after take a count >= 0, got ",
             s.subset, " and ", s.stop_after);
    TG_CHECK(!s.sync_bn || (s.distributed && s.model == "default"), "train_fashion_mnist: --sync-bn is for the "
             "default model (the reference CNN has no batch norm) with --distributed");
    if (!main_rank) std::freopen("/dev/null", "w", stdout);  // rank 0 alone reports
    if (main_rank) std::filesystem::create_directories(s.out);

    auto t0 = Clock::now();
    tg::TensorDataset train = tg::load_fashion_mnist("train", s.data);
    tg::TensorDataset test = tg::load_fashion_mnist("test", s.data);
    if (s.subset > 0) {
        auto first = [&](const tg::TensorDataset& d) {
            const int64_t n = std::min(s.subset, d.size());
            return tg::TensorDataset(tg::slice(d.inputs(), 0, 0, n), tg::slice(d.targets(), 0, 0, n));
        };
        train = first(train);
        test = first(test);
    }
    if (s.model == "default") {  // the reference model sees pixels in [0, 1], as in the reference run
        train.normalize(tg::fashion_mnist_mean, tg::fashion_mnist_std);
        test.normalize(tg::fashion_mnist_mean, tg::fashion_mnist_std);
    }
    std::printf("Fashion-MNIST from %s: %lld training and %lld test images (%.1f s)\n", s.data.c_str(),
                (long long)train.size(), (long long)test.size(),
                std::chrono::duration<double>(Clock::now() - t0).count());

    tg::manual_seed(s.seed);
    std::shared_ptr<nn::Sequential> model = s.model == "ref" ? nn::reference_cnn() : default_cnn(s.seed, s.sync_bn);
    std::printf("%s", model->summary({1, 1, 28, 28}).c_str());

    std::unique_ptr<tg::optim::Optimizer> optimizer;
    if (s.optimizer == "sgd")
        optimizer = std::make_unique<tg::optim::SGD>(model->named_parameters(), tg::optim::SgdOptions{.lr = s.lr, .momentum = 0.9});
    else if (s.optimizer == "adam")
        optimizer = std::make_unique<tg::optim::Adam>(model->named_parameters(), tg::optim::AdamOptions{.lr = s.lr});
    else if (s.optimizer == "adamw")
        optimizer = std::make_unique<tg::optim::AdamW>(model->named_parameters(),
                                                       tg::optim::AdamWOptions{.lr = s.lr, .weight_decay = 5e-4});
    else
        tg::fail("train_fashion_mnist: --optimizer is adamw, adam or sgd, not ", s.optimizer);

    tg::DataLoader loader(train, {.batch_size = s.batch_size, .shuffle = true, .seed = s.seed});
    int64_t steps = loader.batches_per_epoch() * s.epochs;
    // SGD on the reference model runs at a constant rate, as the reference run
    // does; the default warms up for 1/10 of an epoch, then follows a cosine.
    tg::optim::LrScheduler schedule(*optimizer, s.optimizer == "sgd" && s.model == "ref"
                                                    ? tg::optim::step_lr(steps + 1, 1.0)
                                                    : tg::optim::warmup_cosine_lr(loader.batches_per_epoch() / 10, steps));
    std::printf("model %s, optimizer %s, lr %g, batch %lld, %d epochs, %d threads, seed %llu%s\n", s.model.c_str(),
                s.optimizer.c_str(), s.lr, (long long)s.batch_size, s.epochs, tg::num_threads(),
                (unsigned long long)s.seed,
                s.distributed ? (", data-parallel on " + std::to_string(tg::dist::world_size()) + " ranks").c_str() : "");

    // Data-parallel: the same model on every rank (rank 0's values), before a
    // resume loads every rank's own buffers and generators.
    std::shared_ptr<nn::Module> runner = model;
    if (s.distributed) runner = std::make_shared<tg::dist::DataParallel>(model);

    std::vector<Row> rows;
    int first_epoch = 1;
    const std::string checkpoint = s.out + "/checkpoint.tgckpt";
    if (!s.resume.empty()) {
        tg::Checkpoint ck = tg::load_checkpoint(s.resume);
        // Parameters and buffers as one state dict: a checkpoint written
        // before BatchNorm2d counted its batches (no num_batches_tracked)
        // resumes with the counts at 0, as PyTorch loads one.
        tg::named_tensors state = ck.tensors("model.");
        // Rank 0's buffers, or this rank's own (each rank's batch norm keeps
        // its own running statistics).
        const tg::named_tensors own = ck.tensors("rank" + std::to_string(tg::dist::rank()) + ".buffers.");
        for (auto& buffer : own.empty() ? ck.tensors("buffers.") : own) state.push_back(buffer);
        model->load_state_dict(state);
        optimizer->load_from(ck, "optimizer.");
        schedule.load_from(ck, "schedule.");
        loader.load_from(ck, "loader.");
        load_generators(ck, *model);
        first_epoch = int(ck.get_int("epoch")) + 1;
        for (int e = 1; e < first_epoch; ++e) {
            std::string p = "metrics." + std::to_string(e) + ".";
            rows.push_back({e,
                            {ck.get_double(p + "train_loss"), ck.get_double(p + "train_accuracy"), ck.get_double(p + "train_seconds")},
                            {ck.get_double(p + "test_loss"), ck.get_double(p + "test_accuracy"), 0},
                            ck.get_double(p + "lr")});
        }
        std::printf("resumed from %s after epoch %d\n", s.resume.c_str(), first_epoch - 1);
    }


    for (int epoch = first_epoch; epoch <= s.epochs; ++epoch) {
        Row row{epoch, {}, {}, optimizer->lr()};
        row.train = train_epoch(*runner, *optimizer, schedule, loader, epoch, s.epochs,
                                epoch == first_epoch ? s.graph : std::string());
        row.test = evaluate(*runner, test);
        rows.push_back(row);
        std::printf("epoch %d: train loss %.4f acc %.2f%% (%.1f s, %.0f img/s) | test loss %.4f acc %.2f%% (%.1f s)\n",
                    epoch, row.train.loss, 100 * row.train.accuracy, row.train.seconds,
                    double(train.size()) / row.train.seconds, row.test.loss, 100 * row.test.accuracy, row.test.seconds);
        if (s.distributed)
            std::printf("epoch %d: rank 0's backwards waited %.2f s on the gradients' allreduce (%.3f ms a step, %.1f%% of training)\n",
                        epoch, row.train.wait_seconds, 1e3 * row.train.wait_seconds / double(loader.batches_per_epoch()),
                        100 * row.train.wait_seconds / row.train.seconds);

        tg::Checkpoint ck;
        ck.set_tensors("model.", model->named_parameters());
        ck.set_tensors("buffers.", model->named_buffers());
        for (int r = 1; r < tg::dist::world_size(); ++r) {  // the other ranks' buffers, gathered on rank 0
            tg::named_tensors theirs;
            for (auto& [name, t] : model->named_buffers()) {
                tg::Tensor copy = t.detach().clone();
                tg::dist::broadcast(copy, r);
                theirs.emplace_back(name, copy);
            }
            ck.set_tensors("rank" + std::to_string(r) + ".buffers.", theirs);
        }
        optimizer->save_to(ck, "optimizer.");
        schedule.save_to(ck, "schedule.");
        loader.save_to(ck, "loader.");
        save_generators(ck, *model);
        ck.set_int("epoch", epoch);
        for (const Row& r : rows) {
            std::string p = "metrics." + std::to_string(r.epoch) + ".";
            ck.set_double(p + "train_loss", r.train.loss);
            ck.set_double(p + "train_accuracy", r.train.accuracy);
            ck.set_double(p + "train_seconds", r.train.seconds);
            ck.set_double(p + "test_loss", r.test.loss);
            ck.set_double(p + "test_accuracy", r.test.accuracy);
            ck.set_double(p + "lr", r.lr);
        }
        if (main_rank) {  // one writer
            tg::save_checkpoint(checkpoint, ck);
            write_csv(s.out + "/metrics.csv", rows, train.size());
            write_svg(s.out + "/metrics.svg", rows);
        }
        if (epoch == s.stop_after) {
            std::printf("stopped after epoch %d (--stop-after): resume with --resume %s\n", epoch, checkpoint.c_str());
            return 0;
        }
    }
    double best = 0;
    for (const Row& r : rows) best = std::max(best, r.test.accuracy);
    std::printf("done: final test accuracy %.2f%% (best %.2f%%); wrote %s, %s/metrics.csv and %s/metrics.svg\n",
                100 * rows.back().test.accuracy, 100 * best, checkpoint.c_str(), s.out.c_str(), s.out.c_str());
    std::printf("parameters and buffers: fingerprint %016llx\n", (unsigned long long)fingerprint(*model));
    return 0;
}

int main(int argc, char** argv)
{
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        // One rank's error ends the run at once, not at the others' timeout.
        if (tg::dist::world_size() > 1) tg::dist::abort(1);
        return 1;
    }
}
