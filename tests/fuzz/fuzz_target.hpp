// What the fuzz targets share: the bytes as a file (the readers take paths,
// as users call them), and the rule every rejection must follow.
//
// Each target defines LLVMFuzzerTestOneInput. Built with clang and
// -fsanitize=fuzzer (TAPEGRAD_FUZZ=ON) it is a libFuzzer binary; built with
// any compiler otherwise, regression_main.cpp runs it over the committed
// corpus as a ctest entry.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tapegrad/tapegrad.hpp>

namespace tg::fuzz {

// The input written to a file of this process's own (in /dev/shm when there
// is one: a fuzzer writes it a million times).
inline std::string as_file(const uint8_t* data, size_t size, const char* suffix)
{
    static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    const std::string path = dir + "/tapegrad_fuzz." + std::to_string(getpid()) + suffix;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
        std::perror(path.c_str());
        std::abort();
    }
    return path;
}

// A property the reader broke: print what and crash, so libFuzzer keeps the input.
[[noreturn]] inline void broken(const std::string& what)
{
    std::fprintf(stderr, "tapegrad fuzz: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

// Every rejected file is a tg::Error that names the file and where in it.
inline void check_rejection(const Error& e, const std::string& path)
{
    const std::string what = e.what();
    if (what.find(quote(path)) == std::string::npos) broken("an error does not name the file: " + what);
    if (what.find("byte") == std::string::npos) broken("an error does not name the byte offset: " + what);
    if (what.find('\n') != std::string::npos) broken("an error holds a raw newline: " + what);
}

// Bit-for-bit equality of two tensors (NaN payloads included).
inline bool same_bits(const Tensor& a, const Tensor& b)
{
    if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
    const size_t n = size_t(a.numel()) * dtype_size(a.dtype());
    return n == 0 || std::memcmp(a.raw_data(), b.raw_data(), n) == 0;
}

// Two checkpoints with the same names, kinds and values, bit for bit.
inline bool same_checkpoints(const Checkpoint& a, const Checkpoint& b)
{
    if (a.names() != b.names()) return false;
    for (const std::string& n : a.names()) {
        if (a.kind(n) != b.kind(n)) return false;
        switch (a.kind(n)) {
        case Checkpoint::Kind::tensor:
            if (!same_bits(a.tensor(n), b.tensor(n))) return false;
            break;
        case Checkpoint::Kind::int64:
            if (a.get_int(n) != b.get_int(n)) return false;
            break;
        case Checkpoint::Kind::float64: {
            const double x = a.get_double(n), y = b.get_double(n);
            if (std::memcmp(&x, &y, sizeof x) != 0) return false;
            break;
        }
        case Checkpoint::Kind::bytes:
            if (a.bytes(n) != b.bytes(n)) return false;
            break;
        }
    }
    return true;
}

}  // namespace tg::fuzz
