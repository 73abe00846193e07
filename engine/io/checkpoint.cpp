#include "engine/io/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "engine/core/autograd.hpp"
#include "engine/io/temporary_file.hpp"

namespace tg {

static_assert(std::endian::native == std::endian::little,
              "the checkpoint format stores little-endian data; this host is big-endian");

namespace {

constexpr char magic[8] = {'T', 'G', 'C', 'K', 'P', 'T', '\0', '\n'};
constexpr uint32_t max_name_length = 4096;
constexpr uint32_t max_rank = 64;
// The smallest entry record: name length, a 1-byte name, kind, dtype, reserved, rank, offset, size.
constexpr uint64_t min_record_size = 4 + 1 + 1 + 1 + 2 + 4 + 8 + 8;
constexpr size_t generator_bytes = 4 * 8 + 1 + 8;

uint8_t dtype_code(Dtype d) { return d == Dtype::float32 ? 0 : d == Dtype::float64 ? 1 : 2; }

std::string hex32(uint32_t v)
{
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

// --- encoding ------------------------------------------------------------------

template <class T> void put(std::vector<uint8_t>& out, T v)
{
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.insert(out.end(), b, b + sizeof(T));
}

// Data of one entry, as bytes to write.
std::pair<const void*, uint64_t> entry_data(const Checkpoint& ckpt, const std::string& name,
                                            int64_t& scratch_i, double& scratch_d)
{
    switch (ckpt.kind(name)) {
    case Checkpoint::Kind::tensor: {
        Tensor t = ckpt.tensor(name);
        return {t.raw_data(), uint64_t(t.numel()) * dtype_size(t.dtype())};
    }
    case Checkpoint::Kind::int64: scratch_i = ckpt.get_int(name); return {&scratch_i, 8};
    case Checkpoint::Kind::float64: scratch_d = ckpt.get_double(name); return {&scratch_d, 8};
    case Checkpoint::Kind::bytes: {
        const auto& b = ckpt.bytes(name);
        return {b.data(), b.size()};
    }
    }
    return {nullptr, 0};
}

class FileWriter {
public:
    FileWriter(const std::string& path) : path_(path)
    {
        // O_EXCL: never write into a file someone else created under the name.
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd_ < 0) fail_errno("cannot create");
    }
    ~FileWriter()
    {
        if (fd_ >= 0) ::close(fd_);
    }
    void write(const void* data, uint64_t n)
    {
        // Skip empty pieces: crc32 of a null buffer restarts the checksum.
        if (n == 0) return;
        crc_ = crc32_z(crc_, static_cast<const Bytef*>(data), size_t(n));
        raw_write(data, n);
    }
    void write_crc()
    {
        uint32_t c = uint32_t(crc_);
        raw_write(&c, 4);
    }
    void sync_and_close()
    {
        if (::fsync(fd_) != 0) fail_errno("cannot flush to disk");
        int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) fail_errno("cannot close");
    }

private:
    void raw_write(const void* data, uint64_t n)
    {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            ssize_t w = ::write(fd_, p, size_t(std::min<uint64_t>(n, 1u << 30)));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) fail_errno("cannot write");
            p += w;
            n -= uint64_t(w);
        }
    }
    [[noreturn]] void fail_errno(const char* what)
    {
        fail("save_checkpoint: ", what, " ", quote(path_), ": ", std::strerror(errno));
    }
    std::string path_;
    int fd_ = -1;
    uLong crc_ = crc32_z(0, nullptr, 0);
};

// --- decoding --------------------------------------------------------------------

