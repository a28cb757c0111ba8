#include "kennel/profile/system_monitor.h"

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include <gtest/gtest.h>

#include "unit/test_util.h"

namespace kennel::profile {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// ---- /proc/stat ----

constexpr std::string_view kProcStatBefore =
    "cpu  100 10 50 800 20 5 5 10 3 0\n"
    "cpu0 50 5 25 400 10 3 2 5 3 0\n"
    "cpu1 50 5 25 400 10 2 3 5 0 0\n"
    "intr 13516297 0 0 0 1 1 9\n"
    "ctxt 11081379\n"
    "btime 1700000000\n"
    "procs_running 2\n";

// cpu0: +40 user +10 system +50 idle -> 50 busy of 100.
// cpu1: +20 user +10 system +50 idle +10 iowait +5 irq +5 steal -> 40 busy of 100.
constexpr std::string_view kProcStatAfter =
    "cpu  160 10 70 900 30 10 5 15 3 0\n"
    "cpu0 90 5 35 450 10 3 2 5 3 0\n"
    "cpu1 70 5 35 450 20 7 3 10 0 0\n"
    "intr 13516300 0 0 0 1 1 9\n";

TEST(ParseProcStatTest, ReadsTotalAndEveryCoreInKernelOrder) {
  const auto stat = parse_proc_stat(kProcStatBefore);
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->total.user, 100u);
  EXPECT_EQ(stat->total.nice, 10u);
  EXPECT_EQ(stat->total.system, 50u);
  EXPECT_EQ(stat->total.idle, 800u);
  EXPECT_EQ(stat->total.iowait, 20u);
  EXPECT_EQ(stat->total.irq, 5u);
  EXPECT_EQ(stat->total.softirq, 5u);
  EXPECT_EQ(stat->total.steal, 10u);
  EXPECT_EQ(stat->total.busy(), 100u + 10 + 50 + 5 + 5 + 10);  // guest (3) is already in user
  EXPECT_EQ(stat->total.total(), stat->total.busy() + 800 + 20);
  ASSERT_EQ(stat->cores.size(), 2u);
  EXPECT_EQ(stat->cores.at(0).user, 50u);
  EXPECT_EQ(stat->cores.at(1).softirq, 3u);
}

TEST(ParseProcStatTest, OldKernelsWithFourFieldsLeaveTheRestZero) {
  const auto stat = parse_proc_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n");
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->total.idle, 4u);
  EXPECT_EQ(stat->total.iowait, 0u);
  EXPECT_EQ(stat->total.steal, 0u);
  EXPECT_EQ(stat->cores.size(), 1u);
}

TEST(ParseProcStatTest, RejectsTextWithoutTheTotalLineAndSkipsMalformedCores) {
  EXPECT_FALSE(parse_proc_stat("").has_value());
  EXPECT_FALSE(parse_proc_stat("cpu0 1 2 3 4\nintr 5\n").has_value());
  EXPECT_FALSE(parse_proc_stat("cpu 1 2 three 4\n").has_value());
  const auto stat = parse_proc_stat("cpu 1 2 3 4\ncpu0 1 2\ncpuX 1 2 3 4\ncpu2 1 2 3 4\n");
  ASSERT_TRUE(stat.has_value());
  ASSERT_EQ(stat->cores.size(), 1u);
  EXPECT_EQ(stat->cores.count(2), 1u);
}

TEST(CpuUsageBetweenTest, ComputesBusyAndIowaitFromTickDeltas) {
  const CpuUsage usage = cpu_usage_between(*parse_proc_stat(kProcStatBefore), *parse_proc_stat(kProcStatAfter));
  // Total: +60 user +20 system +5 irq +5 steal = 90 busy; +100 idle +10 iowait; 200 in all.
  EXPECT_DOUBLE_EQ(usage.busy, 45.0);
  EXPECT_DOUBLE_EQ(usage.iowait, 5.0);
  ASSERT_EQ(usage.per_core.size(), 2u);
  EXPECT_DOUBLE_EQ(usage.per_core[0], 50.0);
  EXPECT_DOUBLE_EQ(usage.per_core[1], 40.0);
}

