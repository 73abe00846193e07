// One thread pool for the whole library, sized to the cores. Everything that
// runs in parallel (elementwise kernels, im2col, GEMMs split across cores, the
// gradient checker's perturbations) runs on it; BLAS itself is kept to one
// thread so the two never oversubscribe the cores.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace tg {

// Sets the number of threads tapegrad uses (the caller's plus n - 1 workers).
// Default: the cores this process may run on, or TG_NUM_THREADS if set.
void set_num_threads(int n);
int num_threads();
// True inside a parallel_for body: nested loops then run inline.
bool in_parallel_region();

namespace detail {
// A non-owning reference to a callable `void(int64_t begin, int64_t end)`.
class RangeFn {
public:
    template <class F>
    RangeFn(F& f) : object_(&f), call_([](void* o, int64_t b, int64_t e) { (*static_cast<F*>(o))(b, e); })
    {
    }
    void operator()(int64_t begin, int64_t end) const { call_(object_, begin, end); }

private:
    void* object_;
    void (*call_)(void*, int64_t, int64_t);
};
void run_parallel(int64_t n, int64_t grain, RangeFn fn);

// The inline path out of line: inlined into a large caller, GCC left some
// loop bodies scalar (a compare-and-select loop ran 8x slower on one thread).
template <class F>
[[gnu::noinline]] void run_inline(F& fn, int64_t n)
{
    fn(int64_t(0), n);
}
}  // namespace detail

// Calls fn(begin, end) on disjoint chunks covering [0, n), each at least
// `grain` long except the last; runs inline when there is too little work.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& fn)
{
    if (n <= 0) return;
    if (n <= grain || num_threads() == 1 || in_parallel_region()) {
        detail::run_inline(fn, n);
        return;
    }
    detail::run_parallel(n, grain < 1 ? 1 : grain, detail::RangeFn(fn));
}

}  // namespace tg
