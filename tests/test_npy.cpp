// .npy load and save: round trips, byte-exact agreement with NumPy, files as
// NumPy writes them, and every kind of malformed file.
#include <doctest/doctest.h>
#include <tapegrad/tapegrad.hpp>

#include "tests/helpers.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {


std::string read_bytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes)
{
    // A new file rather than a truncated one: ext4 flushes a file truncated
    // and rewritten in place to disk on close, which costs milliseconds.
    std::error_code ec;
    fs::remove(path, ec);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

// Little-endian bytes of the values (what '<f4', '<i2', ... hold).
template <class T>
std::string le_bytes(std::initializer_list<T> values)
{
    std::string out;
    for (T v : values) {
        char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
        out.append(b, sizeof(T));
    }
    return out;
}

template <class T>
std::string be_bytes(std::initializer_list<T> values)
{
    std::string out = le_bytes(values);
    for (size_t i = 0; i < out.size(); i += sizeof(T)) std::reverse(out.begin() + long(i), out.begin() + long(i + sizeof(T)));
    return out;
}

// A version 1.0 file with this header text, padded with spaces to `total`
// header bytes (NumPy >= 1.23 writes 118 for small arrays) and a newline.
std::string v1_file(const std::string& dict, const std::string& data, size_t total = 118)
{
    REQUIRE(dict.size() + 1 <= total);
    std::string h = dict + std::string(total - dict.size() - 1, ' ') + "\n";
    std::string out("\x93NUMPY\x01\x00", 8);
    out += char(total & 0xff);
    out += char(total >> 8);
    return out + h + data;
}

std::string v2_file(const std::string& dict, const std::string& data)
{
    std::string h = dict + "\n";
    std::string out("\x93NUMPY\x02\x00", 8);
    for (int i = 0; i < 4; ++i) out += char((h.size() >> (8 * i)) & 0xff);
    return out + h + data;
}

// Loading `bytes` must throw a tg::Error naming the file, the byte offset and
// the reason.
void check_rejected(const TempDir& dir, const std::string& name, const std::string& bytes, uint64_t offset,
                    const std::string& reason)
{
    std::string path = dir.file(name);
    write_bytes(path, bytes);
    INFO("file ", name, ", expecting '", reason, "' at byte ", offset);
    std::string what;
    try {
        tg::load_npy(path);
        FAIL("load_npy accepted a malformed file");
    } catch (const tg::Error& e) {
        what = e.what();
    }
    INFO("message: ", what);
    CHECK(what.find(path) != std::string::npos);
    CHECK(what.find("byte " + std::to_string(offset) + ":") != std::string::npos);
    CHECK(what.find(reason) != std::string::npos);
}

void check_same(const tg::Tensor& a, const tg::Tensor& b)
{
    REQUIRE(a.dtype() == b.dtype());
    REQUIRE(a.shape() == b.shape());
    CHECK(a.to_vector() == b.to_vector());
    CHECK(std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * tg::dtype_size(a.dtype())) == 0);
}

const std::string f4_23_data = le_bytes<float>({1, 2, 3, 4, 5, 6});

}  // namespace

TEST_CASE("npy: round trip of every dtype, 0-d and empty tensors")
{
    TempDir dir;
    tg::Generator gen(7);
    std::vector<tg::Tensor> tensors = {
        tg::randn({2, 3}, tg::float32, &gen),
        tg::randn({4}, tg::float64, &gen),
        tg::randint(-1000000000000, 1000000000000, {3, 2, 2}, &gen),
        tg::scalar(-2.5, tg::float32),
        tg::scalar(1e-300, tg::float64),
        tg::scalar(-42, tg::int64),
        tg::zeros({0, 3}, tg::float32),
        tg::zeros({0, 3}, tg::float64),
        tg::zeros({3, 0}, tg::int64),
        tg::zeros({0}, tg::float32),
    };
    for (size_t i = 0; i < tensors.size(); ++i) {
        std::string name = "t";
        name += std::to_string(i);
        std::string path = dir.file(name + ".npy");
        tg::save_npy(tensors[i], path);
        tg::Tensor back = tg::load_npy(path);
        INFO("tensor ", i, " of shape ", tg::shape_str(tensors[i].shape()));
        check_same(back, tensors[i]);
    }
    // Nothing but the saved files is left behind (no temporary files).
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == long(tensors.size()));

    // A header too long for format 1.0's 16-bit length is written as 2.0.
    tg::Tensor deep = tg::full(tg::shape_type(25000, 1), 2.0, tg::float64);
    std::string path = dir.file("deep.npy");
    tg::save_npy(deep, path);
    CHECK(read_bytes(path)[6] == 2);
    check_same(tg::load_npy(path), deep);
}

