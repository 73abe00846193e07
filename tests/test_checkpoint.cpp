// Checkpoints: the file format's checks, atomic saving, and resuming a
// training run bit for bit.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <tapegrad/tapegrad.hpp>

#include "tests/fuzz/fuzz_target.hpp"
#include "tests/fuzz/resume_run.hpp"
#include "tests/helpers.hpp"

namespace fs = std::filesystem;

namespace {


std::vector<uint8_t> read_bytes(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes)
{
    // A new file rather than a truncated one: ext4 flushes truncated files on close, which is slow.
    fs::remove(path);
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}
// Rewrites the trailing CRC so a deliberately broken file passes the checksum.
void fix_crc(std::vector<uint8_t>& bytes)
{
    uint32_t c = uint32_t(crc32(0, bytes.data(), unsigned(bytes.size() - 4)));
    std::memcpy(bytes.data() + bytes.size() - 4, &c, 4);
}


bool same_bits(const tg::Tensor& a, const tg::Tensor& b)
{
    return a.shape() == b.shape() && a.dtype() == b.dtype() &&
           std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * tg::dtype_size(a.dtype())) == 0;
}

// A checkpoint with one entry of every kind.
tg::Checkpoint sample_checkpoint()
{
    tg::Checkpoint c;
    c.set_tensor("conv1.weight", tg::randn({4, 1, 3, 3}, tg::float32));
    c.set_tensor("fc.bias", tg::from_values({1.5, -2.25, NAN}, {3}, tg::float64));
    c.set_tensor("labels", tg::from_values({3, 1, 4, 1, 5}, {5}, tg::int64));
    c.set_tensor("scalar", tg::scalar(7.0, tg::float32));
    c.set_tensor("empty", tg::zeros({0, 3}, tg::float64));
    c.set_int("epoch", -12345678901LL);
    c.set_double("lr", 0.1);
    c.set_bytes("blob", {0, 1, 2, 255});
    c.set_bytes("nothing", {});
    tg::Generator g(99);
    c.set_generator("rng", g);
    return c;
}

}  // namespace

TEST_CASE("checkpoint: round trip of every kind of entry")
{
    TempDir dir;
    tg::Checkpoint c = sample_checkpoint();
    std::string path = dir.file("a.ckpt");
    tg::save_checkpoint(path, c);
    tg::Checkpoint d = tg::load_checkpoint(path);
    CHECK(d.names() == c.names());
    CHECK(d.source() == path);
    for (const char* name : {"conv1.weight", "fc.bias", "labels", "scalar", "empty"}) {
        CAPTURE(name);
        CHECK(same_bits(d.tensor(name), c.tensor(name)));
    }
    CHECK(d.get_int("epoch") == -12345678901LL);
    CHECK(d.get_double("lr") == 0.1);
    CHECK(d.bytes("blob") == std::vector<uint8_t>{0, 1, 2, 255});
    CHECK(d.bytes("nothing").empty());
    CHECK(d.tensors("fc.").size() == 1);
    CHECK(d.tensors("fc.")[0].first == "bias");

    CHECK(contains(error_of([&] { d.get_int("lr"); }), "entry 'lr' is a float64, not a int64"));
    CHECK(contains(error_of([&] { d.tensor("nope"); }), "no entry 'nope'"));
    CHECK(contains(error_of([&] { d.tensor("nope"); }), path));
}

TEST_CASE("checkpoint: generator state round trip")
{
    TempDir dir;
    tg::Generator g(2024);
    for (int i = 0; i < 5; ++i) g.next_u64();
    g.normal();  // leaves a spare normal value in the state
    tg::Checkpoint c;
    c.set_generator("g", g);
    tg::save_checkpoint(dir.file("g.ckpt"), c);
    tg::Generator h(1);
    tg::load_checkpoint(dir.file("g.ckpt")).get_generator("g", h);
    for (int i = 0; i < 10; ++i) {
        CHECK(h.normal() == g.normal());  // the first one is the spare
        CHECK(h.next_u64() == g.next_u64());
    }
    tg::Checkpoint bad;
    bad.set_bytes("g", {1, 2, 3});
    CHECK(contains(error_of([&] { bad.get_generator("g", h); }), "a generator state has 41"));
}

