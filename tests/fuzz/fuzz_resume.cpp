// A whole resume from arbitrary bytes, as samples/train_fashion_mnist does it:
// the checkpoint, then a model's parameters and buffers, an optimizer, a
// learning-rate schedule, a data loader and a generator taken from it, then
// one training step. Each part checks what it takes (names, shapes, dtypes,
// and values no run can produce); whatever passes must train without a crash.
#include "tests/fuzz/fuzz_target.hpp"
#include "tests/fuzz/resume_run.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string path = tg::fuzz::as_file(data, size, ".ckpt");
    tg::Checkpoint ck;
    try {
        ck = tg::load_checkpoint(path);
    } catch (const tg::Error& e) {
        tg::fuzz::check_rejection(e, path);
        return 0;
    }
    for (bool adam : {true, false}) {
        tg::fuzz::Run run(adam);
        try {
            run.load_from(ck);
        } catch (const tg::Error& e) {
            // Past the reader, an error names the checkpoint or the optimizer state it refused.
            const std::string what = e.what();
            if (what.find(tg::quote(path)) == std::string::npos && what.find("load_state") == std::string::npos)
                tg::fuzz::broken("a resume error names neither the checkpoint nor the state: " + what);
            continue;
        }
        run.train(1);
    }
    return 0;
}
