// Splitting CPU scan work over threads: fn(begin, end) on contiguous ranges of [0, count), one range
// per thread, at most `threads` threads (fewer than 1 means 1). Shared by the forward entry points
// (rows or channels) and the backward (batch items) of libremamber_cpu_ops.so.
#pragma once

#include <stdint.h>

#include <algorithm>
#include <thread>
#include <vector>

namespace remamber {
namespace scan {

template <class Fn>
void parallel_ranges(int64_t count, int threads, Fn fn) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(std::max(threads, 1), count));
  if (workers == 1) {
    fn(int64_t{0}, count);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t per = (count + workers - 1) / workers;
  for (int64_t w = 0; w < workers; ++w) {
    const int64_t b = w * per, e = std::min(count, b + per);
    if (b < e) pool.emplace_back(fn, b, e);
  }
  for (auto& th : pool) th.join();
}

}  // namespace scan
}  // namespace remamber
