// .npz archives: zip files of .npy members. The writer reproduces what
// Python's zipfile writes for np.savez; the reader trusts no field of the
// archive before checking it against the file's size and against the other
// copies of it (local header, central directory, data descriptor, end records).
#include "engine/io/npz.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string_view>

#include "engine/io/npy_codec.hpp"
#include "engine/io/temporary_file.hpp"

namespace tg {

namespace {

constexpr uint32_t local_signature = 0x04034b50;
constexpr uint32_t central_signature = 0x02014b50;
constexpr uint32_t end_signature = 0x06054b50;
constexpr uint32_t zip64_end_signature = 0x06064b50;
constexpr uint32_t zip64_locator_signature = 0x07064b50;
constexpr uint32_t descriptor_signature = 0x08074b50;
constexpr uint64_t local_size = 30, central_size = 46, end_size = 22, zip64_end_size = 56, zip64_locator_size = 20;
constexpr uint32_t sentinel32 = 0xffffffff;
constexpr uint16_t sentinel16 = 0xffff;
constexpr uint16_t stored = 0, deflated = 8;
constexpr uint16_t flag_encrypted = 0x1, flag_descriptor = 0x8, flag_strong_encryption = 0x40, flag_utf8 = 0x800;
// Bits 1 and 2 (deflate's compression level), the descriptor and UTF-8 names.
constexpr uint16_t flags_read = 0x2 | 0x4 | flag_descriptor | flag_utf8;
// zipfile.ZIP64_LIMIT: sizes and offsets above it get ZIP64 fields (zipfile
// stays clear of readers that take the 32-bit fields as signed).
constexpr uint64_t zipfile_zip64_limit = (uint64_t(1) << 31) - 1;
// Deflate's best case is a 258-byte match in 2 bits: 1032 bytes per byte.
constexpr uint64_t max_deflate_ratio = 1032;
constexpr size_t io_chunk = size_t(1) << 16;

// --- names -----------------------------------------------------------------------

// Why `name` cannot name an array in an archive, or "" when it can: each name
// must extract to a file inside the target directory and to no other name's.
std::string bad_name(const std::string& name)
{
    if (name.empty()) return "is empty";
    for (unsigned char c : name) {
        if (c == 0) return "holds a NUL byte";
        if (c < 0x20 || c == 0x7f) return "holds a control character";
        if (c == '\\') return "holds a backslash (a path separator where it is extracted on Windows)";
    }
    if (name[0] == '/') return "is an absolute path";
    if (name.size() >= 2 && name[1] == ':' && std::isalpha(static_cast<unsigned char>(name[0])))
        return "starts with a drive letter";
    for (size_t start = 0;;) {
        size_t end = std::min(name.find('/', start), name.size());
        std::string_view part(name.data() + start, end - start);
        if (part.empty()) return "has an empty path component ('//' or a trailing '/')";
        if (part == "..") return "has a '..' component (it would extract outside the directory)";
        if (part == ".") return "has a '.' component";
        if (end == name.size()) return "";
        start = end + 1;
    }
}

// The longest name whose member name ("<name>.npy") fits the 16-bit length field.
constexpr size_t max_name_size = 0xffff - 4;

// --- little-endian fields ------------------------------------------------------------

void put16(std::string& out, uint64_t v)
{
    for (int i = 0; i < 2; ++i) out += char((v >> (8 * i)) & 0xff);
}
void put32(std::string& out, uint64_t v)
{
    for (int i = 0; i < 4; ++i) out += char((v >> (8 * i)) & 0xff);
}
void put64(std::string& out, uint64_t v)
{
    for (int i = 0; i < 8; ++i) out += char((v >> (8 * i)) & 0xff);
}

uint64_t le(const unsigned char* p, int n)
{
    uint64_t v = 0;
    for (int i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}
uint16_t le16(const unsigned char* p) { return uint16_t(le(p, 2)); }
uint32_t le32(const unsigned char* p) { return uint32_t(le(p, 4)); }
uint64_t le64(const unsigned char* p) { return le(p, 8); }

std::string hex(uint64_t v, int digits)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%0*llx", digits, static_cast<unsigned long long>(v));
    return buf;
}

// "PK\x03\x04" or what stands where a signature should.
std::string signature_text(uint32_t v)
{
    std::string s;
    for (int i = 0; i < 4; ++i) s += char((v >> (8 * i)) & 0xff);
    return quote(s);
}

// --- writing ---------------------------------------------------------------------------

// What the central directory records of a member.
struct Written {
    std::string name;
    uint16_t flags = 0, method = stored;
    uint32_t crc = 0;
    uint64_t csize = 0, usize = 0, offset = 0;
};

// The local header zipfile writes for np.savez (force_zip64=True): the ZIP64
// extra field always, the 32-bit sizes 0xffffffff only past the limit.
std::string local_header(const Written& m, uint64_t limit)
{
    const bool big = m.usize > limit || m.csize > limit;
    std::string h;
    put32(h, local_signature);
    put16(h, big ? 45 : 20);  // version needed: ZIP64, or deflate
    put16(h, m.flags);
    put16(h, m.method);
    put16(h, 0);                  // time 00:00:00
    put16(h, (1 << 5) | 1);       // date 1980-01-01, zipfile's default
    put32(h, m.crc);
    put32(h, big ? sentinel32 : m.csize);
    put32(h, big ? sentinel32 : m.usize);
    put16(h, m.name.size());
    put16(h, 20);
    h += m.name;
    put16(h, 1);  // the ZIP64 extra field: both sizes
    put16(h, 16);
    put64(h, m.usize);
    put64(h, m.csize);
    return h;
}

std::string central_header(const Written& m, uint64_t limit)
{
    const bool big = m.usize > limit || m.csize > limit, far = m.offset > limit;
    std::string extra;
    if (big || far) {
        put16(extra, 1);
        put16(extra, 8 * ((big ? 2 : 0) + (far ? 1 : 0)));
        if (big) {
            put64(extra, m.usize);
            put64(extra, m.csize);
        }
        if (far) put64(extra, m.offset);
    }
    const int version = extra.empty() ? 20 : 45;
    std::string h;
    put32(h, central_signature);
    put16(h, (3 << 8) | version);  // made by: Unix
    put16(h, version);
    put16(h, m.flags);
    put16(h, m.method);
    put16(h, 0);
    put16(h, (1 << 5) | 1);
    put32(h, m.crc);
    put32(h, big ? sentinel32 : m.csize);
    put32(h, big ? sentinel32 : m.usize);
    put16(h, m.name.size());
    put16(h, extra.size());
    put16(h, 0);                // comment
    put16(h, 0);                // disk
    put16(h, 0);                // internal attributes
    put32(h, uint32_t(0600) << 16);  // external: rw-------, as zipfile
    put32(h, far ? sentinel32 : m.offset);
    return h + m.name + extra;
}

// The temporary file, written through a buffer; the local headers are
// rewritten in place once their member's CRC and size are known.
class ArchiveWriter {
public:
    explicit ArchiveWriter(const std::string& path) : path_(path)
    {
        // O_EXCL: never write into a file someone else created under the name.
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd_ < 0) fail_errno("cannot create");
        buffer_.reserve(size_t(1) << 20);
    }
    ~ArchiveWriter()
    {
        if (fd_ >= 0) ::close(fd_);
    }
    ArchiveWriter(const ArchiveWriter&) = delete;
    ArchiveWriter& operator=(const ArchiveWriter&) = delete;

