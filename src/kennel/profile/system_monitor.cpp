#include "kennel/profile/system_monitor.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <string>

#include <spdlog/spdlog.h>

#include "kennel/util/fs.h"

namespace kennel::profile {

namespace {

// ---- text helpers ----

// Calls `visit(line)` for each line of `text`, without the '\n'.
template <typename Visit>
void for_each_line(std::string_view text, Visit&& visit) {
  while (!text.empty()) {
    const size_t end = text.find('\n');
    visit(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Splits on runs of blanks.
std::vector<std::string_view> split_fields(std::string_view text) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) fields.push_back(text.substr(start, i - start));
  }
  return fields;
}

std::optional<uint64_t> parse_unsigned(std::string_view field) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (error != std::errc() || end != field.data() + field.size()) return std::nullopt;
  return value;
}

// `after - before`, or 0 when a counter went backwards.
uint64_t counter_delta(uint64_t before, uint64_t after) { return after > before ? after - before : 0; }

CpuJiffies jiffies_delta(const CpuJiffies& before, const CpuJiffies& after) {
  CpuJiffies delta;
  delta.user = counter_delta(before.user, after.user);
  delta.nice = counter_delta(before.nice, after.nice);
  delta.system = counter_delta(before.system, after.system);
  delta.idle = counter_delta(before.idle, after.idle);
  delta.iowait = counter_delta(before.iowait, after.iowait);
  delta.irq = counter_delta(before.irq, after.irq);
  delta.softirq = counter_delta(before.softirq, after.softirq);
  delta.steal = counter_delta(before.steal, after.steal);
  return delta;
}

double percent_of(uint64_t part, uint64_t whole) {
  if (whole == 0) return 0;
  return std::clamp(100.0 * static_cast<double>(part) / static_cast<double>(whole), 0.0, 100.0);
}

// The values after "cpu" / "cpuN" on a /proc/stat line; nullopt with fewer than four.
std::optional<CpuJiffies> parse_cpu_fields(const std::vector<std::string_view>& fields) {
  if (fields.size() < 5) return std::nullopt;
  std::array<uint64_t, 8> values{};
  for (size_t i = 0; i < values.size() && i + 1 < fields.size(); ++i) {
    const auto value = parse_unsigned(fields[i + 1]);
    if (!value) return std::nullopt;
    values[i] = *value;
  }
  return CpuJiffies{values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7]};
}

// "Key:   123 kB" -> 123 * 1024 when the line's key is `key`.
std::optional<uint64_t> kilobyte_value(std::string_view line, std::string_view key) {
  if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ':') {
    return std::nullopt;
  }
  const auto fields = split_fields(line.substr(key.size() + 1));
  if (fields.empty()) return std::nullopt;
  const auto value = parse_unsigned(fields[0]);
  if (!value) return std::nullopt;
  return *value * 1024;  // the kernel always writes these in kB
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::optional<std::string> read_proc_file(const char* path) {
  auto text = read_file_text(path);
  if (!text.ok()) return std::nullopt;
  return std::move(*text);
}

double unix_seconds_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Status open_error(int error_number, const std::filesystem::path& path) {
  ErrorCode code = ErrorCode::kInternal;
  if (error_number == ENOENT || error_number == ENOTDIR) code = ErrorCode::kNotFound;
  if (error_number == EACCES || error_number == EPERM || error_number == EROFS) code = ErrorCode::kPermissionDenied;
  if (error_number == EISDIR) code = ErrorCode::kInvalidArgument;
  if (error_number == ENOSPC || error_number == EDQUOT) code = ErrorCode::kResourceExhausted;
  return {code, fmt::format("cannot open system samples file '{}': {}", path_text(path), std::strerror(error_number))};
}

// Writes all of `text` with as few write() calls as the kernel allows (one,
// for a line this size), so a line reaches the file as soon as it is made.
void write_all(int fd, std::string_view text, const std::filesystem::path& path) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error_number = errno;
      const ErrorCode code = (error_number == ENOSPC || error_number == EDQUOT) ? ErrorCode::kResourceExhausted
                                                                                 : ErrorCode::kDataLoss;
      throw Error(code, fmt::format("cannot write to '{}': {}", path_text(path), std::strerror(error_number)));
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
}

// A line cut short by a kill would swallow the first line appended after it.
void end_partial_last_line(int fd, const std::filesystem::path& path) {
  struct stat info {};
  if (::fstat(fd, &info) != 0 || info.st_size == 0) return;
  char last = '\n';
  if (::pread(fd, &last, 1, info.st_size - 1) == 1 && last != '\n') write_all(fd, "\n", path);
}

}  // namespace

