// IDX reading, TensorDataset, DataLoader and the Fashion-MNIST loader.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <tapegrad/tapegrad.hpp>

#include "tests/helpers.hpp"

namespace fs = std::filesystem;

namespace {


void write_plain(const std::string& path, const std::vector<uint8_t>& bytes)
{
    // A new file rather than a truncated one: ext4 flushes truncated files on close, which is slow.
    fs::remove(path);
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes)
{
    fs::remove(path);
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
    REQUIRE(gzclose(f) == Z_OK);
}

std::vector<uint8_t> read_bytes(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// An IDX file of unsigned bytes: header then data.
std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                               uint8_t type = 0x08)
{
    std::vector<uint8_t> b = {0, 0, type, uint8_t(dims.size())};
    for (uint32_t d : dims) {
        b.push_back(uint8_t(d >> 24));
        b.push_back(uint8_t(d >> 16));
        b.push_back(uint8_t(d >> 8));
        b.push_back(uint8_t(d));
    }
    b.insert(b.end(), data.begin(), data.end());
    return b;
}



std::vector<uint8_t> iota_bytes(size_t n)
{
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 7 + 3);
    return v;
}

}  // namespace

// --- IDX --------------------------------------------------------------------------------

TEST_CASE("read_idx: gzipped and plain files round trip")
{
    TempDir dir;
    std::vector<uint8_t> data = iota_bytes(3 * 4 * 5);
    for (bool gz : {true, false}) {
        std::string path = dir.file(gz ? "a.gz" : "a");
        auto bytes = idx_bytes({3, 4, 5}, data);
        gz ? write_gz(path, bytes) : write_plain(path, bytes);
        tg::IdxArray a = tg::read_idx(path);
        CHECK(a.dims == std::vector<int64_t>{3, 4, 5});
        CHECK(a.data == data);
    }
    // An empty array is fine.
    write_gz(dir.file("empty.gz"), idx_bytes({0, 28, 28}, {}));
    tg::IdxArray e = tg::read_idx(dir.file("empty.gz"));
    CHECK(e.dims == std::vector<int64_t>{0, 28, 28});
    CHECK(e.data.empty());
}

TEST_CASE("read_idx: malformed files are errors naming the file and the offset")
{
    TempDir dir;
    for (bool gz : {true, false}) {
        CAPTURE(gz);
        auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
            std::string path = dir.file(name + (gz ? ".gz" : ""));
            gz ? write_gz(path, bytes) : write_plain(path, bytes);
            return path;
        };
        std::string path = write("magic", {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 7});
        std::string msg = error_of([&] { tg::read_idx(path); });
        CHECK(contains(msg, path));
        CHECK(contains(msg, "wrong magic number 0x12340801 at byte offset 0"));

        path = write("type", idx_bytes({2}, {0, 0, 0, 0, 0, 0, 0, 0}, 0x0D));
        msg = error_of([&] { tg::read_idx(path); });
        CHECK(contains(msg, path));
        CHECK(contains(msg, "element type 0x0d (float32) at byte offset 2"));

        path = write("rank0", {0, 0, 8, 0});
        CHECK(contains(error_of([&] { tg::read_idx(path); }), "zero dimensions at byte offset 3"));

        path = write("short_header", {0, 0, 8, 3, 0, 0, 0, 2, 0, 0});
        msg = error_of([&] { tg::read_idx(path); });
        CHECK(contains(msg, path));
        CHECK(contains(msg, "truncated at byte offset 10"));
        CHECK(contains(msg, "dimension sizes"));

        path = write("short_data", idx_bytes({4, 5}, iota_bytes(13)));
        msg = error_of([&] { tg::read_idx(path); });
        CHECK(contains(msg, path));
        CHECK(contains(msg, "truncated"));
        CHECK(contains(msg, "promise 20 bytes of data from byte offset 12"));
        CHECK(contains(msg, gz ? "byte offset 25 of the uncompressed data" : "ends at byte offset 25"));

        path = write("trailing", idx_bytes({2, 2}, iota_bytes(6)));
        msg = error_of([&] { tg::read_idx(path); });
        CHECK(contains(msg, "after the data at byte offset 16"));

        path = write("overflow", idx_bytes({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}));
        CHECK(contains(error_of([&] { tg::read_idx(path); }), "overflow 64 bits"));

        // Sizes that promise far more than the file can hold fail before any allocation.
        path = write("huge", idx_bytes({0xFFFFFFFF, 0xFFFFFF}, iota_bytes(10)));
        msg = error_of([&] { tg::read_idx(path); });
        CHECK(contains(msg, path));
        CHECK(contains(msg, gz ? "can hold" : "truncated"));
    }
    CHECK(contains(error_of([&] { tg::read_idx(dir.file("missing.gz")); }), "cannot open"));
}

