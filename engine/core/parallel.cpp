#include "engine/core/parallel.hpp"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/core/error.hpp"

namespace tg {
namespace {

thread_local bool in_region = false;

constexpr auto spin_time = std::chrono::microseconds(2000);
constexpr auto pure_spin_time = std::chrono::microseconds(50);

inline void cpu_relax()
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

int default_threads()
{
    if (const char* env = std::getenv("TG_NUM_THREADS")) {
        int n = std::atoi(env);
        if (n > 0) return n;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

// Workers sleep on `generation` and, once woken, take chunks of the current
// job until none is left. The caller takes chunks too, then waits for the rest.
class ThreadPool {
public:
    explicit ThreadPool(int threads) { start(threads); }

    // Read without the lock by every parallel_for (whether to go parallel),
    // while set_num_threads may be changing it: atomic (ThreadSanitizer found it).
    int size() const { return threads_.load(std::memory_order_relaxed); }

    void resize(int threads)
    {
        std::lock_guard lock(submit_);
        stop();
        start(threads);
    }

    // Returns false when the pool is busy with another caller's job.
    bool run(int64_t n, int64_t grain, detail::RangeFn fn)
    {
        std::unique_lock lock(submit_, std::try_to_lock);
        if (!lock.owns_lock()) return false;
        int64_t chunks = (n + grain - 1) / grain;
        int64_t max_chunks = int64_t(size()) * 4;
        if (chunks > max_chunks) chunks = max_chunks;
        job_n_ = n;
        job_chunks_ = chunks;
        next_chunk_.store(0, std::memory_order_relaxed);
        done_chunks_.store(0, std::memory_order_relaxed);
        error_ = nullptr;
        job_fn_.store(&fn);  // published last: a worker that sees it sees the fields above
        generation_.fetch_add(1, std::memory_order_release);
        generation_.notify_all();

        in_region = true;
        work();
        in_region = false;
        // Wait for the chunks other threads took.
        for (int spin = 0; done_chunks_.load(std::memory_order_acquire) < chunks; ++spin) {
            if (spin > 2000) {
                int64_t seen = done_chunks_.load(std::memory_order_acquire);
                if (seen < chunks) done_chunks_.wait(seen, std::memory_order_acquire);
            }
        }
        // A worker that picked up this job late may still be inside work(); it
        // finds no chunk left, but must be out before `fn` goes out of scope.
        job_fn_.store(nullptr);
        while (active_.load() != 0) std::atomic_signal_fence(std::memory_order_seq_cst);
        if (error_) std::rethrow_exception(error_);
        return true;
    }

private:
    void start(int threads)
    {
        threads_.store(threads < 1 ? 1 : threads, std::memory_order_relaxed);
        stopping_ = false;
        // Workers start from this generation, so a stop() or a job posted
        // before a worker gets going is not missed.
        uint64_t start_generation = generation_.load();
        for (int i = 1; i < size(); ++i)
            workers_.emplace_back([this, start_generation] { worker_loop(start_generation); });
    }

    void stop()
    {
        stopping_ = true;
        generation_.fetch_add(1, std::memory_order_release);
        generation_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    void worker_loop(uint64_t seen)
    {
        in_region = true;
        while (true) {
            // Spin a while before sleeping: a sleeping worker takes tens of
            // microseconds to wake, longer than a whole elementwise op, and
            // the caller then ran most of such ops alone. Ops of a training
            // step follow each other within a millisecond.
            // After a short pure spin it yields between checks, so on a
            // loaded machine the spinning worker gives its core to the
            // caller (or anyone) instead of competing with it.
            const auto start = std::chrono::steady_clock::now();
            for (int spin = 0; generation_.load(std::memory_order_acquire) == seen; ++spin) {
                cpu_relax();
                if (spin % 64 != 63) continue;
                const auto waited = std::chrono::steady_clock::now() - start;
                if (waited > spin_time) break;
                if (waited > pure_spin_time) sched_yield();
            }
            generation_.wait(seen, std::memory_order_acquire);
            seen = generation_.load(std::memory_order_acquire);
            if (stopping_) return;
            work();
        }
    }

    void work()
    {
        active_.fetch_add(1);
        const detail::RangeFn* fn = job_fn_.load();
        if (fn) take_chunks(*fn);
        active_.fetch_sub(1);
    }

    void take_chunks(const detail::RangeFn& fn)
    {
        int64_t chunks = job_chunks_, n = job_n_;
        while (true) {
            int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
            if (c >= chunks) return;
            int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
            try {
                fn(begin, end);
            } catch (...) {
                std::lock_guard lock(error_mutex_);
                if (!error_) error_ = std::current_exception();
            }
            if (done_chunks_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks)
                done_chunks_.notify_all();
        }
    }

    std::atomic<int> threads_{1};
    std::vector<std::thread> workers_;
    std::mutex submit_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> stopping_{false};
    std::atomic<const detail::RangeFn*> job_fn_{nullptr};
    std::atomic<int> active_{0};
    int64_t job_n_ = 0, job_chunks_ = 0;
    std::atomic<int64_t> next_chunk_{0}, done_chunks_{0};
    std::mutex error_mutex_;
    std::exception_ptr error_;
};

ThreadPool& pool()
{
    // Never destroyed: workers may still be parked when static destructors run.
    static ThreadPool* p = new ThreadPool(default_threads());
    return *p;
}

}  // namespace

void set_num_threads(int n)
{
    TG_CHECK(n >= 1, "set_num_threads(", n, "): need at least one thread");
    pool().resize(n);
}

int num_threads() { return pool().size(); }

bool in_parallel_region() { return in_region; }

namespace detail {
void run_parallel(int64_t n, int64_t grain, RangeFn fn)
{
    if (!pool().run(n, grain, fn)) fn(0, n);
}
}  // namespace detail

}  // namespace tg