TEST(CpuUsageBetweenTest, NoElapsedTicksGiveZeroNotNaN) {
  const ProcStat stat = *parse_proc_stat(kProcStatBefore);
  const CpuUsage usage = cpu_usage_between(stat, stat);
  EXPECT_EQ(usage.busy, 0);
  EXPECT_EQ(usage.iowait, 0);
  EXPECT_EQ(usage.per_core, (std::vector<double>{0, 0}));
}

TEST(CpuUsageBetweenTest, CoresThatComeOnlineReportZeroAndCoresThatLeaveAreDropped) {
  const auto before = parse_proc_stat("cpu 0 0 0 0\ncpu0 10 0 0 10\ncpu3 10 0 0 10\n");
  const auto after = parse_proc_stat("cpu 20 0 0 20\ncpu0 20 0 0 20\ncpu1 99 0 0 1\n");
  const CpuUsage usage = cpu_usage_between(*before, *after);
  EXPECT_EQ(usage.per_core, (std::vector<double>{50, 0}));
  EXPECT_DOUBLE_EQ(usage.busy, 50.0);
}

TEST(CpuUsageBetweenTest, CountersThatGoBackwardsCountAsZero) {
  // iowait is known to decrease on NO_HZ kernels; a bare subtraction would wrap to 2^64.
  const auto before = parse_proc_stat("cpu 10 0 0 10 50\ncpu0 10 0 0 10 50\n");
  const auto after = parse_proc_stat("cpu 20 0 0 20 40\ncpu0 20 0 0 20 40\n");
  const CpuUsage usage = cpu_usage_between(*before, *after);
  EXPECT_DOUBLE_EQ(usage.busy, 50.0);
  EXPECT_EQ(usage.iowait, 0);
  EXPECT_EQ(usage.per_core, (std::vector<double>{50}));
}

// ---- /proc/self/stat, status, meminfo ----

TEST(ParseProcessCpuTicksTest, SumsUtimeAndStimeAfterTheLastParenthesis) {
  // A command name may hold spaces and ") ": only the last ')' ends it.
  const std::string stat =
      "4242 (evil ) S 1 (name) x) R 1 4242 4242 0 -1 4194560 500 0 0 0 250 120 7 8 20 0 3 0 100 3133440 376\n";
  EXPECT_EQ(parse_process_cpu_ticks(stat), std::optional<uint64_t>(370));
  EXPECT_EQ(parse_process_cpu_ticks("16658 (cat) R 16652 16652 15572 0 -1 4194304 100 0 0 0 3 4 0 0 20 0 1 0"),
            std::optional<uint64_t>(7));
}

TEST(ParseProcessCpuTicksTest, RejectsMalformedText) {
  EXPECT_FALSE(parse_process_cpu_ticks("").has_value());
  EXPECT_FALSE(parse_process_cpu_ticks("4242 cat R 1 2 3 4 5 6 7 8 9 10 11 12").has_value());
  EXPECT_FALSE(parse_process_cpu_ticks("4242 (cat) R 1 4242").has_value());
  EXPECT_FALSE(parse_process_cpu_ticks("4242 (cat) R 1 4242 4242 0 -1 4194560 500 0 0 0 x 120").has_value());
}

TEST(ParseResidentBytesTest, ConvertsVmRssKilobytesToBytes) {
  const std::string status =
      "Name:\tkennel\nVmPeak:\t  999999 kB\nVmHWM:\t    4096 kB\nVmRSS:\t    2020 kB\nRssAnon:\t     100 kB\n";
  EXPECT_EQ(parse_resident_bytes(status), std::optional<uint64_t>(2020u * 1024));
  EXPECT_FALSE(parse_resident_bytes("Name:\tkthreadd\nState:\tS (sleeping)\n").has_value());
}

