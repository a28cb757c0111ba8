// `kennel cache`: the feature caches under <home>/cache/features.
//   kennel cache list [--json]              every entry: key, what it was computed from, splits, size, last use
//   kennel cache prune [--older-than DAYS] [--all] [--dry-run]
//                                           removes entries no job can hit again (written by another
//                                           version of the decoder, transforms or backbones, or with no
//                                           identity.json), those unused for DAYS, or every entry
#include <chrono>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/store/layout.h"
#include "kennel/train/feature_cache.h"

namespace kennel::cli {

namespace {

using nlohmann::json;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string human_bytes(int64_t bytes) {
  if (bytes >= (int64_t{1} << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1 << 30));
  if (bytes >= (int64_t{1} << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  if (bytes >= 1024) return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / 1024);
  return fmt::format("{} B", bytes);
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out.empty() ? "-" : out;
}

json entry_json(const train::FeatureCacheEntry& entry) {
  json out = {{"key", entry.key},
              {"dir", entry.dir.string()},
              {"splits", entry.splits},
              {"bytes", entry.bytes},
              {"last_used", entry.last_used},
              {"outdated", entry.outdated()}};
  out["identity"] = entry.identity ? train::to_json(*entry.identity) : json();
  return out;
}

std::vector<train::FeatureCacheEntry> cache_entries(const train::FeatureCache& cache) {
  auto entries = cache.list();
  if (!entries.ok()) throw Error(entries.status());
  return std::move(entries).value();
}

void list_cache(const CommandContext& context, bool as_json) {
  const store::HomeLayout home(context.global.home_dir());
  const auto entries = cache_entries(train::FeatureCache(home.feature_cache()));
  if (as_json) {
    json out = json::array();
    for (const auto& entry : entries) out.push_back(entry_json(entry));
    std::cout << out.dump(2) << "\n";
    return;
  }
  if (entries.empty()) {
    std::cout << fmt::format("no feature cache entries under {}\n", home.feature_cache().string());
    return;
  }
  int64_t total = 0;
  std::cout << fmt::format("{:<32}  {:<18} {:<8} {:<6} {:<16} {:>10} {:>9}\n", "key", "arch", "device",
                           "prec", "splits", "size", "used");
  for (const auto& entry : entries) {
    total += entry.bytes;
    const double days = (now_seconds() - entry.last_used) / 86400;
    const auto& id = entry.identity;
    std::cout << fmt::format("{:<32}  {:<18} {:<8} {:<6} {:<16} {:>10} {:>8.1f}d{}\n", entry.key,
                             id ? id->arch : "?", id ? id->device : "?", id ? id->precision : "?",
                             joined(entry.splits), human_bytes(entry.bytes), days,
                             entry.outdated() ? "  (outdated: `kennel cache prune` removes it)" : "");
  }
  std::cout << fmt::format("{} entries, {} under {}\n", entries.size(), human_bytes(total),
                           home.feature_cache().string());
}

struct PruneFlags {
  double older_than_days = -1;  // < 0: age alone removes nothing
  bool all = false;
  bool dry_run = false;
  bool as_json = false;
};

void prune_cache(const CommandContext& context, const PruneFlags& flags) {
  const store::HomeLayout home(context.global.home_dir());
  const train::FeatureCache cache(home.feature_cache());
  json removed = json::array();
  int64_t freed = 0;
  int64_t kept = 0;
  for (const auto& entry : cache_entries(cache)) {
    const double age_days = (now_seconds() - entry.last_used) / 86400;
    std::string reason;
    if (flags.all) {
      reason = "--all";
    } else if (entry.outdated()) {
      reason = entry.identity ? "written by another version of the decoder, transforms or backbones"
                              : "no identity.json (written before cache keys were complete)";
    } else if (flags.older_than_days >= 0 && age_days > flags.older_than_days) {
      reason = fmt::format("unused for {:.1f} days", age_days);
    }
    if (reason.empty()) {
      ++kept;
      continue;
    }
    if (!flags.dry_run) {
      if (Status status = cache.remove(entry); !status.ok()) throw Error(status);
    }
    freed += entry.bytes;
    removed.push_back({{"key", entry.key}, {"bytes", entry.bytes}, {"reason", reason}});
    if (!flags.as_json) {
      std::cout << fmt::format("{} {} ({}): {}\n", flags.dry_run ? "would remove" : "removed", entry.key,
                               human_bytes(entry.bytes), reason);
    }
  }
  if (flags.as_json) {
    std::cout << json{{"removed", removed}, {"bytes_freed", freed}, {"kept", kept}, {"dry_run", flags.dry_run}}
                     .dump(2)
              << "\n";
    return;
  }
  std::cout << fmt::format("{} {} entries ({}), kept {}\n", flags.dry_run ? "would remove" : "removed",
                           removed.size(), human_bytes(freed), kept);
}

}  // namespace

void register_cache_commands(CLI::App& app, CommandContext& context) {
  auto* cache = app.add_subcommand("cache", "Feature caches: list them, prune them");
  cache->require_subcommand(1);

  auto list_json = std::make_shared<bool>(false);
  auto* list = cache->add_subcommand("list", "Every feature cache entry: what it was computed from, size, last use");
  list->add_flag("--json", *list_json, "As JSON");
  list->callback([list_json, &context] { list_cache(context, *list_json); });

  auto flags = std::make_shared<PruneFlags>();
  auto* prune = cache->add_subcommand(
      "prune", "Remove entries no job can hit again (older code versions), or unused ones (--older-than), or all");
  prune->add_option("--older-than", flags->older_than_days, "Also remove entries unused for this many days")
      ->check(CLI::NonNegativeNumber);
  prune->add_flag("--all", flags->all, "Remove every entry");
  prune->add_flag("--dry-run", flags->dry_run, "Say what would be removed, remove nothing");
  prune->add_flag("--json", flags->as_json, "As JSON");
  prune->callback([flags, &context] { prune_cache(context, *flags); });
}

}  // namespace kennel::cli