TEST_CASE("npy: save writes the bytes np.save writes")
{
    // Headers as NumPy 1.24 writes them (118 header bytes for these shapes).
    TempDir dir;
    std::string path = dir.file("a.npy");
    tg::save_npy(tg::from_values({1, 2, 3, 4, 5, 6}, {2, 3}, tg::float32), path);
    CHECK(read_bytes(path) == v1_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4_23_data));

    tg::save_npy(tg::scalar(7.5, tg::float64), path);  // overwrites
    CHECK(read_bytes(path) == v1_file("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", le_bytes<double>({7.5})));

    tg::save_npy(tg::zeros({0, 3}, tg::int64), path);
    CHECK(read_bytes(path) == v1_file("{'descr': '<i8', 'fortran_order': False, 'shape': (0, 3), }", ""));

    tg::save_npy(tg::from_values({123456789012.0, 5.0, -1.0}, {3}, tg::int64), path);
    CHECK(read_bytes(path) ==
          v1_file("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", le_bytes<int64_t>({123456789012, 5, -1})));
    CHECK(read_bytes(path).size() == 152);  // np.save's file size for this array
}

TEST_CASE("npy: save replaces a file atomically and cleans up on failure")
{
    TempDir dir;
    std::string path = dir.file("x.npy");
    tg::save_npy(tg::ones({100}, tg::float64), path);
    tg::save_npy(tg::full({2}, 3.0, tg::float32), path);
    tg::Tensor back = tg::load_npy(path);
    CHECK(back.shape() == tg::shape_type{2});
    CHECK(back.at({1}) == 3.0);

    // The target is a non-empty directory: the rename fails, the directory is
    // untouched and no temporary file is left beside it.
    fs::create_directories(dir.path / "taken" / "inner");
    std::string taken = dir.file("taken");
    CHECK_THROWS_AS(tg::save_npy(tg::ones({3}), taken), tg::Error);
    CHECK(fs::is_directory(dir.path / "taken" / "inner"));
    int files = 0;
    for (auto& entry : fs::directory_iterator(dir.path)) files += entry.is_regular_file();
    CHECK(files == 1);  // x.npy only

    // A directory that does not exist.
    std::string nowhere = dir.file("no/such/dir/y.npy");
    try {
        tg::save_npy(tg::ones({3}), nowhere);
        FAIL("save_npy into a missing directory succeeded");
    } catch (const tg::Error& e) {
        CHECK(std::string(e.what()).find(nowhere) != std::string::npos);
    }
}

