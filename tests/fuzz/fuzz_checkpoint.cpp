// load_checkpoint on arbitrary bytes. What loads must save and load back equal,
// entry for entry.
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string path = tg::fuzz::as_file(data, size, ".ckpt");
    tg::Checkpoint c;
    try {
        c = tg::load_checkpoint(path);
    } catch (const tg::Error& e) {
        tg::fuzz::check_rejection(e, path);
        return 0;
    }
    const std::string again = path + ".again.ckpt";
    tg::save_checkpoint(again, c);
    if (!tg::fuzz::same_checkpoints(c, tg::load_checkpoint(again))) tg::fuzz::broken("a checkpoint changes in a save and load");
    return 0;
}
