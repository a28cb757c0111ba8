#include "kennel/util/allocator.h"

#include <dlfcn.h>

#include <gperftools/malloc_extension.h>

namespace kennel {

namespace {

// tcmalloc's extension object when the process runs tcmalloc, else null. Looked up at run time:
// programs built without tcmalloc (sanitizer builds, the unit tests) link this file too.
MallocExtension* tcmalloc_extension() {
  using Instance = MallocExtension* (*)();
  const auto instance = reinterpret_cast<Instance>(dlsym(RTLD_DEFAULT, "_ZN15MallocExtension8instanceEv"));
  return instance == nullptr ? nullptr : instance();
}

}  // namespace

AllocatorState keep_freed_memory() {
  if (MallocExtension* extension = tcmalloc_extension()) extension->SetMemoryReleaseRate(0);
  return allocator_state();
}

AllocatorState allocator_state() {
  MallocExtension* extension = tcmalloc_extension();
  if (extension == nullptr) return {"system malloc", false};
  return {"tcmalloc", extension->GetMemoryReleaseRate() == 0};
}

}  // namespace kennel