    void write(const void* data, size_t n)
    {
        const char* p = static_cast<const char*>(data);
        if (buffer_.size() + n > buffer_.capacity()) {
            flush();
            if (n >= buffer_.capacity()) {
                write_at(p, n, offset_);
                offset_ += n;
                return;
            }
        }
        buffer_.append(p, n);
        offset_ += n;
    }
    void write(const std::string& s) { write(s.data(), s.size()); }
    // Overwrites bytes already written.
    void patch(const std::string& s, uint64_t at)
    {
        flush();
        write_at(s.data(), s.size(), at);
    }
    uint64_t offset() const { return offset_; }
    void sync_and_close()
    {
        flush();
        if (::fsync(fd_) != 0) fail_errno("cannot flush to disk");
        int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) fail_errno("cannot close");
    }

private:
    void flush()
    {
        write_at(buffer_.data(), buffer_.size(), offset_ - buffer_.size());
        buffer_.clear();
    }
    void write_at(const char* p, size_t n, uint64_t at)
    {
        while (n > 0) {
            ssize_t w = ::pwrite(fd_, p, std::min<size_t>(n, size_t(1) << 30), off_t(at));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) fail_errno("cannot write");
            p += w;
            n -= size_t(w);
            at += uint64_t(w);
        }
    }
    [[noreturn]] void fail_errno(const char* what)
    {
        fail("save_npz: ", what, " ", quote(path_), ": ", std::strerror(errno));
    }
    std::string path_;
    int fd_ = -1;
    std::string buffer_;
    uint64_t offset_ = 0;
};