// Reads the file front to back, keeping the offset for messages and the CRC
// of everything read.
class FileReader {
public:
    explicit FileReader(const std::string& path) : path_(path)
    {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) fail("load_checkpoint: cannot open ", quote(path), ": ", std::strerror(errno));
        struct stat st;
        if (::fstat(fd_, &st) != 0) fail("load_checkpoint: cannot stat ", quote(path), ": ", std::strerror(errno));
        TG_CHECK(S_ISREG(st.st_mode), "load_checkpoint: ", quote(path), " is not a regular file");
        size_ = uint64_t(st.st_size);
    }
    ~FileReader() { ::close(fd_); }
    FileReader(const FileReader&) = delete;
    FileReader& operator=(const FileReader&) = delete;

    // Reads n bytes the caller already knows the file holds, or fails naming `what`.
    void read(void* out, uint64_t n, const std::string& what)
    {
        if (n > size_ - offset_)
            error(offset_, "truncated: the file ends at byte offset ", size_, " while reading ", what, " (",
                  n, " bytes)");
        char* p = static_cast<char*>(out);
        uint64_t left = n;
        while (left > 0) {
            ssize_t r = ::read(fd_, p, size_t(std::min<uint64_t>(left, 1u << 30)));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) error(offset_, "read error: ", std::strerror(errno));
            if (r == 0) error(offset_, "the file shrank while being read");
            p += r;
            left -= uint64_t(r);
        }
        if (n > 0) crc_ = crc32_z(crc_, reinterpret_cast<const Bytef*>(out), size_t(n));
        offset_ += n;
    }
    template <class T> T get(const std::string& what)
    {
        T v;
        read(&v, sizeof(T), what);
        return v;
    }

    template <class... Args> [[noreturn]] void error(uint64_t offset, const Args&... args) const
    {
        fail("load_checkpoint: ", quote(path_), ": ", args..., " (at byte offset ", offset, ")");
    }

    uint64_t offset() const { return offset_; }
    uint64_t size() const { return size_; }
    uint32_t crc() const { return uint32_t(crc_); }

private:
    std::string path_;
    int fd_ = -1;
    uint64_t size_ = 0;
    uint64_t offset_ = 0;
    uLong crc_ = crc32_z(0, nullptr, 0);
};

struct Record {
    std::string name;
    Checkpoint::Kind kind;
    Dtype dtype = Dtype::float32;
    shape_type shape;
    uint64_t offset = 0, nbytes = 0;
    uint64_t record_offset = 0;
};

Record read_record(FileReader& in, size_t index)
{
    Record r;
    r.record_offset = in.offset();
    const std::string which = "entry " + std::to_string(index);
    uint64_t at = in.offset();
    uint32_t len = in.get<uint32_t>(which + "'s name length");
    if (len == 0 || len > max_name_length)
        in.error(at, which, " has a name length of ", len, " (must be 1 to ", max_name_length, ")");
    r.name.resize(len);
    in.read(r.name.data(), len, which + "'s name");
    const std::string named = "entry " + std::to_string(index) + " " + quote(r.name);

    at = in.offset();
    uint8_t kind = in.get<uint8_t>(named + "'s kind");
    if (kind > 3) in.error(at, named, " has an unknown kind ", int(kind), " (0 tensor, 1 int64, 2 float64, 3 bytes)");
    r.kind = Checkpoint::Kind(kind);
    at = in.offset();
    uint8_t dtype = in.get<uint8_t>(named + "'s dtype");
    if (dtype > 2) in.error(at, named, " has an unknown dtype code ", int(dtype), " (0 float32, 1 float64, 2 int64)");
    r.dtype = dtype == 0 ? Dtype::float32 : dtype == 1 ? Dtype::float64 : Dtype::int64;
    at = in.offset();
    if (in.get<uint16_t>(named + "'s reserved field") != 0) in.error(at, named, " has a non-zero reserved field");
    at = in.offset();
    uint32_t rank = in.get<uint32_t>(named + "'s rank");
    if (rank > max_rank) in.error(at, named, " has rank ", rank, " (at most ", max_rank, ")");
    if (r.kind != Checkpoint::Kind::tensor && (rank != 0 || dtype != 0))
        in.error(at, named, " is a ", checkpoint_kind_name(r.kind), " but has a rank or dtype set");
    uint64_t numel = 1;
    bool overflow = false;
    at = in.offset();
    for (uint32_t i = 0; i < rank; ++i) {
        int64_t d = in.get<int64_t>(named + "'s sizes");
        if (d < 0) in.error(at + 8 * i, named, " has a negative size ", d);
        r.shape.push_back(d);
        overflow = overflow || __builtin_mul_overflow(numel, uint64_t(d), &numel);
    }
    if (overflow || numel > uint64_t(INT64_MAX) / 8)
        in.error(at, named, " has sizes ", shape_str(r.shape), " whose product overflows");
    r.offset = in.get<uint64_t>(named + "'s data offset");
    uint64_t at_size = in.offset();
    r.nbytes = in.get<uint64_t>(named + "'s data size");
    uint64_t expected = 0;
    switch (r.kind) {
    case Checkpoint::Kind::tensor: expected = numel * dtype_size(r.dtype); break;
    case Checkpoint::Kind::int64:
    case Checkpoint::Kind::float64: expected = 8; break;
    case Checkpoint::Kind::bytes: expected = r.nbytes; break;
    }
    if (r.nbytes != expected)
        in.error(at_size, named, " declares ", r.nbytes, " bytes of data but its ",
                 r.kind == Checkpoint::Kind::tensor ? std::string(dtype_name(r.dtype)) + " " + shape_str(r.shape)
                                                    : std::string(checkpoint_kind_name(r.kind)),
                 " needs ", expected);
    return r;
}

}  // namespace

