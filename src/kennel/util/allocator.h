// The memory allocator Kennel's programs run with, and its one setting.
// The programs link tcmalloc (docs/decisions.md: glibc's malloc maps every
// large block afresh, so each training step page-faulted its activations in
// again). tcmalloc by default returns freed pages to the system a few at a
// time, and once some are returned, an allocation that finds no free span of
// its size first returns every free page (gperftools' forced coalescing): after
// a validation pass and a checkpoint, the next ResNet-50 training step at
// 224 px page-faulted 1.5 GB back in (about 400,000 faults, 0.3-0.5 s on a
// 2-core Xeon). The commands that run models keep freed memory for reuse
// instead: their footprint stays at its peak, as a framework's caching
// allocator's does.
// Thread-safety: keep_freed_memory() at start-up, before other threads allocate.
#pragma once

#include <string>

namespace kennel {

struct AllocatorState {
  std::string name;                 // "tcmalloc" or "system malloc" (a sanitizer build's)
  bool keeps_freed_memory = false;  // tcmalloc returns no freed memory to the system
};

// Sets tcmalloc's memory release rate to 0 when tcmalloc is the process's allocator; returns the
// state that results.
AllocatorState keep_freed_memory();

// The allocator and its setting now.
AllocatorState allocator_state();

}  // namespace kennel