// Raw deflate, as zipfile's zlib.compressobj(-1, DEFLATED, -15) makes it.
class Deflater {
public:
    Deflater()
    {
        if (deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            fail("save_npz: zlib cannot start deflating");
    }
    ~Deflater() { deflateEnd(&z_); }
    Deflater(const Deflater&) = delete;
    Deflater& operator=(const Deflater&) = delete;

    void add(const void* data, size_t n, ArchiveWriter& out)
    {
        const Bytef* p = static_cast<const Bytef*>(data);
        while (n > 0) {
            const size_t take = std::min<size_t>(n, size_t(1) << 30);  // avail_in is 32 bits
            z_.next_in = const_cast<Bytef*>(p);
            z_.avail_in = uInt(take);
            run(Z_NO_FLUSH, out);
            p += take;
            n -= take;
        }
    }
    void finish(ArchiveWriter& out) { run(Z_FINISH, out); }
    uint64_t total_out() const { return z_.total_out; }

private:
    void run(int flush, ArchiveWriter& out)
    {
        unsigned char buf[io_chunk];
        while (true) {
            z_.next_out = buf;
            z_.avail_out = sizeof buf;
            const int r = deflate(&z_, flush);
            if (r == Z_STREAM_ERROR) fail("save_npz: zlib failed while deflating");
            out.write(buf, sizeof buf - z_.avail_out);
            if (flush == Z_FINISH ? r == Z_STREAM_END : z_.avail_in == 0 && z_.avail_out != 0) return;
        }
    }
    z_stream z_{};
};

void write_member(ArchiveWriter& out, Written& m, const Tensor& t, bool compressed, uint64_t limit)
{
    m.method = compressed ? deflated : stored;
    m.offset = out.offset();
    m.usize = detail::npy_size(t);
    m.csize = compressed ? 0 : m.usize;
    // Placeholders; the header keeps its length when they are filled in.
    const std::string placeholder = local_header(m, limit);
    out.write(placeholder);
    uLong crc = crc32_z(0, nullptr, 0);
    if (compressed) {
        Deflater z;
        detail::encode_npy(t, [&](const void* p, size_t n) {
            crc = crc32_z(crc, static_cast<const Bytef*>(p), n);
            z.add(p, n, out);
            return true;
        });
        z.finish(out);
        m.csize = z.total_out();
    } else {
        detail::encode_npy(t, [&](const void* p, size_t n) {
            crc = crc32_z(crc, static_cast<const Bytef*>(p), n);
            out.write(p, n);
            return true;
        });
    }
    m.crc = uint32_t(crc);
    out.patch(local_header(m, limit), m.offset);
}

// --- reading ---------------------------------------------------------------------------

// The archive, read at offsets; every message names it and a byte offset.
class Archive {
public:
    explicit Archive(const std::string& path) : path_(path)
    {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) fail("load_npz: cannot open ", quote(path), ": ", std::strerror(errno));
        struct stat st;
        if (::fstat(fd_, &st) != 0) {
            int err = errno;
            ::close(fd_);
            fail("load_npz: cannot stat ", quote(path), ": ", std::strerror(err));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd_);
            fail("load_npz: ", quote(path), " is not a regular file");
        }
        size_ = uint64_t(st.st_size);
    }
    ~Archive() { ::close(fd_); }
    Archive(const Archive&) = delete;
    Archive& operator=(const Archive&) = delete;

    template <class... Args>
    [[noreturn]] void error(uint64_t at, const Args&... args) const
    {
        fail("load_npz: ", quote(path_), ": byte ", at, ": ", args...);
    }

    // n bytes at `at`, which the caller has checked lie in the file.
    void read(void* dst, uint64_t n, uint64_t at) const
    {
        char* p = static_cast<char*>(dst);
        while (n > 0) {
            ssize_t r = ::pread(fd_, p, size_t(std::min<uint64_t>(n, uint64_t(1) << 30)), off_t(at));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) error(at, "read error: ", std::strerror(errno));
            if (r == 0) error(at, "the file ended early (it changed while being read)");
            p += r;
            n -= uint64_t(r);
            at += uint64_t(r);
        }
    }
    std::vector<unsigned char> bytes(uint64_t n, uint64_t at) const
    {
        std::vector<unsigned char> b(static_cast<size_t>(n));
        read(b.data(), n, at);
        return b;
    }

    const std::string& path() const { return path_; }
    uint64_t size() const { return size_; }

private:
    std::string path_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

struct Member {
    std::string name;  // as in the archive, "<key>.npy"
    std::string label; // "member 'fc.weight.npy'"
    uint16_t flags = 0, method = 0;
    uint32_t crc = 0;
    uint64_t csize = 0, usize = 0, offset = 0;
    uint64_t central_at = 0;  // its central directory record
    uint64_t data_at = 0;     // its data, once the local header is read
};

// The ZIP64 extra field (id 1) among the extra fields at `at`, checked to be
// well formed; null when there is none.
const unsigned char* zip64_extra(const Archive& zip, const unsigned char* extra, size_t size, uint64_t at,
                                 const std::string& whose, size_t& length)
{
    const unsigned char* found = nullptr;
    for (size_t i = 0; i < size;) {
        if (size - i < 4)
            zip.error(at + i, whose, ": the extra field ends inside a sub-field's header (", size - i, " bytes left)");
        const uint16_t id = le16(extra + i), n = le16(extra + i + 2);
        if (n > size - i - 4)
            zip.error(at + i, whose, ": extra sub-field ", hex(id, 4), " of ", n, " bytes runs past the extra field's end (",
                      size - i - 4, " bytes left)");
        if (id == 1) {
            if (found) zip.error(at + i, whose, ": two ZIP64 extra fields");
            found = extra + i + 4;
            length = n;
        }
        i += 4 + n;
    }
    return found;
}

// Takes the next 8-byte value of a ZIP64 extra field for a 32-bit field set to 0xffffffff.
uint64_t zip64_value(const Archive& zip, const unsigned char* z64, size_t length, size_t& used, uint64_t at,
                     const std::string& whose, const char* what)
{
    if (!z64) zip.error(at, whose, ": its ", what, " is 0xffffffff but there is no ZIP64 extra field to hold it");
    if (length - used < 8)
        zip.error(at, whose, ": its ", what, " is 0xffffffff but the ZIP64 extra field (", length,
                  " bytes) does not hold it");
    uint64_t v = le64(z64 + used);
    used += 8;
    return v;
}

const char* method_name(uint16_t m)
{
    switch (m) {
    case 1: return "shrunk";
    case 6: return "imploded";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "LZMA";
    case 93: return "Zstandard";
    case 95: return "xz";
    case 99: return "AES-encrypted";
    default: return "unknown";
    }
}

// The end records: where the central directory is and how many entries it has.
struct Directory {
    uint64_t count = 0, offset = 0, size = 0;
    uint64_t end_at = 0;  // where the directory must end: the ZIP64 end record, or the end record
    uint64_t count_at = 0;
};