TEST_CASE("checkpoint: every truncation and every flipped byte is an error, never a crash")
{
    TempDir dir;
    std::string path = dir.file("t.ckpt");
    tg::save_checkpoint(path, sample_checkpoint());
    const std::vector<uint8_t> good = read_bytes(path);
    REQUIRE(good.size() > 200);
    std::string cut = dir.file("cut.ckpt");
    for (size_t len = 0; len < good.size(); ++len) {
        write_bytes(cut, std::vector<uint8_t>(good.begin(), good.begin() + std::ptrdiff_t(len)));
        std::string msg = error_of([&] { tg::load_checkpoint(cut); });
        CAPTURE(len);
        CAPTURE(msg);
        CHECK(contains(msg, cut));
        CHECK(contains(msg, "byte offset"));
    }
    // CRC-32 catches every change confined to 4 bytes, so each single-byte
    // change is caught (by a specific check or by the checksum).
    for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xFF)})
        for (size_t pos = 0; pos < good.size(); ++pos) {
            std::vector<uint8_t> bad = good;
            bad[pos] ^= mask;
            write_bytes(cut, bad);
            std::string msg = error_of([&] { tg::load_checkpoint(cut); });
            CAPTURE(pos);
            CAPTURE(msg);
            CHECK(contains(msg, cut));
        }
    // Random multi-byte damage.
    tg::Generator rng(5);
    for (int trial = 0; trial < 300; ++trial) {
        std::vector<uint8_t> bad = good;
        int n = int(rng.integer(1, 9));
        for (int k = 0; k < n; ++k) bad[size_t(rng.integer(0, int64_t(bad.size())))] = uint8_t(rng.integer(0, 256));
        if (bad == good) continue;
        write_bytes(cut, bad);
        CHECK_THROWS_AS(tg::load_checkpoint(cut), tg::Error);
    }
}

TEST_CASE("checkpoint: what is wrong is said precisely")
{
    TempDir dir;
    std::string path = dir.file("m.ckpt");
    tg::Checkpoint c;
    c.set_tensor("w", tg::zeros({2, 3}));
    tg::save_checkpoint(path, c);
    const std::vector<uint8_t> good = read_bytes(path);
    // Layout of this file: 16-byte header, the record of "w" (4 + 1 + 1 + 1 + 2 + 4 + 16 + 16 = 45
    // bytes: offset 16 .. 61), 24 bytes of data, the CRC.
    REQUIRE(good.size() == 16 + 45 + 24 + 4);
    auto load_with = [&](auto change) {
        std::vector<uint8_t> b = good;
        change(b);
        write_bytes(path, b);
        return error_of([&] { tg::load_checkpoint(path); });
    };
    CHECK(contains(load_with([](auto& b) { b[0] = 'X'; }), "not a tapegrad checkpoint: wrong magic"));
    std::string msg = load_with([](auto& b) { b[8] = 2; });
    CHECK(contains(msg, "format version 2 is not supported"));
    CHECK(contains(msg, "newer tapegrad"));
    CHECK(contains(msg, "at byte offset 8"));
    msg = load_with([](auto& b) { b[70] ^= 1; });  // a data byte
    CHECK(contains(msg, "checksum mismatch"));
    CHECK(contains(msg, "at byte offset 85"));
    msg = load_with([](auto& b) { b.resize(b.size() - 10); });
    CHECK(contains(msg, "truncated"));
    msg = load_with([](auto& b) { b.push_back(0); });
    CHECK(contains(msg, "1 unexpected bytes after the checksum"));
    msg = load_with([](auto& b) { b[12] = 200; });  // entry count
    CHECK(contains(msg, "entry count 200 cannot fit"));

    // Records that lie but carry a valid checksum are still caught, before any allocation.
    msg = load_with([](auto& b) {
        int64_t huge = int64_t(1) << 40;
        std::memcpy(b.data() + 16 + 13, &huge, 8);  // first size of "w"
        fix_crc(b);
    });
    CHECK(contains(msg, "entry 0 'w' declares 24 bytes of data but its float32 [1099511627776, 3] needs"));
    msg = load_with([](auto& b) {
        b[16 + 5] = 9;  // kind
        fix_crc(b);
    });
    CHECK(contains(msg, "unknown kind 9"));
    CHECK(contains(msg, "at byte offset 21"));
    msg = load_with([](auto& b) {
        uint64_t off = 1000;
        std::memcpy(b.data() + 16 + 29, &off, 8);  // data offset
        fix_crc(b);
    });
    CHECK(contains(msg, "puts its data at byte offset 1000"));

    write_bytes(path, {});
    CHECK(contains(error_of([&] { tg::load_checkpoint(path); }), "truncated"));
    CHECK(contains(error_of([&] { tg::load_checkpoint(dir.file("none.ckpt")); }), "cannot open"));
}

