// Writes the seed corpora of the fuzz targets into corpus/ (run from
// tests/fuzz: build/tests/fuzz/make_seed_corpus [fashion-mnist dir]).
// The committed corpus came from this program; inputs the fuzzers found are
// added next to them by hand, named after what they caught.
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/fuzz/resume_run.hpp"

namespace fs = std::filesystem;
using bytes = std::vector<uint8_t>;

namespace {

void write(const fs::path& path, const bytes& b)
{
    fs::create_directories(path.parent_path());
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

bytes gzip(const bytes& raw)
{
    z_stream z{};
    deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    bytes out(deflateBound(&z, uLong(raw.size())) + 32);
    z.next_in = const_cast<uint8_t*>(raw.data());
    z.avail_in = unsigned(raw.size());
    z.next_out = out.data();
    z.avail_out = unsigned(out.size());
    deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

bytes read_gz_prefix(const std::string& path, size_t n)
{
    bytes b(n);
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) return {};
    int got = gzread(f, b.data(), unsigned(n));
    gzclose(f);
    b.resize(got > 0 ? size_t(got) : 0);
    return b;
}

bytes idx(const std::vector<uint32_t>& dims, const bytes& data)
{
    bytes b = {0, 0, 8, uint8_t(dims.size())};
    for (uint32_t d : dims)
        for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(d >> s));
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

void idx_corpus(const fs::path& dir, const std::string& fashion)
{
    // A small real IDX: the first images and labels of Fashion-MNIST's test set.
    bytes images = read_gz_prefix(fashion + "/t10k-images-idx3-ubyte.gz", 16 + 2 * 784);
    bytes labels = read_gz_prefix(fashion + "/t10k-labels-idx1-ubyte.gz", 8 + 8);
    if (images.size() == 16 + 2 * 784 && labels.size() == 16) {
        images[7] = 2;  // 10000 images -> 2
        images[6] = 0;
        labels[7] = 8;  // 10000 labels -> 8
        labels[6] = 0;
        write(dir / "fashion_2_images", images);
        write(dir / "fashion_2_images.gz", gzip(images));
        write(dir / "fashion_8_labels", labels);
        write(dir / "fashion_8_labels.gz", gzip(labels));
    } else {
        std::fprintf(stderr, "no Fashion-MNIST in %s: the real IDX seeds are left out\n", fashion.c_str());
    }
    bytes counting(60);
    for (size_t i = 0; i < counting.size(); ++i) counting[i] = uint8_t(i * 7);
    write(dir / "rank3_3x4x5", idx({3, 4, 5}, counting));
    write(dir / "rank3_3x4x5.gz", gzip(idx({3, 4, 5}, counting)));
    write(dir / "empty_0x28x28.gz", gzip(idx({0, 28, 28}, {})));
    write(dir / "rank1_1", idx({1}, {42}));
    // Two gzip members back to back, split inside the header.
    bytes whole = idx({3, 4, 5}, counting), two = gzip(bytes(whole.begin(), whole.begin() + 6));
    bytes second = gzip(bytes(whole.begin() + 6, whole.end()));
    two.insert(two.end(), second.begin(), second.end());
    write(dir / "two_members.gz", two);
}

// An .npy file of descr and shape, elements counting up in its own bytes.
bytes npy(const std::string& descr, const std::vector<int64_t>& shape, size_t itemsize, int major = 1,
          bool fortran = false)
{
    std::string dict = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': (";
    size_t n = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
        dict += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
        n *= size_t(shape[i]);
    }
    dict += "), }";
    const size_t prefix = major == 1 ? 10 : 12;
    while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
    dict += '\n';
    bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', uint8_t(major), 0};
    const size_t len = dict.size();
    b.push_back(uint8_t(len));
    b.push_back(uint8_t(len >> 8));
    if (major != 1) {
        b.push_back(uint8_t(len >> 16));
        b.push_back(uint8_t(len >> 24));
    }
    b.insert(b.end(), dict.begin(), dict.end());
    for (size_t i = 0; i < n * itemsize; ++i) b.push_back(descr[1] == 'b' ? uint8_t(i & 1) : uint8_t(i % 64 + 1));
    return b;
}

void npy_corpus(const fs::path& dir)
{
    const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {2, 3}, {2, 1, 3}, {1, 2, 1, 2}, {0, 3}};
    struct Type {
        const char* descr;
        size_t itemsize;
    };
    for (Type t : {Type{"<f4", 4}, Type{"<f8", 8}, Type{"<i8", 8}, Type{"<i4", 4}, Type{"<i2", 2}, Type{"|i1", 1},
                   Type{"|u1", 1}, Type{"<u2", 2}, Type{"<u4", 4}, Type{"|b1", 1}, Type{">f4", 4}, Type{">f8", 8},
                   Type{">i8", 8}, Type{"=f4", 4}}) {
        for (size_t r = 0; r < shapes.size(); ++r) {
            std::string name = std::string(t.descr).substr(1) + (t.descr[0] == '>' ? "_be" : t.descr[0] == '=' ? "_native" : "")
                               + "_rank" + std::to_string(shapes[r].size()) + (r == shapes.size() - 1 ? "_empty" : "") + ".npy";
            write(dir / name, npy(t.descr, shapes[r], t.itemsize));
        }
    }
    write(dir / "f4_2x3_fortran.npy", npy("<f4", {2, 3}, 4, 1, true));
    write(dir / "f8_2x3_v2.npy", npy("<f8", {2, 3}, 8, 2));
    write(dir / "f8_2x3_v3.npy", npy("<f8", {2, 3}, 8, 3));
    // And one as tapegrad writes it.
    tg::save_npy(tg::arange(6.0, 12.0, 1.0, tg::float64), (dir / "tapegrad_f8_6.npy").string());
}

