// A running job's heartbeat: the registry row's heartbeat is refreshed every
// few seconds from a thread of its own, so feature extraction and long steps
// do not look like a dead job (`kennel jobs list` and tuning workers read it).
// The thread opens its own store connection and ends with the object.
// Thread-safety: construct and destroy from one thread.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "kennel/store/store.h"

namespace kennel::job {

class HeartbeatThread {
 public:
  HeartbeatThread(store::StoreLocation location, std::string name);
  ~HeartbeatThread();
  HeartbeatThread(const HeartbeatThread&) = delete;
  HeartbeatThread& operator=(const HeartbeatThread&) = delete;

 private:
  void run();
  store::StoreLocation location_;
  std::string name_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kennel::job
