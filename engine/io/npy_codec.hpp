// The .npy encoding, shared by save_npy/load_npy and the .npz archives (whose
// members are .npy files): one encoder and one parser, neither caring where
// the bytes live (a file, a stored zip member, a stream being inflated).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "../core/tensor.hpp"

namespace tg::detail {

// The .npy header np.save writes for `t`: format 1.0 (2.0 if it would not fit), C order.
std::string npy_header(const Tensor& t);

// The size of t's .npy encoding: the header and the elements.
uint64_t npy_size(const Tensor& t);

// Hands t's .npy encoding to `sink` in pieces, front to back: the header, then
// the elements in little-endian order (swapped a chunk at a time on a
// big-endian host). Stops and returns false as soon as the sink does.
bool encode_npy(const Tensor& t, const std::function<bool(const void*, size_t)>& sink);

// Where the bytes of an .npy come from, in order.
class NpyInput {
public:
    virtual ~NpyInput() = default;
    // The next n bytes into dst, or a tg::Error that names `what`.
    virtual void read(void* dst, uint64_t n, const char* what) = 0;
};

// How a parse error says where it is:
//   "<prefix>: byte <base + offset><suffix>: <problem>"
// load_npy: {"load_npy: 'w.npy'", 0, ""}; a stored .npz member: the offset of
// its data in the archive; a deflated one: the offset in the inflated bytes,
// which the prefix and suffix say.
struct NpyPlace {
    std::string prefix;
    uint64_t base = 0;
    std::string suffix;
};

// Parses an .npy of exactly `size` bytes read from `in`, with load_npy's
// checks and messages (npy.hpp): nothing is allocated before the header is
// known to fit in `size`, and on success exactly `size` bytes were read.
Tensor parse_npy(NpyInput& in, uint64_t size, const NpyPlace& place);

}  // namespace tg::detail
