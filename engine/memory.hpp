// Tensor buffers. Large buffers are cached and reused instead of being
// returned to the system: a fresh multi-megabyte allocation costs thousands of
// page faults, which is slower than the convolution that fills it.
#pragma once

#include <cstddef>
#include <cstdint>

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

namespace detail {
// 64-byte aligned, at least `bytes` long; never returns null (throws tg::Error).
void* allocate(size_t bytes);
void deallocate(void* p, size_t bytes) noexcept;
}  // namespace detail

}  // namespace tg