void npz_corpus(const fs::path& dir)
{
    const tg::Tensor f4 = tg::reshape(tg::arange(6.0, 0.0, -1.0), {2, 3});
    const tg::Tensor f8 = tg::scalar(2.5, tg::float64);
    const tg::Tensor i8 = tg::reshape(tg::arange(4, tg::int64), {1, 2, 2});
    const tg::Tensor empty = tg::zeros({0, 3}, tg::float32);
    const std::vector<std::pair<std::string, tg::Tensor>> named = {
        {"features.0.weight", f4}, {"f8", f8}, {"encoder/i8", i8}, {"empty", empty}};
    tg::save_npz((dir / "tapegrad_stored.npz").string(), named);
    tg::save_npz((dir / "tapegrad_deflated.npz").string(), named, true);
    tg::save_npz((dir / "tapegrad_one.npz").string(), {{"w", f4}});
    tg::save_npz((dir / "tapegrad_none.npz").string(), {});
    // Every ZIP64 record, as an archive past 2 GiB has them.
    tg::detail::save_npz((dir / "tapegrad_zip64_stored.npz").string(), named, false, 0);
    tg::detail::save_npz((dir / "tapegrad_zip64_deflated.npz").string(), named, true, 0);
    // And the archives NumPy wrote (tests/fixtures/make_npz.py): data descriptors, other dtypes.
    const fs::path fixtures = fs::path(__FILE__).parent_path() / ".." / "fixtures" / "npz";
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fixtures, ec))
        if (e.path().extension() == ".npz")
            fs::copy_file(e.path(), dir / ("numpy_" + e.path().filename().string()), fs::copy_options::overwrite_existing);
    if (ec) std::fprintf(stderr, "no fixtures in %s: the NumPy-written .npz seeds are left out\n", fixtures.c_str());
}

void checkpoint_corpus(const fs::path& dir, const fs::path& resume_dir)
{
    // Every kind of entry.
    tg::Checkpoint c;
    c.set_tensor("f32", tg::arange(6.0, 0.0, -1.0));
    c.set_tensor("f64 0-d", tg::scalar(2.5, tg::float64));
    c.set_tensor("i64 [2,0]", tg::zeros({2, 0}, tg::int64));
    c.set_tensor("i64 [3]", tg::arange(3, tg::int64));
    c.set_int("epoch", 3);
    c.set_double("loss", 0.25);
    c.set_bytes("blob", {1, 2, 3});
    c.set_generator("rng", tg::Generator(5));
    tg::save_checkpoint((dir / "every_kind.ckpt").string(), c);
    tg::save_checkpoint((dir / "empty.ckpt").string(), tg::Checkpoint());

    // Training runs of fuzz_resume's model: before any step, a few steps in
    // (mid-epoch and at an epoch's end), with Adam and with SGD.
    for (bool adam : {true, false})
        for (int steps : {0, 2, 3, 7}) {
            tg::fuzz::Run run(adam);
            run.train(steps);
            tg::Checkpoint ck;
            run.save_to(ck);
            const std::string name = std::string(adam ? "adam" : "sgd") + "_" + std::to_string(steps) + "_steps.ckpt";
            tg::save_checkpoint((resume_dir / name).string(), ck);
            if (steps == 2) tg::save_checkpoint((dir / name).string(), ck);
        }
}

}  // namespace

int main(int argc, char** argv)
{
    const std::string fashion = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    const fs::path corpus = "corpus";
    for (const char* d : {"idx", "npy", "npz", "checkpoint", "resume"}) fs::create_directories(corpus / d);
    idx_corpus(corpus / "idx", fashion);
    npy_corpus(corpus / "npy");
    npz_corpus(corpus / "npz");
    checkpoint_corpus(corpus / "checkpoint", corpus / "resume");
    std::printf("wrote the seed corpora under %s\n", fs::absolute(corpus).c_str());
    return 0;
}