TEST_CASE("read_idx: truncated or corrupt gzip streams are errors")
{
    TempDir dir;
    std::vector<uint8_t> data(5000);
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t((i * i) % 251);  // compresses, but not to nothing
    write_gz(dir.file("good.gz"), idx_bytes({50, 100}, data));
    std::vector<uint8_t> gz = read_bytes(dir.file("good.gz"));
    REQUIRE(gz.size() > 100);

    // Cut at every length: never a crash, always an error naming the file.
    for (size_t len = 0; len < gz.size(); ++len) {
        std::string path = dir.file("cut.gz");
        write_plain(path, std::vector<uint8_t>(gz.begin(), gz.begin() + std::ptrdiff_t(len)));
        std::string msg = error_of([&] { tg::read_idx(path); });
        CAPTURE(len);
        CAPTURE(msg);
        CHECK(contains(msg, path));
    }
    // Cut in the middle of the deflate data: zlib's "unexpected end of file".
    write_plain(dir.file("half.gz"), std::vector<uint8_t>(gz.begin(), gz.begin() + std::ptrdiff_t(gz.size() / 2)));
    CHECK(contains(error_of([&] { tg::read_idx(dir.file("half.gz")); }), "gzip stream is truncated"));

    // Flipped bytes in the compressed data or the trailer's CRC: an error, never a crash.
    int errors = 0;
    for (size_t pos = 10; pos < gz.size(); pos += 7) {
        std::vector<uint8_t> bad = gz;
        bad[pos] ^= 0x5A;
        write_plain(dir.file("flip.gz"), bad);
        std::string msg = error_of([&] { tg::read_idx(dir.file("flip.gz")); });
        errors += msg != "(no error)";
    }
    // The gzip trailer's CRC-32 catches every change to the data.
    CHECK(errors == int((gz.size() - 10 + 6) / 7));
}

TEST_CASE("read_idx: where a gzip file breaks, and what follows the gzip data")
{
    TempDir dir;
    const std::vector<uint8_t> data = iota_bytes(12);
    write_gz(dir.file("good.gz"), idx_bytes({3, 4}, data));
    const std::vector<uint8_t> gz = read_bytes(dir.file("good.gz"));

    // Cut inside the deflate data or its trailer: the file offset where the
    // file ends is named, whatever zlib had buffered.
    for (size_t cut : {size_t(4), size_t(8)}) {
        std::vector<uint8_t> bytes(gz.begin(), gz.end() - std::ptrdiff_t(cut));
        write_plain(dir.file("cut.gz"), bytes);
        std::string msg = error_of([&] { tg::read_idx(dir.file("cut.gz")); });
        CAPTURE(msg);
        CHECK(contains(msg, "gzip stream is truncated: the file ends at byte offset " + std::to_string(bytes.size())));
    }
    // Bytes after the gzip data are an error naming where they start, not ignored
    // (zlib's gzread stops there silently).
    std::vector<uint8_t> garbage = gz;
    for (char c : std::string("garbage!")) garbage.push_back(uint8_t(c));
    write_plain(dir.file("garbage.gz"), garbage);
    std::string msg = error_of([&] { tg::read_idx(dir.file("garbage.gz")); });
    CHECK(contains(msg, "8 unexpected bytes after the end of the gzip data, at byte offset " + std::to_string(gz.size())));
    std::vector<uint8_t> zeros = gz;
    zeros.push_back(0);
    write_plain(dir.file("zero.gz"), zeros);
    CHECK(contains(error_of([&] { tg::read_idx(dir.file("zero.gz")); }), "1 unexpected bytes after the end"));

    // gzip members back to back are one stream (gzip -c a >> b): split the IDX
    // bytes across two members and they read as one file.
    std::vector<uint8_t> idx = idx_bytes({3, 4}, data);
    write_gz(dir.file("m1.gz"), std::vector<uint8_t>(idx.begin(), idx.begin() + 7));
    write_gz(dir.file("m2.gz"), std::vector<uint8_t>(idx.begin() + 7, idx.end()));
    std::vector<uint8_t> two = read_bytes(dir.file("m1.gz"));
    std::vector<uint8_t> second = read_bytes(dir.file("m2.gz"));
    two.insert(two.end(), second.begin(), second.end());
    write_plain(dir.file("two.gz"), two);
    tg::IdxArray a = tg::read_idx(dir.file("two.gz"));
    CHECK(a.dims == std::vector<int64_t>{3, 4});
    CHECK(a.data == data);
    // A second member whose header is damaged is corrupt data at its offset.
    two[read_bytes(dir.file("m1.gz")).size() + 1] ^= 0xFF;
    write_plain(dir.file("two_bad.gz"), two);
    msg = error_of([&] { tg::read_idx(dir.file("two_bad.gz")); });
    CHECK(contains(msg, "corrupt gzip data near byte offset"));
}

