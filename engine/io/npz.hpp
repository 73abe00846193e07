// Reading and writing NumPy's .npz archives (np.savez, np.savez_compressed,
// np.load): a zip archive with one .npy file per array.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/tensor.hpp"

namespace tg {

// Writes the tensors as members "<name>.npy" (each encoded as save_npy
// writes it), stored, or deflated when `compressed`: the bytes np.savez and
// np.savez_compressed write for the same arrays, ZIP64 fields included where
// zipfile puts them (every local header; sizes and offsets past 2^31 - 1).
// Names must be non-empty and unique, and safe to extract: no NUL or other
// control characters, no backslash, no leading '/' or drive letter, no
// empty, "." or ".." component ("features.0.weight" and "encoder/fc.weight"
// are fine). Written like save_npy: a temporary file in the same directory,
// synced, then renamed to `path`, so `path` never holds a half-written file.
void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& named,
              bool compressed = false);

// Reads an .npz archive: the tensors in archive order, named as np.load's
// keys are (the member's name without ".npy"); dtypes as load_npy reads them.
// Reads what np.savez and np.savez_compressed write (stored and deflated
// members, ZIP64 records, data descriptors as zipfile writes into a stream
// that cannot seek). The file is untrusted: anything else, such as a bad
// signature, a size or offset outside the file, members that are not back
// to back in central directory order or whose local header disagrees with
// it, a CRC-32 mismatch, another compression method, encryption, a member
// that is not a valid .npy, a name save_npz would refuse or a repeated one,
// bytes after the end record, a deflated member claiming more than deflate
// can produce (1032 to 1) or inflating to more or less than it claims, is a
// tg::Error naming the file, the byte offset and the problem.
std::vector<std::pair<std::string, Tensor>> load_npz(const std::string& path);

namespace detail {
// save_npz with zipfile's ZIP64 limit (2^31 - 1) replaced: the tests pass 0
// to write every ZIP64 record a multi-gigabyte archive would have.
void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& named, bool compressed,
              uint64_t zip64_limit);
}  // namespace detail

}  // namespace tg
