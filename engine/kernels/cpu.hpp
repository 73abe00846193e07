// The instruction sets tapegrad's SIMD kernels are compiled for, and the one
// they run with on this CPU: the best it supports, chosen once when the
// library loads. TG_ISA=sse2|avx2 in the environment pins one (for
// comparisons); set_isa() switches for tests that run every variant.
#pragma once

#include <vector>

namespace tg::kernels {

enum class Isa : int { sse2, avx2 };

const char* isa_name(Isa isa);
bool cpu_supports(Isa isa);
// The variants this CPU can run, from the baseline up.
std::vector<Isa> supported_isas();

namespace detail {
extern Isa active_isa;
}
inline Isa isa() { return detail::active_isa; }
// Runs the SIMD kernels with `isa` from now on (an error if the CPU lacks it).
void set_isa(Isa isa);

}  // namespace tg::kernels