TEST(ParseMeminfoTest, UsedIsTotalMinusAvailable) {
  const std::string meminfo =
      "MemTotal:       24683656 kB\n"
      "MemFree:        19687420 kB\n"
      "MemAvailable:   22994540 kB\n"
      "Buffers:          123456 kB\n"
      "Cached:          2000000 kB\n"
      "SwapCached:            7 kB\n"
      "HugePages_Total:       0\n";
  const auto memory = parse_meminfo(meminfo);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(memory->total, 24683656ull * 1024);
  EXPECT_EQ(memory->available, 22994540ull * 1024);
  EXPECT_EQ(memory->used(), (24683656ull - 22994540ull) * 1024);
}

TEST(ParseMeminfoTest, WithoutMemAvailableFreeBuffersAndCachedStandIn) {
  const auto memory = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n"
                                    "SwapCached: 500 kB\n");
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(memory->available, 150u * 1024);
  EXPECT_EQ(memory->used(), 850u * 1024);
  EXPECT_FALSE(parse_meminfo("MemFree: 100 kB\n").has_value());
}

// ---- /proc/diskstats, /proc/net/dev ----

TEST(IsWholePhysicalDiskTest, KeepsDisksAndSkipsPartitionsAndStackedDevices) {
  for (const char* disk : {"sda", "sdb", "sdaa", "vda", "xvda", "hdc", "nvme0n1", "nvme10n2", "mmcblk0", "nbd0"}) {
    EXPECT_TRUE(is_whole_physical_disk(disk)) << disk;
  }
  for (const char* other : {"sda1", "sdaa12", "vda2", "xvda1", "nvme0n1p1", "nvme10n2p15", "mmcblk0p2", "loop0",
                            "loop12", "ram0", "zram0", "dm-0", "dm-12", "md0", "md127", ""}) {
    EXPECT_FALSE(is_whole_physical_disk(other)) << other;
  }
}

TEST(ParseDiskstatsTest, SumsSectorsOfWholeDisksOnly) {
  const std::string diskstats =
      "   7       0 loop0 10 0 1000 0 10 0 1000 0 0 0 0 0 0 0 0 0 0\n"
      " 254       0 vda 595802 34318 100 3369293 309839 99020 200 1768901 0 506928 5426936 157651 142\n"
      " 254       1 vda1 5 0 90 0 5 0 190 0 0 0 0\n"
      " 259       0 nvme0n1 1 0 1000 0 1 0 3000 0 0 0 0 0 0 0 0 0 0\n"
      " 259       1 nvme0n1p1 1 0 999 0 1 0 2999 0 0 0 0 0 0 0 0 0 0\n"
      " 253       0 dm-0 1 0 5000 0 1 0 5000 0 0 0 0\n"
      " 252       0 zram0 1 0 7000 0 1 0 7000 0 0 0 0\n"
      "   8       0 sdb 1 0 4 0 1 0 8 0 0 0\n"  // fewer than 11 counters: skipped
      "garbage\n";
  const DiskBytes bytes = parse_diskstats(diskstats);
  EXPECT_EQ(bytes.read, (100u + 1000u) * 512);
  EXPECT_EQ(bytes.written, (200u + 3000u) * 512);
  EXPECT_EQ(parse_diskstats("").read, 0u);
}

TEST(ParseNetDevTest, SumsEveryInterfaceButLoopback) {
  const std::string net_dev =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
      "carrier compressed\n"
      "    lo: 718628786 2371552    0    0    0     0          0         0 718628786 2371552    0    0    0     0  "
      "     0          0\n"
      "  eth0: 101449952    2887    0    0    0     0          0         0   103997    1376    0    0    0     0  "
      "     0          0\n"
      "  eth1:1000 1 0 0 0 0 0 0 2000 1 0 0 0 0 0 0\n"  // old kernels: no space after the colon
      "  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0  "
      "     0          0\n";
  const NetworkBytes bytes = parse_net_dev(net_dev);
  EXPECT_EQ(bytes.received, 101449952u + 1000u);
  EXPECT_EQ(bytes.transmitted, 103997u + 2000u);
}

