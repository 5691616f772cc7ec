// Runs vid3d's CUDA kernels on the host, for testing them without a GPU: the kernel code of
// csrc/cuda compiled by the host compiler (CUDA's headers give dim3, uint4 and the half/bfloat16
// conversions), with VID3D_CUDA_HOST_EMULATION defined so that kernel_common.cuh takes the block's
// shared memory and the launches from here. A launch runs its blocks one after another; each CUDA
// thread of a block is a coroutine (ucontext) on the calling thread, resumed in turn until it
// reaches __syncthreads or returns, so a round over the block's threads is exactly one barrier
// interval and threads that return early leave the barrier, as on the GPU. Shared memory starts
// filled with NaN bytes, so a read of an element the block did not load shows in the result. This
// checks the kernels' logic (indexing, tiling, vector paths, reductions, barrier placement), not
// their speed, races within a barrier interval, the GPU's memory model or warp-level behaviour.
#pragma once

#if !defined(VID3D_CUDA_HOST_EMULATION)
#error "define VID3D_CUDA_HOST_EMULATION before including cuda_host_emulation.h"
#endif

#include <cuda_runtime.h>

#include <ucontext.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#define __launch_bounds__(...)

template <typename T>
inline T __ldg(const T* address) {
  return *address;
}

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace vid3d_emulation {

// The coroutines of one block's threads.
struct Block {
  static constexpr size_t kStackBytes = 256 * 1024;
  ucontext_t scheduler;
  std::vector<ucontext_t> threads;
  std::vector<std::vector<char>> stacks;
  std::vector<bool> done;
  void (*body)(void*) = nullptr;  // runs the kernel for the current thread
  void* closure = nullptr;
  int current = 0;
};

inline thread_local Block* current_block = nullptr;
inline thread_local unsigned char* current_shared = nullptr;

inline unsigned char* block_shared_memory() { return current_shared; }

inline void thread_entry() {
  Block& block = *current_block;
  block.body(block.closure);
  block.done[block.current] = true;
}  // returns to block.scheduler (uc_link)

// Runs kernel(args...) over grid x block threads (x dimensions only, as vid3d's kernels use).
template <typename... KernelArgs, typename... Args>
cudaError_t run_grid(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, int64_t shared_bytes, Args&&... args) {
  if (grid.y != 1 || grid.z != 1 || block.y != 1 || block.z != 1 || block.x == 0) return cudaErrorInvalidConfiguration;
  std::vector<uint4> shared((static_cast<size_t>(shared_bytes) + 31) / 16);  // 16-byte aligned
  auto call = [&] { kernel(args...); };
  Block state;
  const int threads = static_cast<int>(block.x);
  state.threads.resize(threads);
  state.stacks.assign(threads, std::vector<char>(Block::kStackBytes));
  state.body = [](void* closure) { (*static_cast<decltype(call)*>(closure))(); };
  state.closure = &call;
  Block* outer_block = current_block;
  unsigned char* outer_shared = current_shared;
  current_block = &state;
  current_shared = reinterpret_cast<unsigned char*>(shared.data());
  blockDim = block;
  gridDim = grid;
  ucontext_t fresh;  // copied for every thread: one getcontext (a system call) per launch
  getcontext(&fresh);
  for (unsigned b = 0; b < grid.x; ++b) {
    std::memset(shared.data(), 0xFF, shared.size() * sizeof(uint4));  // NaN in every floating-point type
    blockIdx = dim3(b);
    state.done.assign(threads, false);
    for (int t = 0; t < threads; ++t) {
      state.threads[t] = fresh;
      state.threads[t].uc_stack.ss_sp = state.stacks[t].data();
      state.threads[t].uc_stack.ss_size = Block::kStackBytes;
      state.threads[t].uc_link = &state.scheduler;
      makecontext(&state.threads[t], thread_entry, 0);
    }
    for (bool running = true; running;) {  // one round: every live thread to its next barrier
      running = false;
      for (int t = 0; t < threads; ++t) {
        if (state.done[t]) continue;
        state.current = t;
        threadIdx = dim3(t);
        swapcontext(&state.scheduler, &state.threads[t]);
        running = running || !state.done[t];
      }
    }
  }
  current_block = outer_block;
  current_shared = outer_shared;
  return cudaSuccess;
}

}  // namespace vid3d_emulation

inline void __syncthreads() {
  vid3d_emulation::Block& block = *vid3d_emulation::current_block;
  swapcontext(&block.threads[block.current], &block.scheduler);
}