TEST_CASE("read_idx: an empty array reads whatever the order of its sizes")
{
    // A zero size makes the product 0 even where the other sizes alone overflow 64 bits.
    TempDir dir;
    const uint32_t big = 0xFFFFFFFF;
    for (auto dims : {std::vector<uint32_t>{0, big, big}, std::vector<uint32_t>{big, big, 0},
                      std::vector<uint32_t>{big, 0, big}, std::vector<uint32_t>{5, 0}, std::vector<uint32_t>{0, 5}}) {
        for (bool gz : {false, true}) {
            CAPTURE(gz);
            CAPTURE(dims[0]);
            std::string path = dir.file(gz ? "e.gz" : "e");
            gz ? write_gz(path, idx_bytes(dims, {})) : write_plain(path, idx_bytes(dims, {}));
            tg::IdxArray a = tg::read_idx(path);
            CHECK(a.data.empty());
            CHECK(a.dims.size() == dims.size());
        }
    }
}

// --- TensorDataset and DataLoader ---------------------------------------------------------

namespace {
// inputs [n, 2] with row i = (i, -i), targets [n] = i (int64).
tg::TensorDataset counting_dataset(int64_t n)
{
    std::vector<double> x, y;
    for (int64_t i = 0; i < n; ++i) {
        x.push_back(double(i));
        x.push_back(-double(i));
        y.push_back(double(i));
    }
    return tg::TensorDataset(tg::from_values(x, {n, 2}), tg::from_values(y, {n}, tg::int64));
}

std::vector<int64_t> targets_of(const tg::Batch& b)
{
    std::vector<int64_t> out(b.y.data<int64_t>(), b.y.data<int64_t>() + b.y.numel());
    return out;
}

// Every batch of one epoch, as the targets it holds.
std::vector<std::vector<int64_t>> epoch_of(tg::DataLoader& loader)
{
    std::vector<std::vector<int64_t>> out;
    for (const tg::Batch& b : loader) out.push_back(targets_of(b));
    return out;
}
}  // namespace

TEST_CASE("DataLoader: batches in order, the last partial batch, drop_last")
{
    tg::TensorDataset ds = counting_dataset(10);
    tg::DataLoader loader(ds, {.batch_size = 4});
    CHECK(loader.batches_per_epoch() == 3);
    std::vector<std::vector<int64_t>> expected = {{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}};
    int n = 0;
    for (const tg::Batch& b : loader) {
        CHECK(targets_of(b) == expected[size_t(n)]);
        CHECK(b.x.shape() == tg::shape_type{int64_t(expected[size_t(n)].size()), 2});
        CHECK(b.x.at({0, 1}) == -double(expected[size_t(n)][0]));
        ++n;
    }
    CHECK(n == 3);
    CHECK(loader.epoch() == 1);

    tg::DataLoader dropping(ds, {.batch_size = 4, .drop_last = true});
    CHECK(dropping.batches_per_epoch() == 2);
    CHECK(epoch_of(dropping) == std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}});
    tg::DataLoader exact(ds, {.batch_size = 5, .drop_last = true});
    CHECK(epoch_of(exact).size() == 2);
    tg::DataLoader bigger(ds, {.batch_size = 16, .drop_last = true});
    CHECK(epoch_of(bigger).empty());
    CHECK_THROWS_AS(tg::DataLoader(ds, {.batch_size = 0}), tg::Error);
}