TEST(BytesPerSecondTest, DividesTheDeltaAndGuardsResetsAndZeroTime) {
  EXPECT_DOUBLE_EQ(bytes_per_second(1000, 3000, 0.5), 4000.0);
  EXPECT_EQ(bytes_per_second(3000, 1000, 0.5), 0);  // a device went away: its bytes left the sum
  EXPECT_EQ(bytes_per_second(1000, 3000, 0), 0);
  EXPECT_EQ(bytes_per_second(1000, 3000, -1), 0);
  EXPECT_EQ(bytes_per_second(1000, 3000, std::numeric_limits<double>::quiet_NaN()), 0);
}

// ---- snapshots ----

TEST(SampleBetweenTest, TurnsTwoSnapshotsIntoRatesOverTheMeasuredInterval) {
  SystemSnapshot before;
  before.taken = steady_clock::time_point(std::chrono::seconds(100));
  before.cpu = *parse_proc_stat(kProcStatBefore);
  before.process_cpu_ticks = 1000;
  before.process_resident_bytes = 1;
  before.memory = {8000, 6000};
  before.disk = {100, 1000};
  before.network = {10, 20};

  SystemSnapshot after;
  after.taken = before.taken + milliseconds(500);
  after.cpu = *parse_proc_stat(kProcStatAfter);
  after.process_cpu_ticks = 1075;  // 0.75 s of CPU at 100 ticks/s in 0.5 s: one and a half cores
  after.process_resident_bytes = 4096;
  after.memory = {8000, 5000};
  after.disk = {600, 3000};
  after.network = {60, 20};

  const SystemSample sample = sample_between(before, after, 100);
  EXPECT_DOUBLE_EQ(sample.interval, 0.5);
  EXPECT_DOUBLE_EQ(sample.cpu, 45.0);
  EXPECT_DOUBLE_EQ(sample.iowait, 5.0);
  EXPECT_EQ(sample.cpu_per_core, (std::vector<double>{50, 40}));
  EXPECT_DOUBLE_EQ(sample.process_cpu, 150.0);
  EXPECT_EQ(sample.process_rss, 4096);
  EXPECT_EQ(sample.memory_used, 3000);
  EXPECT_EQ(sample.memory_available, 5000);
  EXPECT_DOUBLE_EQ(sample.disk_read, 1000.0);
  EXPECT_DOUBLE_EQ(sample.disk_write, 4000.0);
  EXPECT_DOUBLE_EQ(sample.net_receive, 100.0);
  EXPECT_EQ(sample.net_transmit, 0);
  EXPECT_TRUE(sample.gpus.empty());

  const SystemSample same_instant = sample_between(after, after, 100);
  EXPECT_EQ(same_instant.interval, 0);
  EXPECT_EQ(same_instant.process_cpu, 0);
  EXPECT_EQ(same_instant.disk_read, 0);
}

TEST(ReadSystemSnapshotTest, ReadsThisMachine) {
  const SystemSnapshot snapshot = read_system_snapshot();
  EXPECT_GT(snapshot.cpu.total.total(), 0u);
  EXPECT_FALSE(snapshot.cpu.cores.empty());
  EXPECT_GT(snapshot.process_resident_bytes, 0u);
  EXPECT_GT(snapshot.memory.total, 0u);
  EXPECT_LE(snapshot.memory.available, snapshot.memory.total);
}

// ---- the monitor ----