// ---- NVML ----

namespace detail {

// NVML, loaded at run time so Kennel neither links against the NVIDIA driver
// nor needs its headers: the few entry points and structs below are declared
// as NVML's nvml.h declares them (stable C ABI since NVML 5).
class NvmlGpus {
 public:
  // nullptr when the library is absent, fails to initialise or sees no GPU.
  static std::unique_ptr<NvmlGpus> open() {
    void* library = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
      spdlog::debug("system monitor: no NVML ({}), samples carry no GPU data", ::dlerror());
      return nullptr;
    }
    std::unique_ptr<NvmlGpus> gpus(new NvmlGpus(library));
    if (!gpus->bind() || gpus->init_() != kSuccess) {
      spdlog::debug("system monitor: NVML did not initialise, samples carry no GPU data");
      return nullptr;  // the destructor closes the library (and skips nvmlShutdown)
    }
    gpus->initialised_ = true;
    unsigned count = 0;
    if (gpus->get_count_(&count) != kSuccess) count = 0;
    for (unsigned index = 0; index < count; ++index) {
      Device device;
      device.index = static_cast<int>(index);
      if (gpus->get_handle_(index, &device.handle) != kSuccess) continue;
      std::array<char, 96> name{};  // NVML_DEVICE_NAME_V2_BUFFER_SIZE
      if (gpus->get_name_(device.handle, name.data(), static_cast<unsigned>(name.size())) == kSuccess) {
        name.back() = '\0';
        device.name = name.data();
      }
      gpus->devices_.push_back(std::move(device));
    }
    if (gpus->devices_.empty()) {
      spdlog::debug("system monitor: NVML sees no GPU");
      return nullptr;
    }
    return gpus;
  }

  ~NvmlGpus() {
    if (initialised_) shutdown_();
    ::dlclose(library_);
  }
  NvmlGpus(const NvmlGpus&) = delete;
  NvmlGpus& operator=(const NvmlGpus&) = delete;

  // One entry per GPU that answered at least one of the two queries (a GPU
  // that answers neither, e.g. one fallen off the bus, is left out of this sample).
  std::vector<GpuSample> sample() const {
    std::vector<GpuSample> samples;
    for (const Device& device : devices_) {
      GpuSample sample;
      sample.index = device.index;
      sample.name = device.name;
      Utilization utilization{};
      const bool have_utilization = get_utilization_(device.handle, &utilization) == kSuccess;
      if (have_utilization) sample.utilization = utilization.gpu;
      Memory memory{};
      const bool have_memory = get_memory_(device.handle, &memory) == kSuccess;
      if (have_memory) {
        sample.memory_used = static_cast<double>(memory.used);
        sample.memory_total = static_cast<double>(memory.total);
      }
      if (have_utilization || have_memory) samples.push_back(std::move(sample));
    }
    return samples;
  }

 private:
  using Return = int;  // nvmlReturn_t
  static constexpr Return kSuccess = 0;
  using DeviceHandle = void*;  // nvmlDevice_t
  struct Utilization {  // nvmlUtilization_t
    unsigned gpu, memory;
  };
  struct Memory {  // nvmlMemory_t
    unsigned long long total, free, used;
  };
  struct Device {
    int index = 0;
    DeviceHandle handle = nullptr;
    std::string name;
  };

  explicit NvmlGpus(void* library) : library_(library) {}

  template <typename Function>
  bool bind_one(Function& function, const char* symbol) {
    function = reinterpret_cast<Function>(::dlsym(library_, symbol));
    return function != nullptr;
  }
  bool bind() {
    return bind_one(init_, "nvmlInit_v2") && bind_one(shutdown_, "nvmlShutdown") &&
           bind_one(get_count_, "nvmlDeviceGetCount_v2") &&
           bind_one(get_handle_, "nvmlDeviceGetHandleByIndex_v2") &&
           bind_one(get_utilization_, "nvmlDeviceGetUtilizationRates") &&
           bind_one(get_memory_, "nvmlDeviceGetMemoryInfo") && bind_one(get_name_, "nvmlDeviceGetName");
  }

  void* library_;
  bool initialised_ = false;
  std::vector<Device> devices_;
  Return (*init_)() = nullptr;
  Return (*shutdown_)() = nullptr;
  Return (*get_count_)(unsigned*) = nullptr;
  Return (*get_handle_)(unsigned, DeviceHandle*) = nullptr;
  Return (*get_utilization_)(DeviceHandle, Utilization*) = nullptr;
  Return (*get_memory_)(DeviceHandle, Memory*) = nullptr;
  Return (*get_name_)(DeviceHandle, char*, unsigned) = nullptr;
};

}  // namespace detail