TEST_CASE("DataLoader: seeded shuffling, reshuffled every epoch")
{
    tg::TensorDataset ds = counting_dataset(23);
    tg::DataLoader a(ds, {.batch_size = 5, .shuffle = true, .seed = 42});
    tg::DataLoader b(ds, {.batch_size = 5, .shuffle = true, .seed = 42});
    tg::DataLoader c(ds, {.batch_size = 5, .shuffle = true, .seed = 43});
    auto a1 = epoch_of(a), a2 = epoch_of(a);
    CHECK(a1 == epoch_of(b));  // same seed, same batches
    CHECK(a2 == epoch_of(b));
    CHECK(a1 != a2);           // a new order every epoch
    CHECK(a1 != epoch_of(c));  // another seed, another order
    for (const auto& epoch : {a1, a2}) {
        std::multiset<int64_t> seen;
        for (const auto& batch : epoch) seen.insert(batch.begin(), batch.end());
        CHECK(seen.size() == 23);
        CHECK(std::set<int64_t>(seen.begin(), seen.end()).size() == 23);  // each example exactly once
        CHECK(epoch.back().size() == 3);
    }
    // The inputs travel with their targets.
    for (const tg::Batch& batch : a)
        for (int64_t i = 0; i < batch.y.numel(); ++i) CHECK(batch.x.at({i, 0}) == double(batch.y.data<int64_t>()[i]));
}

TEST_CASE("DataLoader: batch buffers are reused only when nobody holds them")
{
    tg::TensorDataset ds = counting_dataset(12);
    tg::DataLoader loader(ds, {.batch_size = 4});
    const void* first = nullptr;
    tg::Tensor kept;
    int i = 0;
    for (const tg::Batch& b : loader) {
        if (i == 0) first = b.x.raw_data();
        if (i == 1) {
            CHECK(b.x.raw_data() == first);  // reused
            kept = b.x;                      // now held: the next batch must not overwrite it
        }
        if (i == 2) CHECK(b.x.raw_data() != kept.raw_data());
        ++i;
    }
    CHECK(kept.at({0, 0}) == 4.0);
}

TEST_CASE("DataLoader: resumes from a checkpoint mid-epoch and at an epoch's end")
{
    tg::TensorDataset ds = counting_dataset(17);
    tg::DataLoaderOptions opts{.batch_size = 4, .shuffle = true, .seed = 7};
    // Reference: three uninterrupted epochs.
    tg::DataLoader ref(ds, opts);
    std::vector<std::vector<int64_t>> all;
    for (int e = 0; e < 3; ++e)
        for (auto& b : epoch_of(ref)) all.push_back(b);
    REQUIRE(all.size() == 15);

    for (int stop : {0, 2, 5, 7, 10}) {  // batches consumed before saving
        CAPTURE(stop);
        tg::DataLoader first(ds, opts);
        std::vector<std::vector<int64_t>> got;
        tg::Checkpoint ckpt;
        bool saved = stop == 0;
        if (saved) first.save_to(ckpt, "loader.");
        while (!saved) {
            for (const tg::Batch& b : first) {
                got.push_back(targets_of(b));
                if (int(got.size()) == stop) {
                    first.save_to(ckpt, "loader.");
                    saved = true;
                    break;
                }
            }
        }
        tg::DataLoader second(ds, opts);
        second.load_from(ckpt, "loader.");
        while (got.size() < all.size())
            for (auto& b : epoch_of(second)) got.push_back(b);
        CHECK(got == all);
    }

    tg::Checkpoint ckpt;
    tg::DataLoader(ds, opts).save_to(ckpt, "l.");
    tg::DataLoader other(ds, {.batch_size = 3, .shuffle = true, .seed = 7});
    CHECK(contains(error_of([&] { other.load_from(ckpt, "l."); }), "batch_size 4"));
}

TEST_CASE("TensorDataset: checks and normalisation")
{
    CHECK_THROWS_AS(tg::TensorDataset(tg::zeros({3, 2}), tg::zeros({4}, tg::int64)), tg::Error);
    tg::TensorDataset ds(tg::from_values({0.5, 1.0, 0.0, 0.25}, {4, 1}), tg::zeros({4}, tg::int64));
    tg::TensorDataset copy = ds;
    ds.normalize(0.5, 0.25);
    CHECK(ds.inputs().to_vector() == std::vector<double>{0.0, 2.0, -2.0, -1.0});
    CHECK(copy.inputs().to_vector() == std::vector<double>{0.5, 1.0, 0.0, 0.25});  // the copy keeps its data
    CHECK_THROWS_AS(ds.normalize(0, 0), tg::Error);
}

// --- MNIST-format data ------------------------------------------------------------------------