TEST(SystemMonitorTest, RejectsIntervalsOutsideTheRangeNamingTheValue) {
  kennel::testing::TempDir dir;
  for (double interval : {0.05, 0.0, -1.0, 60.5, std::numeric_limits<double>::quiet_NaN(),
                          std::numeric_limits<double>::infinity()}) {
    auto monitor = SystemMonitor::start(dir / "system.jsonl", interval);
    ASSERT_FALSE(monitor.ok()) << interval;
    EXPECT_EQ(monitor.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(monitor.status().message().find("interval"), std::string::npos) << monitor.status().message();
    EXPECT_NE(monitor.status().message().find(fmt::format("{}", interval)), std::string::npos)
        << monitor.status().message();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "system.jsonl"));  // nothing opened for a bad interval
}

TEST(SystemMonitorTest, AnUnopenableFileIsAnErrorNamingThePath) {
  kennel::testing::TempDir dir;
  const auto path = dir / "missing-dir" / "system.jsonl";
  auto monitor = SystemMonitor::start(path, 1);
  ASSERT_FALSE(monitor.ok());
  EXPECT_EQ(monitor.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(monitor.status().message().find(path.string()), std::string::npos) << monitor.status().message();
}

TEST(SystemMonitorTest, SamplesWhileTheProcessBurnsCpu) {
  kennel::testing::TempDir dir;
  const auto path = dir / "system.jsonl";
  std::atomic<int> callbacks{0};
  auto monitor = SystemMonitor::start(path, 0.1, [&](const SystemSample&) { ++callbacks; });
  ASSERT_TRUE(monitor.ok()) << monitor.status().to_string();

  const auto burn_until = steady_clock::now() + milliseconds(500);
  volatile double sink = 0;
  while (steady_clock::now() < burn_until) {
    for (int i = 0; i < 10000; ++i) sink = sink + std::sqrt(static_cast<double>(i));
  }
  EXPECT_TRUE((*monitor)->stop().ok());

  const std::vector<SystemSample> samples = (*monitor)->samples();
  ASSERT_GE(samples.size(), 3u);
  EXPECT_EQ(callbacks.load(), static_cast<int>(samples.size()));

  const std::vector<SystemSample> from_file = read_system_jsonl(path);
  EXPECT_EQ(read_lines(path).size(), samples.size());
  ASSERT_EQ(from_file.size(), samples.size());

  const auto proc_stat = parse_proc_stat(read_text("/proc/stat"));
  ASSERT_TRUE(proc_stat.has_value());
  double busiest_process = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const SystemSample& sample = samples[i];
    busiest_process = std::max(busiest_process, sample.process_cpu);
    EXPECT_GT(sample.process_rss, 0);
    EXPECT_GT(sample.memory_available, 0);
    EXPECT_GT(sample.interval, 0);
    EXPECT_LT(sample.interval, 0.5);
    EXPECT_GT(sample.time, 1.6e9);
    EXPECT_EQ(sample.cpu_per_core.size(), proc_stat->cores.size());
    EXPECT_GE(sample.cpu, 0);
    EXPECT_LE(sample.cpu, 100);
    EXPECT_EQ(from_file[i].time, sample.time);
    EXPECT_EQ(from_file[i].cpu_per_core, sample.cpu_per_core);
    if (i > 0) {
      EXPECT_GT(sample.time, samples[i - 1].time);
    }
  }
  EXPECT_GT(busiest_process, 20);
  EXPECT_TRUE((*monitor)->stop().ok());  // idempotent
  EXPECT_EQ((*monitor)->samples().size(), samples.size());
}

TEST(SystemMonitorTest, StopWakesTheThreadAtOnceAndTakesOneFinalSample) {
  kennel::testing::TempDir dir;
  auto monitor = SystemMonitor::start(dir / "system.jsonl", 60);
  ASSERT_TRUE(monitor.ok()) << monitor.status().to_string();
  std::this_thread::sleep_for(milliseconds(100));
  const auto stop_began = steady_clock::now();
  EXPECT_TRUE((*monitor)->stop().ok());
  EXPECT_LT(steady_clock::now() - stop_began, milliseconds(1000));
  const auto samples = (*monitor)->samples();
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_GE(samples[0].interval, 0.09);
  EXPECT_LT(samples[0].interval, 1.0);
}

