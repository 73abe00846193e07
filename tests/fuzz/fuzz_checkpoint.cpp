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
    tg::Checkpoint d = tg::load_checkpoint(again);
    if (c.names() != d.names()) tg::fuzz::broken("names change in a save and load");
    for (const std::string& n : c.names()) {
        if (c.kind(n) != d.kind(n)) tg::fuzz::broken("a kind changes in a save and load");
        switch (c.kind(n)) {
        case tg::Checkpoint::Kind::tensor:
            if (!tg::fuzz::same_bits(c.tensor(n), d.tensor(n))) tg::fuzz::broken("a tensor changes");
            break;
        case tg::Checkpoint::Kind::int64:
            if (c.get_int(n) != d.get_int(n)) tg::fuzz::broken("an int changes");
            break;
        case tg::Checkpoint::Kind::float64: {
            double a = c.get_double(n), b = d.get_double(n);
            if (std::memcmp(&a, &b, 8) != 0) tg::fuzz::broken("a double changes");
            break;
        }
        case tg::Checkpoint::Kind::bytes:
            if (c.bytes(n) != d.bytes(n)) tg::fuzz::broken("bytes change");
            break;
        }
    }
    return 0;
}