const char* checkpoint_kind_name(Checkpoint::Kind kind)
{
    switch (kind) {
    case Checkpoint::Kind::tensor: return "tensor";
    case Checkpoint::Kind::int64: return "int64";
    case Checkpoint::Kind::float64: return "float64";
    case Checkpoint::Kind::bytes: return "bytes";
    }
    return "?";
}

// --- Checkpoint ------------------------------------------------------------------

std::string Checkpoint::label() const
{
    return source_.empty() ? std::string("checkpoint") : "checkpoint " + quote(source_);
}

void Checkpoint::set_tensor(const std::string& name, const Tensor& t)
{
    TG_CHECK(!name.empty() && name.size() <= max_name_length, "Checkpoint::set_tensor: the name must have 1 to ",
             max_name_length, " bytes, got ", name.size());
    TG_CHECK(t.defined(), "Checkpoint::set_tensor: ", quote(name), " is an undefined tensor");
    Entry e;
    e.kind = Kind::tensor;
    e.tensor = t.detach().clone();
    entries_[name] = std::move(e);
}

void Checkpoint::set_tensors(const std::string& prefix, const named_tensors& tensors)
{
    for (const auto& [name, t] : tensors) set_tensor(prefix + name, t);
}

void Checkpoint::set_int(const std::string& name, int64_t value)
{
    TG_CHECK(!name.empty() && name.size() <= max_name_length, "Checkpoint::set_int: the name must have 1 to ",
             max_name_length, " bytes, got ", name.size());
    Entry e;
    e.kind = Kind::int64;
    e.int_value = value;
    entries_[name] = std::move(e);
}

void Checkpoint::set_double(const std::string& name, double value)
{
    TG_CHECK(!name.empty() && name.size() <= max_name_length, "Checkpoint::set_double: the name must have 1 to ",
             max_name_length, " bytes, got ", name.size());
    Entry e;
    e.kind = Kind::float64;
    e.double_value = value;
    entries_[name] = std::move(e);
}

void Checkpoint::set_bytes(const std::string& name, std::vector<uint8_t> bytes)
{
    TG_CHECK(!name.empty() && name.size() <= max_name_length, "Checkpoint::set_bytes: the name must have 1 to ",
             max_name_length, " bytes, got ", name.size());
    Entry e;
    e.kind = Kind::bytes;
    e.bytes = std::move(bytes);
    entries_[name] = std::move(e);
}

void Checkpoint::set_generator(const std::string& name, const Generator& gen)
{
    Generator::State st = gen.state();
    std::vector<uint8_t> b;
    for (uint64_t s : st.s) put(b, s);
    put(b, uint8_t(st.has_spare ? 1 : 0));
    put(b, st.spare);
    set_bytes(name, std::move(b));
}

const Checkpoint::Entry& Checkpoint::entry(const std::string& name, Kind kind) const
{
    auto it = entries_.find(name);
    TG_CHECK(it != entries_.end(), label(), ": no entry ", quote(name));
    TG_CHECK(it->second.kind == kind, label(), ": entry ", quote(name), " is a ", checkpoint_kind_name(it->second.kind),
             ", not a ", checkpoint_kind_name(kind));
    return it->second;
}

Checkpoint::Kind Checkpoint::kind(const std::string& name) const
{
    auto it = entries_.find(name);
    TG_CHECK(it != entries_.end(), label(), ": no entry ", quote(name));
    return it->second.kind;
}

Tensor Checkpoint::tensor(const std::string& name) const { return entry(name, Kind::tensor).tensor; }
int64_t Checkpoint::get_int(const std::string& name) const { return entry(name, Kind::int64).int_value; }
double Checkpoint::get_double(const std::string& name) const { return entry(name, Kind::float64).double_value; }
const std::vector<uint8_t>& Checkpoint::bytes(const std::string& name) const
{
    return entry(name, Kind::bytes).bytes;
}

