// Seedable random numbers that are the same on every run and machine: the
// generator (xoshiro256**) and the conversions to uniform and normal values
// are written out here rather than taken from <random>, whose distributions
// differ between standard libraries.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor.hpp"

namespace tg {

class Generator;
namespace detail {
struct GeneratorLog;
extern thread_local GeneratorLog* generator_log;
void log_birth(const Generator& gen);
}  // namespace detail

class Generator {
public:
    explicit Generator(uint64_t seed = 0)
    {
        seed_(seed);
        if (detail::generator_log) [[unlikely]]
            detail::log_birth(*this);
    }
    Generator(const Generator& other) : Generator(0) { *this = other; }  // a birth too
    Generator& operator=(const Generator&) = default;
    void manual_seed(uint64_t seed) { seed_(seed); }

    uint64_t next_u64();
    double uniform();                       // [0, 1)
    double normal();                        // mean 0, standard deviation 1
    int64_t integer(int64_t low, int64_t high);  // uniform in [low, high), unbiased

    struct State {
        uint64_t s[4];
        bool has_spare;
        double spare;
    };
    State state() const { return {{s_[0], s_[1], s_[2], s_[3]}, has_spare_, spare_}; }
    void set_state(const State& st);

private:
    void seed_(uint64_t seed);
    uint64_t s_[4];
    bool has_spare_ = false;
    double spare_ = 0;
};

namespace detail {
// The generators drawn from while it is installed, each with its state before
// its first draw: how an activation checkpoint (activation_checkpoint.hpp)
// makes its function draw the same numbers again when it recomputes it.
// Installed only around a checkpointed function: elsewhere a draw costs one
// thread-local test.
struct GeneratorLog {
    struct Use {
        Generator* generator;
        Generator::State before;
    };
    std::vector<Use> uses;                // each generator once, in the order of first use
    std::vector<const Generator*> born;   // made while installed: they die with the function
    GeneratorLog* outer = nullptr;        // an enclosing checkpoint's log, told too
};
void log_draw(Generator& gen);
// What a function drawing from `gen` calls once before it draws (dropout,
// rand, ...), so that a checkpoint recomputing it replays the same numbers.
inline void note_draw(Generator& gen)
{
    if (generator_log) [[unlikely]]
        log_draw(gen);
}
}  // namespace detail

// The calling thread's default generator.
Generator& default_generator();
void manual_seed(uint64_t seed);

Tensor rand(const shape_type& shape, Dtype dtype = float32, Generator* gen = nullptr);
Tensor randn(const shape_type& shape, Dtype dtype = float32, Generator* gen = nullptr);
Tensor randint(int64_t low, int64_t high, const shape_type& shape, Generator* gen = nullptr);
// A random permutation of 0..n-1 (int64).
Tensor randperm(int64_t n, Generator* gen = nullptr);

}  // namespace tg
