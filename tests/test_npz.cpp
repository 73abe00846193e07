// .npz load and save: round trips, byte-exact agreement with np.savez,
// archives NumPy wrote (tests/fixtures/npz/, tests/fixtures/make_npz.py),
// every kind of malformed archive, and atomic saving.
//
// Checked by hand once (NumPy 1.24, Python 3.11): np.load reads every
// archive this file's round-trip test writes, stored and deflated, and the
// ZIP64-forced ones (detail::save_npz with a limit of 0), with the same
// names, dtypes, shapes and values; zipfile.testzip() finds no bad CRC.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "engine/io/npy_codec.hpp"
#include "tests/helpers.hpp"

namespace fs = std::filesystem;

namespace {

using named_list = std::vector<std::pair<std::string, tg::Tensor>>;

std::string read_bytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes)
{
    // A new file rather than a truncated one: ext4 flushes a file truncated
    // and rewritten in place on close, which costs milliseconds.
    std::error_code ec;
    fs::remove(path, ec);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string fixture(const std::string& name) { return std::string(TG_FIXTURES_DIR) + "/npz/" + name; }

bool same_bits(const tg::Tensor& a, const tg::Tensor& b)
{
    return a.dtype() == b.dtype() && a.shape() == b.shape() &&
           std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * tg::dtype_size(a.dtype())) == 0;
}

void check_same(const named_list& got, const named_list& want)
{
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        INFO("entry ", i, " ", want[i].first);
        CHECK(got[i].first == want[i].first);
        CHECK(same_bits(got[i].second, want[i].second));
    }
}

int temporaries_of(const std::string& path)
{
    const fs::path p(path);
    const std::string prefix = p.filename().string() + ".tmp.";
    int n = 0;
    for (const auto& e : fs::directory_iterator(p.parent_path()))
        n += e.path().filename().string().compare(0, prefix.size(), prefix) == 0;
    return n;
}

// --- building archives by hand ---------------------------------------------------------

void put16(std::string& b, uint64_t v)
{
    for (int i = 0; i < 2; ++i) b += char((v >> (8 * i)) & 0xff);
}
void put32(std::string& b, uint64_t v)
{
    for (int i = 0; i < 4; ++i) b += char((v >> (8 * i)) & 0xff);
}
void put64(std::string& b, uint64_t v)
{
    for (int i = 0; i < 8; ++i) b += char((v >> (8 * i)) & 0xff);
}
void set16(std::string& b, size_t at, uint64_t v)
{
    for (int i = 0; i < 2; ++i) b[at + i] = char((v >> (8 * i)) & 0xff);
}
void set32(std::string& b, size_t at, uint64_t v)
{
    for (int i = 0; i < 4; ++i) b[at + i] = char((v >> (8 * i)) & 0xff);
}
void set64(std::string& b, size_t at, uint64_t v)
{
    for (int i = 0; i < 8; ++i) b[at + i] = char((v >> (8 * i)) & 0xff);
}

uint32_t crc_of(const std::string& s)
{
    return uint32_t(crc32_z(crc32_z(0, nullptr, 0), reinterpret_cast<const Bytef*>(s.data()), s.size()));
}