void Checkpoint::get_generator(const std::string& name, Generator& gen) const
{
    const std::vector<uint8_t>& b = bytes(name);
    TG_CHECK(b.size() == generator_bytes, label(), ": entry ", quote(name), " holds ", b.size(),
             " bytes, a generator state has ", generator_bytes);
    Generator::State st;
    std::memcpy(st.s, b.data(), 32);
    TG_CHECK(b[32] <= 1, label(), ": entry ", quote(name), " is not a generator state (has_spare byte ", int(b[32]), ")");
    st.has_spare = b[32] == 1;
    std::memcpy(&st.spare, b.data() + 33, 8);
    TG_CHECK(st.s[0] | st.s[1] | st.s[2] | st.s[3], label(), ": entry ", quote(name),
             " holds the all-zero generator state, which is invalid");
    gen.set_state(st);
}

std::vector<std::string> Checkpoint::names() const
{
    std::vector<std::string> out;
    for (const auto& [name, e] : entries_) out.push_back(name);
    return out;
}

named_tensors Checkpoint::tensors(const std::string& prefix) const
{
    named_tensors out;
    for (const auto& [name, e] : entries_)
        if (e.kind == Kind::tensor && name.compare(0, prefix.size(), prefix) == 0)
            out.emplace_back(name.substr(prefix.size()), e.tensor);
    return out;
}

void Checkpoint::load_into(const named_tensors& targets, const std::string& prefix, const std::string& what) const
{
    std::vector<std::string> problems;
    std::set<std::string> wanted;
    for (const auto& [name, t] : targets) {
        if (!wanted.insert(name).second) {
            problems.push_back("the model lists " + what + " " + quote(name) + " twice");
            continue;
        }
        auto it = entries_.find(prefix + name);
        if (it == entries_.end()) {
            problems.push_back(what + " " + quote(name) + " is missing from the file");
            continue;
        }
        const Entry& e = it->second;
        if (e.kind != Kind::tensor) {
            problems.push_back(what + " " + quote(name) + " is a " + checkpoint_kind_name(e.kind) +
                               " in the file, not a tensor");
            continue;
        }
        if (e.tensor.shape() != t.shape())
            problems.push_back(what + " " + quote(name) + " has shape " + shape_str(e.tensor.shape()) +
                               " in the file but " + shape_str(t.shape()) + " in the model");
        else if (e.tensor.dtype() != t.dtype())
            problems.push_back(what + " " + quote(name) + " has dtype " + dtype_name(e.tensor.dtype()) +
                               " in the file but " + dtype_name(t.dtype()) + " in the model");
    }
    for (const auto& [name, e] : entries_) {
        if (e.kind != Kind::tensor || name.compare(0, prefix.size(), prefix) != 0) continue;
        std::string local = name.substr(prefix.size());
        if (!wanted.count(local))
            problems.push_back("the file has " + what + " " + quote(local) + " that the model does not have");
    }
    if (!problems.empty()) {
        fail(label(), ": ", list_problems(problems));
    }
    NoGradGuard no_grad;
    for (const auto& [name, t] : targets) {
        Tensor target = t;
        target.copy_(entries_.at(prefix + name).tensor);
    }
}

// --- saving ------------------------------------------------------------------------