// ---- /proc parsing ----

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  ProcStat stat;
  bool have_total = false;
  for_each_line(text, [&](std::string_view line) {
    if (!starts_with(line, "cpu")) return;
    const auto fields = split_fields(line);
    if (fields.empty()) return;
    const std::string_view name = fields[0];
    const auto jiffies = parse_cpu_fields(fields);
    if (!jiffies) return;
    if (name == "cpu") {
      stat.total = *jiffies;
      have_total = true;
      return;
    }
    const auto core = parse_unsigned(name.substr(3));
    if (core && *core < 1u << 20) stat.cores[static_cast<int>(*core)] = *jiffies;
  });
  if (!have_total) return std::nullopt;
  return stat;
}

CpuUsage cpu_usage_between(const ProcStat& before, const ProcStat& after) {
  CpuUsage usage;
  const CpuJiffies total = jiffies_delta(before.total, after.total);
  usage.busy = percent_of(total.busy(), total.total());
  usage.iowait = percent_of(total.iowait, total.total());
  usage.per_core.reserve(after.cores.size());
  for (const auto& [core, jiffies] : after.cores) {
    const auto earlier = before.cores.find(core);
    if (earlier == before.cores.end()) {
      usage.per_core.push_back(0);
      continue;
    }
    const CpuJiffies delta = jiffies_delta(earlier->second, jiffies);
    usage.per_core.push_back(percent_of(delta.busy(), delta.total()));
  }
  return usage;
}

std::optional<uint64_t> parse_process_cpu_ticks(std::string_view proc_self_stat) {
  const size_t name_end = proc_self_stat.rfind(')');
  if (name_end == std::string_view::npos) return std::nullopt;
  // After "pid (comm)": field 3 (state) is at 0, so utime (14) and stime (15) are at 11 and 12.
  const auto fields = split_fields(proc_self_stat.substr(name_end + 1));
  if (fields.size() < 13) return std::nullopt;
  const auto user = parse_unsigned(fields[11]);
  const auto system = parse_unsigned(fields[12]);
  if (!user || !system) return std::nullopt;
  return *user + *system;
}

std::optional<uint64_t> parse_resident_bytes(std::string_view proc_self_status) {
  std::optional<uint64_t> bytes;
  for_each_line(proc_self_status, [&](std::string_view line) {
    if (!bytes) bytes = kilobyte_value(line, "VmRSS");
  });
  return bytes;
}

std::optional<MemoryInfo> parse_meminfo(std::string_view text) {
  std::optional<uint64_t> total, available;
  uint64_t free = 0, buffers = 0, cached = 0;
  for_each_line(text, [&](std::string_view line) {
    if (auto value = kilobyte_value(line, "MemTotal")) total = value;
    if (auto value = kilobyte_value(line, "MemAvailable")) available = value;
    if (auto value = kilobyte_value(line, "MemFree")) free = *value;
    if (auto value = kilobyte_value(line, "Buffers")) buffers = *value;
    if (auto value = kilobyte_value(line, "Cached")) cached = *value;
  });
  if (!total) return std::nullopt;
  MemoryInfo info;
  info.total = *total;
  info.available = available ? *available : std::min(*total, free + buffers + cached);
  return info;
}

bool is_whole_physical_disk(std::string_view name) {
  if (name.empty()) return false;
  for (std::string_view virtual_prefix : {"loop", "ram", "zram", "dm-", "md"}) {
    if (starts_with(name, virtual_prefix)) return false;
  }
  // nvme0n1p1, mmcblk0p2: a digit, 'p', digits at the end.
  size_t digits_start = name.size();
  while (digits_start > 0 && is_digit(name[digits_start - 1])) --digits_start;
  const bool ends_with_digits = digits_start < name.size();
  if (ends_with_digits && digits_start >= 2 && name[digits_start - 1] == 'p' && is_digit(name[digits_start - 2])) {
    return false;
  }
  // sda1, vdb2, xvda1, hdc3: letters name the disk, digits the partition.
  for (std::string_view lettered_family : {"sd", "hd", "vd", "xvd", "dasd"}) {
    if (!starts_with(name, lettered_family)) continue;
    const std::string_view letters = name.substr(lettered_family.size(), digits_start - lettered_family.size());
    const bool all_letters =
        !letters.empty() && std::all_of(letters.begin(), letters.end(), [](char c) { return c >= 'a' && c <= 'z'; });
    if (all_letters) return !ends_with_digits;
  }
  return true;
}