TEST_CASE("npy: loads files as NumPy writes them")
{
    TempDir dir;
    std::string path = dir.file("np.npy");

    SUBCASE("float32 [2,3]")
    {
        write_bytes(path, v1_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4_23_data));
        tg::Tensor t = tg::load_npy(path);
        CHECK(t.dtype() == tg::float32);
        CHECK(t.shape() == tg::shape_type{2, 3});
        CHECK(t.to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
    }
    SUBCASE("int32 widened to int64")
    {
        write_bytes(path, v1_file("{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }",
                                  le_bytes<int32_t>({0, -1, 2147483647, -2147483647 - 1, 4})));
        tg::Tensor t = tg::load_npy(path);
        CHECK(t.dtype() == tg::int64);
        CHECK(t.to_vector() == std::vector<double>{0, -1, 2147483647.0, -2147483648.0, 4});
    }
    SUBCASE("int16, int8, uint8, uint16, uint32 and bool")
    {
        write_bytes(path, v1_file("{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }", le_bytes<int16_t>({-5, 300})));
        CHECK(tg::load_npy(path).to_vector() == std::vector<double>{-5, 300});
        write_bytes(path, v1_file("{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }", le_bytes<int8_t>({-128, 127})));
        CHECK(tg::load_npy(path).to_vector() == std::vector<double>{-128, 127});
        write_bytes(path, v1_file("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", le_bytes<uint8_t>({0, 200, 255})));
        tg::Tensor u8 = tg::load_npy(path);
        CHECK(u8.dtype() == tg::int64);
        CHECK(u8.to_vector() == std::vector<double>{0, 200, 255});
        write_bytes(path, v1_file("{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", le_bytes<uint16_t>({65535})));
        CHECK(tg::load_npy(path).item() == 65535);
        write_bytes(path, v1_file("{'descr': '<u4', 'fortran_order': False, 'shape': (1,), }", le_bytes<uint32_t>({4000000000u})));
        CHECK(tg::load_npy(path).item() == 4000000000.0);
        write_bytes(path, v1_file("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", std::string("\x01\x00\x01", 3)));
        tg::Tensor b = tg::load_npy(path);
        CHECK(b.dtype() == tg::int64);
        CHECK(b.to_vector() == std::vector<double>{1, 0, 1});
    }
    SUBCASE("big-endian data is byte-swapped")
    {
        write_bytes(path, v1_file("{'descr': '>i8', 'fortran_order': False, 'shape': (3,), }", be_bytes<int64_t>({0, 1, -2})));
        CHECK(tg::load_npy(path).to_vector() == std::vector<double>{0, 1, -2});
        write_bytes(path, v1_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", be_bytes<float>({1.5f, -3.25f})));
        tg::Tensor f = tg::load_npy(path);
        CHECK(f.dtype() == tg::float32);
        CHECK(f.to_vector() == std::vector<double>{1.5, -3.25});
        write_bytes(path, v1_file("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", be_bytes<double>({0.1})));
        CHECK(tg::load_npy(path).item() == 0.1);
        write_bytes(path, v1_file("{'descr': '>i4', 'fortran_order': False, 'shape': (1,), }", be_bytes<int32_t>({-70000})));
        CHECK(tg::load_npy(path).item() == -70000);
    }
    SUBCASE("Fortran order is transposed into C order")
    {
        // np.asfortranarray(np.arange(6.).reshape(2, 3)): memory holds columns.
        write_bytes(path, v1_file("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                                  le_bytes<double>({0, 3, 1, 4, 2, 5})));
        tg::Tensor t = tg::load_npy(path);
        CHECK(t.shape() == tg::shape_type{2, 3});
        CHECK(t.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});

        // 3-d: element (i, j, k) = 100i + 10j + k sits at i + 2j + 6k.
        std::vector<int64_t> f(24);
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 3; ++j)
                for (int k = 0; k < 4; ++k) f[size_t(i + 2 * j + 6 * k)] = 100 * i + 10 * j + k;
        std::string data;
        for (int64_t v : f) data += le_bytes<int64_t>({v});
        write_bytes(path, v1_file("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3, 4), }", data));
        tg::Tensor u = tg::load_npy(path);
        REQUIRE(u.shape() == tg::shape_type{2, 3, 4});
        CHECK(u.at({1, 2, 3}) == 123);
        CHECK(u.at({0, 1, 2}) == 12);
        CHECK(u.at({1, 0, 1}) == 101);
        CHECK(u.to_vector()[5] == 11);  // C order: (0, 1, 1)
    }
    SUBCASE("older headers: no growth spaces, 16-byte padding, Python 2 longs, double quotes")
    {
        write_bytes(path, v1_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4_23_data, 70));
        CHECK(tg::load_npy(path).to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
        write_bytes(path, v1_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L)}", f4_23_data, 70));
        CHECK(tg::load_npy(path).shape() == tg::shape_type{2, 3});
        write_bytes(path, v1_file("{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<f4\"}", f4_23_data, 60));
        CHECK(tg::load_npy(path).shape() == tg::shape_type{6});
    }
    SUBCASE("format 2.0 and 3.0")
    {
        write_bytes(path, v2_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4_23_data));
        CHECK(tg::load_npy(path).to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
        std::string v3 = v2_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", f4_23_data);
        v3[6] = 3;
        write_bytes(path, v3);
        CHECK(tg::load_npy(path).shape() == tg::shape_type{3, 2});
    }
}

