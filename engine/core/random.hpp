// Seedable random numbers that are the same on every run and machine: the
// generator (xoshiro256**) and the conversions to uniform and normal values
// are written out here rather than taken from <random>, whose distributions
// differ between standard libraries.
#pragma once

#include <cstdint>

#include "tensor.hpp"

namespace tg {

class Generator {
public:
    explicit Generator(uint64_t seed = 0) { seed_(seed); }
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

// The calling thread's default generator.
Generator& default_generator();
void manual_seed(uint64_t seed);

Tensor rand(const shape_type& shape, Dtype dtype = float32, Generator* gen = nullptr);
Tensor randn(const shape_type& shape, Dtype dtype = float32, Generator* gen = nullptr);
Tensor randint(int64_t low, int64_t high, const shape_type& shape, Generator* gen = nullptr);
// A random permutation of 0..n-1 (int64).
Tensor randperm(int64_t n, Generator* gen = nullptr);

}  // namespace tg