TEST(SystemMonitorTest, StopRightAfterStartTakesNoSample) {
  kennel::testing::TempDir dir;
  auto monitor = SystemMonitor::start(dir / "system.jsonl", 0.1);
  ASSERT_TRUE(monitor.ok()) << monitor.status().to_string();
  EXPECT_TRUE((*monitor)->stop().ok());
  EXPECT_TRUE((*monitor)->samples().empty());
  EXPECT_TRUE(read_system_jsonl(dir / "system.jsonl").empty());
}

TEST(SystemMonitorTest, DestroyingARunningMonitorStopsIt) {
  kennel::testing::TempDir dir;
  auto monitor = SystemMonitor::start(dir / "system.jsonl", 60);
  ASSERT_TRUE(monitor.ok()) << monitor.status().to_string();
  const auto destroy_began = steady_clock::now();
  monitor->reset();
  EXPECT_LT(steady_clock::now() - destroy_began, milliseconds(1000));
}

TEST(SystemMonitorTest, AppendsAfterEarlierLinesAndEndsACutOffLine) {
  kennel::testing::TempDir dir;
  const auto path = dir / "system.jsonl";
  SystemSample earlier;
  earlier.time = 1700000000;
  earlier.cpu = 12.5;
  {
    std::ofstream out(path);
    out << to_json(earlier).dump() << "\nnot json\n{\"time\": 17000";  // the last line was cut by a kill
  }
  auto monitor = SystemMonitor::start(path, 60);
  ASSERT_TRUE(monitor.ok()) << monitor.status().to_string();
  std::this_thread::sleep_for(milliseconds(80));
  EXPECT_TRUE((*monitor)->stop().ok());
  ASSERT_EQ((*monitor)->samples().size(), 1u);

  const auto samples = read_system_jsonl(path);
  ASSERT_EQ(samples.size(), 2u);  // the cut-off line did not swallow the new sample
  EXPECT_EQ(samples[0].time, 1700000000);
  EXPECT_EQ(samples[0].cpu, 12.5);
  EXPECT_EQ(samples[1].time, (*monitor)->samples()[0].time);
}

TEST(SystemMonitorTest, AFailingCallbackStopsSamplingAndIsReportedByStop) {
  kennel::testing::TempDir dir;
  auto monitor = SystemMonitor::start(dir / "system.jsonl", 0.1,
                                      [](const SystemSample&) { throw std::runtime_error("callback broke"); });
  ASSERT_TRUE(monitor.ok()) << monitor.status().to_string();
  std::this_thread::sleep_for(milliseconds(250));
  const Status status = (*monitor)->stop();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), ErrorCode::kInternal);
  EXPECT_NE(status.message().find("system monitor"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("callback broke"), std::string::npos) << status.message();
  EXPECT_EQ((*monitor)->samples().size(), 1u);
  EXPECT_EQ((*monitor)->stop().message(), status.message());
}

TEST(ReadSystemJsonlTest, SkipsMalformedLinesAndToleratesAMissingFile) {
  kennel::testing::TempDir dir;
  const auto path = dir / "system.jsonl";
  SystemSample sample;
  sample.time = 1.5;
  sample.cpu_per_core = {10, 20};
  GpuSample gpu;
  gpu.name = "Test GPU";
  gpu.utilization = 75;
  sample.gpus.push_back(gpu);
  {
    std::ofstream out(path);
    out << to_json(sample).dump() << "\n\n[1, 2]\n{\"cpu\": \"high\"}\n{broken\n" << to_json(sample).dump() << "\n";
  }
  const auto samples = read_system_jsonl(path);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].cpu_per_core, (std::vector<double>{10, 20}));
  ASSERT_EQ(samples[1].gpus.size(), 1u);
  EXPECT_EQ(samples[1].gpus[0].name, "Test GPU");
  EXPECT_TRUE(read_system_jsonl(dir / "absent.jsonl").empty());
}

}  // namespace
}  // namespace kennel::profile
