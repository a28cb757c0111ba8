// SystemMonitor: samples the machine and this process on a background thread
// while a job runs, and appends each SystemSample as one JSON line.
//
// It owns the sampling thread, the JSONL file it appends to, and the /proc
// parsing below (pure functions over file text, so tests feed fixed text).
// GPUs are read through NVML, loaded at run time with dlopen: a machine
// without the NVIDIA driver simply yields samples with no GPUs. It does not
// interpret samples (profiler_rules.h does) nor draw them (profile_report.h).
//
// Counters come from /proc and are turned into rates over the interval
// between two snapshots; a counter that went backwards (a device removed, a
// core taken offline, iowait's known non-monotonicity) counts as 0 for that
// interval rather than as a huge value. A /proc file that cannot be read
// leaves its fields at 0.
//
// Thread-safety: start() and stop() from the owning thread; samples() from
// any thread. on_sample runs on the monitor's thread and must not call stop().
// Memory: samples() keeps every sample (a few hundred bytes plus 8 per core),
// so a day at one second on 64 cores holds about 60 MB.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "kennel/profile/profile_record.h"
#include "kennel/util/status.h"

namespace kennel::profile {

namespace detail {
class NvmlGpus;  // system_monitor.cpp: NVML through dlopen
}  // namespace detail

// ---- /proc/stat ----

// Cumulative time one core (or all cores) spent in each state, in clock ticks.
// guest/guest_nice are left out: the kernel already counts them in user/nice.
struct CpuJiffies {
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;

  uint64_t busy() const { return user + nice + system + irq + softirq + steal; }
  uint64_t total() const { return busy() + idle + iowait; }
};

struct ProcStat {
  CpuJiffies total;                 // the "cpu" line: all cores summed
  std::map<int, CpuJiffies> cores;  // "cpuN" lines by N; offline cores are absent
};

// Parses /proc/stat. nullopt when there is no "cpu" line with at least the
// four fields every kernel writes (user nice system idle); later fields that
// an old kernel omits are 0.
std::optional<ProcStat> parse_proc_stat(std::string_view text);

struct CpuUsage {
  std::vector<double> per_core;  // % busy, one per core online in `after`, by core number
  double busy = 0;               // % busy of all cores together
  double iowait = 0;             // % of all cores' time waiting for I/O
};

// CPU use over the interval between two /proc/stat snapshots. A core absent
// from `before` (it came online) and any core whose ticks did not advance
// report 0; a core absent from `after` is left out. Values are within 0..100.
CpuUsage cpu_usage_between(const ProcStat& before, const ProcStat& after);

// ---- /proc/self/stat, /proc/self/status, /proc/meminfo ----

// utime + stime of the process, in clock ticks (sysconf(_SC_CLK_TCK)).
// Fields are read after the last ')' because the command name in "(...)" may
// hold spaces and parentheses. nullopt when the text is malformed.
std::optional<uint64_t> parse_process_cpu_ticks(std::string_view proc_self_stat);

// VmRSS from /proc/self/status, in bytes. nullopt when absent (kernel threads).
std::optional<uint64_t> parse_resident_bytes(std::string_view proc_self_status);

struct MemoryInfo {
  uint64_t total = 0;      // bytes (MemTotal)
  uint64_t available = 0;  // bytes (MemAvailable)

