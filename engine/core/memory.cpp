#include "engine/core/memory.hpp"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>

#include <sys/sysinfo.h>

#include "engine/core/error.hpp"

// Under AddressSanitizer the cache tells it what a buffer may be used for: the
// bucket's slack past the request and a cached buffer are poisoned, so an
// access past a tensor's end or into a freed one is reported as with malloc.
#if defined(__SANITIZE_ADDRESS__)
#define TG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TG_ASAN 1
#endif
#endif
#ifdef TG_ASAN
#include <sanitizer/asan_interface.h>
#define TG_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define TG_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define TG_POISON(p, n) ((void)(p), (void)(n))
#define TG_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace tg {
namespace {

// Below this size glibc's malloc is fast and recycles memory itself.
constexpr size_t cache_threshold = 64 * 1024;
constexpr size_t max_cached_bytes = size_t(1) << 30;

std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};
std::atomic<int64_t> allocations{0};

// Rounds large requests up to 1/8 steps of their power of two, so buffers of
// nearly the same size (a last partial batch, say) can share cache entries.
// bytes <= max_buffer_bytes, so the power of two cannot overflow.
size_t bucket_size(size_t bytes)
{
    size_t p = 1;
    while (p < bytes) p <<= 1;
    size_t step = p / 8 > 4096 ? p / 8 : 4096;
    return (bytes + step - 1) / step * step;
}

struct BufferCache {
    std::mutex mutex;
    std::multimap<size_t, void*> free_buffers;
    size_t cached = 0;

    ~BufferCache() { clear(); }

    void clear()
    {
        std::lock_guard lock(mutex);
        for (auto& [size, p] : free_buffers) {
            TG_UNPOISON(p, size);
            std::free(p);
        }
        free_buffers.clear();
        cached = 0;
    }
};

BufferCache& cache()
{
    static BufferCache* c = new BufferCache();  // never destroyed: tensors may outlive main
    return *c;
}

void note_alloc(size_t bytes)
{
    int64_t now = live_bytes.fetch_add(int64_t(bytes), std::memory_order_relaxed) + int64_t(bytes);
    int64_t peak = peak_bytes.load(std::memory_order_relaxed);
    while (now > peak && !peak_bytes.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {}
    allocations.fetch_add(1, std::memory_order_relaxed);
}

// Physical memory plus swap: a single buffer larger than that can never be
// backed, whatever the allocator or overcommit policy says (glibc may hand
// out the address range, ASan refuses it outright), so it is refused here
// with the same error everywhere. 0 when the kernel does not say.
size_t machine_memory_bytes()
{
    static const size_t bytes = [] {
        struct sysinfo info {};
        if (sysinfo(&info) != 0) return size_t(0);
        return (size_t(info.totalram) + size_t(info.totalswap)) * size_t(info.mem_unit);
    }();
    return bytes;
}

}  // namespace