Directory find_directory(const Archive& zip)
{
    const uint64_t size = zip.size();
    if (size < end_size)
        zip.error(size, "not a zip archive: the file is ", size, " bytes, shorter than an end of central directory record (",
                  end_size, " bytes)");
    // The end record is the last thing in the file, with a comment of up to 64 KiB.
    const uint64_t tail_len = std::min<uint64_t>(size, end_size + 0xffff), tail_at = size - tail_len;
    const std::vector<unsigned char> tail = zip.bytes(tail_len, tail_at);
    uint64_t found = UINT64_MAX, candidate = UINT64_MAX;
    for (uint64_t p = tail_len - end_size + 1; p-- > 0;) {
        if (le32(&tail[p]) != end_signature) continue;
        if (p + end_size + le16(&tail[p + 20]) == tail_len) {
            found = p;
            break;
        }
        if (candidate == UINT64_MAX) candidate = p;
    }
    if (found == UINT64_MAX) {
        if (candidate == UINT64_MAX)
            zip.error(tail_at, "not a zip archive, or a truncated one: no end of central directory record (",
                      signature_text(end_signature), ") in its last ", tail_len, " bytes");
        const uint64_t at = tail_at + candidate, comment = le16(&tail[candidate + 20]), end = at + end_size + comment;
        if (end < size)
            zip.error(end, size - end, " unexpected bytes after the end of central directory record at byte ", at,
                      comment ? " and its comment" : "");
        zip.error(at + 20, "the end of central directory record at byte ", at, " declares a ", comment,
                  "-byte comment, but the file ends ", size - at - end_size, " bytes after the record");
    }
    const uint64_t end_at = tail_at + found;
    const unsigned char* e = &tail[found];
    if (le16(e + 4) != 0 || le16(e + 6) != 0)
        zip.error(end_at + 4, "a split or spanned archive (disk ", le16(e + 4), ", directory on disk ", le16(e + 6),
                  ") is not supported");
    if (le16(e + 8) != le16(e + 10))
        zip.error(end_at + 8, "the end record counts ", le16(e + 8), " entries on this disk but ", le16(e + 10),
                  " in all (a split archive?)");
    Directory d;
    d.count = le16(e + 10);
    d.size = le32(e + 12);
    d.offset = le32(e + 16);
    d.end_at = end_at;
    d.count_at = end_at + 10;

    // ZIP64: a locator right before the end record, pointing at the ZIP64 end
    // record right before it. The locator's signature may also occur in the
    // last bytes of a central directory (a local header offset of 0x07064b50
    // there): such bytes count as a locator only if they look like one, or
    // if the end record says it needs one (a field of 0xffff or 0xffffffff).
    const bool needs_zip64 = d.count == sentinel16 || d.size == sentinel32 || d.offset == sentinel32;
    bool zip64 = false;
    if (end_at >= zip64_locator_size + zip64_end_size) {
        const std::vector<unsigned char> loc = zip.bytes(zip64_locator_size, end_at - zip64_locator_size);
        const uint64_t z_at = le64(&loc[8]);
        zip64 = le32(&loc[0]) == zip64_locator_signature &&
                (needs_zip64 || (le32(&loc[4]) == 0 && le32(&loc[16]) == 1 && z_at <= end_at - zip64_locator_size - zip64_end_size &&
                                 le32(&zip.bytes(4, z_at)[0]) == zip64_end_signature));
    }
    if (zip64) {
        const uint64_t loc_at = end_at - zip64_locator_size;
        const std::vector<unsigned char> loc = zip.bytes(zip64_locator_size, loc_at);
        if (le32(&loc[4]) != 0 || le32(&loc[16]) != 1)
            zip.error(loc_at + 4, "the ZIP64 locator describes a split archive (disk ", le32(&loc[4]), " of ",
                      le32(&loc[16]), "), which is not supported");
        const uint64_t z_at = le64(&loc[8]);
        if (z_at > loc_at || loc_at - z_at < zip64_end_size)
            zip.error(loc_at + 8, "the ZIP64 locator puts the ZIP64 end record at byte ", z_at,
                      ", which leaves no room for it before the locator at byte ", loc_at);
        const std::vector<unsigned char> z = zip.bytes(zip64_end_size, z_at);
        if (le32(&z[0]) != zip64_end_signature)
            zip.error(z_at, "expected the ZIP64 end of central directory record (", signature_text(zip64_end_signature),
                      "), found ", signature_text(le32(&z[0])));
        const uint64_t record = le64(&z[4]);
        if (record < zip64_end_size - 12 || record != loc_at - z_at - 12)
            zip.error(z_at + 4, "the ZIP64 end record declares ", record, " bytes after its size field, but the locator at byte ",
                      loc_at, " leaves ", loc_at - z_at - 12);
        if (le32(&z[16]) != 0 || le32(&z[20]) != 0)
            zip.error(z_at + 16, "the ZIP64 end record describes a split archive, which is not supported");
        if (le64(&z[24]) != le64(&z[32]))
            zip.error(z_at + 24, "the ZIP64 end record counts ", le64(&z[24]), " entries on this disk but ", le64(&z[32]),
                      " in all");
        // The end record holds each value, or 0xffff(ffff) where it does not fit.
        const uint64_t count = le64(&z[32]), dsize = le64(&z[40]), offset = le64(&z[48]);
        if (d.count != count && d.count != sentinel16)
            zip.error(end_at + 10, "the end record counts ", d.count, " entries, the ZIP64 end record ", count);
        if (d.size != dsize && d.size != sentinel32)
            zip.error(end_at + 12, "the end record gives the central directory ", d.size, " bytes, the ZIP64 end record ",
                      dsize);
        if (d.offset != offset && d.offset != sentinel32)
            zip.error(end_at + 16, "the end record puts the central directory at byte ", d.offset,
                      ", the ZIP64 end record at byte ", offset);
        d.count = count;
        d.size = dsize;
        d.offset = offset;
        d.end_at = z_at;
        d.count_at = z_at + 32;
    }
    if (d.offset > d.end_at)
        zip.error(d.end_at == end_at ? end_at + 16 : d.end_at + 48, "the central directory is said to start at byte ",
                  d.offset, ", past the end record at byte ", d.end_at);
    if (d.size != d.end_at - d.offset)
        zip.error(d.end_at == end_at ? end_at + 12 : d.end_at + 40, "the central directory of ", d.size,
                  " bytes from byte ", d.offset, " does not end where the end record begins (byte ", d.end_at, ")");
    if (d.count > d.size / central_size)
        zip.error(d.count_at, "the end record counts ", d.count, " entries, more than a central directory of ", d.size,
                  " bytes holds (each takes at least ", central_size, ")");
    return d;
}

