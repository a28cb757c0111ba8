#include "kennel/util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace kennel {

Status set_log_level(const std::string& level) {
  static const bool configured = [] {
    auto logger = spdlog::stderr_color_mt("kennel");
    logger->set_pattern("%^%l%$: %v");
    spdlog::set_default_logger(logger);
    return true;
  }();
  (void)configured;
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    return invalid_argument("unknown log level '{}': use trace, debug, info, warn, error or off",
                            level);
  }
  spdlog::set_level(parsed);
  return {};
}

}  // namespace kennel
