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

 protected:
  explicit Store(StoreLocation location) : location_(std::move(location)) {}

 private:
  StoreLocation location_;
};

// Opens (creating or migrating the schema when needed) the store. A SQLite
// store's directory must exist. PostgreSQL: connects with a 5 s timeout and TCP
// keepalives; an unreachable server is kUnavailable naming the URL.
Result<std::unique_ptr<Store>> open_store(const StoreLocation& location);

}  // namespace kennel::store
