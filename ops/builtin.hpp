// The library's own ops in the registry, however the library is linked.
#pragma once

namespace tg {

// Does nothing but reference every file of the library that registers ops.
// Linked from the static libtapegrad.a, a program gets only the object files
// it references, and the ops it never calls would be missing from
// registered_ops() (and so from the sweep). <tapegrad/tapegrad.hpp> calls it
// in every file that includes it; a program that includes only lower headers
// calls it once itself.
void link_builtin_ops();

}  // namespace tg
