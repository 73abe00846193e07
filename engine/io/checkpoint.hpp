// Checkpoints: the whole state of a training run (parameters, optimizer
// buffers, counters, random generator states) in one file that is written
// atomically and checked thoroughly when read back.
//
// File format, version 1. All integers little-endian; offsets from the start
// of the file.
//
//   offset  size  field
//   0       8     magic "TGCKPT\0\n"
//   8       4     u32 format version (1)
//   12      4     u32 number of entries n
//   16      ...   n entry records, each:
//                   u32  name length L (1..4096), then L bytes of name (UTF-8)
//                   u8   kind: 0 tensor, 1 int64, 2 float64, 3 bytes
//                   u8   dtype of a tensor: 0 float32, 1 float64, 2 int64 (0 otherwise)
//                   u16  reserved, 0
//                   u32  rank r (0..64; 0 for the non-tensor kinds)
//                   r x  i64 sizes
//                   u64  offset of the entry's data
//                   u64  size of the entry's data in bytes
//           ...   the entries' data, in entry order, back to back: a tensor's
//                 elements row-major; an int64 or float64 as 8 bytes; the bytes
//   end-4   4     u32 CRC-32 (zlib's crc32) of every byte before it
//
// Names are unique. A reader rejects any other version, and any record or
// data that does not fit this layout exactly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../core/random.hpp"
#include "../core/tensor.hpp"

namespace tg {

inline constexpr uint32_t checkpoint_version = 1;

class Checkpoint {
public:
    enum class Kind : uint8_t { tensor = 0, int64 = 1, float64 = 2, bytes = 3 };

    // --- filling -----------------------------------------------------------------
    // Each setter replaces an entry of the same name. Tensors are copied (detached)
    // at the call, so later updates of the original do not leak into the checkpoint.
    void set_tensor(const std::string& name, const Tensor& t);
    // Every (name, tensor) as prefix + name.
    void set_tensors(const std::string& prefix, const named_tensors& tensors);
    void set_int(const std::string& name, int64_t value);
    void set_double(const std::string& name, double value);
    void set_bytes(const std::string& name, std::vector<uint8_t> bytes);
    // A generator's state, as 41 bytes (4 x u64 state, u8 has_spare, f64 spare).
    void set_generator(const std::string& name, const Generator& gen);

    // --- reading -------------------------------------------------------------------
    // A missing name or one of another kind is a tg::Error naming the file.
    bool contains(const std::string& name) const { return entries_.count(name) != 0; }
    Kind kind(const std::string& name) const;
    Tensor tensor(const std::string& name) const;
    int64_t get_int(const std::string& name) const;
    double get_double(const std::string& name) const;
    const std::vector<uint8_t>& bytes(const std::string& name) const;
    // Puts the generator in the state stored under `name`.
    void get_generator(const std::string& name, Generator& gen) const;
    // All names, sorted.
    std::vector<std::string> names() const;
    // The tensors whose names start with `prefix`, with the prefix removed, sorted by name.
    named_tensors tensors(const std::string& prefix = "") const;

    // Copies the tensors stored under `prefix` into `targets` (matched by
    // name, prefix removed), after checking that the names correspond one to
    // one and that shapes and dtypes agree. Nothing is copied unless
    // everything matches; the error lists every problem, e.g.
    //   checkpoint 'x.ckpt': parameter 'conv1.weight' has shape [32, 1, 3, 3] in
    //   the file but [16, 1, 3, 3] in the model
    // `what` names the targets in messages ("parameter", "buffer", ...).
    void load_into(const named_tensors& targets, const std::string& prefix = "",
                   const std::string& what = "parameter") const;

    // The file it was read from ("" if built in memory), for messages.
    const std::string& source() const { return source_; }

private:
    struct Entry {
        Kind kind = Kind::tensor;
        Tensor tensor;
        int64_t int_value = 0;
        double double_value = 0;
        std::vector<uint8_t> bytes;
    };
    const Entry& entry(const std::string& name, Kind kind) const;
    std::string label() const;

    std::map<std::string, Entry> entries_;
    std::string source_;

    friend void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
    friend Checkpoint load_checkpoint(const std::string& path);
};

const char* checkpoint_kind_name(Checkpoint::Kind kind);

// Writes `ckpt` to `path` atomically: the bytes go to `path.tmp.<pid>`, which
// is flushed to disk (fsync) and renamed over `path`, then the directory is
// synced; a crash at any moment leaves either the old or the new file whole.
void save_checkpoint(const std::string& path, const Checkpoint& ckpt);

// Reads a checkpoint. The file is untrusted: the magic, version, every record,
// every size (checked against the file size before anything is allocated) and
// the checksum are verified, and any problem is a tg::Error naming the file,
// the byte offset and what is wrong.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace tg