TEST_CASE("checkpoint: names from the file reach a message escaped, whole, on one line")
{
    // A NUL once cut the message short (losing the reason and the offset);
    // newlines and terminal escapes passed through to the user's terminal.
    TempDir dir;
    std::string path = dir.file("n.ckpt");
    const std::string name = std::string("a\0b\n\x1b[31mred'", 13);
    tg::Checkpoint c;
    c.set_int(name, 1);
    c.set_int(name + "2", 2);
    tg::save_checkpoint(path, c);
    tg::Checkpoint d = tg::load_checkpoint(path);
    CHECK(d.get_int(name) == 1);
    std::string msg = error_of([&] { d.tensor(name); });
    CHECK(contains(msg, "entry 'a\\x00b\\x0a\\x1b[31mred\\x27' is a int64, not a tensor"));
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(msg.find('\x1b') == std::string::npos);
    // Two records with the same escaped-looking but different raw names are two entries;
    // a duplicated raw name in the file is reported escaped, with its offset.
    std::vector<uint8_t> b = read_bytes(path);
    auto second = std::search(b.begin() + 20, b.end(), name.begin(), name.end());
    REQUIRE(second != b.end());
    second = std::search(second + 1, b.end(), name.begin(), name.end());
    REQUIRE(second != b.end());
    second[13] = 0;  // "<name>2" -> "<name>\0": the name stays 14 bytes
    fix_crc(b);
    write_bytes(path, b);
    tg::Checkpoint e = tg::load_checkpoint(path);
    CHECK(e.names().size() == 2);
    CHECK(contains(error_of([&] { e.tensor(name + std::string(1, '\0')); }), "red\\x27\\x00' is a int64"));
}

TEST_CASE("checkpoint: load_into checks names, shapes and dtypes, all or nothing")
{
    TempDir dir;
    std::string path = dir.file("x.ckpt");
    tg::Checkpoint c;
    c.set_tensors("model.", {{"conv1.weight", tg::ones({32, 1, 3, 3})}, {"fc.bias", tg::ones({10})},
                             {"extra", tg::ones({2})}});
    c.set_int("model.epoch", 3);  // not a tensor: ignored by load_into
    tg::save_checkpoint(path, c);
    tg::Checkpoint d = tg::load_checkpoint(path);

    tg::named_tensors model = {{"conv1.weight", tg::zeros({16, 1, 3, 3}).requires_grad_()},
                               {"fc.bias", tg::zeros({10}, tg::float64)},
                               {"fc.weight", tg::zeros({10, 4})}};
    std::string msg = error_of([&] { d.load_into(model, "model."); });
    CHECK(contains(msg, "checkpoint '" + path + "': "));
    CHECK(contains(msg, "parameter 'conv1.weight' has shape [32, 1, 3, 3] in the file but [16, 1, 3, 3] in the model"));
    CHECK(contains(msg, "parameter 'fc.bias' has dtype float32 in the file but float64 in the model"));
    CHECK(contains(msg, "parameter 'fc.weight' is missing from the file"));
    CHECK(contains(msg, "the file has parameter 'extra' that the model does not have"));

    tg::named_tensors good = {{"conv1.weight", tg::zeros({32, 1, 3, 3}).requires_grad_()},
                              {"fc.bias", tg::zeros({10})}};
    CHECK_THROWS_AS(d.load_into(good, "model."), tg::Error);  // "extra" is still unexpected
    CHECK(good[1].second.at({0}) == 0.0);                     // nothing was copied
    good.emplace_back("extra", tg::zeros({2}));
    d.load_into(good, "model.");
    CHECK(good[0].second.at({5, 0, 1, 1}) == 1.0);
    CHECK(good[1].second.at({9}) == 1.0);
    CHECK(good[0].second.requires_grad());
}

