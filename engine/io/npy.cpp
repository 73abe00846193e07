// .npy files: the format is a magic string, a version, a little-endian header
// length, a Python dict literal describing the array, then the raw elements.
// Loading treats every byte as untrusted: each field is checked against the
// file's real size before anything is allocated or read.
#include "engine/io/npy.hpp"

#include "engine/io/npy_codec.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <system_error>

#include <unistd.h>

#include "engine/core/autograd.hpp"
#include "engine/io/temporary_file.hpp"
#include "ops/shape.hpp"

namespace tg {

namespace {

constexpr unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr bool host_little = std::endian::native == std::endian::little;

void swap_bytes(unsigned char* p, size_t itemsize, size_t n)
{
    if (itemsize == 1) return;
    for (size_t i = 0; i < n; ++i, p += itemsize) std::reverse(p, p + itemsize);
}

using detail::NpyPlace;

template <class... Args>
[[noreturn]] void bad_file(const NpyPlace& place, uint64_t offset, const Args&... args)
{
    fail(place.prefix, ": byte ", place.base + offset, place.suffix, ": ", args...);
}

// --- the header dictionary ----------------------------------------------------------

struct Header {
    std::string descr;
    bool fortran_order = false;
    shape_type shape;
    uint64_t descr_offset = 0, shape_offset = 0;  // in the .npy, for messages
};

// A parser for the subset of Python literals np.save writes:
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
public:
    HeaderParser(const std::string& text, uint64_t base, const NpyPlace& place)
        : s_(text), base_(base), place_(place)
    {
    }

    Header parse()
    {
        Header h;
        bool have_descr = false, have_order = false, have_shape = false;
        expect('{', "'{' opening the header dictionary");
        while (true) {
            skip_space();
            if (at('}')) break;
            size_t key_at = i_;
            if (!at('\'') && !at('"')) error("expected a quoted key or '}' in the header dictionary", found());
            std::string key = string_literal();
            expect(':', "':' after the key '" + printable(key) + "'");
            skip_space();
            if (key == "descr") {
                if (have_descr) error_at(key_at, "key 'descr' appears twice");
                if (at('[')) error("structured dtypes (a list as 'descr') are not supported");
                h.descr_offset = base_ + i_;
                h.descr = string_literal();
                have_descr = true;
            } else if (key == "fortran_order") {
                if (have_order) error_at(key_at, "key 'fortran_order' appears twice");
                h.fortran_order = boolean();
                have_order = true;
            } else if (key == "shape") {
                if (have_shape) error_at(key_at, "key 'shape' appears twice");
                h.shape_offset = base_ + i_;
                h.shape = tuple();
                have_shape = true;
            } else {
                error_at(key_at, "unexpected key '", printable(key),
                         "' in the header (expected only 'descr', 'fortran_order' and 'shape')");
            }
            skip_space();
            if (at(',')) {
                ++i_;
                continue;
            }
            if (at('}')) break;
            error("expected ',' or '}' after the value of '", key, "'", found());
        }
        ++i_;  // the '}'
        skip_space();
        if (i_ != s_.size()) error("unexpected bytes after the header dictionary", found());
        if (!have_descr) error_at(0, "the header dictionary has no 'descr' key");
        if (!have_order) error_at(0, "the header dictionary has no 'fortran_order' key");
        if (!have_shape) error_at(0, "the header dictionary has no 'shape' key");
        return h;
    }

private:
    template <class... Args>
    [[noreturn]] void error(const Args&... args) const
    {
        bad_file(place_, base_ + i_, "bad header: ", args...);
    }
    template <class... Args>
    [[noreturn]] void error_at(size_t pos, const Args&... args) const
    {
        bad_file(place_, base_ + pos, "bad header: ", args...);
    }

    std::string found() const
    {
        if (i_ >= s_.size()) return ", found the end of the header";
        return ", found '" + printable(std::string(1, s_[i_])) + "'";
    }

    bool at(char c) const { return i_ < s_.size() && s_[i_] == c; }

    void skip_space()
    {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }

    void expect(char c, const std::string& what)
    {
        skip_space();
        if (!at(c)) error("expected ", what, found());
        ++i_;
    }

    std::string string_literal()
    {
        if (!at('\'') && !at('"')) error("expected a quoted string", found());
        char quote = s_[i_];
        size_t start = ++i_;
        while (i_ < s_.size() && s_[i_] != quote) {
            if (s_[i_] == '\\') error("escape sequences in strings are not supported");
            if (s_[i_] == '\n') error("unterminated string");
            ++i_;
        }
        if (i_ >= s_.size()) error_at(start - 1, "unterminated string");
        return s_.substr(start, i_++ - start);
    }

