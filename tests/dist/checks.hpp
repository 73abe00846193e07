// What tests/dist's programs share: checks counted per rank (main sums them
// over the ranks), and the error text of a call that should raise.
#pragma once

#include <tapegrad/tapegrad.hpp>

#include <functional>
#include <string>

namespace dist_test {

void check(bool ok, const std::string& what);
std::string error_of(const std::function<void()>& f);
inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The distributed gradcheck against one process's (tests/dist/gradcheck.cpp).
void gradcheck_split();
// Synchronised batch norm against batch_norm on the whole batch (tests/dist/sync_batch_norm.cpp).
void sync_batch_norm_checks();

}  // namespace dist_test