namespace {

// The process id of a process that has ended (and been reaped): no process has it now.
pid_t gone_pid()
{
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    int status = 0;
    ::waitpid(child, &status, 0);
    return child;
}

// The files next to `path` named as its temporaries.
int temporaries_of(const std::string& path)
{
    const fs::path p(path);
    const std::string prefix = p.filename().string() + ".tmp.";
    int n = 0;
    for (const auto& e : fs::directory_iterator(p.parent_path()))
        n += e.path().filename().string().compare(0, prefix.size(), prefix) == 0;
    return n;
}

tg::Checkpoint numbered(int64_t step, int64_t n = 1000)
{
    tg::Checkpoint c;
    c.set_int("step", step);
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(step * n + i);
    c.set_tensor("values", tg::from_values(v, {n}, tg::float64));
    return c;
}

// The checkpoint is one that numbered(step) wrote, bit for bit.
bool is_numbered(const tg::Checkpoint& c)
{
    const int64_t step = c.get_int("step");
    const std::vector<double> v = c.tensor("values").to_vector();
    for (size_t i = 0; i < v.size(); ++i)
        if (v[i] != double(step * int64_t(v.size()) + int64_t(i))) return false;
    return true;
}

}  // namespace

TEST_CASE("checkpoint: saving is atomic")
{
    TempDir dir;
    std::string path = dir.file("run.ckpt");
    tg::Checkpoint v1;
    v1.set_int("step", 1);
    tg::save_checkpoint(path, v1);

    // A crash while writing the next checkpoint leaves a partial temporary file
    // behind; the previous checkpoint is untouched and still loads.
    std::vector<uint8_t> partial = read_bytes(path);
    partial.resize(partial.size() / 2);
    const std::string stale = path + ".tmp." + std::to_string(gone_pid()) + ".0";
    write_bytes(stale, partial);
    const std::string running = path + ".tmp.1.0";  // pid 1 runs: its save may be in progress
    write_bytes(running, partial);
    CHECK(tg::load_checkpoint(path).get_int("step") == 1);

    // The next save succeeds, and removes the dead process's leftover, not the running one's.
    tg::Checkpoint v2;
    v2.set_int("step", 2);
    tg::save_checkpoint(path, v2);
    CHECK(tg::load_checkpoint(path).get_int("step") == 2);
    CHECK(!fs::exists(stale));
    CHECK(fs::exists(running));
    fs::remove(running);
    CHECK(temporaries_of(path) == 0);  // ours was renamed

    // A save that cannot happen leaves the old file alone.
    tg::Checkpoint v3;
    v3.set_int("step", 3);
    CHECK(contains(error_of([&] { tg::save_checkpoint(dir.file("no/such/dir/run.ckpt"), v3); }), "cannot create"));
    fs::create_directory(path + ".blocker");
    CHECK_THROWS_AS(tg::save_checkpoint(path + ".blocker", v3), tg::Error);  // rename onto a directory fails
    CHECK(temporaries_of(path + ".blocker") == 0);  // and the temporary is removed
    CHECK(tg::load_checkpoint(path).get_int("step") == 2);
}

TEST_CASE("checkpoint: threads saving to one path never tear it for a reader")
{
    TempDir dir;
    const std::string path = dir.file("shared.ckpt");
    tg::save_checkpoint(path, numbered(0));
    std::atomic<bool> stop{false};
    std::atomic<int> loads{0}, torn{0}, failed_saves{0};
    std::vector<std::thread> savers;
    for (int t = 0; t < 2; ++t)
        savers.emplace_back([&, t] {
            for (int64_t k = 1; k <= 40; ++k) {
                try {
                    tg::save_checkpoint(path, numbered(2 * k + t));
                } catch (const std::exception&) {
                    ++failed_saves;  // another thread's save took this one's temporary
                }
            }
        });
    std::thread reader([&] {
        while (!stop) {
            try {
                torn += !is_numbered(tg::load_checkpoint(path));
            } catch (const tg::Error&) {
                ++torn;
            }
            ++loads;
        }
    });
    for (std::thread& s : savers) s.join();
    stop = true;
    reader.join();
    MESSAGE(loads.load(), " loads during 80 saves");
    CHECK(loads > 0);
    CHECK(failed_saves == 0);
    CHECK(torn == 0);
    CHECK(is_numbered(tg::load_checkpoint(path)));
    CHECK(temporaries_of(path) == 0);
}

