#include "kennel/serve/detail/request_stream.h"

#include <algorithm>
#include <cstring>

namespace kennel::serve::detail {

ssize_t RequestStream::read(char* ptr, size_t size) {
  const size_t n = std::min(size, end_ - position_);
  std::memcpy(ptr, c_.buffer.data() + position_, n);
  position_ += n;
  return static_cast<ssize_t>(n);
}

ssize_t RequestStream::write(const char* ptr, size_t size) {
  if (failed_) return -1;
  output_.append(ptr, size);
  if (output_.size() >= (64 << 10) && !flush()) return -1;
  return static_cast<ssize_t>(size);
}

void RequestStream::get_remote_ip_and_port(std::string& ip, int& port) const {
  ip = c_.remote_ip;
  port = c_.remote_port;
}

void RequestStream::get_local_ip_and_port(std::string& ip, int& port) const {
  ip = c_.local_ip;
  port = c_.local_port;
}

bool RequestStream::flush() {
  if (failed_ || output_.empty()) return !failed_;
  if (deadline_ == Clock::time_point{}) deadline_ = Clock::now() + write_timeout_;
  failed_ = !write_all(c_, output_, deadline_);
  output_.clear();
  return !failed_;
}

}  // namespace kennel::serve::detail