std::string raw_deflate(const std::string& s)
{
    z_stream z{};
    REQUIRE(deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, uLong(s.size())) + 16, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
    z.avail_in = uInt(s.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = uInt(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

// save_npy's bytes for t.
std::string npy_of(const tg::Tensor& t)
{
    std::string s;
    tg::detail::encode_npy(t, [&](const void* p, size_t n) {
        s.append(static_cast<const char*>(p), n);
        return true;
    });
    return s;
}

// An .npy of format 1.0 with this header dict and data.
std::string npy_raw(const std::string& dict, const std::string& data)
{
    std::string h = dict;
    while ((10 + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    std::string out("\x93NUMPY\x01\x00", 8);
    put16(out, h.size());
    return out + h + data;
}

struct Part {
    std::string name;  // the member's name
    std::string npy;   // its bytes before compression
    bool deflate = false;
    bool descriptor = false;
};

struct Options {
    bool zip64_central = false;  // every size and offset in the central directory as 0xffffffff + ZIP64 field
    bool zip64_end = false;      // a ZIP64 end record and locator, the end record's fields 0xffff(ffff)
    std::string before_cd;       // bytes slipped in before the central directory
    std::string comment;
    std::string last_comment;    // the last central directory record's file comment
};

// An archive laid out as zipfile writes np.savez (ZIP64 field in each local
// header, a data descriptor with ZIP64 sizes where asked), with the offsets
// of its parts so that a test can spoil one field.
struct Layout {
    std::string bytes;
    std::vector<size_t> local, data, descriptor, central;
    size_t cd = 0, zip64_end = 0, locator = 0, end = 0;
};

Layout build(const std::vector<Part>& parts, const Options& o = {})
{
    Layout a;
    std::string& b = a.bytes;
    struct Rec {
        std::string name;
        uint16_t flags, method;
        uint32_t crc;
        uint64_t csize, usize, offset;
    };
    std::vector<Rec> recs;
    for (const Part& p : parts) {
        const std::string stored = p.deflate ? raw_deflate(p.npy) : p.npy;
        Rec r{p.name, uint16_t(p.descriptor ? 8 : 0), uint16_t(p.deflate ? 8 : 0), crc_of(p.npy), stored.size(),
              p.npy.size(), b.size()};
        a.local.push_back(b.size());
        put32(b, 0x04034b50);
        put16(b, 20);
        put16(b, r.flags);
        put16(b, r.method);
        put16(b, 0);
        put16(b, 0x21);
        put32(b, p.descriptor ? 0 : r.crc);
        put32(b, p.descriptor ? 0 : r.csize);
        put32(b, p.descriptor ? 0 : r.usize);
        put16(b, p.name.size());
        put16(b, 20);
        b += p.name;
        put16(b, 1);
        put16(b, 16);
        put64(b, p.descriptor ? 0 : r.usize);
        put64(b, p.descriptor ? 0 : r.csize);
        a.data.push_back(b.size());
        b += stored;
        a.descriptor.push_back(b.size());
        if (p.descriptor) {
            put32(b, 0x08074b50);
            put32(b, r.crc);
            put64(b, r.csize);
            put64(b, r.usize);
        }
        recs.push_back(r);
    }
    b += o.before_cd;
    a.cd = b.size();
    for (const Rec& r : recs) {
        a.central.push_back(b.size());
        const bool z = o.zip64_central;
        std::string extra;
        if (z) {
            put16(extra, 1);
            put16(extra, 24);
            put64(extra, r.usize);
            put64(extra, r.csize);
            put64(extra, r.offset);
        }
        put32(b, 0x02014b50);
        put16(b, z ? 0x032d : 0x0314);
        put16(b, z ? 45 : 20);
        put16(b, r.flags);
        put16(b, r.method);
        put16(b, 0);
        put16(b, 0x21);
        put32(b, r.crc);
        put32(b, z ? 0xffffffff : r.csize);
        put32(b, z ? 0xffffffff : r.usize);
        const std::string comment = &r == &recs.back() ? o.last_comment : "";
        put16(b, r.name.size());
        put16(b, extra.size());
        put16(b, comment.size());
        put16(b, 0);
        put16(b, 0);
        put32(b, 0x01800000);
        put32(b, z ? 0xffffffff : r.offset);
        b += r.name + extra + comment;
    }
    const uint64_t cd_size = b.size() - a.cd;
    if (o.zip64_end) {
        a.zip64_end = b.size();
        put32(b, 0x06064b50);
        put64(b, 44);
        put16(b, 45);
        put16(b, 45);
        put32(b, 0);
        put32(b, 0);
        put64(b, recs.size());
        put64(b, recs.size());
        put64(b, cd_size);
        put64(b, a.cd);
        a.locator = b.size();
        put32(b, 0x07064b50);
        put32(b, 0);
        put64(b, a.zip64_end);
        put32(b, 1);
    }
    a.end = b.size();
    put32(b, 0x06054b50);
    put16(b, 0);
    put16(b, 0);
    put16(b, o.zip64_end ? 0xffff : recs.size());
    put16(b, o.zip64_end ? 0xffff : recs.size());
    put32(b, o.zip64_end ? 0xffffffff : cd_size);
    put32(b, o.zip64_end ? 0xffffffff : a.cd);
    put16(b, o.comment.size());
    b += o.comment;
    return a;
}

const tg::Tensor small_f4 = tg::from_values({1, 2, 3, 4, 5, 6}, {2, 3}, tg::float32);
const tg::Tensor small_i8 = tg::from_values({-7, 9}, {2}, tg::int64);

// Two members, the second deflated when asked.
Layout two_members(bool deflate_second = false, bool descriptors = false)
{
    return build({{"a.npy", npy_of(small_f4), false, descriptors}, {"b.npy", npy_of(small_i8), deflate_second, descriptors}});
}

// Loading `bytes` must throw a tg::Error naming the file, the byte offset and the reason, on one line.
void check_rejected(const TempDir& dir, const std::string& bytes, uint64_t offset, const std::string& reason)
{
    const std::string path = dir.file("bad.npz");
    write_bytes(path, bytes);
    INFO("expecting '", reason, "' at byte ", offset);
    std::string what;
    try {
        tg::load_npz(path);
        FAIL("load_npz accepted a malformed archive");
    } catch (const tg::Error& e) {
        what = e.what();
    }
    INFO("message: ", what);
    CHECK(contains(what, "load_npz: " + tg::quote(path)));
    // "byte 12: ..." or, inside a deflated member, "byte 12 of the inflated member: ...".
    CHECK((contains(what, "byte " + std::to_string(offset) + ":") || contains(what, "byte " + std::to_string(offset) + " ")));
    CHECK(contains(what, reason));
    CHECK(!contains(what, "\n"));
}

// The arrays of tests/fixtures/make_npz.py, as they load (bool, int32 and uint8 as int64).
named_list numpy_arrays()
{
    std::vector<double> fortran(24);
    for (int i = 0; i < 24; ++i) fortran[size_t(i)] = i;
    std::vector<double> rank4(12);
    for (int i = 0; i < 12; ++i) rank4[size_t(i)] = i;
    tg::Tensor i8 = tg::zeros({2, 2}, tg::int64);
    int64_t* p = i8.data<int64_t>();
    p[0] = INT64_MIN;
    p[1] = INT64_MAX;
    p[2] = 0;
    p[3] = -1;
    return {
        {"f4", tg::from_values({-2.5, -1.5, -0.5, 0.5, 1.5, 2.5}, {2, 3}, tg::float32)},
        {"f8", tg::from_values({0.1, -1e300, INFINITY, -0.0}, {4}, tg::float64)},
        {"i8", i8},
        {"i4", tg::from_values({-2147483648.0, 2147483647.0, 7}, {3}, tg::int64)},
        {"u1", tg::from_values({250, 251, 252, 253, 254, 255}, {1, 2, 3}, tg::int64)},
        {"b1", tg::from_values({1, 0, 1}, {3}, tg::int64)},
        {"fortran", tg::from_values(fortran, {2, 3, 4}, tg::float64)},
        {"scalar", tg::scalar(3.25, tg::float64)},
        {"empty", tg::zeros({0, 3}, tg::float32)},
        {"rank4", tg::from_values(rank4, {2, 1, 3, 2}, tg::int64)},
    };
}

named_list pick(const named_list& all, const std::vector<std::string>& names)
{
    named_list out;
    for (const std::string& n : names)
        for (const auto& e : all)
            if (e.first == n) out.push_back(e);
    return out;
}

}  // namespace

TEST_CASE("npz: round trip of float32, float64 and int64 tensors of ranks 0 to 4, empty ones too, stored and deflated")
{
    TempDir dir;
    tg::Generator gen(11);
    named_list named;
    const std::vector<tg::shape_type> shapes = {{}, {5}, {2, 3}, {2, 1, 3}, {1, 2, 3, 2}, {0}, {3, 0}, {2, 0, 1, 4}};
    for (tg::Dtype dt : {tg::float32, tg::float64, tg::int64})
        for (const tg::shape_type& s : shapes) {
            tg::Tensor t = dt == tg::int64 ? tg::randint(-1000000000000, 1000000000000, s, &gen) : tg::randn(s, dt, &gen);
            named.emplace_back(std::string(tg::dtype_name(dt)) + ".rank" + std::to_string(s.size()) + "." +
                                   std::to_string(named.size()),
                               t);
        }
    named.emplace_back("nan", tg::from_values({NAN, -INFINITY, -0.0}, {3}, tg::float64));
    named.emplace_back("features.0.weight", tg::randn({4, 1, 3, 3}, tg::float32, &gen));
    named.emplace_back("encoder/layer1/fc.bias", tg::randn({4}, tg::float32, &gen));
    named.emplace_back("caf\xc3\xa9", tg::ones({2}, tg::float32));  // not ASCII: the UTF-8 flag
    // Larger than the writer's 1 MiB buffer, stored and deflated, and one that
    // deflates 1000 to 1 (the loader inflates it once to check it first).
    named.emplace_back("big", tg::randn({800000}, tg::float32, &gen));
    named.emplace_back("zeros", tg::zeros({3000000}, tg::float64));
    for (bool compressed : {false, true}) {
        CAPTURE(compressed);
        const std::string path = dir.file(compressed ? "c.npz" : "s.npz");
        tg::save_npz(path, named, compressed);
        check_same(tg::load_npz(path), named);
        // Every member is save_npy's file, byte for byte, when stored.
        if (!compressed) {
            const std::string bytes = read_bytes(path);
            for (const auto& [name, t] : named) CHECK(contains(bytes, name + ".npy" + std::string("\x01\x00\x10\x00", 4)));
            CHECK(contains(bytes, npy_of(named[2].second)));
        }
        CHECK(temporaries_of(path) == 0);
    }
    CHECK(read_bytes(dir.file("c.npz")).size() < read_bytes(dir.file("s.npz")).size());

    // Nothing at all: the 22-byte end record np.savez writes.
    const std::string none = dir.file("none.npz");
    tg::save_npz(none, {});
    CHECK(read_bytes(none) == read_bytes(fixture("empty.npz")));
    CHECK(tg::load_npz(none).empty());

    // Saving the same tensors twice gives the same bytes (the date is zipfile's 1980-01-01).
    tg::save_npz(dir.file("again.npz"), named, true);
    CHECK(read_bytes(dir.file("again.npz")) == read_bytes(dir.file("c.npz")));
}

TEST_CASE("npz: save writes the bytes np.savez and np.savez_compressed write")
{
    TempDir dir;
    const named_list own = pick(numpy_arrays(), {"f4", "f8", "i8", "scalar", "empty", "rank4"});
    tg::save_npz(dir.file("s.npz"), own);
    CHECK(read_bytes(dir.file("s.npz")) == read_bytes(fixture("tapegrad_dtypes.npz")));
    tg::save_npz(dir.file("c.npz"), own, true);
    CHECK(read_bytes(dir.file("c.npz")) == read_bytes(fixture("tapegrad_dtypes_compressed.npz")));
}

TEST_CASE("npz: loads the archives NumPy wrote")
{
    const named_list all = numpy_arrays();
    for (const char* name : {"savez.npz", "savez_compressed.npz", "savez_stream.npz", "savez_compressed_stream.npz"}) {
        CAPTURE(name);
        check_same(tg::load_npz(fixture(name)), all);
    }
    check_same(tg::load_npz(fixture("tapegrad_dtypes.npz")), pick(all, {"f4", "f8", "i8", "scalar", "empty", "rank4"}));
    named_list positional = tg::load_npz(fixture("savez_positional.npz"));
    check_same(positional, {{"arr_0", all[0].second}, {"arr_1", all[2].second}});
    CHECK(tg::load_npz(fixture("empty.npz")).empty());

    named_list sd = tg::load_npz(fixture("state_dict.npz"));
    REQUIRE(sd.size() == 4);
    CHECK(sd[0].first == "features.0.weight");
    CHECK(sd[0].second.shape() == tg::shape_type{2, 1, 3, 3});
    CHECK(sd[0].second.dtype() == tg::float32);
    CHECK(sd[0].second.to_vector().front() == -1.0);
    CHECK(sd[0].second.to_vector().back() == 1.0);
    CHECK(sd[1].first == "features.0.bias");
    CHECK(sd[1].second.to_vector() == std::vector<double>{0.5, -0.5});
    CHECK(sd[2].first == "features.1.num_batches_tracked");
    CHECK(sd[2].second.dim() == 0);
    CHECK(sd[2].second.item() == 7);
    CHECK(sd[3].first == "encoder/fc.weight");
    CHECK(same_bits(sd[3].second, tg::ones({3, 4}, tg::float64)));

    // What loads saves back as NumPy would have written it.
    TempDir dir;
    tg::save_npz(dir.file("sd.npz"), sd, true);
    CHECK(read_bytes(dir.file("sd.npz")) == read_bytes(fixture("state_dict.npz")));
}

TEST_CASE("npz: ZIP64 records, as zipfile writes them past 2 GiB, are written and read")
{
    TempDir dir;
    const named_list named = {{"w", small_f4}, {"b", small_i8}, {"none", tg::zeros({0}, tg::float64)}};
    for (bool compressed : {false, true}) {
        CAPTURE(compressed);
        const std::string path = dir.file("z64.npz");
        tg::detail::save_npz(path, named, compressed, 0);
        const std::string bytes = read_bytes(path);
        CHECK(contains(bytes, std::string("PK\x06\x06", 4)));  // the ZIP64 end record
        CHECK(contains(bytes, std::string("PK\x06\x07", 4)));  // its locator
        CHECK(contains(bytes, std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8)));  // sizes in the central directory
        check_same(tg::load_npz(path), named);
    }
    // Every field of the central directory and the end record in ZIP64 form.
    Options o;
    o.zip64_central = true;
    o.zip64_end = true;
    const std::string path = dir.file("hand.npz");
    for (bool descriptors : {false, true}) {
        CAPTURE(descriptors);
        write_bytes(path, build({{"a.npy", npy_of(small_f4), false, descriptors}, {"b.npy", npy_of(small_i8), true, descriptors}}, o).bytes);
        check_same(tg::load_npz(path), {{"a", small_f4}, {"b", small_i8}});
    }
    // A comment after the end record is allowed (zipfile can write one).
    Options c;
    c.comment = "written by hand";
    write_bytes(path, build({{"a.npy", npy_of(small_f4)}}, c).bytes);
    check_same(tg::load_npz(path), {{"a", small_f4}});
    // The ZIP64 locator's signature at the end of a central directory that needs
    // none (here in a file comment; a local header offset of 0x07064b50 does it too).
    Options fake;
    fake.last_comment = std::string("PK\x06\x07", 4) + std::string(16, 'z');
    write_bytes(path, build({{"a.npy", npy_of(small_f4)}, {"b.npy", npy_of(small_i8)}}, fake).bytes);
    check_same(tg::load_npz(path), {{"a", small_f4}, {"b", small_i8}});
}

TEST_CASE("npz: every truncation and every flipped byte of a small archive is an error naming the file and a byte, or loads the same")
{
    TempDir dir;
    const std::string path = dir.file("f.npz");
    const named_list named = {{"w", small_f4}, {"b", small_i8}};
    for (bool compressed : {false, true}) {
        CAPTURE(compressed);
        tg::save_npz(path, named, compressed);
        const std::string good = read_bytes(path);
        auto rejected = [&](const std::string& bytes) {
            write_bytes(path, bytes);
            try {
                named_list got = tg::load_npz(path);
                check_same(got, named);
                return false;
            } catch (const tg::Error& e) {
                const std::string what = e.what();
                CHECK(contains(what, tg::quote(path)));
                CHECK(contains(what, "byte "));
                CHECK(!contains(what, "\n"));
                return true;
            }
        };
        int truncations = 0;
        for (size_t len = 0; len < good.size(); ++len) truncations += rejected(good.substr(0, len));
        CHECK(truncations == int(good.size()));
        int flips = 0, loaded = 0;
        for (size_t i = 0; i < good.size(); ++i)
            for (int mask : {0x01, 0x80, 0xff}) {
                std::string bytes = good;
                bytes[i] = char(bytes[i] ^ mask);
                (rejected(bytes) ? flips : loaded) += 1;
            }
        // What may change without changing a value: times, dates, versions, attributes.
        MESSAGE(std::string(compressed ? "deflated" : "stored"), ": ", good.size(), " truncations rejected; ", flips,
                " flips rejected, ", loaded, " loaded the same values");
        CHECK(flips > 0);
        CHECK(loaded < flips / 4);
        // A flip in stored data is caught by the CRC.
        if (!compressed) {
            std::string bytes = good;
            const size_t data = good.find(std::string("\x93NUMPY", 6)) + 128;
            bytes[data] ^= 1;
            check_rejected(dir, bytes, data - 128, "CRC-32 mismatch");
        }
    }
}

TEST_CASE("npz: every malformed archive is a tg::Error naming the file, the byte and the problem")
{
    TempDir dir;
    const Layout g = two_members();
    const std::string& good = g.bytes;
    write_bytes(dir.file("good.npz"), good);
    check_same(tg::load_npz(dir.file("good.npz")), {{"a", small_f4}, {"b", small_i8}});
    auto spoiled = [&](auto&& change, const Layout& base) {
        std::string b = base.bytes;
        change(b);
        return b;
    };

    SUBCASE("the end records")
    {
        check_rejected(dir, "", 0, "shorter than an end of central directory record");
        check_rejected(dir, std::string(100, 'x'), 0, "no end of central directory record");
        check_rejected(dir, good.substr(0, good.size() - 1), 0, "no end of central directory record");
        check_rejected(dir, good + "junk", good.size(), "4 unexpected bytes after the end of central directory record");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, g.end + 20, 5); }, g), g.end + 20, "declares a 5-byte comment");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, g.end + 4, 1); }, g), g.end + 4, "split or spanned");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, g.end + 8, 1); }, g), g.end + 8, "entries on this disk");
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, g.end + 16, g.end + 1); }, g), g.end + 16,
                       "past the end record");
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, g.end + 12, g.end - g.cd - 1); }, g), g.end + 12,
                       "does not end where the end record begins");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, g.end + 8, 60000), set16(b, g.end + 10, 60000); }, g),
                       g.end + 10, "more than a central directory");
        // Fewer entries than records: the rest of the directory is unexplained.
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, g.end + 8, 1), set16(b, g.end + 10, 1); }, g), g.central[1],
                       "unexpected bytes after the last of the 1 central directory records");

        Options o;
        o.zip64_end = true;
        const Layout z = build({{"a.npy", npy_of(small_f4)}}, o);
        check_rejected(dir, spoiled([&](std::string& b) { set64(b, z.locator + 8, z.locator - 10); }, z), z.locator + 8,
                       "leaves no room for it");
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, z.locator + 16, 2); }, z), z.locator + 4, "split archive");
        check_rejected(dir, spoiled([&](std::string& b) { b[z.zip64_end + 3] = 0; }, z), z.zip64_end,
                       "expected the ZIP64 end of central directory record");
        check_rejected(dir, spoiled([&](std::string& b) { set64(b, z.zip64_end + 4, 60); }, z), z.zip64_end + 4,
                       "declares 60 bytes after its size field");
        check_rejected(dir, spoiled([&](std::string& b) { set64(b, z.zip64_end + 32, 2), set64(b, z.zip64_end + 24, 2); }, z),
                       z.zip64_end + 32, "more than a central directory");
        check_rejected(dir, spoiled([&](std::string& b) { set64(b, z.zip64_end + 48, 1); }, z), z.zip64_end + 40,
                       "does not end where the end record begins");
        // The end record's own values must match the ZIP64 record's where they are not 0xffff(ffff).
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, z.end + 8, 2), set16(b, z.end + 10, 2); }, z), z.end + 10,
                       "the ZIP64 end record 1");
    }
    SUBCASE("the central directory")
    {
        const size_t c = g.central[0];
        check_rejected(dir, spoiled([&](std::string& b) { b[c + 2] = 9; }, g), c, "expected the central directory record of entry 0");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, c + 28, 1000); }, g), c + 28, "run past the end of the central directory");
        for (int flag : {0x1, 0x40}) {
            CAPTURE(flag);
            check_rejected(dir, spoiled([&](std::string& b) { set16(b, c + 8, flag); }, g), c + 8, "is encrypted");
        }
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, c + 8, 0x2000); }, g), c + 8, "general purpose flags 0x2000");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, c + 10, 12); }, g), c + 10, "compression method 12 (bzip2)");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, c + 10, 14); }, g), c + 10, "method 14 (LZMA)");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, c + 34, 1); }, g), c + 34, "split archives");
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, c + 20, 100); }, g), c + 20,
                       "is stored, but its compressed size 100 differs from its size 152");
        // 0xffffffff needs a ZIP64 field to hold the value.
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, c + 24, 0xffffffff); }, g), c + 24,
                       "no ZIP64 extra field to hold it");
        Options o;
        o.zip64_central = true;
        const Layout z = build({{"a.npy", npy_of(small_f4)}}, o);
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, z.central[0] + 46 + 5 + 2, 16); }, z), z.central[0] + 42,
                       "does not hold it");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, z.central[0] + 46 + 5 + 2, 30); }, z), z.central[0] + 46 + 5,
                       "runs past the extra field's end");

        // Names: the .npy suffix, what save_npz refuses, repeats.
        auto named = [&](const std::string& a, const std::string& b) {
            return build({{a, npy_of(small_f4)}, {b, npy_of(small_i8)}});
        };
        const Layout txt = named("a.npy", "b.txt");
        check_rejected(dir, txt.bytes, txt.central[1] + 46, "is not an .npy file (its name does not end in '.npy')");
        for (const std::string& bad : {std::string("../x.npy"), std::string("a/../../x.npy"), std::string("/etc/x.npy"),
                                       std::string("a\\b.npy"), std::string("a\0b.npy", 7), std::string(".npy"),
                                       std::string("a//b.npy"), std::string("C:x.npy"), std::string("./a.npy"),
                                       std::string("a\x1b[2J.npy")}) {
            CAPTURE(tg::printable(bad));
            const Layout l = named("a.npy", bad);
            check_rejected(dir, l.bytes, l.central[1] + 46, "the array name");
        }
        const Layout dup = named("a.npy", "a.npy");
        check_rejected(dir, dup.bytes, dup.central[1] + 46, "repeats the name of entry 0");
    }
    SUBCASE("local headers against the central directory")
    {
        const size_t l = g.local[1];
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, g.central[1] + 42, g.local[0]); }, g), g.central[1] + 42,
                       "the member before it ends at byte " + std::to_string(g.local[1]));
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, g.central[0] + 42, 5); }, g), g.central[0] + 42,
                       "the first member must start the archive");
        // Out of order: the directory lists b before a.
        Layout swapped = g;
        {
            std::string& b = swapped.bytes;
            const std::string e0 = b.substr(g.central[0], g.central[1] - g.central[0]), e1 = b.substr(g.central[1], g.end - g.central[1]);
            b.replace(g.central[0], e0.size() + e1.size(), e1 + e0);
        }
        check_rejected(dir, swapped.bytes, g.central[0] + 42, "has its local header at byte " + std::to_string(g.local[1]));
        check_rejected(dir, spoiled([&](std::string& b) { b[l] = 'Q'; }, g), l, "expected the local header of member 'b.npy'");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, l + 6, 8); }, g), l + 6, "has flags 0x0008, the central directory 0x0000");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, l + 8, 8); }, g), l + 8, "compression method 8");
        check_rejected(dir, spoiled([&](std::string& b) { b[l + 30] = 'c'; }, g), l + 30, "the local header names 'c.npy'");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, l + 26, 4); }, g), l + 30, "the local header names 'b.np'");
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, l + 14, 1); }, g), l + 14, "gives its CRC-32 as 0x00000001");
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, l + 18, 3); }, g), l + 18, "gives its compressed size as 3");
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, l + 22, 3); }, g), l + 22, "gives its size as 3");
        check_rejected(dir, spoiled([&](std::string& b) { set64(b, l + 30 + 5 + 4, 3); }, g), l + 30 + 5 + 4,
                       "gives its size in its ZIP64 field as 3");
        check_rejected(dir, spoiled([&](std::string& b) { set64(b, l + 30 + 5 + 12, 3); }, g), l + 30 + 5 + 12,
                       "compressed size in its ZIP64 field as 3");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, l + 30 + 5 + 2, 40); }, g), l + 30 + 5,
                       "runs past the extra field's end");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, l + 30 + 5, 0x5455), set32(b, l + 18, 0xffffffff); }, g),
                       l + 18, "no ZIP64 extra field holding both sizes");
        check_rejected(dir, spoiled([&](std::string& b) { set16(b, l + 28, 2000); }, g), l + 26, "run into the central directory");
        // Both copies agree on a size the file does not hold.
        check_rejected(dir, spoiled([&](std::string& b) {
                           for (size_t at : {g.central[1] + 20, g.central[1] + 24, l + 18, l + 22}) set32(b, at, 1000);
                           set64(b, l + 30 + 5 + 4, 1000), set64(b, l + 30 + 5 + 12, 1000);
                       }, g),
                       g.data[1], "run into the central directory");
        Options gap;
        gap.before_cd = "hidden";
        const Layout hidden = build({{"a.npy", npy_of(small_f4)}}, gap);
        check_rejected(dir, hidden.bytes, hidden.cd - 6, "6 unexpected bytes between the last member and the central directory");

        // Data descriptors.
        const Layout d = two_members(true, true);
        const size_t dd = d.descriptor[1];
        write_bytes(dir.file("dd.npz"), d.bytes);
        check_same(tg::load_npz(dir.file("dd.npz")), {{"a", small_f4}, {"b", small_i8}});
        check_rejected(dir, spoiled([&](std::string& b) { b[dd] = 'X'; }, d), dd, "expected the data descriptor of member 'b.npy'");
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, dd + 4, 5); }, d), dd + 4, "gives its CRC-32 as 0x00000005");
        check_rejected(dir, spoiled([&](std::string& b) { set64(b, dd + 8, 5); }, d), dd + 8, "gives its compressed size as 5");
        check_rejected(dir, spoiled([&](std::string& b) { set64(b, dd + 16, 5); }, d), dd + 16, "gives its size as 5");
        std::string short_dd = d.bytes.substr(0, dd + 10) + d.bytes.substr(dd + 24);
        set32(short_dd, short_dd.size() - 6, d.cd - 14);
        check_rejected(dir, short_dd, dd, "runs into the central directory");
    }
    SUBCASE("member contents")
    {
        // Both copies of the CRC agree, the data does not.
        check_rejected(dir, spoiled([&](std::string& b) { set32(b, g.central[1] + 16, 7), set32(b, g.local[1] + 14, 7); }, g),
                       g.data[1], "member 'b.npy': CRC-32 mismatch: the archive records 0x00000007");
        // Damage to a stored member's .npy header is reported as damage, not as a bad header.
        check_rejected(dir, spoiled([&](std::string& b) { b[g.data[1] + 20] = 'X'; }, g), g.data[1], "CRC-32 mismatch");
        // Intact members that are not valid .npy files: the .npy error, at its byte in the archive.
        auto one = [&](const std::string& npy, bool deflate = false) { return build({{"x.npy", npy, deflate}}); };
        const Layout hello = one("hello");
        check_rejected(dir, hello.bytes, hello.data[0], "member 'x.npy': byte " + std::to_string(hello.data[0]) + ": not an .npy file");
        const Layout c16 = one(npy_raw("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", std::string(16, '\0')));
        check_rejected(dir, c16.bytes, c16.data[0] + 20, "unsupported dtype '<c16'");
        const Layout trailing = one(npy_of(small_f4) + "xyz");
        check_rejected(dir, trailing.bytes, trailing.data[0] + 128 + 24, "3 unexpected bytes after the data");
        // Deflated: the offset is within the inflated member, whose place in the file the message gives.
        const Layout dc16 = one(npy_raw("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", std::string(16, '\0')), true);
        check_rejected(dir, dc16.bytes, 20, "(deflated, its data from byte " + std::to_string(dc16.data[0]) +
                                                "): byte 20 of the inflated member: unsupported dtype '<c16'");
    }
    SUBCASE("deflated members")
    {
        const Layout d = two_members(true);
        const size_t c = d.central[1], l = d.local[1];
        const uint64_t csize = d.descriptor[1] - d.data[1], usize = npy_of(small_i8).size();
        auto sizes = [&](std::string& b, uint64_t cs, uint64_t us) {
            set32(b, c + 20, cs), set32(b, c + 24, us), set32(b, l + 18, cs), set32(b, l + 22, us);
            set64(b, l + 30 + 5 + 4, us), set64(b, l + 30 + 5 + 12, cs);
        };
        // More than deflate can make of the compressed bytes: refused before inflating.
        check_rejected(dir, spoiled([&](std::string& b) { sizes(b, csize, csize * 1032 + 1); }, d), c + 24,
                       "more than deflate can produce (1032 to 1)");
        // It inflates to more than the archive says.
        check_rejected(dir, spoiled([&](std::string& b) { sizes(b, csize, usize - 8); }, d), d.data[1],
                       "inflates to more than the " + std::to_string(usize - 8) + " bytes the archive records");
        // Or to less.
        check_rejected(dir, spoiled([&](std::string& b) { sizes(b, csize, usize + 8); }, d), d.data[1],
                       "inflates to only " + std::to_string(usize) + " bytes");
        // The stream is cut short.
        std::string cut = d.bytes;
        sizes(cut, csize - 3, usize);
        cut.erase(d.data[1] + csize - 3, 3);
        set32(cut, cut.size() - 6, d.cd - 3);  // the end record's directory offset
        check_rejected(dir, cut, d.data[1] + csize - 3, "the deflate stream is cut short");
        // Bytes after the stream's end, counted in the compressed size.
        std::string after = d.bytes;
        sizes(after, csize + 2, usize);
        after.insert(d.data[1] + csize, "zz");
        set32(after, after.size() - 6, d.cd + 2);  // the end record's directory offset
        check_rejected(dir, after, d.data[1] + csize, "2 of its " + std::to_string(csize + 2) +
                                                         " compressed bytes follow the end of the deflate stream");
        // Corrupt deflate data (a reserved block type).
        std::string bad = d.bytes;
        bad[d.data[1]] = char(0x07);
        // (zlib stops after the byte it could not decode.)
        check_rejected(dir, bad, d.data[1] + 1, "corrupt deflate data (zlib: invalid block type)");
    }
}

