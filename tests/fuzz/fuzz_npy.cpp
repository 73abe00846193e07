// load_npy on arbitrary bytes. What loads must save and load back bit for bit.
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string path = tg::fuzz::as_file(data, size, ".npy");
    tg::Tensor t;
    try {
        t = tg::load_npy(path);
    } catch (const tg::Error& e) {
        tg::fuzz::check_rejection(e, path);
        return 0;
    }
    const std::string again = path + ".again.npy";
    tg::save_npy(t, again);
    tg::Tensor u = tg::load_npy(again);
    if (!tg::fuzz::same_bits(t, u)) tg::fuzz::broken("a loaded .npy does not survive save and load");
    return 0;
}
