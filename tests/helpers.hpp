// Small helpers shared by the test suites.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "engine/kernels/cpu.hpp"

using Values = std::vector<double>;

// The message of the tg::Error that `f` throws; "(no error)" and a failed
// check when it throws none.
template <class F>
std::string error_of(F&& f)
{
    try {
        f();
    } catch (const tg::Error& e) {
        return e.what();
    }
    FAIL_CHECK("expected a tg::Error");
    return "(no error)";
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Element by element within a relative tolerance (absolute below 1).
inline void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol)
{
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        CHECK(got[i] == doctest::Approx(want[i]).epsilon(tol).scale(1.0));
    }
}

inline tg::GradOptions graph_options(bool create_graph)
{
    tg::GradOptions o;
    o.create_graph = create_graph;
    return o;
}

// A fresh directory under the system temp dir, removed with everything in it.
struct TempDir {
    std::filesystem::path path;
    TempDir()
    {
        static int counter = 0;
        path = std::filesystem::temp_directory_path() /
               ("tg_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::create_directories(path);
    }
    ~TempDir()
    {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return (path / name).string(); }
};

// Runs check() once per instruction set the CPU supports, the chosen one put
// back after; returns how many ran, so a test can assert that all did.
inline int on_every_isa(const std::function<void()>& check)
{
    const tg::kernels::Isa chosen = tg::kernels::isa();
    int variants = 0;
    for (tg::kernels::Isa isa : tg::kernels::supported_isas()) {
        const std::string isa_name = tg::kernels::isa_name(isa);
        CAPTURE(isa_name);
        tg::kernels::set_isa(isa);
        check();
        ++variants;
    }
    tg::kernels::set_isa(chosen);
    return variants;
}