TEST_CASE("npz: a member that inflates far beyond its size is checked before its tensor is allocated")
{
    // A header promising 8 million uint8 elements (64 MB as int64), within
    // deflate's ratio of the compressed bytes, but the data holds 2 MiB.
    TempDir dir;
    const size_t have = size_t(2) << 20, promised = 8000000;
    std::string data(have, '\0');
    for (size_t i = 0; i < have; i += 97) data[i] = char(i * 31 + 7);
    const std::string head = npy_raw("{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(promised) + ",), }", "");
    Layout a = build({{"x.npy", head + data, true}});
    const uint64_t csize = a.cd - a.data[0], usize = head.size() + promised;
    REQUIRE(usize < csize * 1032);
    REQUIRE(usize > 16 * csize);
    set32(a.bytes, a.central[0] + 24, usize);
    set32(a.bytes, a.local[0] + 22, usize);
    set64(a.bytes, a.local[0] + 30 + 5 + 4, usize);
    const int64_t peak_before = tg::memory_stats().peak_bytes;
    check_rejected(dir, a.bytes, a.data[0], "inflates to only " + std::to_string(head.size() + have) + " bytes");
    CHECK(tg::memory_stats().peak_bytes - peak_before < (int64_t(1) << 20));

    // The same member, true to its size, loads.
    const std::string true_head = npy_raw("{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(have) + ",), }", "");
    Layout ok = build({{"x.npy", true_head + data, true}});
    write_bytes(dir.file("ok.npz"), ok.bytes);
    named_list got = tg::load_npz(dir.file("ok.npz"));
    REQUIRE(got.size() == 1);
    CHECK(got[0].second.numel() == int64_t(have));
    CHECK(got[0].second.at({97}) == double(uint8_t(97 * 31 + 7)));
}