DiskBytes parse_diskstats(std::string_view text) {
  constexpr uint64_t kSectorBytes = 512;  // diskstats counts 512-byte units on every device
  DiskBytes bytes;
  for_each_line(text, [&](std::string_view line) {
    // major minor name reads merged sectors_read ms writes merged sectors_written ...: at
    // least 11 counters (kernels before 2.6.25 wrote partitions with 4, in another order).
    const auto fields = split_fields(line);
    if (fields.size() < 14 || !is_whole_physical_disk(fields[2])) return;
    const auto read = parse_unsigned(fields[5]);
    const auto written = parse_unsigned(fields[9]);
    if (!read || !written) return;
    bytes.read += *read * kSectorBytes;
    bytes.written += *written * kSectorBytes;
  });
  return bytes;
}

NetworkBytes parse_net_dev(std::string_view text) {
  NetworkBytes bytes;
  for_each_line(text, [&](std::string_view line) {
    // "  eth0: rx_bytes packets errs drop fifo frame compressed multicast tx_bytes ..."
    // (old kernels print no space after the colon; names cannot contain ':').
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return;
    const auto name = split_fields(line.substr(0, colon));
    if (name.size() != 1 || name[0] == "lo") return;
    const auto fields = split_fields(line.substr(colon + 1));
    if (fields.size() < 9) return;
    const auto received = parse_unsigned(fields[0]);
    const auto transmitted = parse_unsigned(fields[8]);
    if (!received || !transmitted) return;
    bytes.received += *received;
    bytes.transmitted += *transmitted;
  });
  return bytes;
}

double bytes_per_second(uint64_t before, uint64_t after, double seconds) {
  if (!(seconds > 0)) return 0;
  return static_cast<double>(counter_delta(before, after)) / seconds;
}

// ---- snapshots ----

SystemSnapshot read_system_snapshot() {
  SystemSnapshot snapshot;
  snapshot.taken = std::chrono::steady_clock::now();
  if (const auto text = read_proc_file("/proc/stat")) {
    if (auto stat = parse_proc_stat(*text)) snapshot.cpu = std::move(*stat);
  }
  if (const auto text = read_proc_file("/proc/self/stat")) {
    snapshot.process_cpu_ticks = parse_process_cpu_ticks(*text).value_or(0);
  }
  if (const auto text = read_proc_file("/proc/self/status")) {
    snapshot.process_resident_bytes = parse_resident_bytes(*text).value_or(0);
  }
  if (const auto text = read_proc_file("/proc/meminfo")) {
    snapshot.memory = parse_meminfo(*text).value_or(MemoryInfo{});
  }
  if (const auto text = read_proc_file("/proc/diskstats")) snapshot.disk = parse_diskstats(*text);
  if (const auto text = read_proc_file("/proc/net/dev")) snapshot.network = parse_net_dev(*text);
  return snapshot;
}

SystemSample sample_between(const SystemSnapshot& before, const SystemSnapshot& after,
                            double clock_ticks_per_second) {
  SystemSample sample;
  const double seconds = std::max(0.0, std::chrono::duration<double>(after.taken - before.taken).count());
  sample.interval = seconds;
  CpuUsage cpu = cpu_usage_between(before.cpu, after.cpu);
  sample.cpu_per_core = std::move(cpu.per_core);
  sample.cpu = cpu.busy;
  sample.iowait = cpu.iowait;
  if (seconds > 0 && clock_ticks_per_second > 0) {
    const double cpu_seconds =
        static_cast<double>(counter_delta(before.process_cpu_ticks, after.process_cpu_ticks)) / clock_ticks_per_second;
    sample.process_cpu = cpu_seconds / seconds * 100;
  }
  sample.process_rss = static_cast<double>(after.process_resident_bytes);
  sample.memory_used = static_cast<double>(after.memory.used());
  sample.memory_available = static_cast<double>(after.memory.available);
  sample.disk_read = bytes_per_second(before.disk.read, after.disk.read, seconds);
  sample.disk_write = bytes_per_second(before.disk.written, after.disk.written, seconds);
  sample.net_receive = bytes_per_second(before.network.received, after.network.received, seconds);
  sample.net_transmit = bytes_per_second(before.network.transmitted, after.network.transmitted, seconds);
  return sample;
}

// ---- the monitor ----

namespace {
// Under this since the last sample, stop() takes no final one: it would
// measure too short an interval to mean anything.
constexpr auto kMinFinalInterval = std::chrono::milliseconds(50);

double clock_ticks_per_second() {
  const long ticks = ::sysconf(_SC_CLK_TCK);
  return ticks > 0 ? static_cast<double>(ticks) : 100.0;  // 100 is USER_HZ on every Linux port
}
}  // namespace

