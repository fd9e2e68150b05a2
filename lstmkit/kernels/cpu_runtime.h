// Runtime support of the fused LSTM kernel (lstm_cpu.cpp): where its large buffers come from
// (BufferCache, buffer) and how its time loops use the CPU's threads (Team, Blocks).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <utility>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace lstmkit {

using at::Tensor;

// Large buffers come from a small cache of 2 MiB-aligned mappings. A training step writes
// hundreds of MB of (T, N, ...) buffers, and faulting freshly mapped pages in costs a large
// part of a step, more with small pages than with huge ones (BENCHMARKS.md, "No page
// faults"). The same shapes recur every step, so freed buffers are kept (up to LSTMKIT_BUFFER_CACHE_MB,
// default 1024; 0 turns the cache off) and handed out again by exact size, like the caching
// allocator torch uses for CUDA; empty_cache() unmaps them. Mappings are offered to the
// kernel as huge pages where THP is "madvise" or "always" (elsewhere they are ordinary).
#ifdef __linux__
class BufferCache {
 public:
  static constexpr size_t kAlign = size_t(2) << 20;

  static BufferCache& instance() {
    static BufferCache* cache = new BufferCache();  // never destroyed: tensors may outlive it
    return *cache;
  }

  // A mapping of `size` bytes (a multiple of kAlign), or nullptr if the system has none.
  void* take(size_t size) {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second == size) {
          void* data = it->first;
          free_.erase(it);
          cached_ -= size;
          return data;
        }
      }
    }
    if (void* data = map(size)) return data;
    empty();  // out of address space or memory: give back what is cached, then try again
    return map(size);
  }

  void give(void* data, size_t size) {
    std::vector<std::pair<void*, size_t>> evicted;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      free_.emplace_back(data, size);
      cached_ += size;
      while (cached_ > limit_) {  // the oldest go first
        evicted.push_back(free_.front());
        cached_ -= free_.front().second;
        free_.pop_front();
      }
    }
    for (const auto& [p, n] : evicted) munmap(p, n);
  }

  int64_t empty() {
    std::deque<std::pair<void*, size_t>> evicted;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      evicted.swap(free_);
      cached_ = 0;
    }
    for (const auto& [p, n] : evicted) munmap(p, n);
    return static_cast<int64_t>(evicted.size());
  }

  int64_t cached_bytes() {
    std::lock_guard<std::mutex> guard(mutex_);
    return static_cast<int64_t>(cached_);
  }

 private:
  BufferCache() {
    const char* mb = std::getenv("LSTMKIT_BUFFER_CACHE_MB");
    limit_ = size_t(mb != nullptr ? std::max(0L, std::atol(mb)) : 1024) << 20;
  }

  static void* map(size_t size) {
    void* raw = mmap(nullptr, size + kAlign, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    char* begin = static_cast<char*>(raw);  // keep the 2 MiB-aligned part of the mapping
    const size_t misalign = reinterpret_cast<uintptr_t>(begin) % kAlign;
    char* data = begin + (misalign == 0 ? 0 : kAlign - misalign);
    if (data > begin) munmap(begin, data - begin);
    munmap(data + size, begin + kAlign - data);  // the slack after the buffer
    madvise(data, size, MADV_HUGEPAGE);  // a hint: failure leaves ordinary pages
    return data;
  }

  std::mutex mutex_;
  std::deque<std::pair<void*, size_t>> free_;  // (mapping, size), oldest first
  size_t cached_ = 0, limit_ = 0;
};
#endif

// An uninitialised buffer: from the cache when it is large (see BufferCache).
inline Tensor buffer(at::IntArrayRef shape, const at::TensorOptions& options) {
#ifdef __linux__
  constexpr size_t kAlign = BufferCache::kAlign;
  const size_t bytes = c10::multiply_integers(shape) * options.dtype().itemsize();
  if (bytes >= kAlign) {
    const size_t size = (bytes + kAlign - 1) / kAlign * kAlign;
    if (void* data = BufferCache::instance().take(size)) {
      auto release = [size](void* p) { BufferCache::instance().give(p, size); };
      return at::from_blob(data, shape, release, options);
    }
  }
#endif
  return at::empty(shape, options);
}