std::vector<Member> read_directory(const Archive& zip, const Directory& d)
{
    const std::vector<unsigned char> cd = zip.bytes(d.size, d.offset);
    std::vector<Member> members;
    members.reserve(size_t(d.count));
    std::map<std::string, size_t> keys;
    size_t pos = 0;
    for (uint64_t i = 0; i < d.count; ++i) {
        const uint64_t at = d.offset + pos;
        if (cd.size() - pos < central_size)
            zip.error(at, "the central directory ends inside the record of entry ", i, " (of ", d.count, ")");
        const unsigned char* c = &cd[pos];
        if (le32(c) != central_signature)
            zip.error(at, "expected the central directory record of entry ", i, " (", signature_text(central_signature),
                      "), found ", signature_text(le32(c)));
        const size_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
        if (name_len + extra_len + comment_len > cd.size() - pos - central_size)
            zip.error(at + 28, "the name, extra field and comment of entry ", i, " (", name_len + extra_len + comment_len,
                      " bytes) run past the end of the central directory at byte ", d.offset + d.size);
        Member m;
        m.central_at = at;
        m.name.assign(reinterpret_cast<const char*>(c + central_size), name_len);
        m.label = "member " + quote(m.name);
        m.flags = le16(c + 8);
        m.method = le16(c + 10);
        m.crc = le32(c + 16);
        m.csize = le32(c + 20);
        m.usize = le32(c + 24);
        m.offset = le32(c + 42);
        if (m.flags & (flag_encrypted | flag_strong_encryption))
            zip.error(at + 8, m.label, " is encrypted, which is not supported");
        if (m.flags & ~flags_read)
            zip.error(at + 8, m.label, " has general purpose flags ", hex(m.flags, 4), " (", hex(m.flags & ~flags_read, 4),
                      " are not supported)");
        if (m.method != stored && m.method != deflated)
            zip.error(at + 10, m.label, " uses compression method ", m.method, " (", method_name(m.method),
                      "); only stored (0) and deflated (8) members are read");
        if (le16(c + 34) != 0) zip.error(at + 34, m.label, " starts on disk ", le16(c + 34), ": split archives are not supported");
        const uint64_t extra_at = at + central_size + name_len;
        size_t z_len = 0, used = 0;
        const unsigned char* z64 = zip64_extra(zip, c + central_size + name_len, extra_len, extra_at, m.label, z_len);
        // In the ZIP64 field, the values whose 32-bit field is 0xffffffff, in this order.
        if (m.usize == sentinel32) m.usize = zip64_value(zip, z64, z_len, used, at + 24, m.label, "size");
        if (m.csize == sentinel32) m.csize = zip64_value(zip, z64, z_len, used, at + 20, m.label, "compressed size");
        if (m.offset == sentinel32) m.offset = zip64_value(zip, z64, z_len, used, at + 42, m.label, "local header offset");
        if (m.method == stored && m.csize != m.usize)
            zip.error(at + 20, m.label, " is stored, but its compressed size ", m.csize, " differs from its size ", m.usize);
        if (m.method == deflated && static_cast<unsigned __int128>(m.csize) * max_deflate_ratio < m.usize)
            zip.error(at + 24, m.label, " declares ", m.usize, " bytes inflated from ", m.csize,
                      " compressed bytes, more than deflate can produce (", max_deflate_ratio,
                      " to 1): a zip bomb or a damaged size");

        const uint64_t name_at = at + central_size;
        if (m.name.size() < 4 || m.name.compare(m.name.size() - 4, 4, ".npy") != 0)
            zip.error(name_at, m.label, " is not an .npy file (its name does not end in '.npy')");
        const std::string key = m.name.substr(0, m.name.size() - 4);
        if (std::string why = bad_name(key); !why.empty())
            zip.error(name_at, m.label, ": the array name ", quote(key), " ", why);
        if (auto [it, fresh] = keys.emplace(key, size_t(i)); !fresh)
            zip.error(name_at, m.label, " repeats the name of entry ", it->second);
        members.push_back(std::move(m));
        pos += central_size + name_len + extra_len + comment_len;
    }
    if (pos != cd.size())
        zip.error(d.offset + pos, cd.size() - pos, " unexpected bytes after the last of the ", d.count,
                  " central directory records");
    return members;
}