  uint64_t used() const { return total > available ? total - available : 0; }
};

// MemTotal and MemAvailable from /proc/meminfo. Kernels before 3.14 have no
// MemAvailable: MemFree + Buffers + Cached stands in for it. nullopt when
// MemTotal is missing.
std::optional<MemoryInfo> parse_meminfo(std::string_view text);

// ---- /proc/diskstats, /proc/net/dev ----

struct DiskBytes {
  uint64_t read = 0, written = 0;  // cumulative bytes
};

// Whether a /proc/diskstats device name is a whole physical disk. Partitions
// (sda1, nvme0n1p1, mmcblk0p2) and devices stacked on or backed by others
// (loop, ram, zram, dm-, md) are not, so that no byte is counted twice.
bool is_whole_physical_disk(std::string_view device_name);

// Sectors read and written (512 bytes each, whatever the device's sector
// size) summed over the whole physical disks. Malformed lines are skipped.
DiskBytes parse_diskstats(std::string_view text);

struct NetworkBytes {
  uint64_t received = 0, transmitted = 0;  // cumulative bytes
};

// Bytes received and transmitted summed over every interface but "lo".
// Header and malformed lines are skipped.
NetworkBytes parse_net_dev(std::string_view text);

// (after - before) / seconds; 0 when the counter went backwards or no time passed.
double bytes_per_second(uint64_t before, uint64_t after, double seconds);

// ---- snapshots ----

// Everything one sample needs from /proc at one moment.
struct SystemSnapshot {
  std::chrono::steady_clock::time_point taken;
  ProcStat cpu;
  uint64_t process_cpu_ticks = 0;
  uint64_t process_resident_bytes = 0;
  MemoryInfo memory;
  DiskBytes disk;
  NetworkBytes network;
};

// Reads /proc now. Files that cannot be read leave their fields at 0.
SystemSnapshot read_system_snapshot();

// The sample for the interval between two snapshots, without `time` and
// `gpus` (the caller knows the wall clock and the GPUs). The interval is
// measured between the snapshots' steady_clock times; levels (RSS, memory)
// are taken from `after`.
SystemSample sample_between(const SystemSnapshot& before, const SystemSnapshot& after,
                            double clock_ticks_per_second);

// ---- the monitor ----

class SystemMonitor {
 public:
  static constexpr double kMinIntervalSeconds = 0.1;
  static constexpr double kMaxIntervalSeconds = 60;

  // Opens `jsonl_path` for appending (created if missing; earlier lines, e.g.
  // from before a resumed job, are kept), takes a first snapshot and starts
  // sampling every `interval_seconds`. Each sample is written as one line,
  // flushed, passed to `on_sample` (optional) and kept for samples().
  // Errors: kInvalidArgument for an interval outside [0.1, 60] seconds;
  // opening the file fails naming the path (kNotFound for a missing
  // directory, kPermissionDenied, ...).
  static Result<std::unique_ptr<SystemMonitor>> start(const std::filesystem::path& jsonl_path,
                                                      double interval_seconds,
                                                      std::function<void(const SystemSample&)> on_sample = {});

  // Stops sampling: wakes the thread at once, takes one last sample unless
  // the previous one is under 50 ms old, and joins. Returns the failure that
  // stopped the thread early (a write error, an exception from on_sample),
  // named as coming from the system monitor; OK otherwise. Idempotent: later
  // calls return the same Status. The destructor calls it and drops the Status.
  Status stop();

  ~SystemMonitor();
  SystemMonitor(const SystemMonitor&) = delete;
  SystemMonitor& operator=(const SystemMonitor&) = delete;

  // A copy of every sample so far, oldest first.
  std::vector<SystemSample> samples() const;

 private:
  SystemMonitor(std::filesystem::path jsonl_path, int fd, std::chrono::steady_clock::duration interval,
                std::function<void(const SystemSample&)> on_sample);

  void run();
  // Takes a snapshot, builds, writes and publishes the sample. Throws on a write error.
  void take_sample(detail::NvmlGpus* gpus);

  const std::filesystem::path jsonl_path_;
  const int fd_;
  const std::chrono::steady_clock::duration interval_;
  const std::function<void(const SystemSample&)> on_sample_;
  const double clock_ticks_per_second_;

  // Touched by the sampling thread only (and by start() before it runs).
  SystemSnapshot last_snapshot_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::vector<SystemSample> samples_;
  std::exception_ptr thread_error_;

  std::mutex stop_mutex_;  // serialises stop() with the destructor's call
  bool stopped_ = false;
  Status stop_status_;
  std::thread thread_;
};

// Reads a file written by SystemMonitor. Lines that are not a valid sample
// (a line cut short by a kill, hand edits) are skipped; a missing or
// unreadable file gives an empty vector.
std::vector<SystemSample> read_system_jsonl(const std::filesystem::path& path);

}  // namespace kennel::profile
