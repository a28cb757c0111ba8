#include "kennel/store/endpoint_registry.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/store/job_registry.h"
#include "kennel/store/layout.h"
#include "kennel/util/fs.h"

namespace kennel::store {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kFormatVersion = 1;

json to_json(const EndpointRecord& record) {
  return {{"version", kFormatVersion},
          {"url", record.url},
          {"model", record.model},
          {"model_dir", record.model_dir},
          {"host", record.host},
          {"pid", record.pid},
          {"process_start", record.process_start},
          {"started_at", record.started_at}};
}

std::optional<EndpointRecord> from_json(const json& object) {
  if (!object.is_object() || !object.value("url", json()).is_string() ||
      !object.value("pid", json()).is_number_integer()) {
    return std::nullopt;
  }
  EndpointRecord record;
  record.url = object["url"].get<std::string>();
  record.pid = object["pid"].get<int64_t>();
  const auto text = [&](const char* key) {
    const auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  record.model = text("model");
  record.model_dir = text("model_dir");
  record.host = text("host");
  if (const auto it = object.find("process_start");
      it != object.end() && it->is_number_unsigned()) {
    record.process_start = it->get<uint64_t>();
  }
  if (const auto it = object.find("started_at"); it != object.end() && it->is_number()) {
    record.started_at = it->get<double>();
  }
  return record;
}

}  // namespace

uint64_t process_start_ticks(int64_t pid) {
  if (pid <= 0) return 0;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int index = 3; fields >> field; ++index) {
    if (index == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

Result<EndpointRegistration> EndpointRegistration::create(const fs::path& home,
                                                          EndpointRecord record) {
  record.host = this_host();
  record.pid = static_cast<int64_t>(::getpid());
  record.process_start = process_start_ticks(record.pid);
  record.started_at = unix_now();
  const HomeLayout layout(home);
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(layout.endpoints()));
  const fs::path path = layout.endpoint(record.host, record.pid);
  KENNEL_RETURN_IF_ERROR(write_file_atomic(path, to_json(record).dump(2) + "\n"));
  return EndpointRegistration(path);
}

EndpointRegistration::~EndpointRegistration() {
  if (path_.empty()) return;
  std::error_code error;
  fs::remove(path_, error);
}

std::vector<EndpointRecord> list_endpoints(const fs::path& home) {
  std::vector<EndpointRecord> live;
  const std::string here = this_host();
  std::error_code error;
  for (fs::directory_iterator it(HomeLayout(home).endpoints(), error), end; !error && it != end;
       it.increment(error)) {
    if (it->path().extension() != ".json") continue;
    auto text = read_file_text(it->path());
    if (!text.ok()) continue;
    std::optional<EndpointRecord> record;
    try {
      record = from_json(json::parse(*text));
    } catch (const json::exception&) {
      continue;
    }
    if (!record) continue;
    record->same_host = record->host == here;
    if (record->same_host) {
      const uint64_t start = process_start_ticks(record->pid);
      if (start == 0 || (record->process_start != 0 && start != record->process_start)) continue;
    }
    live.push_back(std::move(*record));
  }
  std::sort(live.begin(), live.end(), [](const EndpointRecord& a, const EndpointRecord& b) {
    return a.started_at != b.started_at ? a.started_at < b.started_at : a.pid < b.pid;
  });
  return live;
}

}  // namespace kennel::store
