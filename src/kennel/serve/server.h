// The inference endpoint: the cloud inference-container contract over HTTP.
//
//   GET  /ping         200 once the model is loaded, 503 before
//   POST /invocations  images in (see invocation.h), logits or top-k out
//   GET  /models       the loaded model: arch, classes, input size, source job
//   GET  /metrics      Prometheus text (metrics.h)
//
// The server is a client of the DynamicBatcher: handler threads parse,
// fetch and decode (in parallel across requests), enqueue, and wait; the
// batcher's workers own the model. Every failure is a JSON body
// {"error": kind, "detail": message} with the status from status.h's table
// (400 bad input, 413 body too large, 415 content type, 502/504 upstream
// fetches, 503 + Retry-After when the queue is full); a last-resort handler
// answers 500 and the server lives on. One access-log line per request.
//
// Thread-safety: start()/load()/stop() from the owning thread; stop() may
// also be called from a signal-watching thread.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "kennel/serve/batcher.h"
#include "kennel/serve/predictor.h"
#include "kennel/serve/url_fetcher.h"
#include "kennel/util/status.h"

namespace httplib {
class Server;
}

namespace kennel::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";  // loopback by default: opening up is a deliberate choice
  int port = 8080;                 // 0 = any free port (tests)
  int64_t max_body_bytes = 6ll << 20;  // the cloud endpoints' payload limit
  int http_threads = 32;           // connections served at once (decode happens here)
  double read_timeout_seconds = 10;
  bool access_log = true;
  // Two single-threaded model workers by default: on a small machine OpenMP's
  // busy-waiting threads collapse throughput as soon as decoding or another
  // process wants a core (measured in bench/serve: several times slower).
  BatcherOptions batcher = {.max_batch_size = 8, .max_delay_ms = 5, .max_queue = 128, .workers = 2};
  FetchOptions fetch;
  PredictorOptions predictor = {.threads = 1};  // per worker; 0 = all cores

  Status validate() const;  // kInvalidArgument naming the flag
};

class InferenceServer {
 public:
  explicit InferenceServer(ServeOptions options);
  ~InferenceServer();
  InferenceServer(const InferenceServer&) = delete;
  InferenceServer& operator=(const InferenceServer&) = delete;

  // Binds host:port and starts accepting (/ping answers 503 until load()).
  // kUnavailable naming the address when it cannot bind.
  Status start();
  int port() const { return port_; }
  // Loads the model and starts the batcher; /ping answers 200 afterwards.
  Status load(const std::filesystem::path& model_dir);
  // Stops accepting, lets in-flight requests finish, drains the batcher. Idempotent.
  void stop();
  // Blocks until the server has stopped.
  void wait();

 private:
  struct State;
  void register_routes();

  ServeOptions options_;
  std::unique_ptr<httplib::Server> http_;
  std::shared_ptr<State> state_;
  std::thread listener_;
  int port_ = 0;
};

}  // namespace kennel::serve
