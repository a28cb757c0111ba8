#include "kennel/dist/rank_environment.h"

#include <unistd.h>

#include <charconv>

#include <fmt/format.h>

extern char** environ;

namespace kennel::dist {

namespace {

const std::string* find(const Environment& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() || it->second.empty() ? nullptr : &it->second;
}

Result<int64_t> integer_variable(const Environment& env, const std::string& name, int64_t min_value) {
  const std::string* text = find(env, name);
  if (text == nullptr) return not_found("{} is not set", name);
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (error != std::errc() || end != text->data() + text->size()) {
    return invalid_argument("environment variable {}='{}' is not a whole number", name, *text);
  }
  if (value < min_value) {
    return invalid_argument("environment variable {}={} must be >= {}", name, value, min_value);
  }
  return value;
}

// The value of an optional variable, `fallback` when unset.
Result<int64_t> integer_or(const Environment& env, const std::string& name, int64_t fallback, int64_t min_value) {
  if (find(env, name) == nullptr) return fallback;
  return integer_variable(env, name, min_value);
}

Status check_rank(const RankEnvironment& out, const std::string& rank_variable, const std::string& size_variable) {
  if (out.world_size < 1) {
    return invalid_argument("{}={}: a job needs at least one process", size_variable, out.world_size);
  }
  if (out.rank >= out.world_size) {
    return invalid_argument("{}={} is outside the world of {}={} processes (ranks count from 0)", rank_variable,
                            out.rank, size_variable, out.world_size);
  }
  if (out.local_rank >= out.local_world_size) {
    return invalid_argument("the local rank {} is outside the {} processes of this host", out.local_rank,
                            out.local_world_size);
  }
  return Status::ok_status();
}

Result<RankEnvironment> torchrun_style(const Environment& env) {
  RankEnvironment out;
  auto world = integer_variable(env, "WORLD_SIZE", 0);
  if (!world.ok()) return world.status();
  auto rank = integer_variable(env, "RANK", 0);
  if (!rank.ok()) return rank.status().with_context("WORLD_SIZE is set, so RANK must be too");
  out.world_size = static_cast<int>(*world);
  out.rank = static_cast<int>(*rank);
  auto local_rank = integer_or(env, "LOCAL_RANK", out.rank, 0);
  if (!local_rank.ok()) return local_rank.status();
  auto local_world = integer_or(env, "LOCAL_WORLD_SIZE", out.world_size, 1);
  if (!local_world.ok()) return local_world.status();
  out.local_rank = static_cast<int>(*local_rank);
  out.local_world_size = static_cast<int>(*local_world);
  if (const std::string* addr = find(env, "MASTER_ADDR")) out.master_addr = *addr;
  auto port = integer_or(env, "MASTER_PORT", 29500, 1);
  if (!port.ok()) return port.status();
  if (*port > 65535) return invalid_argument("environment variable MASTER_PORT={} is not a TCP port", *port);
  out.master_port = static_cast<int>(*port);
  const bool torchelastic = find(env, "TORCHELASTIC_RUN_ID") != nullptr ||
                            find(env, "TORCHELASTIC_RESTART_COUNT") != nullptr;
  out.launcher = find(env, "KENNEL_LAUNCHER") != nullptr ? "kennel" : torchelastic ? "torchrun" : "env";
  const std::string* agent = find(env, "TORCHELASTIC_USE_AGENT_STORE");
  out.agent_store = agent != nullptr && (*agent == "True" || *agent == "true" || *agent == "1");
  auto restarts = integer_or(env, "TORCHELASTIC_RESTART_COUNT", 0, 0);
  if (!restarts.ok()) return restarts.status();
  out.restart_count = static_cast<int>(*restarts);
  // PyTorch's rendezvous handler keys each attempt's process group under this prefix.
  if (out.agent_store) out.store_prefix = fmt::format("/worker/attempt_{}", out.restart_count);
  auto cpus = integer_or(env, "KENNEL_CPUS_PER_RANK", 0, 0);
  if (!cpus.ok()) return cpus.status();
  out.cpus_per_task = static_cast<int>(*cpus);
  KENNEL_RETURN_IF_ERROR(check_rank(out, "RANK", "WORLD_SIZE"));
  return out;
}

Result<RankEnvironment> slurm_style(const Environment& env) {
  RankEnvironment out;
  out.launcher = "slurm";
  // srun sets the step's task count; SLURM_NTASKS is the allocation's, which a step may use part of.
  const char* size_variable = find(env, "SLURM_STEP_NUM_TASKS") != nullptr ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
  auto world = integer_variable(env, size_variable, 0);
  if (!world.ok()) return world.status();
  auto rank = integer_variable(env, "SLURM_PROCID", 0);
  if (!rank.ok()) return rank.status();
  out.world_size = static_cast<int>(*world);
  out.rank = static_cast<int>(*rank);
  auto local_rank = integer_or(env, "SLURM_LOCALID", 0, 0);
  if (!local_rank.ok()) return local_rank.status();
  out.local_rank = static_cast<int>(*local_rank);
  // "2(x3),1": tasks per node in node order; this node's count is what the local ranks share.
  out.local_world_size = std::max(out.local_rank + 1, 1);
  if (const std::string* per_node = find(env, "SLURM_STEP_TASKS_PER_NODE")) {
    int count = 0;
    const auto [end, error] = std::from_chars(per_node->data(), per_node->data() + per_node->size(), count);
    if (error == std::errc() && count > out.local_rank) out.local_world_size = count;
  } else if (const std::string* per_node_job = find(env, "SLURM_TASKS_PER_NODE")) {
    int count = 0;
    const auto [end, error] = std::from_chars(per_node_job->data(), per_node_job->data() + per_node_job->size(), count);
    if (error == std::errc() && count > out.local_rank) out.local_world_size = count;
  }
  auto cpus = integer_or(env, "SLURM_CPUS_PER_TASK", 0, 0);
  if (!cpus.ok()) return cpus.status();
  out.cpus_per_task = static_cast<int>(*cpus);
  if (const std::string* addr = find(env, "MASTER_ADDR")) {
    out.master_addr = *addr;
  } else {
    const std::string* nodelist = find(env, "SLURM_STEP_NODELIST");
    if (nodelist == nullptr) nodelist = find(env, "SLURM_JOB_NODELIST");
    if (nodelist == nullptr) nodelist = find(env, "SLURM_NODELIST");
    if (nodelist == nullptr) {
      return invalid_argument("Slurm gave no node list (SLURM_JOB_NODELIST): set MASTER_ADDR to rank 0's host");
    }
    auto hosts = expand_slurm_nodelist(*nodelist);
    if (!hosts.ok()) return hosts.status().with_context("SLURM_JOB_NODELIST");
    out.master_addr = hosts->front();
  }
  if (find(env, "MASTER_PORT") != nullptr) {
    auto port = integer_variable(env, "MASTER_PORT", 1);
    if (!port.ok()) return port.status();
    if (*port > 65535) return invalid_argument("environment variable MASTER_PORT={} is not a TCP port", *port);
    out.master_port = static_cast<int>(*port);
  } else {
    auto job_id = integer_variable(env, "SLURM_JOB_ID", 0);
    if (!job_id.ok()) job_id = integer_variable(env, "SLURM_JOBID", 0);
    if (!job_id.ok()) return invalid_argument("Slurm gave no SLURM_JOB_ID to derive a port from: set MASTER_PORT");
    out.master_port = slurm_master_port(*job_id);
  }
  KENNEL_RETURN_IF_ERROR(check_rank(out, "SLURM_PROCID", size_variable));
  return out;
}

// One name with bracket groups: "n[01-02]x[1,3]" -> n01x1 n01x3 n02x1 n02x3.
Status expand_name(const std::string& name, std::vector<std::string>& out) {
  std::vector<std::string> partial = {""};
  size_t i = 0;
  while (i < name.size()) {
    if (name[i] == ']') return invalid_argument("host list entry '{}' has a ']' without '['", name);
    if (name[i] != '[') {
      for (auto& prefix : partial) prefix += name[i];
      ++i;
      continue;
    }
    const size_t close = name.find(']', i);
    if (close == std::string::npos) return invalid_argument("host list entry '{}' has an unclosed '['", name);
    std::vector<std::string> values;
    size_t start = i + 1;
    while (start <= close) {
      size_t comma = name.find(',', start);
      if (comma == std::string::npos || comma > close) comma = close;
      const std::string range = name.substr(start, comma - start);
      const size_t dash = range.find('-');
      const std::string low = range.substr(0, dash);
      const std::string high = dash == std::string::npos ? low : range.substr(dash + 1);
      auto is_number = [](const std::string& text) {
        return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
      };
      if (!is_number(low) || !is_number(high)) {
        return invalid_argument("host list entry '{}': '{}' is not a number or a range like 01-04", name, range);
      }
      const int64_t first = std::stoll(low);
      const int64_t last = std::stoll(high);
      if (last < first) return invalid_argument("host list entry '{}': the range '{}' runs backwards", name, range);
      if (last - first > 100000) return invalid_argument("host list entry '{}': the range '{}' is too long", name, range);
      for (int64_t value = first; value <= last; ++value) {
        values.push_back(fmt::format("{:0{}}", value, low.size()));
      }
      start = comma + 1;
    }
    std::vector<std::string> next;
    for (const auto& prefix : partial) {
      for (const auto& value : values) next.push_back(prefix + value);
    }
    partial = std::move(next);
    i = close + 1;
  }
  for (auto& host : partial) out.push_back(std::move(host));
  return Status::ok_status();
}

}  // namespace

Environment process_environment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string text(*entry);
    const size_t equals = text.find('=');
    if (equals != std::string::npos) env[text.substr(0, equals)] = text.substr(equals + 1);
  }
  return env;
}

