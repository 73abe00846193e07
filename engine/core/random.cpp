#include "engine/core/random.hpp"

#include <algorithm>
#include <cmath>

namespace tg {

namespace {
uint64_t splitmix64(uint64_t& x)
{
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::seed_(uint64_t seed)
{
    uint64_t x = seed;
    for (auto& s : s_) s = splitmix64(x);
    has_spare_ = false;
    spare_ = 0;
}

void Generator::set_state(const State& st)
{
    for (int i = 0; i < 4; ++i) s_[i] = st.s[i];
    TG_CHECK(s_[0] | s_[1] | s_[2] | s_[3], "Generator::set_state: the all-zero state is invalid");
    has_spare_ = st.has_spare;
    spare_ = st.spare;
}

uint64_t Generator::next_u64()
{
    uint64_t result = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

double Generator::uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }

double Generator::normal()
{
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    // Box-Muller on (0, 1] so the log is finite.
    double u1 = 1.0 - uniform(), u2 = uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    double theta = 6.283185307179586 * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
}

int64_t Generator::integer(int64_t low, int64_t high)
{
    TG_CHECK(low < high, "randint: empty range [", low, ", ", high, ")");
    uint64_t range = uint64_t(high) - uint64_t(low);
    // Rejection sampling: drop the top partial copy of the range.
    uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t x;
    do x = next_u64(); while (x >= limit);
    return low + int64_t(x % range);
}

thread_local detail::GeneratorLog* detail::generator_log = nullptr;

void detail::log_birth(const Generator& gen)
{
    for (GeneratorLog* log = generator_log; log; log = log->outer)
        if (std::find(log->born.begin(), log->born.end(), &gen) == log->born.end()) log->born.push_back(&gen);
}

void detail::log_draw(Generator& gen)
{
    for (GeneratorLog* log = generator_log; log; log = log->outer) {
        if (std::find(log->born.begin(), log->born.end(), &gen) != log->born.end()) continue;
        auto same = [&](const GeneratorLog::Use& u) { return u.generator == &gen; };
        if (std::find_if(log->uses.begin(), log->uses.end(), same) == log->uses.end())
            log->uses.push_back({&gen, gen.state()});
    }
}

Generator& default_generator()
{
    thread_local Generator g(0);
    return g;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {
template <class F>
Tensor fill_with(const shape_type& shape, Dtype dtype, const char* op, F draw)
{
    Tensor t = Tensor::empty(shape, dtype);
    TG_DISPATCH_FLOATING(dtype, op, [&] {
        scalar_t* p = t.data<scalar_t>();
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = scalar_t(draw());
    });
    return t;
}
}  // namespace

Tensor rand(const shape_type& shape, Dtype dtype, Generator* gen)
{
    Generator& g = gen ? *gen : default_generator();
    detail::note_draw(g);
    return fill_with(shape, dtype, "rand", [&] { return g.uniform(); });
}

Tensor randn(const shape_type& shape, Dtype dtype, Generator* gen)
{
    Generator& g = gen ? *gen : default_generator();
    detail::note_draw(g);
    return fill_with(shape, dtype, "randn", [&] { return g.normal(); });
}

Tensor randint(int64_t low, int64_t high, const shape_type& shape, Generator* gen)
{
    Generator& g = gen ? *gen : default_generator();
    detail::note_draw(g);
    Tensor t = Tensor::empty(shape, int64);
    int64_t* p = t.data<int64_t>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = g.integer(low, high);
    return t;
}

Tensor randperm(int64_t n, Generator* gen)
{
    Generator& g = gen ? *gen : default_generator();
    detail::note_draw(g);
    TG_CHECK(n >= 0, "randperm(", n, "): negative size");
    Tensor t = Tensor::empty({n}, int64);
    int64_t* p = t.data<int64_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = i;
    for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[g.integer(0, i + 1)]);
    return t;
}

}  // namespace tg