namespace {
// Forks a child that runs `work` (which loops until killed; anything it
// throws ends it with status 2), kills it with SIGKILL after `delay_us`, and
// returns whether SIGKILL is what ended it.
bool killed_mid_work(const std::function<void()>& work, int delay_us)
{
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        try {
            work();
        } catch (...) {
        }
        ::_exit(2);
    }
    ::usleep(useconds_t(delay_us));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}
}  // namespace

TEST_CASE("checkpoint: killed with SIGKILL mid-save, the newest complete checkpoint loads, bit for bit")
{
    TempDir dir;
    const std::string path = dir.file("killed.ckpt");
    std::mt19937 rng(7);
    // 30 in the suite; TG_KILL_TRIALS=200 for a longer run by hand.
    const int trials = std::getenv("TG_KILL_TRIALS") ? std::atoi(std::getenv("TG_KILL_TRIALS")) : 30;
    REQUIRE(trials > 0);
    int64_t last_step = -1, killed_mid_run = 0;
    for (int trial = 0; trial < trials; ++trial) {
        const int64_t first = (trial + 1) * 100000;
        killed_mid_run += killed_mid_work(
            [&] {
                for (int64_t step = first;; ++step) tg::save_checkpoint(path, numbered(step, 20000));
            },
            std::uniform_int_distribution<int>(1000, 30000)(rng));
        if (!fs::exists(path)) continue;  // killed before its first save finished, with nothing before it
        tg::Checkpoint c = tg::load_checkpoint(path);
        INFO("trial ", trial);
        CHECK(is_numbered(c));
        CHECK(c.get_int("step") >= last_step);  // never an older one than the last trial's
        last_step = c.get_int("step");
    }
    CHECK(killed_mid_run == trials);
    CHECK(last_step >= 0);
    // Every kill may leave a temporary; the next save removes them all.
    tg::save_checkpoint(path, numbered(last_step + 1, 20000));
    CHECK(temporaries_of(path) == 0);
    CHECK(is_numbered(tg::load_checkpoint(path)));
}

namespace {
// Run `steps` steps of the tiny training run from scratch, with its checkpoint.
tg::Checkpoint trained_checkpoint(tg::fuzz::Run& run, int64_t steps)
{
    run.train(int(steps));
    tg::Checkpoint c;
    run.save_to(c);
    c.set_int("steps", steps);
    return c;
}
}  // namespace