void save_checkpoint(const std::string& path, const Checkpoint& ckpt)
{
    // The entry table, with every data offset.
    std::vector<uint8_t> head(magic, magic + 8);
    put(head, checkpoint_version);
    put(head, uint32_t(ckpt.entries_.size()));
    uint64_t table_size = 0;
    for (const auto& [name, e] : ckpt.entries_)
        table_size += 4 + name.size() + 4 + 4 + (e.kind == Checkpoint::Kind::tensor ? 8 * e.tensor.dim() : 0) + 16;
    uint64_t offset = head.size() + table_size;
    for (const auto& [name, e] : ckpt.entries_) {
        int64_t si;
        double sd;
        uint64_t nbytes = entry_data(ckpt, name, si, sd).second;
        put(head, uint32_t(name.size()));
        head.insert(head.end(), name.begin(), name.end());
        put(head, uint8_t(e.kind));
        put(head, uint8_t(e.kind == Checkpoint::Kind::tensor ? dtype_code(e.tensor.dtype()) : 0));
        put(head, uint16_t(0));
        if (e.kind == Checkpoint::Kind::tensor) {
            TG_CHECK(uint64_t(e.tensor.dim()) <= max_rank, "save_checkpoint: tensor ", quote(name), " has rank ",
                     e.tensor.dim(), " (at most ", max_rank, ")");
            put(head, uint32_t(e.tensor.dim()));
            for (int64_t d : e.tensor.shape()) put(head, d);
        } else {
            put(head, uint32_t(0));
        }
        put(head, offset);
        put(head, nbytes);
        offset += nbytes;
    }

    const std::string tmp = detail::temporary_name(path);
    try {
        FileWriter out(tmp);
        out.write(head.data(), head.size());
        for (const auto& [name, e] : ckpt.entries_) {
            int64_t si;
            double sd;
            auto [data, nbytes] = entry_data(ckpt, name, si, sd);
            out.write(data, nbytes);
        }
        out.write_crc();
        out.sync_and_close();
        detail::replace_with_temporary("save_checkpoint", tmp, path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

// --- loading -------------------------------------------------------------------------

Checkpoint load_checkpoint(const std::string& path)
{
    FileReader in(path);
    const uint64_t fixed = 8 + 4 + 4 + 4;  // magic, version, count, CRC
    if (in.size() < fixed)
        in.error(0, "truncated: ", in.size(), " bytes, shorter than the smallest checkpoint (", fixed, " bytes)");
    char m[8];
    in.read(m, 8, "the magic");
    if (std::memcmp(m, magic, 8) != 0) in.error(0, "not a tapegrad checkpoint: wrong magic (expected \"TGCKPT\\0\\n\")");
    uint32_t version = in.get<uint32_t>("the version");
    if (version != checkpoint_version)
        in.error(8, "format version ", version, " is not supported (this build reads version ", checkpoint_version,
                 version > checkpoint_version ? "; the file was written by a newer tapegrad)" : ")");
    uint32_t count = in.get<uint32_t>("the entry count");
    if (count > (in.size() - fixed) / min_record_size)
        in.error(12, "the entry count ", count, " cannot fit in a file of ", in.size(), " bytes");

    std::vector<Record> records;
    records.reserve(count);
    std::set<std::string> seen;
    for (uint32_t i = 0; i < count; ++i) {
        records.push_back(read_record(in, i));
        if (!seen.insert(records.back().name).second)
            in.error(records.back().record_offset, "entry ", i, " repeats the name ", quote(records.back().name));
    }
    // The data follows the table back to back; check the whole layout against
    // the file size before allocating anything.
    uint64_t expected = in.offset();
    for (const Record& r : records) {
        if (r.offset != expected)
            in.error(r.record_offset, "entry ", quote(r.name), " puts its data at byte offset ", r.offset,
                     " but the previous data ends at ", expected);
        if (r.nbytes > in.size() - std::min(in.size(), expected))
            in.error(r.offset, "truncated: entry ", quote(r.name), " needs ", r.nbytes, " bytes of data from byte offset ",
                     r.offset, " but the file is ", in.size(), " bytes long");
        expected += r.nbytes;
    }
    if (expected + 4 > in.size())
        in.error(expected, "truncated: the file is ", in.size(), " bytes, its layout needs ", expected + 4,
                 " (the data and a 4-byte checksum)");
    if (expected + 4 < in.size())
        in.error(expected + 4, in.size() - expected - 4, " unexpected bytes after the checksum");

    Checkpoint ckpt;
    for (const Record& r : records) {
        Checkpoint::Entry e;
        e.kind = r.kind;
        const std::string what = "the data of " + quote(r.name);
        switch (r.kind) {
        case Checkpoint::Kind::tensor:
            e.tensor = Tensor::empty(r.shape, r.dtype);
            in.read(e.tensor.raw_data(), r.nbytes, what);
            break;
        case Checkpoint::Kind::int64: in.read(&e.int_value, 8, what); break;
        case Checkpoint::Kind::float64: in.read(&e.double_value, 8, what); break;
        case Checkpoint::Kind::bytes:
            e.bytes.resize(r.nbytes);
            in.read(e.bytes.data(), r.nbytes, what);
            break;
        }
        ckpt.entries_[r.name] = std::move(e);
    }
    uint32_t computed = in.crc();
    uint64_t crc_at = in.offset();
    uint32_t stored = in.get<uint32_t>("the checksum");
    if (stored != computed)
        in.error(crc_at, "checksum mismatch: the file stores ", hex32(stored), " but its bytes give ", hex32(computed),
                 "; the file is corrupted");
    ckpt.source_ = path;
    return ckpt;
}

}  // namespace tg
