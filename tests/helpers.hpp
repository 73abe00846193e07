// Small helpers shared by the test suites.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

using Values = std::vector<double>;

// The message of the tg::Error that `f` throws (fails the test if none).
template <class F>
std::string error_of(F&& f)
{
    try {
        f();
    } catch (const tg::Error& e) {
        return e.what();
    }
    FAIL("expected a tg::Error");
    return "";
}
