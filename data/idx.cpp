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

// The bytes of an IDX file, inflated through zlib when the file is gzipped.
// zlib's gzFile is not used: it stops silently at bytes that follow the gzip
// data and cannot say where in the file a stream broke, so the inflate loop is
// here, tracking both the offset in the data and the offset in the file.
class IdxReader {
public:
    explicit IdxReader(const std::string& path) : path_(path)
    {
        std::error_code ec;
        file_size_ = std::filesystem::file_size(path, ec);
        if (ec) fail("read_idx: cannot open ", quote(path), ": ", ec.message());
        file_ = std::fopen(path.c_str(), "rb");
        if (!file_) fail("read_idx: cannot open ", quote(path), ": ", std::strerror(errno));
        in_.resize(size_t(std::clamp<uint64_t>(file_size_, 1, uint64_t(1) << 17)));  // no more than the file
        refill();
        gzip_ = in_end_ >= 2 && in_[0] == 0x1f && in_[1] == 0x8b;
        if (gzip_ && inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) fail("read_idx: zlib cannot start inflating");
    }
    ~IdxReader()
    {
        if (gzip_) inflateEnd(&z_);
        std::fclose(file_);
    }
    IdxReader(const IdxReader&) = delete;
    IdxReader& operator=(const IdxReader&) = delete;

    // Reads up to n bytes of data; fewer only at its end. A damaged gzip
    // stream, or bytes after it that are not another gzip member, is an error.
    size_t read_some(void* buf, size_t n)
    {
        size_t got = gzip_ ? inflate_some(static_cast<uint8_t*>(buf), n) : copy_some(static_cast<uint8_t*>(buf), n);
        offset_ += got;
        return got;
    }

    void read_exact(void* buf, size_t n, const char* what)
    {
        uint64_t start = offset_;
        size_t got = read_some(buf, n);
        if (got < n)
            fail("read_idx: ", quote(path_), ": truncated at ", where(start + got), " while reading ", what,
                 " (", n, " bytes from byte offset ", start, "; only ", got, " are there)");
    }

    // "byte offset 16" or "byte offset 16 of the uncompressed data".
    std::string where(uint64_t offset) const
    {
        return "byte offset " + std::to_string(offset) + (gzip_ ? " of the uncompressed data" : "");
    }
    bool compressed() const { return gzip_; }
    uint64_t file_size() const { return file_size_; }
    uint64_t offset() const { return offset_; }

private:
    // Reads the next block of the file once the previous one is used up.
    void refill()
    {
        if (in_pos_ < in_end_ || at_eof_) return;
        file_offset_ += in_end_;
        in_pos_ = 0;
        in_end_ = std::fread(in_.data(), 1, in_.size(), file_);
        if (in_end_ < in_.size()) {
            if (std::ferror(file_))
                fail("read_idx: ", quote(path_), ": read error at byte offset ", file_offset_ + in_end_, " of the file: ",
                     std::strerror(errno));
            at_eof_ = true;
        }
    }
    uint64_t file_position() const { return file_offset_ + in_pos_; }

    size_t copy_some(uint8_t* out, size_t n)
    {
        size_t got = 0;
        while (got < n) {
            refill();
            if (in_pos_ == in_end_) break;
            size_t take = std::min(n - got, in_end_ - in_pos_);
            std::memcpy(out + got, in_.data() + in_pos_, take);
            in_pos_ += take;
            got += take;
        }
        return got;
    }

    size_t inflate_some(uint8_t* out, size_t n)
    {
        size_t got = 0;
        while (got < n && !stream_done_) {
            refill();
            if (member_ended_) {
                // gzip allows several members back to back; anything else after
                // the data is damage, not padding to ignore.
                if (in_pos_ == in_end_) {
                    stream_done_ = true;
                    break;
                }
                if (in_[in_pos_] != 0x1f)
                    fail("read_idx: ", quote(path_), ": ", file_size_ - file_position(),
                         " unexpected bytes after the end of the gzip data, at byte offset ", file_position(),
                         " of the file");
                inflateReset(&z_);
                member_ended_ = false;
            }
            z_.next_in = in_.data() + in_pos_;
            z_.avail_in = unsigned(in_end_ - in_pos_);
            z_.next_out = out + got;
            z_.avail_out = unsigned(std::min<size_t>(n - got, 1u << 30));
            const unsigned before_out = z_.avail_out;
            const int r = inflate(&z_, Z_NO_FLUSH);
            in_pos_ = in_end_ - z_.avail_in;
            got += before_out - z_.avail_out;
            if (r == Z_STREAM_END) {
                member_ended_ = true;
            } else if (r == Z_BUF_ERROR || (r == Z_OK && in_pos_ == in_end_ && at_eof_ && z_.avail_out != 0)) {
                // No progress possible: the input is used up before the stream's end.
                if (in_pos_ == in_end_ && at_eof_)
                    fail("read_idx: ", quote(path_), ": the gzip stream is truncated: the file ends at byte offset ",
                         file_size_, " inside the compressed data, after ", offset_ + got,
                         " bytes of uncompressed data");
            } else if (r != Z_OK) {
                fail("read_idx: ", quote(path_), ": corrupt gzip data near byte offset ", file_position(),
                     " of the file (", where(offset_ + got), "): ", z_.msg ? z_.msg : "zlib error " + std::to_string(r));
            }
        }
        return got;
    }