namespace detail {

void* allocate(size_t bytes)
{
    TG_CHECK(bytes <= max_buffer_bytes, "cannot allocate ", bytes, " bytes, more than the ", max_buffer_bytes,
             " a buffer may have");
    if (bytes == 0) bytes = 1;
    if (bytes >= cache_threshold) {
        size_t size = bucket_size(bytes);
        BufferCache& c = cache();
        {
            std::lock_guard lock(c.mutex);
            auto it = c.free_buffers.find(size);
            if (it != c.free_buffers.end()) {
                void* p = it->second;
                c.free_buffers.erase(it);
                c.cached -= size;
                note_alloc(bytes);
                TG_UNPOISON(p, bytes);
                return p;
            }
        }
        size_t machine = machine_memory_bytes();
        TG_CHECK(machine == 0 || bytes <= machine, "out of memory allocating ", bytes, " bytes, more than the ",
                 machine, " bytes of memory and swap this machine has");
        void* p = std::aligned_alloc(64, size);
        TG_CHECK(p, "out of memory allocating ", bytes, " bytes");
        note_alloc(bytes);
        TG_POISON(static_cast<char*>(p) + bytes, size - bytes);
        return p;
    }
    // Small buffers: malloc's 16-byte alignment is enough, and its fast path
    // is much faster than aligned_alloc's.
    void* p = std::malloc(bytes);
    TG_CHECK(p, "out of memory allocating ", bytes, " bytes");
    note_alloc(bytes);
    return p;
}

namespace {
std::atomic<int> buffer_fill{-1};
}

void set_fresh_buffer_fill(int byte) noexcept { buffer_fill.store(byte < 0 ? -1 : byte & 0xff, std::memory_order_relaxed); }
int fresh_buffer_fill() noexcept { return buffer_fill.load(std::memory_order_relaxed); }

void count_bytes(int64_t delta) noexcept
{
    if (delta > 0)
        note_alloc(size_t(delta));
    else
        live_bytes.fetch_add(delta, std::memory_order_relaxed);
}

void deallocate(void* p, size_t bytes) noexcept
{
    if (!p) return;
    if (bytes == 0) bytes = 1;
    live_bytes.fetch_sub(int64_t(bytes), std::memory_order_relaxed);
    if (bytes >= cache_threshold) {
        size_t size = bucket_size(bytes);
        BufferCache& c = cache();
        std::lock_guard lock(c.mutex);
        if (c.cached + size <= max_cached_bytes) {
            c.free_buffers.emplace(size, p);
            c.cached += size;
            TG_POISON(p, size);
            return;
        }
        TG_UNPOISON(p, size);
    }
    std::free(p);
}

}  // namespace detail

MemoryStats memory_stats()
{
    BufferCache& c = cache();
    std::lock_guard lock(c.mutex);
    return {live_bytes.load(), peak_bytes.load(), int64_t(c.cached), allocations.load()};
}

void release_cached_memory() { cache().clear(); }

void reset_peak_memory() { peak_bytes.store(live_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed); }

}  // namespace tg

namespace tg::detail {

namespace {
constexpr size_t pool_granule = 32;
constexpr size_t pool_classes = 32;            // blocks up to 1 KiB
constexpr size_t pool_max_blocks = 1 << 14;    // per class and thread

struct FreeBlock {
    FreeBlock* next;
};

struct ThreadPool {
    FreeBlock* heads[pool_classes] = {};
    size_t counts[pool_classes] = {};
    ~ThreadPool()
    {
        for (size_t c = 0; c < pool_classes; ++c)
            while (heads[c]) {
                FreeBlock* b = heads[c];
                heads[c] = b->next;
                std::free(b);
            }
    }
};

// Null once the thread's pool is destroyed (blocks freed during thread exit go to free()).
thread_local ThreadPool* local_pool = nullptr;
thread_local struct PoolOwner {
    ThreadPool pool;
    PoolOwner() { local_pool = &pool; }
    ~PoolOwner() { local_pool = nullptr; }
} pool_owner;
}  // namespace

void* pool_allocate(size_t bytes)
{
    size_t c = (bytes + pool_granule - 1) / pool_granule;
    if (c < pool_classes) {
        (void)pool_owner;  // constructs the thread's pool on first use
        if (ThreadPool* tp = local_pool; tp && tp->heads[c]) {
            FreeBlock* b = tp->heads[c];
            tp->heads[c] = b->next;
            tp->counts[c]--;
            return b;
        }
        void* p = std::malloc(c * pool_granule);
        TG_CHECK(p, "out of memory allocating ", bytes, " bytes");
        return p;
    }
    void* p = std::malloc(bytes);
    TG_CHECK(p, "out of memory allocating ", bytes, " bytes");
    return p;
}

void pool_deallocate(void* p, size_t bytes) noexcept
{
    size_t c = (bytes + pool_granule - 1) / pool_granule;
    ThreadPool* tp = local_pool;
    if (c < pool_classes && tp && tp->counts[c] < pool_max_blocks) {
        auto* b = static_cast<FreeBlock*>(p);
        b->next = tp->heads[c];
        tp->heads[c] = b;
        tp->counts[c]++;
        return;
    }
    std::free(p);
}

}  // namespace tg::detail