    bool boolean()
    {
        if (s_.compare(i_, 4, "True") == 0) {
            i_ += 4;
            return true;
        }
        if (s_.compare(i_, 5, "False") == 0) {
            i_ += 5;
            return false;
        }
        error("'fortran_order' must be True or False", found());
    }

    int64_t dimension()
    {
        if (at('-')) error("negative dimension in the shape");
        if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') error("expected a dimension (an integer)", found());
        size_t start = i_;
        int64_t v = 0;
        while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
            int digit = s_[i_] - '0';
            if (v > (std::numeric_limits<int64_t>::max() - digit) / 10)
                error_at(start, "dimension ", printable(s_.substr(start, 30)), " does not fit in int64");
            v = v * 10 + digit;
            ++i_;
        }
        if (at('L')) ++i_;  // Python 2 long literals, as old NumPy wrote them
        return v;
    }

    shape_type tuple()
    {
        if (!at('(')) error("'shape' must be a tuple of integers", found());
        size_t open = i_++;
        shape_type shape;
        skip_space();
        if (at(')')) {
            ++i_;
            return shape;
        }
        bool comma_seen = false;
        while (true) {
            skip_space();
            shape.push_back(dimension());
            skip_space();
            if (at(',')) {
                ++i_;
                comma_seen = true;
                skip_space();
                if (at(')')) break;
                continue;
            }
            if (at(')')) break;
            error("expected ',' or ')' in the shape", found());
        }
        ++i_;  // the ')'
        // "(3)" is the integer 3 in Python, not a 1-tuple.
        if (!comma_seen) error_at(open, "'shape' must be a tuple; a 1-d shape is written (n,)");
        return shape;
    }

    const std::string& s_;
    size_t i_ = 0;
    uint64_t base_;
    const NpyPlace& place_;
};

// --- element types ----------------------------------------------------------------------

struct ElementType {
    char kind;        // 'f', 'i', 'u' or 'b'
    size_t itemsize;  // in the file
    bool swap;        // the file's byte order differs from the host's
    Dtype dtype;      // what it loads as
};

ElementType element_type(const std::string& descr, const NpyPlace& place, uint64_t offset)
{
    auto unsupported = [&]() {
        bad_file(place, offset, "unsupported dtype '", printable(descr),
                 "' (supported: '<f4', '<f8', '<i8', and '<i4', '<i2', '|i1', '<u4', '<u2', '|u1', "
                 "'|b1' which load as int64; big-endian '>' variants too)");
    };
    if (descr.size() != 3) unsupported();
    char order = descr[0], kind = descr[1], size = descr[2];
    if (std::string_view("<>|=").find(order) == std::string_view::npos || size < '1' || size > '8') unsupported();
    size_t itemsize = size_t(size - '0');
    bool ok = (kind == 'f' && (itemsize == 4 || itemsize == 8)) ||
              (kind == 'i' && (itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8)) ||
              (kind == 'u' && (itemsize == 1 || itemsize == 2 || itemsize == 4)) ||
              (kind == 'b' && itemsize == 1);
    if (!ok) unsupported();
    if (order == '|' && itemsize != 1)
        bad_file(place, offset, "dtype '", printable(descr), "' has no byte order ('|') but ", itemsize, "-byte elements");
    bool file_little = order == '<' || (order == '=' && host_little);
    Dtype dtype = kind != 'f' ? int64 : itemsize == 4 ? float32 : float64;
    return {kind, itemsize, itemsize > 1 && file_little != host_little, dtype};
}

// Converts n elements of the file's type (already in host byte order) to int64.
void widen_to_int64(const unsigned char* src, const ElementType& e, int64_t* dst, size_t n)
{
    auto load = [&](auto tag) {
        using T = decltype(tag);
        for (size_t i = 0; i < n; ++i) {
            T v;
            std::memcpy(&v, src + i * sizeof(T), sizeof(T));
            dst[i] = int64_t(v);
        }
    };
    switch (e.kind) {
    case 'b':
        for (size_t i = 0; i < n; ++i) dst[i] = src[i] != 0;
        return;
    case 'u':
        if (e.itemsize == 1) return load(uint8_t());
        if (e.itemsize == 2) return load(uint16_t());
        return load(uint32_t());
    default:
        if (e.itemsize == 1) return load(int8_t());
        if (e.itemsize == 2) return load(int16_t());
        return load(int32_t());
    }
}

