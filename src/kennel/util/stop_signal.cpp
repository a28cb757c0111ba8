#include "kennel/util/stop_signal.h"

#include <atomic>

namespace kennel {

namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void record_stop_signal(int signal_number) { g_stop_signal.store(signal_number); }
}  // namespace

StopSignalScope::StopSignalScope() {
  g_stop_signal = 0;
  struct sigaction action {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &previous_int_);
  sigaction(SIGTERM, &action, &previous_term_);
}

StopSignalScope::~StopSignalScope() {
  sigaction(SIGINT, &previous_int_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
}

int StopSignalScope::received() { return g_stop_signal.load(); }

std::string StopSignalScope::name(int signal_number) {
  return signal_number == SIGINT ? "SIGINT" : signal_number == SIGTERM ? "SIGTERM" : "signal " + std::to_string(signal_number);
}

}  // namespace kennel
