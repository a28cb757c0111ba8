#include "kennel/job/heartbeat.h"

#include <chrono>

namespace kennel::job {

HeartbeatThread::HeartbeatThread(store::StoreLocation location, std::string name)
    : location_(std::move(location)), name_(std::move(name)) {
  thread_ = std::thread([this] { run(); });
}

HeartbeatThread::~HeartbeatThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void HeartbeatThread::run() {
  auto registry = store::open_store(location_);  // its own connection: one per thread
  if (!registry.ok()) return;
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, std::chrono::seconds(5), [&] { return stopping_; })) {
    (void)(*registry)->heartbeat(name_);
  }
}

}  // namespace kennel::job