uint64_t read_le(const unsigned char* p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

// --- saving ---------------------------------------------------------------------------

std::string shape_tuple(const shape_type& shape)
{
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    s += shape.size() == 1 ? ",)" : ")";  // (3,) is a 1-tuple, (3) is not
    return s;
}

// Removes the temporary file unless the rename succeeded.
struct TempFile {
    std::string path;
    std::FILE* f = nullptr;
    bool created = false, committed = false;
    ~TempFile()
    {
        if (f) std::fclose(f);
        if (created && !committed) std::remove(path.c_str());
    }
};

// --- loading ----------------------------------------------------------------------------

// An .npy file read front to back, the offset kept for messages.
class FileInput : public detail::NpyInput {
public:
    FileInput(std::ifstream& in, const NpyPlace& place) : in_(in), place_(place) {}
    void read(void* dst, uint64_t n, const char* what) override
    {
        in_.read(static_cast<char*>(dst), std::streamsize(n));
        uint64_t got = uint64_t(in_.gcount());
        // The file may have shrunk since its size was taken.
        if (got != n) bad_file(place_, pos_ + got, "the file ended while reading ", what, " (it changed while being read)");
        pos_ += n;
    }

private:
    std::ifstream& in_;
    const NpyPlace& place_;
    uint64_t pos_ = 0;
};

}  // namespace

namespace detail {

// The header exactly as NumPy (1.23 and later) writes it: the dict, spare
// spaces so the first axis can grow in place, padding to a 64-byte boundary,
// a newline.
std::string npy_header(const Tensor& t)
{
    const char* descr = t.dtype() == float32 ? "<f4" : t.dtype() == float64 ? "<f8" : "<i8";
    std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " +
                       shape_tuple(t.shape()) + ", }";
    if (!t.shape().empty()) dict += std::string(21 - std::to_string(t.shape()[0]).size(), ' ');
    for (int major : {1, 2}) {
        size_t prefix = major == 1 ? 10 : 12;
        size_t hlen = dict.size() + 1;
        size_t pad = 64 - (prefix + hlen) % 64;
        size_t total = hlen + pad;
        if (major == 1 && total > 0xffff) continue;
        std::string out(reinterpret_cast<const char*>(npy_magic), 6);
        out += char(major);
        out += char(0);
        for (size_t i = 0; i < prefix - 8; ++i) out += char((total >> (8 * i)) & 0xff);
        return out + dict + std::string(pad, ' ') + "\n";
    }
    fail("save_npy: header too long");  // unreachable: version 2.0 holds 4 GiB
}

uint64_t npy_size(const Tensor& t)
{
    return npy_header(t).size() + uint64_t(t.numel()) * dtype_size(t.dtype());
}

bool encode_npy(const Tensor& t, const std::function<bool(const void*, size_t)>& sink)
{
    const std::string header = npy_header(t);
    if (!sink(header.data(), header.size())) return false;
    const size_t itemsize = dtype_size(t.dtype());
    const size_t nbytes = size_t(t.numel()) * itemsize;
    const unsigned char* data = static_cast<const unsigned char*>(t.raw_data());
    if (nbytes == 0) return true;
    if (host_little) return sink(data, nbytes);
    // Big-endian host: swap a chunk at a time into little-endian order.
    std::vector<unsigned char> chunk;
    for (size_t done = 0; done < nbytes;) {
        size_t n = std::min<size_t>(nbytes - done, size_t(1) << 20);
        chunk.assign(data + done, data + done + n);
        swap_bytes(chunk.data(), itemsize, n / itemsize);
        if (!sink(chunk.data(), n)) return false;
        done += n;
    }
    return true;
}

Tensor parse_npy(NpyInput& in, uint64_t size, const NpyPlace& place)
{
    unsigned char prefix[12];
    in.read(prefix, std::min<uint64_t>(size, 6), "the magic string");
    for (uint64_t i = 0; i < std::min<uint64_t>(size, 6); ++i)
        if (prefix[i] != npy_magic[i])
            bad_file(place, i, "not an .npy file: the magic string \\x93NUMPY does not match (byte is ",
                     printable(std::string(1, char(prefix[i]))), ")");
    if (size < 6) bad_file(place, size, "not an .npy file: it ends after ", size, " bytes, inside the magic string");
    if (size < 8) bad_file(place, size, "the file ends inside the version bytes (it is ", size, " bytes)");
    in.read(prefix + 6, 2, "the version");
    int major = prefix[6], minor = prefix[7];
    if (major < 1 || major > 3 || minor != 0)
        bad_file(place, 6, "unsupported .npy format version ", major, ".", minor, " (1.0, 2.0 and 3.0 are read)");
    uint64_t len_size = major == 1 ? 2 : 4;
    uint64_t header_start = 8 + len_size;
    if (size < header_start)
        bad_file(place, size, "the file ends inside the ", len_size, "-byte header length (it is ", size, " bytes)");
    in.read(prefix + 8, len_size, "the header length");
    uint64_t header_len = read_le(prefix + 8, len_size);
    if (header_len > size - header_start)
        bad_file(place, 8, "the header length ", header_len,
                 " runs past the end of the file (the header would end at byte ", header_start + header_len,
                 ", the file is ", size, " bytes)");

    std::string text(size_t(header_len), '\0');
    in.read(text.data(), header_len, "the header");
    Header h = HeaderParser(text, header_start, place).parse();
    ElementType e = element_type(h.descr, place, h.descr_offset);

    // The element count and byte sizes, each checked for overflow; the product
    // skips zero dimensions so that no intermediate product can overflow.
    int64_t numel = 1;
    bool empty = false;
    for (int64_t d : h.shape) {
        if (d == 0) {
            empty = true;
            continue;
        }
        if (numel > std::numeric_limits<int64_t>::max() / d)
            bad_file(place, h.shape_offset, "shape ", h.shape, " has more elements than fit in int64");
        numel *= d;
    }
    size_t widest = std::max(e.itemsize, dtype_size(e.dtype));
    if (uint64_t(numel) > uint64_t(std::numeric_limits<int64_t>::max()) / widest)
        bad_file(place, h.shape_offset, "shape ", h.shape, " of '", h.descr, "' needs more bytes than fit in int64");
    if (empty) numel = 0;
    uint64_t data_start = header_start + header_len;
    uint64_t need = uint64_t(numel) * e.itemsize, present = size - data_start;
    if (need > present)
        bad_file(place, data_start, "the data is too short: shape ", h.shape, " of '", h.descr, "' needs ", need,
                 " bytes, but only ", present, " bytes are present");
    if (need < present)
        bad_file(place, data_start + need, present - need, " unexpected bytes after the data (shape ", h.shape,
                 " of '", h.descr, "' ends here)");

    // Fortran order: the bytes are a C-order array of the reversed shape.
    shape_type stored = h.shape;
    if (h.fortran_order) std::reverse(stored.begin(), stored.end());
    Tensor t = Tensor::empty(stored, e.dtype);
    if (e.kind == 'f' || e.itemsize == 8) {
        in.read(t.raw_data(), need, "the data");
        if (e.swap) swap_bytes(static_cast<unsigned char*>(t.raw_data()), e.itemsize, size_t(numel));
    } else {
        std::vector<unsigned char> raw(static_cast<size_t>(need));
        in.read(raw.data(), need, "the data");
        if (e.swap) swap_bytes(raw.data(), e.itemsize, size_t(numel));
        widen_to_int64(raw.data(), e, t.data<int64_t>(), size_t(numel));
    }
    if (h.fortran_order && stored.size() > 1) {
        std::vector<int64_t> axes(stored.size());
        for (size_t i = 0; i < axes.size(); ++i) axes[i] = int64_t(axes.size() - 1 - i);
        NoGradGuard no_grad;
        t = permute(t, axes);
    }
    return t;
}

}  // namespace detail

