// Logging: one spdlog logger writing to stderr, level set once by the CLI
// (--log-level / KENNEL_LOG_LEVEL). Thread-safe (spdlog's mt sink).
#pragma once

#include <string>

#include <spdlog/spdlog.h>

#include "kennel/util/status.h"

namespace kennel {

// Accepts trace, debug, info, warn, error, off. Unknown names are a usage error.
Status set_log_level(const std::string& level);

}  // namespace kennel
