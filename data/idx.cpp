#include "data/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "engine/core/error.hpp"

namespace tg {

namespace {

// Deflate never compresses better than 1032:1, which bounds what a gzipped
// file can expand to before anything is allocated.
constexpr uint64_t max_deflate_ratio = 1032;

const char* type_name(int type)
{
    switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
    }
}

std::string hex(uint64_t v, int digits)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%0*llx", digits, static_cast<unsigned long long>(v));
    return buf;
}

// A gzFile with the uncompressed offset it has reached, for messages.
class IdxReader {
public:
    explicit IdxReader(const std::string& path) : path_(path)
    {
        std::error_code ec;
        file_size_ = std::filesystem::file_size(path, ec);
        if (ec) fail("read_idx: cannot open '", path, "': ", ec.message());
        file_ = gzopen(path.c_str(), "rb");
        if (!file_) fail("read_idx: cannot open '", path, "': ", std::strerror(errno));
        gzbuffer(file_, 1 << 17);
    }
    ~IdxReader() { gzclose(file_); }
    IdxReader(const IdxReader&) = delete;
    IdxReader& operator=(const IdxReader&) = delete;

    // Reads up to n bytes; fewer only at the end of the data. Corrupt gzip
    // data is an error.
    size_t read_some(void* buf, size_t n)
    {
        size_t got = 0;
        while (got < n) {
            unsigned ask = unsigned(std::min<size_t>(n - got, 1u << 30));
            int r = gzread(file_, static_cast<char*>(buf) + got, ask);
            if (r < 0) check_stream();
            if (r <= 0) break;
            got += size_t(r);
        }
        offset_ += got;
        check_stream();
        return got;
    }

    void read_exact(void* buf, size_t n, const char* what)
    {
        uint64_t start = offset_;
        size_t got = read_some(buf, n);
        if (got < n)
            fail("read_idx: '", path_, "': truncated at ", where(start + got), " while reading ", what,
                 " (", n, " bytes from byte offset ", start, "; only ", got, " are there)");
    }

    // "byte offset 16" or "byte offset 16 of the uncompressed data".
    std::string where(uint64_t offset) const
    {
        return "byte offset " + std::to_string(offset) + (compressed() ? " of the uncompressed data" : "");
    }
    bool compressed() const { return !gzdirect(file_); }
    uint64_t file_size() const { return file_size_; }
    uint64_t offset() const { return offset_; }
    const std::string& path() const { return path_; }

private:
    void check_stream()
    {
        int errnum = Z_OK;
        const char* msg = gzerror(file_, &errnum);
        if (errnum == Z_OK) return;
        if (errnum == Z_BUF_ERROR)  // zlib's "unexpected end of file"
            fail("read_idx: '", path_, "': the gzip stream is truncated (it ends at ", where(offset_), ")");
        if (errnum == Z_ERRNO)
            fail("read_idx: '", path_, "': read error near ", where(offset_), ": ", std::strerror(errno));
        fail("read_idx: '", path_, "': corrupt gzip data near ", where(offset_), ": ", msg ? msg : "?");
    }

    std::string path_;
    gzFile file_ = nullptr;
    uint64_t file_size_ = 0;
    uint64_t offset_ = 0;
};

uint32_t big_endian_u32(const uint8_t* p)
{
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

}  // namespace

IdxArray read_idx(const std::string& path)
{
    IdxReader in(path);
    uint8_t magic[4];
    in.read_exact(magic, 4, "the magic number");
    uint32_t magic_value = big_endian_u32(magic);
    TG_CHECK(magic[0] == 0 && magic[1] == 0, "read_idx: '", path, "': wrong magic number ",
             hex(magic_value, 8), " at byte offset 0 (an IDX file starts with 00 00 <type> <rank>)",
             in.compressed() ? "" : "; if the file is gzipped, its gzip header is damaged");
    TG_CHECK(magic[2] == 0x08, "read_idx: '", path, "': element type ", hex(magic[2], 2), " (",
             type_name(magic[2]), ") at byte offset 2 is not supported; only 0x08 (unsigned byte)");
    const int rank = magic[3];
    TG_CHECK(rank > 0, "read_idx: '", path, "': zero dimensions at byte offset 3");

    std::vector<uint8_t> size_bytes(size_t(rank) * 4);
    in.read_exact(size_bytes.data(), size_bytes.size(), "the dimension sizes");
    IdxArray out;
    uint64_t count = 1;
    bool overflow = false;
    for (int i = 0; i < rank; ++i) {
        uint32_t d = big_endian_u32(&size_bytes[size_t(i) * 4]);
        out.dims.push_back(int64_t(d));
        overflow = overflow || __builtin_mul_overflow(count, uint64_t(d), &count);
    }
    const uint64_t header = in.offset();
    TG_CHECK(!overflow && count <= uint64_t(INT64_MAX), "read_idx: '", path, "': the sizes ",
             out.dims, " at byte offset 4 overflow 64 bits");
    // Check the promise against what the file can hold before allocating.
    if (!in.compressed()) {
        uint64_t available = in.file_size() - std::min(in.file_size(), header);
        TG_CHECK(count <= available, "read_idx: '", path, "': truncated: the sizes ", out.dims,
                 " promise ", count, " bytes of data from byte offset ", header,
                 " but the file ends at byte offset ", in.file_size());
        TG_CHECK(count == available, "read_idx: '", path, "': ", available - count,
                 " unexpected bytes after the data at byte offset ", header + count, " (the sizes ",
                 out.dims, " account for ", count, " bytes)");
    } else {
        uint64_t most = in.file_size() * max_deflate_ratio;
        TG_CHECK(count <= most, "read_idx: '", path, "': the sizes ", out.dims, " at byte offset 4 ",
                 "promise ", count, " bytes of data, more than a ", in.file_size(),
                 "-byte gzip file can hold");
    }

    // Grow the buffer as data arrives, so a gzipped file that promises more
    // than it holds fails at the truncation without a huge allocation first.
    const size_t chunk = size_t(1) << 22;
    while (out.data.size() < count) {
        size_t start = out.data.size();
        size_t want = size_t(std::min<uint64_t>(chunk, count - start));
        out.data.resize(start + want);
        size_t got = in.read_some(out.data.data() + start, want);
        if (got < want)
            fail("read_idx: '", path, "': truncated at ", in.where(in.offset()), ": the sizes ",
                 out.dims, " promise ", count, " bytes of data from byte offset ", header, ", the file holds ",
                 start + got);
    }
    uint8_t extra;
    TG_CHECK(in.read_some(&extra, 1) == 0, "read_idx: '", path, "': unexpected bytes after the data at ",
             in.where(header + count), " (the sizes ", out.dims, " account for ", count, " bytes)");
    return out;
}

}  // namespace tg