// Checks each member's local header (and data descriptor) against the
// central directory, and that the members lie back to back from byte 0 up to
// the central directory: no gap, no overlap, nothing hidden in between.
void check_layout(const Archive& zip, std::vector<Member>& members, const Directory& d)
{
    uint64_t expected = 0;
    for (size_t i = 0; i < members.size(); ++i) {
        Member& m = members[i];
        if (m.offset != expected)
            zip.error(m.central_at + 42, m.label, " has its local header at byte ", m.offset, ", but ",
                      i == 0 ? std::string("the first member must start the archive, at byte 0")
                             : "the member before it ends at byte " + std::to_string(expected),
                      " (members lie back to back in central directory order)");
        const uint64_t at = m.offset, room = d.offset - at;
        if (room < local_size)
            zip.error(at, "the local header of ", m.label, " (", local_size, " bytes) runs into the central directory at byte ",
                      d.offset);
        const std::vector<unsigned char> h = zip.bytes(local_size, at);
        if (le32(&h[0]) != local_signature)
            zip.error(at, "expected the local header of ", m.label, " (", signature_text(local_signature), "), found ",
                      signature_text(le32(&h[0])));
        if (le16(&h[6]) != m.flags)
            zip.error(at + 6, "the local header of ", m.label, " has flags ", hex(le16(&h[6]), 4),
                      ", the central directory ", hex(m.flags, 4));
        if (le16(&h[8]) != m.method)
            zip.error(at + 8, "the local header of ", m.label, " has compression method ", le16(&h[8]),
                      ", the central directory ", m.method);
        const uint64_t name_len = le16(&h[26]), extra_len = le16(&h[28]);
        if (name_len + extra_len > room - local_size)
            zip.error(at + 26, "the name and extra field of ", m.label, "'s local header (", name_len + extra_len,
                      " bytes) run into the central directory at byte ", d.offset);
        const std::vector<unsigned char> rest = zip.bytes(name_len + extra_len, at + local_size);
        if (std::string_view(reinterpret_cast<const char*>(rest.data()), name_len) != m.name)
            zip.error(at + local_size, "the local header names ",
                      quote(std::string(reinterpret_cast<const char*>(rest.data()), name_len)), ", the central directory ",
                      m.name.empty() ? "''" : quote(m.name));
        const std::string whose = "the local header of " + m.label;
        size_t z_len = 0;
        const unsigned char* z64 = zip64_extra(zip, rest.data() + name_len, extra_len, at + local_size + name_len, whose, z_len);
        // A local ZIP64 field holds both sizes, whichever 32-bit field is
        // 0xffffffff (np.savez writes one in every local header).
        const uint64_t usize = le32(&h[22]), csize = le32(&h[18]);
        const bool z64_sizes = z64 && z_len >= 16;
        if ((usize == sentinel32 || csize == sentinel32) && !z64_sizes)
            zip.error(at + 18, whose, ": a size is 0xffffffff, but there is no ZIP64 extra field holding both sizes");
        // With a data descriptor, the local values may be zeros.
        const bool later = m.flags & flag_descriptor;
        auto agree = [&](uint64_t local, uint64_t central, uint64_t field_at, const char* what) {
            if (local != central && !(later && local == 0))
                zip.error(field_at, whose, " gives its ", what, " as ", local, ", the central directory as ", central);
        };
        const uint32_t crc = le32(&h[14]);
        if (crc != m.crc && !(later && crc == 0))
            zip.error(at + 14, whose, " gives its CRC-32 as ", hex(crc, 8), ", the central directory as ", hex(m.crc, 8));
        if (csize != sentinel32) agree(csize, m.csize, at + 18, "compressed size");
        if (usize != sentinel32) agree(usize, m.usize, at + 22, "size");
        if (z64_sizes) {
            const uint64_t z_at = at + local_size + uint64_t(z64 - rest.data());
            agree(le64(z64), m.usize, z_at, "size in its ZIP64 field");
            agree(le64(z64 + 8), m.csize, z_at + 8, "compressed size in its ZIP64 field");
        }
        m.data_at = at + local_size + name_len + extra_len;
        if (m.csize > d.offset - m.data_at)
            zip.error(m.data_at, "the ", m.csize, " bytes of data of ", m.label, " run into the central directory at byte ",
                      d.offset);
        expected = m.data_at + m.csize;
        if (later) {
            // zipfile's: signature, CRC, sizes of 8 bytes when the local header has a ZIP64 field.
            const uint64_t len = z64 ? 24 : 16;
            if (len > d.offset - expected)
                zip.error(expected, "the ", len, "-byte data descriptor of ", m.label, " runs into the central directory at byte ",
                          d.offset);
            const std::vector<unsigned char> dd = zip.bytes(len, expected);
            if (le32(&dd[0]) != descriptor_signature)
                zip.error(expected, "expected the data descriptor of ", m.label, " (", signature_text(descriptor_signature),
                          "), found ", signature_text(le32(&dd[0])), " (descriptors without a signature are not read)");
            const std::string desc = "the data descriptor of " + m.label;
            const int w = z64 ? 8 : 4;
            const uint64_t dcrc = le32(&dd[4]), dcsize = le(&dd[8], w), dusize = le(&dd[8 + w], w);
            if (dcrc != m.crc)
                zip.error(expected + 4, desc, " gives its CRC-32 as ", hex(dcrc, 8), ", the central directory as ", hex(m.crc, 8));
            if (dcsize != m.csize)
                zip.error(expected + 8, desc, " gives its compressed size as ", dcsize, ", the central directory as ", m.csize);
            if (dusize != m.usize)
                zip.error(expected + 8 + w, desc, " gives its size as ", dusize, ", the central directory as ", m.usize);
            expected += len;
        }
    }
    if (expected != d.offset)
        zip.error(expected, d.offset - expected, " unexpected bytes between the ", members.empty() ? "start of the file" : "last member",
                  " and the central directory at byte ", d.offset);
}