std::string RankEnvironment::describe() const {
  return fmt::format("rank {} of {} ({}, local rank {} of {}, master {}:{})", rank, world_size, launcher, local_rank,
                     local_world_size, master_addr, master_port);
}

int slurm_master_port(int64_t job_id) { return static_cast<int>(15000 + job_id % 15000); }

Result<std::vector<std::string>> expand_slurm_nodelist(const std::string& list) {
  std::vector<std::string> hosts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= list.size(); ++i) {
    if (i < list.size() && list[i] == '[') ++depth;
    if (i < list.size() && list[i] == ']') --depth;
    if (i == list.size() || (list[i] == ',' && depth == 0)) {
      const std::string name = list.substr(start, i - start);
      if (name.empty()) return invalid_argument("host list '{}' has an empty entry", list);
      KENNEL_RETURN_IF_ERROR(expand_name(name, hosts));
      start = i + 1;
    }
  }
  if (depth != 0) return invalid_argument("host list '{}' has unbalanced brackets", list);
  return hosts;
}

Result<std::optional<RankEnvironment>> detect_rank_environment(const Environment& env) {
  if (find(env, "WORLD_SIZE") != nullptr) {
    auto out = torchrun_style(env);
    if (!out.ok()) return out.status();
    if (out->world_size == 1) return std::optional<RankEnvironment>();
    return std::optional<RankEnvironment>(std::move(*out));
  }
  // Inside an allocation, only tasks started by srun are ranks (an sbatch script itself is not).
  if (find(env, "SLURM_PROCID") != nullptr && find(env, "SLURM_STEP_ID") != nullptr &&
      *find(env, "SLURM_STEP_ID") != "batch" && find(env, "SLURM_NTASKS") != nullptr) {
    auto out = slurm_style(env);
    if (!out.ok()) return out.status();
    if (out->world_size == 1) return std::optional<RankEnvironment>();
    return std::optional<RankEnvironment>(std::move(*out));
  }
  return std::optional<RankEnvironment>();
}

}  // namespace kennel::dist