TEST_CASE("checkpoint: a training run killed with SIGKILL at random resumes from its newest checkpoint bit for bit")
{
    // The child trains (Adam, batch norm, a shuffling loader) and saves after
    // every step until killed. After each kill: the file on disk is exactly
    // the checkpoint of some step s (recomputed here from scratch), and a run
    // resumed from it continues bit for bit like one that was never stopped.
    TempDir dir;
    const std::string path = dir.file("train.ckpt");
    std::mt19937 rng(11);
    // 30 in the suite; TG_KILL_TRIALS=100 (or more) by hand.
    const int trials = std::getenv("TG_KILL_TRIALS") ? std::atoi(std::getenv("TG_KILL_TRIALS")) : 30;
    REQUIRE(trials > 0);
    int64_t resumed = 0, most_steps = 0;
    for (int trial = 0; trial < trials; ++trial) {
        fs::remove(path);  // each trial trains from the start
        REQUIRE(killed_mid_work(
            [&] {
                tg::fuzz::Run run(true);
                for (int64_t step = 1;; ++step) {
                    run.train(1);
                    tg::Checkpoint c;
                    run.save_to(c);
                    c.set_int("steps", step);
                    tg::save_checkpoint(path, c);
                }
            },
            std::uniform_int_distribution<int>(2000, 40000)(rng)));
        if (!fs::exists(path)) continue;  // killed before its first save
        INFO("trial ", trial);
        const tg::Checkpoint on_disk = tg::load_checkpoint(path);
        const int64_t steps = on_disk.get_int("steps");
        most_steps = std::max(most_steps, steps);
        tg::fuzz::Run reference(true);
        CHECK(tg::fuzz::same_checkpoints(on_disk, trained_checkpoint(reference, steps)));
        // Resume, and go on as the uninterrupted reference does.
        tg::fuzz::Run again(true);
        again.load_from(on_disk);
        again.train(3);
        reference.train(3);
        const tg::named_tensors p = again.model->named_parameters(), q = reference.model->named_parameters();
        bool identical = p.size() == q.size();
        for (size_t i = 0; identical && i < p.size(); ++i)
            identical = p[i].second.to_vector() == q[i].second.to_vector();
        CHECK(identical);
        resumed += identical;
    }
    MESSAGE(trials, " kills, ", resumed, " resumed bit for bit (up to step ", most_steps, ")");
    CHECK(resumed >= trials * 2 / 3);  // a kill before the first save leaves nothing to resume
    // The temporaries of killed saves are removed by the next save.
    tg::fuzz::Run run(true);
    tg::save_checkpoint(path, trained_checkpoint(run, 1));
    CHECK(temporaries_of(path) == 0);
}

TEST_CASE("checkpoint: a save past the file-size limit (a full disk) fails clearly and the previous checkpoint is intact")
{
    TempDir dir;
    const std::string path = dir.file("limited.ckpt");
    const std::string npy = dir.file("limited.npy");
    tg::save_checkpoint(path, numbered(1, 100));
    tg::save_npy(tg::ones({100}, tg::float64), npy);
    const std::vector<uint8_t> before = read_bytes(path), npy_before = read_bytes(npy);
    // In a child: RLIMIT_FSIZE makes a write past 64 KiB fail with EFBIG (SIGXFSZ
    // ignored, as a disk that fills up fails the write rather than the process).
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        int code = 0;
        try {
            ::signal(SIGXFSZ, SIG_IGN);
            rlimit limit{64 * 1024, 64 * 1024};
            if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(10);
            std::string ckpt_error = error_of([&] { tg::save_checkpoint(path, numbered(2, 100000)); });
            std::string npy_error = error_of([&] { tg::save_npy(tg::ones({100000}, tg::float64), npy); });
            if (!contains(ckpt_error, "save_checkpoint: cannot write") || !contains(ckpt_error, "File too large")) code |= 1;
            if (!contains(npy_error, "save_npy:") || !contains(npy_error, "File too large")) code |= 2;
        } catch (...) {
            code |= 4;
        }
        ::_exit(code);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);  // 1: the checkpoint's error, 2: the .npy's, 4: something else raised
    CHECK(read_bytes(path) == before);
    CHECK(read_bytes(npy) == npy_before);
    CHECK(is_numbered(tg::load_checkpoint(path)));
    CHECK(temporaries_of(path) == 0);
    CHECK(temporaries_of(npy) == 0);
}

// --- resuming a training run ------------------------------------------------------------------