void save_npy(const Tensor& t, const std::string& path)
{
    TG_CHECK(t.defined(), "save_npy: ", path, ": the tensor is undefined");
    const uint64_t total = detail::npy_size(t);

    TempFile tmp;
    tmp.path = detail::temporary_name(path);
    // "x": fail rather than reuse a file someone else created under that name.
    tmp.f = std::fopen(tmp.path.c_str(), "wbx");
    TG_CHECK(tmp.f, "save_npy: ", path, ": cannot create the temporary file ", tmp.path, ": ",
             std::strerror(errno));
    tmp.created = true;
    bool ok = detail::encode_npy(t, [&](const void* p, size_t n) { return std::fwrite(p, 1, n, tmp.f) == n; });
    // Flushed and synced before the rename, so `path` names either the old
    // file or the complete new one, even across a crash.
    ok = ok && std::fflush(tmp.f) == 0 && ::fsync(::fileno(tmp.f)) == 0;
    int err = errno;
    ok = std::fclose(tmp.f) == 0 && ok;
    tmp.f = nullptr;
    TG_CHECK(ok, "save_npy: ", path, ": writing ", total, " bytes failed: ", std::strerror(err ? err : errno));
    std::error_code ec;
    std::filesystem::rename(tmp.path, path, ec);
    TG_CHECK(!ec, "save_npy: ", path, ": cannot rename the temporary file into place: ", ec.message());
    tmp.committed = true;
    detail::remove_stale_temporaries(path);
}

Tensor load_npy(const std::string& path)
{
    std::error_code ec;
    uint64_t size = std::filesystem::file_size(path, ec);
    TG_CHECK(!ec, "load_npy: ", path, ": cannot read: ", ec.message());
    std::ifstream in(path, std::ios::binary);
    TG_CHECK(in, "load_npy: ", path, ": cannot open: ", std::strerror(errno));
    const NpyPlace place{"load_npy: " + quote(path), 0, ""};
    FileInput input(in, place);
    return detail::parse_npy(input, size, place);
}

}  // namespace tg
