// Lists the registry, one op a line with its number of samples, and calls no
// op: linked from the static libtapegrad.a, only the umbrella header's
// reference (ops/builtin.hpp) brings the op files in. tests/CMakeLists.txt
// compares the list with that of the same program linked with every object
// file of the archive.
#include <cstdio>

#include <tapegrad/tapegrad.hpp>

int main()
{
    for (const tg::OpInfo& op : tg::registered_ops()) std::printf("%s %zu\n", op.name.c_str(), op.samples.size());
}
