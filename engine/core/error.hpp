// tapegrad errors: every failure a user can cause is a tg::Error whose message
// names the op, the argument and the shapes involved.
#pragma once

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "small_vector.hpp"

namespace tg {

// Tensor shapes: up to 6 axes without a heap allocation.
using shape_type = SmallVector<int64_t, 6>;
// Lists of axes (reductions, permutations).
using axes_type = SmallVector<int64_t, 6>;

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// "[2, 3, 4]": how shapes (and lists of axes) appear in every message.
template <class Shape>
std::string shape_str(const Shape& shape)
{
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

namespace detail {
template <class T> struct is_shape : std::false_type {};
template <> struct is_shape<std::vector<int64_t>> : std::true_type {};
template <size_t N> struct is_shape<SmallVector<int64_t, N>> : std::true_type {};

inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest)
{
    if constexpr (is_shape<T>::value)
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

// "a, b, c" for parts {a, b, c} and separator ", ".
inline std::string join(const std::vector<std::string>& parts, const std::string& separator)
{
    std::string s;
    for (size_t i = 0; i < parts.size(); ++i) s += (i ? separator : "") + parts[i];
    return s;
}

// The problems found in a file or a state, for one error message: the first
// `shown` of them joined by "; ", then how many more there were.
inline std::string list_problems(const std::vector<std::string>& problems, size_t shown = 20)
{
    std::vector<std::string> first(problems.begin(), problems.begin() + std::min(shown, problems.size()));
    std::string s = join(first, "; ");
    if (problems.size() > first.size()) s += "; and " + std::to_string(problems.size() - first.size()) + " more";
    return s;
}

// Text from an untrusted source (a file, an entry name) made safe for a
// message: printable ASCII as is, anything else (NUL, newlines, terminal
// escapes, bytes of UTF-8) as \xNN, cut after `max` characters with "...".
inline std::string printable(const std::string& s, size_t max = 120)
{
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            out += char(c);
        } else {
            out += "\\x";
            out += digits[c >> 4];
            out += digits[c & 15];
        }
    }
    if (s.size() > max) out += "...";
    return out;
}

// printable(s) in single quotes: how names and paths appear in messages.
inline std::string quote(const std::string& s, size_t max = 120)
{
    std::string out(1, '\'');
    out += printable(s, max);
    out += '\'';
    return out;
}

}  // namespace tg

// Checks a condition that depends on user input; the message pieces are only
// formatted on failure.
#define TG_CHECK(cond, ...)                \
    do {                                   \
        if (!(cond)) ::tg::fail(__VA_ARGS__); \
    } while (0)
