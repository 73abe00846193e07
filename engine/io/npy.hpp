// Reading and writing NumPy's .npy files, so tensors travel to and from
// Python (np.save / np.load) without conversion scripts.
#pragma once

#include <string>

#include "../core/tensor.hpp"

namespace tg {

// Writes `t` as NPY format 1.0 (2.0 if the header would not fit), C order,
// little-endian '<f4', '<f8' or '<i8', byte for byte what np.save writes. The
// data goes to a temporary file in the same directory that is then renamed to
// `path`, so `path` never holds a half-written file. The name is used as
// given (no ".npy" is appended).
void save_npy(const Tensor& t, const std::string& path);

// Reads an .npy file of format 1.0, 2.0 or 3.0. Element types:
//   '<f4' -> float32, '<f8' -> float64, '<i8' -> int64, and converted to int64:
//   '<i4', '<i2', '|i1', '<u4', '<u2', '|u1', '|b1'; big-endian ('>') variants
//   are byte-swapped. Anything else (float16, uint64, complex, structured or
//   object arrays) is rejected. Fortran-ordered data is transposed to C order.
// The file is treated as untrusted: any malformation is a tg::Error naming the
// file, the byte offset and what is wrong, and nothing is allocated before the
// file is known to hold the bytes the header promises. Bytes after the data
// are an error (np.save never writes any; a file holding several arrays
// written one after another is not supported).
Tensor load_npy(const std::string& path);

}  // namespace tg