TEST_CASE("npz: names: state_dict names work, anything unsafe to extract or repeated is refused naming the argument")
{
    TempDir dir;
    const std::string path = dir.file("n.npz");
    const named_list good = {{"features.0.weight", small_f4}, {"encoder/fc.bias", small_i8}, {"a b-c_d+e", small_i8}};
    tg::save_npz(path, good);
    check_same(tg::load_npz(path), good);
    const std::string before = read_bytes(path);

    for (const std::string& bad :
         {std::string(""), std::string("../x"), std::string("a/../b"), std::string(".."), std::string("/abs"),
          std::string("C:x"), std::string("a\\b"), std::string("a\0b", 3), std::string("a\nb"), std::string("a//b"),
          std::string("a/"), std::string("./a"), std::string("a/."), std::string(70000, 'n')}) {
        CAPTURE(tg::printable(bad));
        const std::string what = error_of([&] { tg::save_npz(path, {{"ok", small_f4}, {bad, small_f4}}); });
        CHECK(contains(what, "save_npz: " + tg::quote(path) + ": argument named, entry 1"));
        CHECK(!contains(what, "\n"));
    }
    CHECK(contains(error_of([&] { tg::save_npz(path, {{"w", small_f4}, {"b", small_f4}, {"w", small_i8}}); }),
                   "argument named, entry 2: the name 'w' repeats entry 0's"));
    CHECK(contains(error_of([&] { tg::save_npz(path, {{"w", small_f4}, {"u", tg::Tensor()}}); }),
                   "argument named, entry 1 ('u'): the tensor is undefined"));
    CHECK(contains(error_of([&] { tg::save_npz(path, {{"../x", small_f4}}); }), "has a '..' component"));
    // A refused save writes nothing.
    CHECK(read_bytes(path) == before);
    CHECK(temporaries_of(path) == 0);
}

