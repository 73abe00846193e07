// Tensor buffers. Large buffers are cached and reused instead of being
// returned to the system: a fresh multi-megabyte allocation costs thousands of
// page faults, which is slower than the convolution that fills it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

namespace tg {

struct MemoryStats {
    int64_t live_bytes;     // bytes held by live tensors
    int64_t peak_bytes;     // high-water mark of live_bytes
    int64_t cached_bytes;   // freed large buffers kept for reuse
    int64_t allocations;    // buffers handed out since start
};

MemoryStats memory_stats();
// Returns the cached buffers to the system.
void release_cached_memory();
// Starts peak_bytes again from the bytes live now (to measure one phase).
void reset_peak_memory();

namespace detail {
// The largest buffer allocate() attempts: 256 TiB, past the user address space
// of x86-64 and AArch64 (2^47, 2^48 bytes), so no real request is refused,
// while the bucket rounding stays far from overflowing size_t.
inline constexpr size_t max_buffer_bytes = size_t(1) << 48;
// 64-byte aligned, at least `bytes` long; never returns null (throws tg::Error).
void* allocate(size_t bytes);
void deallocate(void* p, size_t bytes) noexcept;
// Accounts for bytes held elsewhere (a tensor's inline buffer) in live_bytes.
void count_bytes(int64_t delta) noexcept;

// A testing aid: every new tensor buffer filled with `byte` (0 to 255), or
// left as it comes (-1, the default). The sweeps run each call under two
// fills and require the same bits, which catches a result that reads memory
// nothing wrote (a reused cache buffer would otherwise hide it).
void set_fresh_buffer_fill(int byte) noexcept;
int fresh_buffer_fill() noexcept;
}  // namespace detail

}  // namespace tg

namespace tg::detail {

// Tensor handles, storages and tape entries are small, short-lived and made
// by the thousand per step: they come from per-thread free lists rather than
// from malloc, which falls back to its slow path once its own small cache
// (7 blocks per size) is full.
void* pool_allocate(size_t bytes);
void pool_deallocate(void* p, size_t bytes) noexcept;

template <class T>
struct PoolAllocator {
    using value_type = T;
    PoolAllocator() = default;
    template <class U>
    PoolAllocator(const PoolAllocator<U>&) noexcept {}
    T* allocate(size_t n) { return static_cast<T*>(pool_allocate(n * sizeof(T))); }
    void deallocate(T* p, size_t n) noexcept { pool_deallocate(p, n * sizeof(T)); }
    template <class U>
    bool operator==(const PoolAllocator<U>&) const noexcept { return true; }
};

// make_shared through the pool.
template <class T, class... Args>
std::shared_ptr<T> make_pooled(Args&&... args)
{
    return std::allocate_shared<T>(PoolAllocator<T>(), std::forward<Args>(args)...);
}

}  // namespace tg::detail
