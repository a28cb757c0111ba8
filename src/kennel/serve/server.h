// The inference endpoint: the cloud inference-container contract over HTTP.
//
//   GET  /ping         200 once the model is loaded, 503 before
//   POST /invocations  images in (see invocation.h), logits or top-k out
//   GET  /models       the loaded model: arch, classes, input size, source job
//   GET  /metrics      Prometheus text (metrics.h)
//
// Connections are held by an HttpListener (http_listener.h): requests reach
// a handler thread only once read whole, within header/body deadlines. The
// server is a client of the DynamicBatcher: handler threads parse, fetch a
// request's URLs (concurrently, at most fetch_concurrency at once, all
// within request_timeout_seconds), decode (within a PixelBudget shared by
// all handlers), enqueue, and wait; the batcher's workers own the model.
//
// Security (docs/serving.md, "Security"): with an auth token every route but
// /ping needs `Authorization: Bearer <token>` (401 otherwise); with
// tls_cert/tls_key the endpoint speaks only HTTPS; a host beyond loopback is
// refused unless it has both, or insecure_no_auth says the operator accepts
// the risk. URL fetches reach only public addresses unless fetch opens more.
//
// Every failure is a JSON body {"error": kind, "detail": message} with the
// status from status.h's table (400 bad input, 401 no token, 408 slow
// client, 413 body too large, 415 content type, 502/504 upstream fetches,
// 503 + Retry-After when the queue or the decode budget is full); a
// last-resort handler answers 500 and the server lives on. /metrics counts
// every 4xx/5xx by reason. One access-log line per request.
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
#include "kennel/serve/http_listener.h"
#include "kennel/serve/predictor.h"
#include "kennel/serve/url_fetcher.h"
#include "kennel/util/status.h"

namespace kennel::serve {

struct ServeOptions {
  // Where and how to listen: host (loopback by default: opening up is a
  // deliberate choice), port (0 = any free one), handler threads (decode
  // happens there), connection cap, deadlines, --max-body (6 MiB, the cloud
  // endpoint's payload limit), TLS files.
  ListenerOptions listener;
  // Requests must present it (Authorization: Bearer); empty = no authentication.
  std::string auth_token;
  // A host beyond loopback without both a token and TLS is refused unless this is set.
  bool insecure_no_auth = false;
  // One request's URLs: fetched this many at once, all within this deadline
  // (counted from when a handler takes the request, already read whole; the
  // cloud endpoint's invocation limit).
  int fetch_concurrency = 4;
  double request_timeout_seconds = 60;
  // Pixels decoded at once across handlers; 0 = twice predictor.max_pixels.
  int64_t decode_pixel_budget = 0;
  bool access_log = true;
  // Two single-threaded model workers by default: on a small machine OpenMP's
  // busy-waiting threads collapse throughput as soon as decoding or another
  // process wants a core (measured in bench/serve: several times slower).
  BatcherOptions batcher = {.max_batch_size = 8, .max_delay_ms = 5, .max_queue = 128, .workers = 2};
  FetchOptions fetch;
  PredictorOptions predictor = {.threads = 1};  // per worker; 0 = all cores

  Status validate() const;  // kInvalidArgument naming the flag, and saying why for an open host
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
  int port() const;
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
  std::unique_ptr<HttpListener> listener_;
  std::shared_ptr<State> state_;
};

}  // namespace kennel::serve