TEST_CASE("load_mnist_format and load_fashion_mnist on small files")
{
    TempDir dir;
    std::vector<uint8_t> pixels = {0, 255, 51, 102, 0, 0, 0, 0, 255, 255, 255, 255};
    write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_bytes({3, 2, 2}, pixels));
    write_plain(dir.file("train-labels-idx1-ubyte"), idx_bytes({3}, {9, 0, 4}));  // plain works too
    tg::TensorDataset ds = tg::load_fashion_mnist("train", dir.path.string());
    CHECK(ds.size() == 3);
    CHECK(ds.inputs().shape() == tg::shape_type{3, 1, 2, 2});
    CHECK(ds.inputs().dtype() == tg::float32);
    CHECK(ds.inputs().at({0, 0, 0, 1}) == 1.0);
    CHECK(ds.inputs().at({0, 0, 1, 0}) == doctest::Approx(0.2));
    CHECK(ds.targets().dtype() == tg::int64);
    CHECK(ds.targets().to_vector() == std::vector<double>{9, 0, 4});

    // A missing file names itself; the test split is absent here.
    std::string msg = error_of([&] { tg::load_fashion_mnist("test", dir.path.string()); });
    CHECK(contains(msg, dir.file("t10k-images-idx3-ubyte.gz")));
    CHECK(contains(msg, "dataset-fashion-mnist"));
    CHECK(contains(error_of([&] { tg::load_fashion_mnist("valid", dir.path.string()); }), "\"train\" or \"test\""));

    // Images and labels that disagree.
    write_plain(dir.file("labels4"), idx_bytes({4}, {1, 2, 3, 4}));
    msg = error_of([&] { tg::load_mnist_format(dir.file("train-images-idx3-ubyte.gz"), dir.file("labels4")); });
    CHECK(contains(msg, "holds 3 images"));
    CHECK(contains(msg, "holds 4 labels"));
    msg = error_of([&] { tg::load_mnist_format(dir.file("labels4"), dir.file("labels4")); });
    CHECK(contains(msg, "[N, height, width]"));
}

TEST_CASE("load_fashion_mnist: the real data set")
{
    if (!fs::exists(tg::fashion_mnist_dir)) {
        MESSAGE("skipped: ", tg::fashion_mnist_dir, " does not exist (Debian package dataset-fashion-mnist)");
        return;
    }
    // Reference numbers from Python (gzip + numpy) over the same files.
    struct Split {
        const char* name;
        int64_t n;
        int64_t pixel_sum;     // sum of the raw bytes of all images
        int64_t first_image;   // sum of the raw bytes of image 0
        int64_t first_labels[5];
        double mean;
    };
    for (const Split& s : {Split{"train", 60000, 3431114169LL, 76247, {9, 0, 0, 3, 0}, 0.2860405969887955},
                           Split{"test", 10000, 573469082LL, 33456, {9, 2, 1, 1, 6}, 0.2868492807122849}}) {
        CAPTURE(s.name);
        tg::TensorDataset ds = tg::load_fashion_mnist(s.name);
        REQUIRE(ds.inputs().shape() == tg::shape_type{s.n, 1, 28, 28});
        REQUIRE(ds.targets().shape() == tg::shape_type{s.n});
        const float* x = ds.inputs().data<float>();
        int64_t sum = 0, first = 0;
        double mean = 0;
        for (int64_t i = 0; i < ds.inputs().numel(); ++i) {
            int64_t raw = int64_t(std::lround(x[i] * 255.0f));
            sum += raw;
            if (i < 784) first += raw;
            mean += x[i];
        }
        CHECK(sum == s.pixel_sum);
        CHECK(first == s.first_image);
        CHECK(mean / double(ds.inputs().numel()) == doctest::Approx(s.mean).epsilon(1e-6));  // float32 pixels
        const int64_t* y = ds.targets().data<int64_t>();
        std::vector<int64_t> per_class(10, 0);
        for (int64_t i = 0; i < s.n; ++i) {
            REQUIRE(y[i] >= 0);
            REQUIRE(y[i] < 10);
            ++per_class[size_t(y[i])];
        }
        CHECK(per_class == std::vector<int64_t>(10, s.n / 10));  // balanced classes
        for (int i = 0; i < 5; ++i) CHECK(y[i] == s.first_labels[i]);
    }
    CHECK(tg::fashion_mnist_mean == doctest::Approx(0.2860405969887955).epsilon(1e-3));
    CHECK(tg::fashion_mnist_std == doctest::Approx(0.35302424451492237).epsilon(1e-3));
}
