// tapegrad errors: every failure a user can cause is a tg::Error whose message
// names the op, the argument and the shapes involved.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tg {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// "[2, 3, 4]": how shapes appear in every message.
inline std::string shape_str(const std::vector<int64_t>& shape)
{
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest)
{
    if constexpr (std::is_same_v<T, std::vector<int64_t>>)
        os << shape_str(first);
    else
        os << first;
    append(os, rest...);
}
}  // namespace detail

// Builds the message from pieces; shapes (std::vector<int64_t>) print as [a, b].
template <class... Args>
[[noreturn]] void fail(const Args&... args)
{
    std::ostringstream os;
    os << "tapegrad: ";
    detail::append(os, args...);
    throw Error(os.str());
}

}  // namespace tg

// Checks a condition that depends on user input; the message pieces are only
// formatted on failure.
#define TG_CHECK(cond, ...)                \
    do {                                   \
        if (!(cond)) ::tg::fail(__VA_ARGS__); \
    } while (0)
