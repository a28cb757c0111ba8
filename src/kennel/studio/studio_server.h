// Kennel Studio: one web app over a home's jobs, studies and endpoints,
// served by the kennel binary itself (cpp-httplib; every page, script and the
// chart library embedded, nothing fetched from anywhere).
//
//   pages   /jobs  /jobs/NAME  /studies  /studies/NAME  /endpoints  /compare
//           (one HTML shell; the scripts draw each page from the API; an
//           unknown job or study answers 404)
//   API     /api/...        JSON, see api.h and docs/studio.md
//   files   /files/jobs/NAME/PATH, /files/studies/NAME/PATH: a file inside
//           that job's or study's folder, never outside it (no "..", no
//           symbolic links followed), HTML sandboxed
//   assets  /assets/NAME    embedded, with ETags
//
// Every request passes WebGuard (Host allowlist, Origin check, CSRF token on
// POST). Studio listens on loopback only: the token/TLS rules that make a
// network listener safe belong to `kennel serve`, and until Studio shares
// them a remote user reaches it through an SSH tunnel. Live pages poll
// (`since=` cursors), so no request holds a pool thread open.
//
// Thread-safety: start()/stop()/wait() from the owning thread; stop() also from
// a signal-watching thread. Handlers run on the server's pool.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kennel/studio/studio_source.h"
#include "kennel/util/status.h"

namespace httplib {
class Server;
}

namespace kennel::studio {

struct StudioOptions {
  std::string host = "127.0.0.1";  // loopback addresses only (see above)
  int port = 8070;                 // 0 = any free port (tests)
  // More names the pages may be reached by (the Host header), e.g. "localhost:9000"
  // when an SSH tunnel maps another port; a name without a port means Studio's port.
  std::vector<std::string> allowed_hosts;
  int http_threads = 8;     // requests served at once; pages poll, nothing streams
  bool access_log = false;  // one log line per request

  Status validate() const;  // kInvalidArgument naming the flag
};

class StudioServer {
 public:
  StudioServer(StudioOptions options, std::unique_ptr<StudioSource> source);
  ~StudioServer();
  StudioServer(const StudioServer&) = delete;
  StudioServer& operator=(const StudioServer&) = delete;

  // Binds and starts serving. kInvalidArgument for bad options, kUnavailable
  // naming the address when it cannot bind.
  Status start();
  int port() const { return port_; }
  std::string url() const;  // http://127.0.0.1:PORT
  void stop();              // idempotent
  void wait();

 private:
  struct State;
  void register_routes();

  StudioOptions options_;
  std::shared_ptr<State> state_;
  std::unique_ptr<httplib::Server> http_;
  std::thread listener_;
  int port_ = 0;
};

}  // namespace kennel::studio