TEST_CASE("npz: a failed save leaves the previous archive intact")
{
    TempDir dir;
    const std::string path = dir.file("keep.npz");
    tg::save_npz(path, {{"w", small_f4}});
    const std::string before = read_bytes(path);

    // A directory that does not exist.
    const std::string nowhere = dir.file("no/such/dir/x.npz");
    CHECK(contains(error_of([&] { tg::save_npz(nowhere, {{"w", small_f4}}); }), "save_npz: cannot create"));
    // A target that is a non-empty directory: the rename fails, nothing is left beside it.
    fs::create_directories(dir.path / "taken" / "inner");
    CHECK(contains(error_of([&] { tg::save_npz(dir.file("taken"), {{"w", small_f4}}); }), "cannot rename"));
    CHECK(fs::is_directory(dir.path / "taken" / "inner"));
    CHECK(temporaries_of(dir.file("taken")) == 0);

    // A full disk: RLIMIT_FSIZE makes a write past 64 KiB fail with EFBIG, in a child.
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        int code = 0;
        try {
            ::signal(SIGXFSZ, SIG_IGN);
            rlimit limit{64 * 1024, 64 * 1024};
            if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(10);
            for (bool compressed : {false, true}) {
                tg::Generator gen(1);
                std::string e = error_of([&] { tg::save_npz(path, {{"big", tg::randn({100000}, tg::float64, &gen)}}, compressed); });
                if (!contains(e, "save_npz: cannot write") || !contains(e, "File too large")) code |= compressed ? 2 : 1;
            }
        } catch (...) {
            code |= 4;
        }
        ::_exit(code);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);  // 1: stored, 2: deflated did not fail as expected, 4: something else raised
    CHECK(read_bytes(path) == before);
    CHECK(temporaries_of(path) == 0);
    check_same(tg::load_npz(path), {{"w", small_f4}});

    // Not a regular file, and no file.
    CHECK(contains(error_of([&] { tg::load_npz(dir.path.string()); }), "is not a regular file"));
    CHECK(contains(error_of([&] { tg::load_npz(dir.file("missing.npz")); }), "load_npz: cannot open"));
}
