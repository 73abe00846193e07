// The thread pool: its size, and the errors a caller can cause.
#include <doctest/doctest.h>

#include <tapegrad/tapegrad.hpp>

#include <atomic>
#include <cstdlib>

#include <sched.h>

using namespace tg;

TEST_CASE("parallel: set_num_threads resizes the pool, and a count below one is an error that changes nothing")
{
    const int threads = num_threads();
    set_num_threads(3);
    CHECK(num_threads() == 3);
    std::atomic<int64_t> covered{0};
    parallel_for(1000, 10, [&](int64_t b, int64_t e) { covered += e - b; });
    CHECK(covered == 1000);
    CHECK_THROWS_AS(set_num_threads(0), Error);
    CHECK_THROWS_AS(set_num_threads(-2), Error);
    CHECK(num_threads() == 3);
    set_num_threads(threads);
    CHECK(num_threads() == threads);
}

TEST_CASE("parallel: the pool starts with TG_NUM_THREADS threads if set, else one per CPU this process may use")
{
    // Read once, when the pool is made: this holds in a process of its own
    // (ctest runs each case so; tests/CMakeLists.txt adds one with TG_NUM_THREADS=1),
    // and in a whole run as long as every test restores the size it changed.
    int expected = 0;
    if (const char* env = std::getenv("TG_NUM_THREADS"); env && std::atoi(env) > 0) {
        expected = std::atoi(env);
    } else {
        cpu_set_t set;
        REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
        expected = CPU_COUNT(&set);
    }
    CHECK(num_threads() == expected);
}