TEST_CASE("npy: every malformed file is a tg::Error naming the file, the offset and the problem")
{
    TempDir dir;
    const std::string good = v1_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4_23_data);
    const uint64_t data_at = 128;
    auto with_dict = [](const std::string& dict, const std::string& data = f4_23_data) { return v1_file(dict, data); };

    check_rejected(dir, "empty.npy", "", 0, "inside the magic string");
    check_rejected(dir, "short_magic.npy", std::string("\x93NUM", 4), 4, "inside the magic string");
    check_rejected(dir, "zip.npy", std::string("PK\x03\x04 not numpy at all", 22), 0, "not an .npy file");
    check_rejected(dir, "magic_typo.npy", std::string("\x93NUMPZ\x01\x00", 8), 5, "magic string");
    check_rejected(dir, "no_version.npy", good.substr(0, 7), 7, "version");
    std::string v4 = good;
    v4[6] = 4;
    check_rejected(dir, "version4.npy", v4, 6, "unsupported .npy format version 4.0");
    std::string v11 = good;
    v11[7] = 1;
    check_rejected(dir, "version11.npy", v11, 6, "version 1.1");
    check_rejected(dir, "short_len.npy", good.substr(0, 9), 9, "header length");
    std::string long_header = good;
    long_header[8] = char(0xff);
    long_header[9] = char(0x7f);
    check_rejected(dir, "long_header.npy", long_header, 8, "runs past the end of the file");
    std::string v2_long = v2_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4_23_data);
    v2_long[11] = char(0x80);  // 2 GiB
    check_rejected(dir, "v2_long_header.npy", v2_long, 8, "runs past the end of the file");

    check_rejected(dir, "not_dict.npy", with_dict("[1, 2, 3]"), 10, "expected '{'");
    check_rejected(dir, "binary_header.npy", with_dict(std::string("\x01\x02\x03", 3)), 10, "\\x01");
    check_rejected(dir, "no_shape.npy", with_dict("{'descr': '<f4', 'fortran_order': False, }"), 10, "no 'shape' key");
    check_rejected(dir, "no_descr.npy", with_dict("{'fortran_order': False, 'shape': (2, 3), }"), 10, "no 'descr' key");
    check_rejected(dir, "no_order.npy", with_dict("{'descr': '<f4', 'shape': (2, 3), }"), 10, "no 'fortran_order' key");
    check_rejected(dir, "extra_key.npy", with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}"),
                   10 + 58, "unexpected key 'x'");
    check_rejected(dir, "dup_key.npy", with_dict("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}"),
                   10 + 17, "appears twice");
    check_rejected(dir, "unclosed.npy", with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)"), 10 + 118,
                   "expected ',' or '}'");
    check_rejected(dir, "after_dict.npy", with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x"),
                   10 + 58, "after the header dictionary");
    check_rejected(dir, "bad_bool.npy", with_dict("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}"), 10 + 34,
                   "True or False");
    check_rejected(dir, "shape_letter.npy", with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}"),
                   10 + 54, "expected a dimension");
    check_rejected(dir, "shape_int.npy", with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': 6}"), 10 + 50,
                   "must be a tuple");
    check_rejected(dir, "shape_paren.npy", with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (6)}"), 10 + 50,
                   "must be a tuple");
    check_rejected(dir, "shape_float.npy", with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 3)}"),
                   10 + 52, "expected ',' or ')'");
    check_rejected(dir, "unterminated.npy", with_dict("{'descr': '<f4, 'fortran_order': False, 'shape': (6,)}"), 10 + 17,
                   "expected ',' or '}' after the value of 'descr'");

    check_rejected(dir, "descr_c16.npy", with_dict("{'descr': '<c16', 'fortran_order': False, 'shape': (2, 3), }"),
                   10 + 10, "unsupported dtype '<c16'");
    check_rejected(dir, "descr_f2.npy", with_dict("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }"), 10 + 10,
                   "unsupported dtype '<f2'");
    check_rejected(dir, "descr_u8.npy", with_dict("{'descr': '<u8', 'fortran_order': False, 'shape': (2, 3), }"), 10 + 10,
                   "unsupported dtype '<u8'");
    check_rejected(dir, "descr_object.npy", with_dict("{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }"),
                   10 + 10, "unsupported dtype '|O'");
    check_rejected(dir, "descr_struct.npy",
                   with_dict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }"), 10 + 10,
                   "structured dtypes");
    // The byte order is one of < > | =; a NUL there once passed a strchr test and read big-endian.
    for (char order : {'\0', '!', ' ', 'f'}) {
        std::string dict = "{'descr': '?f4', 'fortran_order': False, 'shape': (2, 3), }";
        dict[11] = order;
        CAPTURE(int(order));
        check_rejected(dir, "descr_order.npy", with_dict(dict), 10 + 10, "unsupported dtype '" + tg::printable(dict.substr(11, 3)) + "'");
    }
    check_rejected(dir, "descr_pipe_f4.npy", with_dict("{'descr': '|f4', 'fortran_order': False, 'shape': (2, 3), }"),
                   10 + 10, "no byte order");

    check_rejected(dir, "negative.npy", with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }"), 10 + 51,
                   "negative dimension");
    check_rejected(dir, "dim_overflow.npy",
                   with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 3), }"), 10 + 51,
                   "does not fit in int64");
    check_rejected(dir, "product_overflow.npy",
                   with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"), 10 + 50,
                   "more elements than fit in int64");
    // Overflow before a zero dimension is still an overflow.
    check_rejected(dir, "product_overflow_zero.npy",
                   with_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 0), }", ""),
                   10 + 50, "more elements than fit in int64");
    check_rejected(dir, "bytes_overflow.npy",
                   with_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (1152921504606846976, 4), }"), 10 + 50,
                   "needs more bytes than fit in int64");

    check_rejected(dir, "short_data.npy", good.substr(0, good.size() - 4), data_at,
                   "needs 24 bytes, but only 20 bytes are present");
    check_rejected(dir, "no_data.npy", good.substr(0, data_at), data_at, "needs 24 bytes, but only 0 bytes");
    check_rejected(dir, "trailing.npy", good + "junk", data_at + 24, "4 unexpected bytes after the data");

    // A header that promises 8 GB in a tiny file: refused before any allocation.
    int64_t peak_before = tg::memory_stats().peak_bytes;
    check_rejected(dir, "huge.npy", with_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000,), }"),
                   data_at, "needs 8000000000 bytes, but only 24 bytes are present");
    CHECK(tg::memory_stats().peak_bytes - peak_before < (int64_t(1) << 20));

    // Not a regular file, and no file.
    const std::string dir_name = dir.path.string();
    CHECK_THROWS_WITH_AS(tg::load_npy(dir_name), doctest::Contains(dir_name.c_str()), tg::Error);
    CHECK_THROWS_WITH_AS(tg::load_npy(dir.file("missing.npy")), doctest::Contains("missing.npy"), tg::Error);
}