// The time loops run on one team of threads for all steps (OpenMP, the pool ATen uses).
// Each step's GEMM is split by output columns: thread k multiplies by its own block of W, which
// stays in its core's cache from step to step, instead of MKL forking and joining its threads
// and streaming all of W through each core at every step (BENCHMARKS.md, "One thread team").
// The pointwise passes split the batch rows. Barriers order the phases.
class Team {
 public:
  // Contiguous block k of K of [0, size), its length rounded to `align` (cache lines).
  static std::pair<int64_t, int64_t> block(int64_t size, int k, int K, int64_t align = 1) {
    const int64_t chunk = ((size + K - 1) / K + align - 1) / align * align;
    const int64_t begin = std::min(size, k * chunk);
    return {begin, std::min(size, begin + chunk)};
  }

  // Runs body(k, K) on every thread k of a team of K; rethrows the first error after all end.
  template <typename Body>
  void run(const Body& body) {
    const int K = at::in_parallel_region() ? 1 : at::get_num_threads();
    const bool inference = c10::InferenceMode::is_enabled();
#pragma omp parallel num_threads(K)
    {
      // The kernel computes its own gradients: no autograd in the team (grad mode is per
      // thread, and on in a fresh one, where mm_out would refuse parameters that need grad).
      // Inference mode is passed on (buffers made under it are inference tensors, which
      // only a thread in inference mode may write). The caller's other thread-local state
      // is not: with saved-tensor hooks it holds Python objects, and copying them would need
      // the GIL (dispatch modes and the profiler thus see only the calling thread's share).
      const c10::InferenceMode same_inference_mode(inference);
      const at::NoGradGuard no_grad;
      if (omp_get_thread_num() == 0) size_ = omp_get_num_threads();  // OpenMP may give fewer
      body(omp_get_thread_num(), omp_get_num_threads());
    }
    if (error_) std::rethrow_exception(error_);
  }

  int size() const { return size_; }  // K of the last run

  // One thread's share of a phase. An error is kept for run() instead of escaping the parallel
  // region, and the thread goes on to meet its team at every barrier (no deadlock). Work
  // that can fail belongs in here; the rest of a loop body only takes views and pointers.
  template <typename Work>
  void guarded(const Work& work) {
    if (failed_.load()) return;
    try {
      work();
    } catch (...) {
      std::lock_guard<std::mutex> guard(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true);
    }
  }

  static void barrier() {
#pragma omp barrier
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
  int size_ = 1;
};

// Columns of a step's GEMM output per thread are aligned to 16 values (a 64-byte cache line).
constexpr int64_t kColumnAlign = 16;

// A step's GEMM output (rows, cols) stored as the team's K column blocks, each a contiguous
// (rows, width_k) matrix, one after the other: every thread's GEMM writes a contiguous output
// (ATen copies a strided one), and a row is gathered where the pointwise pass reads it.
template <typename T>
struct Blocks {
  T* data;
  int64_t rows, cols;

  Tensor block(int k, int K, const at::TensorOptions& options) const {
    const auto [c0, c1] = Team::block(cols, k, K, kColumnAlign);
    return at::from_blob(data + rows * c0, {rows, c1 - c0}, options);
  }

  void gather_row(int64_t n, int K, T* row) const {
    for (int k = 0; k < K; ++k) {
      const auto [c0, c1] = Team::block(cols, k, K, kColumnAlign);
      if (c1 > c0) std::memcpy(row + c0, data + rows * c0 + n * (c1 - c0), (c1 - c0) * sizeof(T));
    }
  }
};

}  // namespace lstmkit