namespace {

// A small MLP trained on seeded random data: everything a run needs to resume.
struct Run {
    tg::named_tensors params;
    std::unique_ptr<tg::optim::Optimizer> opt;
    std::unique_ptr<tg::optim::LrScheduler> sched;
    std::unique_ptr<tg::DataLoader> loader;
    tg::Generator noise{17};  // input noise: a random stream the run consumes
    int64_t step = 0;
};

tg::TensorDataset regression_data()
{
    tg::Generator g(1);
    tg::Tensor x = tg::randn({36, 4}, tg::float32, &g);
    tg::Tensor y = tg::sin(tg::matmul(x, tg::randn({4, 2}, tg::float32, &g)));
    return tg::TensorDataset(x, y);
}

Run make_run(const std::string& optimizer, uint64_t init_seed)
{
    Run r;
    tg::Generator g(init_seed);
    r.params = {{"fc1.weight", (tg::randn({4, 8}, tg::float32, &g) * 0.5).detach().requires_grad_()},
                {"fc1.bias", tg::zeros({8}).requires_grad_()},
                {"fc2.weight", (tg::randn({8, 2}, tg::float32, &g) * 0.5).detach().requires_grad_()},
                {"fc2.bias", tg::zeros({2}).requires_grad_()}};
    if (optimizer == "sgd")
        r.opt = std::make_unique<tg::optim::SGD>(r.params, tg::optim::SgdOptions{.lr = 0.1, .momentum = 0.9});
    else
        r.opt = std::make_unique<tg::optim::Adam>(r.params, tg::optim::AdamOptions{.lr = 0.02, .weight_decay = 1e-3});
    r.sched = std::make_unique<tg::optim::LrScheduler>(*r.opt, tg::optim::warmup_cosine_lr(4, 20, 1e-3, 0.1));
    // 36 examples in batches of 7: six batches an epoch, the last of one example.
    r.loader = std::make_unique<tg::DataLoader>(regression_data(),
                                                tg::DataLoaderOptions{.batch_size = 7, .shuffle = true, .seed = 3});
    return r;
}

void train(Run& r, int64_t steps)
{
    int64_t done = 0;
    while (done < steps) {
        for (const tg::Batch& b : *r.loader) {
            const tg::Tensor &w1 = r.params[0].second, &b1 = r.params[1].second, &w2 = r.params[2].second,
                             &b2 = r.params[3].second;
            tg::Tensor x = b.x + tg::randn(b.x.shape(), tg::float32, &r.noise) * 0.01;
            tg::Tensor out = tg::matmul(tg::tanh(tg::matmul(x, w1) + b1), w2) + b2;
            tg::Tensor loss = tg::mean(tg::square(out - b.y));
            r.opt->zero_grad();
            loss.backward();
            tg::optim::clip_grad_norm_(r.params, 1.0);
            r.opt->step();
            r.sched->step();
            ++r.step;
            if (++done == steps) break;
        }
    }
}

void save_run(const Run& r, const std::string& path)
{
    tg::Checkpoint c;
    c.set_tensors("model.", r.params);
    r.opt->save_to(c, "optim.");
    r.sched->save_to(c, "sched.");
    r.loader->save_to(c, "loader.");
    c.set_generator("noise", r.noise);
    c.set_int("step", r.step);
    tg::save_checkpoint(path, c);
}

void load_run(Run& r, const std::string& path, bool with_optimizer_state = true)
{
    tg::Checkpoint c = tg::load_checkpoint(path);
    c.load_into(r.params, "model.");
    if (with_optimizer_state) r.opt->load_from(c, "optim.");
    r.sched->load_from(c, "sched.");
    r.loader->load_from(c, "loader.");
    c.get_generator("noise", r.noise);
    r.step = c.get_int("step");
}

bool same_params(const Run& a, const Run& b)
{
    for (size_t i = 0; i < a.params.size(); ++i)
        if (!same_bits(a.params[i].second, b.params[i].second)) return false;
    return true;
}

}  // namespace

TEST_CASE("checkpoint: N steps equal N/2 + save + load + N/2, bit for bit")
{
    TempDir dir;
    for (const char* optimizer : {"sgd", "adam"}) {
        CAPTURE(optimizer);
        Run whole = make_run(optimizer, 2);
        Run initial = make_run(optimizer, 2);
        train(whole, 20);
        CHECK(!same_params(whole, initial));  // training moved the parameters

        Run first = make_run(optimizer, 2);
        train(first, 10);  // stops in the middle of the second epoch
        std::string path = dir.file(std::string(optimizer) + ".ckpt");
        save_run(first, path);

        Run second = make_run(optimizer, 99);  // other initial values, all overwritten by the load
        load_run(second, path);
        CHECK(second.step == 10);
        train(second, 10);
        CHECK(same_params(whole, second));

        // Dropping the optimizer's state breaks the equality: the test sees it.
        Run forgetful = make_run(optimizer, 99);
        load_run(forgetful, path, false);
        train(forgetful, 10);
        CHECK(!same_params(whole, forgetful));
    }
}
