#include "kennel/studio/metrics_history.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

namespace kennel::studio {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kReadChunk = 1 << 20;

// A usable step number: an integer, or a whole float within range (anything else reads as absent).
std::optional<int64_t> step_of(const json& record) {
  const auto it = record.find("step");
  if (it == record.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    const auto value = it->get<uint64_t>();
    return value <= static_cast<uint64_t>(INT64_MAX / 2) ? std::optional<int64_t>(value)
                                                         : std::nullopt;
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    const double value = it->get<double>();
    if (std::isfinite(value) && std::abs(value) < 1e15 && value == std::floor(value)) {
      return static_cast<int64_t>(value);
    }
  }
  return std::nullopt;
}

}  // namespace

// One file's parsed history. `offset` is the byte after the last complete line.
struct MetricsHistoryCache::History {
  std::mutex mutex;
  dev_t device = 0;
  ino_t inode = 0;
  int64_t offset = 0;
  int64_t skipped_lines = 0;
  int64_t last_step = -1;     // the step of the latest record (records without one inherit it)
  std::vector<json> records;  // each with a numeric "step"

  void reset() {
    offset = 0;
    skipped_lines = 0;
    last_step = -1;
    records.clear();
  }

  void add_line(std::string_view line) {
    if (line.empty()) return;
    json record = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (!record.is_object()) {
      ++skipped_lines;
      return;
    }
    const std::optional<int64_t> step = step_of(record);
    if (step && record.value("type", std::string()) == "step" && *step <= last_step) {
      // A resumed job logs again from its checkpoint: the earlier copies of those steps go.
      std::erase_if(records, [&](const json& old) { return old["step"].get<int64_t>() >= *step; });
    }
    if (step) {
      last_step = *step;
    } else {
      record["step"] = std::max<int64_t>(last_step, 0);
    }
    records.push_back(std::move(record));
  }

  // Reads what was appended since the last call; starts over when the file was replaced or shrank.
  Status refresh(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      if (errno == ENOENT) {
        reset();
        return {};
      }
      return Status(ErrorCode::kPermissionDenied,
                    fmt::format("cannot read '{}': {}", path.string(), std::strerror(errno)));
    }
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd);
      return invalid_argument("'{}' is not a regular file", path.string());
    }
    if (info.st_dev != device || info.st_ino != inode || info.st_size < offset) {
      reset();
      device = info.st_dev;
      inode = info.st_ino;
    }
    std::string pending;
    std::string chunk(kReadChunk, '\0');
    int64_t position = offset;
    while (position < info.st_size) {
      const ssize_t got = ::pread(fd, chunk.data(), chunk.size(), position);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      position += got;
      pending.append(chunk.data(), static_cast<size_t>(got));
      size_t start = 0;
      for (size_t newline; (newline = pending.find('\n', start)) != std::string::npos;
           start = newline + 1) {
        add_line(std::string_view(pending).substr(start, newline - start));
        offset += static_cast<int64_t>(newline + 1 - start);
      }
      pending.erase(0, start);  // a half-written last line waits for its newline
    }
    ::close(fd);
    return {};
  }
};

std::shared_ptr<MetricsHistoryCache::History> MetricsHistoryCache::history_for(
    const fs::path& path) {
  std::lock_guard lock(mutex_);
  const std::string key = path.string();
  recency_.remove(key);
  recency_.push_front(key);
  auto& slot = histories_[key];
  if (!slot) slot = std::make_shared<History>();
  while (recency_.size() > max_files_) {
    histories_.erase(recency_.back());
    recency_.pop_back();
  }
  return slot;
}

Result<MetricsSlice> MetricsHistoryCache::read(const fs::path& metrics_path, int64_t since,
                                               bool finished) {
  const std::shared_ptr<History> history = history_for(metrics_path);
  std::lock_guard lock(history->mutex);
  KENNEL_RETURN_IF_ERROR(history->refresh(metrics_path));
  MetricsSlice slice;
  slice.skipped_lines = history->skipped_lines;
  // While the job runs, its latest step may still gain records (the epoch's, the evaluation's).
  const int64_t complete_through = finished ? INT64_MAX : history->last_step - 1;
  slice.next = std::max<int64_t>(since, -1);
  for (const json& record : history->records) {
    const int64_t step = record["step"].get<int64_t>();
    if (step <= since || step > complete_through) continue;
    slice.records.push_back(record);
    slice.next = std::max(slice.next, step);
  }
  return slice;
}

}  // namespace kennel::studio
