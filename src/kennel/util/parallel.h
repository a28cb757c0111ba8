// parallel_for: runs a function over [0, count) on a fixed number of threads,
// handing out indices dynamically (images differ wildly in decode cost).
// An exception thrown by the function stops the other threads from taking new
// indices and is rethrown in the caller, origin included (never lost, never
// std::terminate). Thread-safety: `fn` is called concurrently from `threads`
// threads and must be safe for that.
#pragma once

#include <cstddef>
#include <functional>

namespace kennel {

// Number of threads to use when the user says 0 ("auto"): the cores we may run on.
int default_thread_count();

void parallel_for(size_t count, int threads, const std::function<void(size_t index)>& fn);

}  // namespace kennel
