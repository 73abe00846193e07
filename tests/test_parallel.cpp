// The thread pool: its size, and the errors a caller can cause.
#include <doctest/doctest.h>

#include <tapegrad/tapegrad.hpp>

#include <atomic>

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