Result<std::unique_ptr<SystemMonitor>> SystemMonitor::start(const std::filesystem::path& jsonl_path,
                                                            double interval_seconds,
                                                            std::function<void(const SystemSample&)> on_sample) {
  if (!(interval_seconds >= kMinIntervalSeconds && interval_seconds <= kMaxIntervalSeconds)) {
    return invalid_argument("system monitor interval must be between {} and {} seconds, got {}",
                            kMinIntervalSeconds, kMaxIntervalSeconds, interval_seconds);
  }
  // Read access too: end_partial_last_line looks at the last byte.
  const int fd = ::open(jsonl_path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return open_error(errno, jsonl_path);
  try {
    end_partial_last_line(fd, jsonl_path);
  } catch (const Error& error) {
    ::close(fd);
    return error.status();
  }
  const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(interval_seconds));
  std::unique_ptr<SystemMonitor> monitor(new SystemMonitor(jsonl_path, fd, interval, std::move(on_sample)));
  monitor->last_snapshot_ = read_system_snapshot();
  monitor->thread_ = std::thread(&SystemMonitor::run, monitor.get());
  return Result<std::unique_ptr<SystemMonitor>>(std::move(monitor));
}

SystemMonitor::SystemMonitor(std::filesystem::path jsonl_path, int fd, std::chrono::steady_clock::duration interval,
                             std::function<void(const SystemSample&)> on_sample)
    : jsonl_path_(std::move(jsonl_path)),
      fd_(fd),
      interval_(interval),
      on_sample_(std::move(on_sample)),
      clock_ticks_per_second_(clock_ticks_per_second()) {}

SystemMonitor::~SystemMonitor() {
  (void)stop();
  ::close(fd_);
}

Status SystemMonitor::stop() {
  std::lock_guard stop_lock(stop_mutex_);
  if (stopped_) return stop_status_;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  stopped_ = true;
  if (thread_error_) {
    try {
      std::rethrow_exception(thread_error_);
    } catch (const Error& error) {
      stop_status_ = error.status().with_context("system monitor thread");
    } catch (const std::exception& error) {
      stop_status_ = internal_error("system monitor thread: {}", error.what());
    } catch (...) {
      stop_status_ = internal_error("system monitor thread: unknown exception");
    }
  }
  return stop_status_;
}

std::vector<SystemSample> SystemMonitor::samples() const {
  std::lock_guard lock(mutex_);
  return samples_;
}

void SystemMonitor::run() {
  // Opened here rather than in start(): nvmlInit can take a second on a
  // machine without persistence mode, and start() should not wait for it.
  std::unique_ptr<detail::NvmlGpus> gpus;
  try {
    gpus = detail::NvmlGpus::open();
  } catch (const std::exception& error) {
    spdlog::debug("system monitor: NVML failed ({}), samples carry no GPU data", error.what());
  }
  auto next_sample = last_snapshot_.taken + interval_;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait_until(lock, next_sample, [this] { return stopping_; });
    const bool final_sample = stopping_;
    if (final_sample && std::chrono::steady_clock::now() - last_snapshot_.taken < kMinFinalInterval) break;
    lock.unlock();
    std::exception_ptr error;
    try {
      take_sample(gpus.get());
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error) {
      thread_error_ = error;
      break;
    }
    if (final_sample) break;
    // After a stall (a suspended machine, a slow NVML call) sample on the
    // next tick from now instead of catching up with a burst of tiny intervals.
    next_sample += interval_;
    const auto now = std::chrono::steady_clock::now();
    if (next_sample < now) next_sample = now + interval_;
  }
}

void SystemMonitor::take_sample(detail::NvmlGpus* gpus) {
  SystemSnapshot snapshot = read_system_snapshot();
  SystemSample sample = sample_between(last_snapshot_, snapshot, clock_ticks_per_second_);
  sample.time = unix_seconds_now();
  last_snapshot_ = std::move(snapshot);
  if (gpus != nullptr) sample.gpus = gpus->sample();
  // replace: a GPU name with bytes that are not UTF-8 must not cost the sample.
  const std::string line = to_json(sample).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  write_all(fd_, line, jsonl_path_);
  {
    std::lock_guard lock(mutex_);
    samples_.push_back(sample);
  }
  if (on_sample_) on_sample_(sample);
}

std::vector<SystemSample> read_system_jsonl(const std::filesystem::path& path) {
  std::vector<SystemSample> samples;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) continue;
    if (auto sample = system_sample_from_json(json)) samples.push_back(std::move(*sample));
  }
  return samples;
}

}  // namespace kennel::profile
