// load_npz on arbitrary bytes. What loads must save (stored and deflated) and
// load back bit for bit, under the same names in the same order.
#include "tests/fuzz/fuzz_target.hpp"

namespace {

bool same_archives(const std::vector<std::pair<std::string, tg::Tensor>>& a,
                   const std::vector<std::pair<std::string, tg::Tensor>>& b)
{
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].first != b[i].first || !tg::fuzz::same_bits(a[i].second, b[i].second)) return false;
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string path = tg::fuzz::as_file(data, size, ".npz");
    std::vector<std::pair<std::string, tg::Tensor>> loaded;
    try {
        loaded = tg::load_npz(path);
    } catch (const tg::Error& e) {
        tg::fuzz::check_rejection(e, path);
        return 0;
    }
    for (bool compressed : {false, true}) {
        const std::string again = path + ".again.npz";
        tg::save_npz(again, loaded, compressed);
        if (!same_archives(loaded, tg::load_npz(again)))
            tg::fuzz::broken(compressed ? "a loaded .npz does not survive save_npz(compressed) and load"
                                        : "a loaded .npz does not survive save_npz and load");
    }
    return 0;
}