TEST_CASE("npy: fuzzed files load or throw tg::Error, never crash")
{
    TempDir dir;
    std::string path = dir.file("f.npy");
    tg::Generator gen(3);
    tg::save_npy(tg::randn({3, 4}, tg::float32, &gen), path);
    const std::string good = read_bytes(path);
    REQUIRE(good.size() == 128 + 48);

    // Every truncation is invalid.
    int rejected = 0;
    for (size_t len = 0; len < good.size(); ++len) {
        write_bytes(path, good.substr(0, len));
        try {
            tg::load_npy(path);
            FAIL("a file truncated to ", len, " bytes loaded");
        } catch (const tg::Error& e) {
            ++rejected;
            CHECK(std::string(e.what()).find(path) != std::string::npos);
        }
    }
    CHECK(rejected == int(good.size()));

    // Random byte flips in the magic, version, length and header.
    std::mt19937 rng(12345);
    std::uniform_int_distribution<size_t> where(0, 127);
    std::uniform_int_distribution<int> flip(1, 255), count(1, 3);
    int loaded = 0, errors = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        std::string bytes = good;
        for (int k = count(rng); k > 0; --k) bytes[where(rng)] ^= char(flip(rng));
        write_bytes(path, bytes);
        try {
            tg::Tensor t = tg::load_npy(path);
            ++loaded;
            CHECK(t.numel() * int64_t(tg::dtype_size(t.dtype())) <= int64_t(bytes.size()));
        } catch (const tg::Error& e) {
            ++errors;
        } catch (const std::exception& e) {
            FAIL("trial ", trial, " threw a non-tg exception: ", e.what());
        }
    }
    CHECK(errors > 0);
    CHECK(loaded + errors == 3000);
    MESSAGE("fuzz: ", loaded, " loaded, ", errors, " rejected");
}
