// read_idx on arbitrary bytes, plain and gzipped (the reader tells them apart
// by the gzip magic, so one target covers both).
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string path = tg::fuzz::as_file(data, size, ".idx");
    try {
        tg::IdxArray a = tg::read_idx(path);
        // What loads is consistent: the sizes account for the data exactly.
        uint64_t count = 1;
        for (int64_t d : a.dims) count *= uint64_t(d);
        if (a.dims.empty() || count != a.data.size()) tg::fuzz::broken("sizes and data disagree");
        // A plain file that loads is exactly header + data.
        if (size >= 2 && !(data[0] == 0x1f && data[1] == 0x8b) && size != 4 + 4 * a.dims.size() + a.data.size())
            tg::fuzz::broken("a plain file loaded with bytes left over or missing");
    } catch (const tg::Error& e) {
        tg::fuzz::check_rejection(e, path);
    }
    return 0;
}
