// Reading IDX files, the format of MNIST and Fashion-MNIST, plain or gzipped.
//
// Layout (big-endian): two zero bytes, a type byte, a byte with the number of
// dimensions d, then d u32 sizes, then the elements in row-major order. Only
// unsigned bytes (type 0x08, what every MNIST-format data set uses) are read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tg {

struct IdxArray {
    std::vector<int64_t> dims;  // e.g. [60000, 28, 28]
    std::vector<uint8_t> data;  // row-major, product(dims) bytes
};

// Reads `path`, decompressing it through zlib when it is gzipped (a plain file
// is read as is). The file is untrusted: a wrong magic number, a type other
// than 0x08, zero dimensions, sizes whose product overflows or that promise
// more bytes than the file can hold, truncated or trailing data and corrupt
// gzip data are each a tg::Error naming the file and the byte offset in the
// uncompressed stream. Nothing is allocated beyond what the file can hold.
IdxArray read_idx(const std::string& path);

}  // namespace tg