    std::string path_;
    std::FILE* file_ = nullptr;
    uint64_t file_size_ = 0;
    std::vector<uint8_t> in_;      // one block of the file
    size_t in_pos_ = 0, in_end_ = 0;
    uint64_t file_offset_ = 0;     // of in_[0] in the file
    bool at_eof_ = false;
    bool gzip_ = false;
    z_stream z_{};
    bool member_ended_ = false;    // inflate reached the end of a gzip member
    bool stream_done_ = false;     // ... and the file ends there
    uint64_t offset_ = 0;          // in the (uncompressed) data
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
    TG_CHECK(magic[0] == 0 && magic[1] == 0, "read_idx: ", quote(path), ": wrong magic number ",
             hex(magic_value, 8), " at byte offset 0 (an IDX file starts with 00 00 <type> <rank>)",
             in.compressed() ? "" : "; if the file is gzipped, its gzip header is damaged");
    TG_CHECK(magic[2] == 0x08, "read_idx: ", quote(path), ": element type ", hex(magic[2], 2), " (",
             type_name(magic[2]), ") at byte offset 2 is not supported; only 0x08 (unsigned byte)");
    const int rank = magic[3];
    TG_CHECK(rank > 0, "read_idx: ", quote(path), ": zero dimensions at byte offset 3");

    std::vector<uint8_t> size_bytes(size_t(rank) * 4);
    in.read_exact(size_bytes.data(), size_bytes.size(), "the dimension sizes");
    IdxArray out;
    uint64_t count = 1;
    bool overflow = false, empty = false;
    for (int i = 0; i < rank; ++i) {
        uint32_t d = big_endian_u32(&size_bytes[size_t(i) * 4]);
        out.dims.push_back(int64_t(d));
        empty = empty || d == 0;
        overflow = overflow || __builtin_mul_overflow(count, uint64_t(d), &count);
    }
    // An empty array is valid whatever the order of its sizes: a zero
    // anywhere makes the product 0, even after a partial product overflowed.
    if (empty) overflow = false, count = 0;
    const uint64_t header = in.offset();
    TG_CHECK(!overflow && count <= uint64_t(INT64_MAX), "read_idx: ", quote(path), ": the sizes ",
             out.dims, " at byte offset 4 overflow 64 bits");
    // Check the promise against what the file can hold before allocating.
    if (!in.compressed()) {
        uint64_t available = in.file_size() - std::min(in.file_size(), header);
        TG_CHECK(count <= available, "read_idx: ", quote(path), ": truncated: the sizes ", out.dims,
                 " promise ", count, " bytes of data from byte offset ", header,
                 " but the file ends at byte offset ", in.file_size());
        TG_CHECK(count == available, "read_idx: ", quote(path), ": ", available - count,
                 " unexpected bytes after the data at byte offset ", header + count, " (the sizes ",
                 out.dims, " account for ", count, " bytes)");
    } else {
        uint64_t most = in.file_size() * max_deflate_ratio;
        TG_CHECK(count <= most, "read_idx: ", quote(path), ": the sizes ", out.dims, " at byte offset 4 ",
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
            fail("read_idx: ", quote(path), ": truncated at ", in.where(in.offset()), ": the sizes ",
                 out.dims, " promise ", count, " bytes of data from byte offset ", header, ", the file holds ",
                 start + got);
    }
    uint8_t extra;
    TG_CHECK(in.read_some(&extra, 1) == 0, "read_idx: ", quote(path), ": unexpected bytes after the data at ",
             in.where(header + count), " (the sizes ", out.dims, " account for ", count, " bytes)");
    return out;
}

}  // namespace tg