// A member's bytes, read in order and checked against its CRC-32.
class MemberInput : public detail::NpyInput {
public:
    MemberInput(const Archive& zip, const Member& m) : zip_(zip), m_(m) {}
    void read(void* dst, uint64_t n, const char* what) override
    {
        if (n > m_.usize - delivered_)
            zip_.error(m_.data_at, m_.label, ": reading ", what, " past the member's ", m_.usize, " bytes");
        unsigned char* p = static_cast<unsigned char*>(dst);
        for (uint64_t left = n; left > 0;) {
            const size_t take = size_t(std::min<uint64_t>(left, uint64_t(1) << 30));
            produce(p, take);
            crc_ = crc32_z(crc_, p, take);
            delivered_ += take;
            p += take;
            left -= take;
        }
    }
    // Reads what the parser left, to check the CRC of the whole member.
    void drain()
    {
        unsigned char scratch[io_chunk];
        while (delivered_ < m_.usize) read(scratch, std::min<uint64_t>(sizeof scratch, m_.usize - delivered_), "the rest");
    }
    // Once all of the member has been read: its end and its CRC-32.
    virtual void finish()
    {
        if (uint32_t(crc_) != m_.crc)
            zip_.error(m_.data_at, m_.label, ": CRC-32 mismatch: the archive records ", hex(m_.crc, 8), ", the data gives ",
                       hex(uint32_t(crc_), 8), "; the member is corrupted");
    }

protected:
    virtual void produce(unsigned char* p, size_t n) = 0;
    const Archive& zip_;
    const Member& m_;
    uint64_t delivered_ = 0;
    uLong crc_ = crc32_z(0, nullptr, 0);
};

class StoredInput : public MemberInput {
public:
    using MemberInput::MemberInput;

private:
    void produce(unsigned char* p, size_t n) override { zip_.read(p, n, m_.data_at + delivered_); }
};

class InflateInput : public MemberInput {
public:
    InflateInput(const Archive& zip, const Member& m) : MemberInput(zip, m), in_(size_t(std::min<uint64_t>(m.csize, io_chunk)) + 1)
    {
        if (inflateInit2(&z_, -MAX_WBITS) != Z_OK) fail("load_npz: zlib cannot start inflating");
    }
    ~InflateInput() override { inflateEnd(&z_); }
    InflateInput(const InflateInput&) = delete;
    InflateInput& operator=(const InflateInput&) = delete;

    void finish() override
    {
        // Nothing more may come out, and the stream must end with the member's data.
        unsigned char extra[64];
        while (!ended_) {
            const size_t got = inflate_some(extra, sizeof extra);
            if (got > 0)
                zip_.error(m_.data_at, m_.label, " inflates to more than the ", m_.usize,
                           " bytes the archive records (a zip bomb or a damaged size)");
        }
        const uint64_t left = m_.csize - consumed();
        if (left > 0)
            zip_.error(m_.data_at + consumed(), m_.label, ": ", left, " of its ", m_.csize,
                       " compressed bytes follow the end of the deflate stream");
        MemberInput::finish();
    }

private:
    uint64_t consumed() const { return read_ - z_.avail_in; }

    void produce(unsigned char* p, size_t n) override
    {
        for (size_t done = 0; done < n;) {
            if (ended_)
                zip_.error(m_.data_at, m_.label, " inflates to only ", delivered_ + done, " bytes, but the archive records ",
                           m_.usize);
            done += inflate_some(p + done, n - done);
        }
    }

    size_t inflate_some(unsigned char* out, size_t n)
    {
        if (z_.avail_in == 0 && read_ < m_.csize) {
            const size_t take = size_t(std::min<uint64_t>(in_.size(), m_.csize - read_));
            zip_.read(in_.data(), take, m_.data_at + read_);
            read_ += take;
            z_.next_in = in_.data();
            z_.avail_in = uInt(take);
        }
        z_.next_out = out;
        z_.avail_out = uInt(std::min<size_t>(n, size_t(1) << 30));
        const uInt before = z_.avail_out;
        const int r = inflate(&z_, Z_NO_FLUSH);
        const size_t got = before - z_.avail_out;
        if (r == Z_STREAM_END) {
            ended_ = true;
        } else if (r == Z_BUF_ERROR || (r == Z_OK && got == 0 && z_.avail_in == 0)) {
            if (z_.avail_in == 0 && read_ == m_.csize)
                zip_.error(m_.data_at + m_.csize, m_.label, ": the deflate stream is cut short: its ", m_.csize,
                           " compressed bytes end before the stream does");
        } else if (r != Z_OK) {
            zip_.error(m_.data_at + consumed(), m_.label, ": corrupt deflate data (zlib: ",
                       z_.msg ? z_.msg : "error " + std::to_string(r), ")");
        }
        return got;
    }

