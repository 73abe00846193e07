// The edge values of an op's attributes, for the bad-input sweep
// (tests/test_bad_input_sweep.cpp): every sample made with Op::sample can
// call its op again with one attribute field spoiled (a stride of 0, an axis
// of 2^62, a NaN eps, a flag flipped), and the op must then either work or
// raise a tg::Error naming itself.
//
// An Attrs struct is a plain aggregate, so its fields are found by counting
// how many initializers it accepts and binding them (the technique of Boost.PFR);
// nothing has to list them by hand, and a field added to an op is mutated
// without anyone writing a test for it.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "error.hpp"

namespace tg::detail {

// Converts to any field type; only named in unevaluated contexts.
struct any_field {
    template <class T>
    operator T() const;  // NOLINT: implicit on purpose
};

template <class T, class... Fields>
constexpr size_t field_count()
{
    if constexpr (requires { T{Fields{}..., any_field{}}; }) return field_count<T, Fields..., any_field>();
    else return sizeof...(Fields);
}

// Calls f(field, index) for each field of the aggregate t, in order.
template <class T, class F>
void for_each_field(T& t, F&& f)
{
    constexpr size_t n = field_count<T>();
    static_assert(n <= 8, "for_each_field: an Attrs struct of more than 8 fields (extend the bindings below)");
    if constexpr (n == 1) {
        auto& [a] = t;
        f(a, 0);
    } else if constexpr (n == 2) {
        auto& [a, b] = t;
        f(a, 0), f(b, 1);
    } else if constexpr (n == 3) {
        auto& [a, b, c] = t;
        f(a, 0), f(b, 1), f(c, 2);
    } else if constexpr (n == 4) {
        auto& [a, b, c, d] = t;
        f(a, 0), f(b, 1), f(c, 2), f(d, 3);
    } else if constexpr (n == 5) {
        auto& [a, b, c, d, e] = t;
        f(a, 0), f(b, 1), f(c, 2), f(d, 3), f(e, 4);
    } else if constexpr (n == 6) {
        auto& [a, b, c, d, e, g] = t;
        f(a, 0), f(b, 1), f(c, 2), f(d, 3), f(e, 4), f(g, 5);
    } else if constexpr (n == 7) {
        auto& [a, b, c, d, e, g, h] = t;
        f(a, 0), f(b, 1), f(c, 2), f(d, 3), f(e, 4), f(g, 5), f(h, 6);
    } else if constexpr (n == 8) {
        auto& [a, b, c, d, e, g, h, i] = t;
        f(a, 0), f(b, 1), f(c, 2), f(d, 3), f(e, 4), f(g, 5), f(h, 6), f(i, 7);
    }
}

inline constexpr int64_t huge_attribute = int64_t(1) << 62;

// A (height, width) pair (ops/options.hpp's Int2, which the core does not see).
template <class V>
concept height_width = requires(V v) {
    { v.h } -> std::convertible_to<int64_t>;
    { v.w } -> std::convertible_to<int64_t>;
    V(int64_t(0), int64_t(0));
};

// A shape or an axis list.
template <class V>
concept integer_list = requires(V v) {
    v.push_back(int64_t(0));
    v.clear();
    { v[0] } -> std::convertible_to<int64_t>;
    { v.size() } -> std::convertible_to<size_t>;
};

inline std::vector<int64_t> edge_integers()
{
    return {0, -1, -2, huge_attribute, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()};
}

template <class V>
std::string describe_attribute(const V& v)
{
    std::ostringstream os;
    if constexpr (height_width<V>) os << '(' << v.h << ", " << v.w << ')';
    else if constexpr (std::is_enum_v<V>) os << int64_t(v);
    else if constexpr (std::is_same_v<V, bool>) os << (v ? "true" : "false");
    else if constexpr (std::is_arithmetic_v<V>) os << v;
    else if constexpr (integer_list<V>) {
        os << '[';
        for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
        os << ']';
    } else os << "?";
    return os.str();
}

// The spoiled values of one field: none for a type the sweep does not know
// (a geometry the forward fills in itself).
template <class V>
std::vector<V> spoiled_values(const V& v)
{
    std::vector<V> out;
    if constexpr (std::is_same_v<V, bool>) {
        out.push_back(!v);
    } else if constexpr (std::is_same_v<V, int64_t>) {
        for (int64_t e : edge_integers())
            if (e != v) out.push_back(e);
    } else if constexpr (std::is_same_v<V, double>) {
        for (double e : {std::nan(""), HUGE_VAL, -HUGE_VAL, 0.0, -1.0, 1e308})
            if (!(e == v)) out.push_back(e);
    } else if constexpr (std::is_enum_v<V>) {
        using U = std::underlying_type_t<V>;
        for (U e : {U(-1), U(99)}) out.push_back(V(e));
    } else if constexpr (height_width<V>) {
        for (int64_t e : edge_integers()) {
            if (e == -1) continue;  // (-1, -1) is "not given", a valid value
            out.push_back(V(e, v.w));
            out.push_back(V(v.h, e));
        }
    } else if constexpr (integer_list<V>) {
        // Shapes and axis lists: an element too large, too small, repeated;
        // one element more or fewer.
        V longer = v;
        longer.push_back(v.size() ? v[0] : 1);
        out.push_back(longer);
        if (v.size()) {
            V shorter(v.begin(), v.end() - 1);
            out.push_back(shorter);
        }
        for (int64_t e : edge_integers())
            for (size_t i = 0; i < v.size(); ++i) {
                V w = v;
                w[i] = e;
                out.push_back(w);
            }
        for (int64_t e : {int64_t(99), int64_t(-99)}) {
            V w = v;
            w.push_back(e);
            out.push_back(w);
        }
    }
    return out;
}

// One call of an op with a spoiled attribute.
template <class Attrs>
struct SpoiledAttrs {
    std::string what;  // "attribute 2 of 4: (1, 1) -> (0, 1)"
    Attrs attrs;
};

template <class Attrs>
std::vector<SpoiledAttrs<Attrs>> spoiled_attrs(const Attrs& attrs)
{
    std::vector<SpoiledAttrs<Attrs>> out;
    constexpr size_t n = field_count<Attrs>();
    Attrs probe = attrs;
    for_each_field(probe, [&](auto& field, size_t index) {
        using Field = std::decay_t<decltype(field)>;
        for (auto&& element : spoiled_values(field)) {
            const Field value = element;  // a copy: vector<bool> hands out proxies
            Attrs spoiled = attrs;
            size_t k = 0;
            for_each_field(spoiled, [&](auto& target, size_t) {
                if constexpr (std::is_same_v<std::decay_t<decltype(target)>, std::decay_t<decltype(field)>>)
                    if (k == index) target = value;
                ++k;
            });
            out.push_back({"attribute " + std::to_string(index + 1) + " of " + std::to_string(n) + ": " +
                               describe_attribute(field) + " -> " + describe_attribute(value),
                           std::move(spoiled)});
        }
    });
    return out;
}

}  // namespace tg::detail
