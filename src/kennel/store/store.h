// The store: where jobs, studies and trials are recorded, and the one factory
// that opens it from `--store URL` / KENNEL_STORE.
//
//   (nothing), embedded   the Kennel home's own SQLite file, <home>/kennel.db
//                         (the embedded default: no server, one machine)
//   sqlite:PATH           another SQLite file (one machine; PATH relative to the
//                         working directory)
//   postgresql://user@host:port/db, postgres://...
//                         a PostgreSQL database shared by workers on many hosts
//                         (libpq's URI: ?sslmode=..., passwords from ~/.pgpass)
//
// Both implementations keep a schema version table and migrate an older
// schema forward when opened (all at once, under a lock, so workers that open
// a new store together agree); a store whose schema is newer than this kennel
// is refused. Job directories and study files stay on the host that wrote
// them (store/layout.h); the store holds what every host must see.
// Thread-safety: one Store per thread (open one per thread).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "kennel/store/job_registry.h"
#include "kennel/store/study_store.h"
#include "kennel/util/status.h"

namespace kennel::store {

struct StoreLocation {
  enum class Kind { kEmbedded, kSqlite, kPostgres };
  Kind kind = Kind::kEmbedded;
  std::filesystem::path sqlite_path;  // kEmbedded, kSqlite
  std::string url;                    // kPostgres: the URI as given

  // Whether other hosts can share it (then trials register on their own host
  // and the tuning worker copies their rows into this store).
  bool shared() const { return kind == Kind::kPostgres; }
  // The URL without its password: for logs and messages.
  std::string display() const;
  // What to pass to another kennel process's --store to open this same store.
  std::string argument() const;
};

// Parses --store / KENNEL_STORE (see the file comment). An empty `text` is the
// embedded store of `home`. Errors name the value and the forms accepted.
Result<StoreLocation> parse_store_location(const std::string& text, const std::filesystem::path& home);

class Store : public JobRegistry, public StudyStore {
 public:
  const StoreLocation& location() const { return location_; }
  // Opened by open_store_read_only: every write answers kFailedPrecondition.
  bool read_only() const { return read_only_; }

 protected:
  Store(StoreLocation location, bool read_only) : location_(std::move(location)), read_only_(read_only) {}

 private:
  StoreLocation location_;
  bool read_only_;
};

// Opens (creating or migrating the schema when needed) the store. A SQLite
// store's directory must exist. PostgreSQL: connects with a 5 s timeout and TCP
// keepalives; an unreachable server is kUnavailable naming the URL.
Result<std::unique_ptr<Store>> open_store(const StoreLocation& location);

// Opens an existing store for reading only, for a reader that must never hold
// up the writers (`kennel studio`). It changes nothing in the database: no
// schema migration (a newer schema is still refused), no WAL switch; each
// write answers kFailedPrecondition; a job whose process is gone is reported
// as Failed (the same rule as a writer's) without writing that down. SQLite:
// the file opened SQLITE_OPEN_READONLY, kNotFound when it does not exist, and
// a read waits at most `busy_timeout_seconds` for a writer's lock, then
// answers kUnavailable. PostgreSQL: a read-only session (the server refuses
// writes too).
Result<std::unique_ptr<Store>> open_store_read_only(const StoreLocation& location, double busy_timeout_seconds = 2);

}  // namespace kennel::store
