#include "engine/kernels/cpu.hpp"

#include <cstdlib>
#include <cstring>

#include "engine/core/error.hpp"

namespace tg::kernels {

const char* isa_name(Isa isa)
{
    switch (isa) {
    case Isa::sse2: return "sse2";
    case Isa::avx2: return "avx2";
    }
    return "?";
}

bool cpu_supports(Isa isa)
{
    // This may run from a static initialiser, before libgcc's own.
    __builtin_cpu_init();
    switch (isa) {
    case Isa::sse2: return true;  // baseline x86-64
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return false;
}

std::vector<Isa> supported_isas()
{
    std::vector<Isa> out;
    for (Isa i : {Isa::sse2, Isa::avx2})
        if (cpu_supports(i)) out.push_back(i);
    return out;
}

namespace {
Isa detect()
{
    if (const char* pin = std::getenv("TG_ISA")) {
        for (Isa i : {Isa::sse2, Isa::avx2})
            if (std::strcmp(pin, isa_name(i)) == 0 && cpu_supports(i)) return i;
        // An unknown or unsupported name falls back to detection: a wrong
        // environment must not stop a program that could run.
    }
    return cpu_supports(Isa::avx2) ? Isa::avx2 : Isa::sse2;
}
}  // namespace

Isa detail::active_isa = detect();

void set_isa(Isa isa)
{
    TG_CHECK(cpu_supports(isa), "set_isa: this CPU does not support ", isa_name(isa));
    detail::active_isa = isa;
}

}  // namespace tg::kernels