    z_stream z_{};
    std::vector<unsigned char> in_;
    uint64_t read_ = 0;  // compressed bytes taken from the file
    bool ended_ = false;
};

Tensor decode(const Member& m, MemberInput& in, const detail::NpyPlace& place)
{
    Tensor t;
    try {
        t = detail::parse_npy(in, m.usize, place);
    } catch (const Error&) {
        // A member that is damaged rather than not an .npy says so: its CRC-32
        // (or its deflate stream) fails, and that error replaces this one.
        in.drain();
        in.finish();
        throw;
    }
    in.finish();
    return t;
}

}  // namespace

namespace detail {

void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& named, bool compressed,
              uint64_t zip64_limit)
{
    std::map<std::string, size_t> seen;
    for (size_t i = 0; i < named.size(); ++i) {
        const auto& [name, t] = named[i];
        const auto entry = [&] { return "save_npz: " + quote(path) + ": argument named, entry " + std::to_string(i); };
        if (std::string why = bad_name(name); !why.empty()) fail(entry(), ": the name ", quote(name), " ", why);
        TG_CHECK(name.size() <= max_name_size, entry(), ": the name has ", name.size(), " bytes; a member name holds at most ",
                 max_name_size, " before '.npy'");
        if (auto [it, fresh] = seen.emplace(name, i); !fresh)
            fail(entry(), ": the name ", quote(name), " repeats entry ", it->second, "'s");
        TG_CHECK(t.defined(), entry(), " (", quote(name), "): the tensor is undefined");
    }

    const std::string tmp = temporary_name(path);
    try {
        ArchiveWriter out(tmp);
        std::vector<Written> members(named.size());
        for (size_t i = 0; i < named.size(); ++i) {
            Written& m = members[i];
            m.name = named[i].first + ".npy";
            // zipfile marks names that are not ASCII as UTF-8.
            if (std::any_of(m.name.begin(), m.name.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
                m.flags |= flag_utf8;
            write_member(out, m, named[i].second, compressed, zip64_limit);
        }
        const uint64_t cd_offset = out.offset();
        for (const Written& m : members) out.write(central_header(m, zip64_limit));
        const uint64_t cd_size = out.offset() - cd_offset, count = members.size();
        std::string end;
        if (count > sentinel16 || cd_offset > zip64_limit || cd_size > zip64_limit) {
            const uint64_t z_at = out.offset();
            put32(end, zip64_end_signature);
            put64(end, zip64_end_size - 12);
            put16(end, 45);
            put16(end, 45);
            put32(end, 0);
            put32(end, 0);
            put64(end, count);
            put64(end, count);
            put64(end, cd_size);
            put64(end, cd_offset);
            put32(end, zip64_locator_signature);
            put32(end, 0);
            put64(end, z_at);
            put32(end, 1);
        }
        put32(end, end_signature);
        put16(end, 0);
        put16(end, 0);
        put16(end, std::min<uint64_t>(count, sentinel16));
        put16(end, std::min<uint64_t>(count, sentinel16));
        put32(end, std::min<uint64_t>(cd_size, sentinel32));
        put32(end, std::min<uint64_t>(cd_offset, sentinel32));
        put16(end, 0);
        out.write(end);
        // Synced before the rename, so `path` names the old file or the whole new one, even across a crash.
        out.sync_and_close();
        replace_with_temporary("save_npz", tmp, path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

}  // namespace detail

void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& named, bool compressed)
{
    detail::save_npz(path, named, compressed, zipfile_zip64_limit);
}

std::vector<std::pair<std::string, Tensor>> load_npz(const std::string& path)
{
    const Archive zip(path);
    const Directory d = find_directory(zip);
    std::vector<Member> members = read_directory(zip, d);
    // The whole layout is checked before any member is inflated or allocated.
    check_layout(zip, members, d);

    std::vector<std::pair<std::string, Tensor>> out;
    out.reserve(members.size());
    for (const Member& m : members) {
        const std::string key = m.name.substr(0, m.name.size() - 4);
        Tensor t;
        if (m.method == stored) {
            StoredInput in(zip, m);
            t = decode(m, in, {"load_npz: " + quote(path) + ": " + m.label, m.data_at, ""});
        } else {
            // A member that inflates far beyond its compressed size is inflated
            // once to check it before its tensor is allocated: a small file
            // cannot make the loader allocate what its data does not hold.
            if (m.usize > 16 * m.csize && m.usize > (uint64_t(1) << 20)) {
                InflateInput check(zip, m);
                check.drain();
                check.finish();
            }
            InflateInput in(zip, m);
            t = decode(m, in,
                       {"load_npz: " + quote(path) + ": " + m.label + " (deflated, its data from byte " +
                            std::to_string(m.data_at) + ")",
                        0, " of the inflated member"});
        }
        out.emplace_back(key, std::move(t));
    }
    return out;
}

}  // namespace tg
