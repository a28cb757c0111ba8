#include "kennel/serve/server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <span>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "kennel/data/image_header.h"
#include "kennel/serve/address_policy.h"
#include "kennel/serve/auth.h"
#include "kennel/serve/invocation.h"
#include "kennel/serve/metrics.h"
#include "kennel/serve/pixel_budget.h"
#include "kennel/util/version.h"

namespace kennel::serve {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// One request at a time per handler thread: pre-routing, handler, error
// handler and logger of a request all run on the thread that took it.
thread_local Clock::time_point t_request_start;
thread_local std::string t_error_reason;

// "resource exhausted" -> "resource_exhausted": the Prometheus label of a kind.
std::string reason_for(ErrorCode code) {
  std::string reason = error_code_name(code);
  std::replace(reason.begin(), reason.end(), ' ', '_');
  return reason;
}

void send_error(httplib::Response& res, const Status& status, const std::string& reason = "") {
  res.status = http_status_for(status.code());
  if (status.code() == ErrorCode::kUnavailable) res.set_header("Retry-After", "1");
  t_error_reason = reason.empty() ? reason_for(status.code()) : reason;
  res.set_content(json{{"error", error_code_name(status.code())}, {"detail", status.message()}}.dump() + "\n",
                  "application/json");
}

std::string route_label(const std::string& path) {
  for (const char* known : {"/ping", "/invocations", "/models", "/metrics"}) {
    if (path == known) return known;
  }
  return "other";
}

// A fetch failure is the client's bad input unless the upstream itself failed or timed out.
Status as_client_error(const Status& status, size_t index) {
  const std::string context = fmt::format("input {}", index);
  switch (status.code()) {
    case ErrorCode::kUpstreamFailed:
    case ErrorCode::kDeadlineExceeded:
      return status.with_context(context);
    default:
      return Status(ErrorCode::kInvalidArgument, status.message()).with_context(context);
  }
}

std::string fetch_reason(ErrorCode code) {
  switch (code) {
    case ErrorCode::kPermissionDenied: return "url_denied";
    case ErrorCode::kNotFound: return "url_not_found";
    case ErrorCode::kResourceExhausted: return "url_too_large";
    case ErrorCode::kUpstreamFailed: return "upstream_failed";
    case ErrorCode::kDeadlineExceeded: return "upstream_timeout";
    default: return "bad_url";
  }
}

struct FetchFailure {
  size_t index;
  Status status;
};

// Fetches the URL inputs of one request, `concurrency` at a time, all before
// `deadline`; after the first failure no new fetch starts. The failure
// reported is the one of the lowest input index.
std::optional<FetchFailure> fetch_urls(UrlFetcher& fetcher, const std::vector<ImageInput>& inputs,
                                       Clock::time_point deadline, int concurrency,
                                       std::vector<std::string>& bodies) {
  std::vector<size_t> url_inputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].url.empty()) url_inputs.push_back(i);
  }
  std::vector<std::optional<Status>> errors(inputs.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&] {
    for (size_t k; !failed && (k = next++) < url_inputs.size();) {
      const size_t i = url_inputs[k];
      auto body = fetcher.fetch(inputs[i].url, deadline);
      if (body.ok()) {
        bodies[i] = std::move(body).value();
      } else {
        errors[i] = body.status();
        failed = true;
      }
    }
  };
  const size_t threads = std::min(url_inputs.size(), static_cast<size_t>(std::max(1, concurrency)));
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (auto& helper : helpers) helper.join();
  for (size_t i = 0; i < errors.size(); ++i) {
    if (errors[i]) return FetchFailure{i, *errors[i]};
  }
  return std::nullopt;
}

// What decoding an image may cost, from its header: width x height, or
// `unknown` when an image header does not say. (Both sides fit 32 bits: no overflow.)
int64_t pixels_to_decode(const std::string& bytes, int64_t unknown) {
  const auto header = data::probe_image_header(
      std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  if (!header) return 0;  // not an image: decoding stops at the signature, allocating nothing
  if (header->width <= 0 || header->height <= 0) return unknown;
  return header->width * header->height;
}

constexpr int64_t kDefaultMaxPixels = 89'478'485;

int64_t resolved_pixel_budget(const ServeOptions& options) {
  if (options.decode_pixel_budget > 0) return options.decode_pixel_budget;
  return 2 * (options.predictor.max_pixels > 0 ? options.predictor.max_pixels : kDefaultMaxPixels);
}

}  // namespace

Status ServeOptions::validate() const {
  KENNEL_RETURN_IF_ERROR(listener.validate());
  if (!std::isfinite(request_timeout_seconds) || request_timeout_seconds <= 0) {
    return invalid_argument("--request-timeout must be > 0 seconds, got {}", request_timeout_seconds);
  }
  if (fetch_concurrency < 1 || fetch_concurrency > 64) {
    return invalid_argument("--fetch-concurrency must be in [1, 64], got {}", fetch_concurrency);
  }
  if (decode_pixel_budget < 0) {
    return invalid_argument("--decode-pixel-budget must be >= 0 (0 = twice --max-pixels), got {}",
                            decode_pixel_budget);
  }
  if (predictor.max_pixels > 0 && resolved_pixel_budget(*this) < predictor.max_pixels) {
    return invalid_argument(
        "--decode-pixel-budget {} is below --max-pixels {}: an image the server accepts could never "
        "be decoded; raise the budget or lower --max-pixels",
        decode_pixel_budget, predictor.max_pixels);
  }
  if (!is_loopback_host(listener.host) && !insecure_no_auth) {
    const bool token = !auth_token.empty();
    const bool tls = !listener.tls_cert.empty();
    if (!token || !tls) {
      const char* missing = !token && !tls ? "without a token or TLS"
                            : !token       ? "without a token"
                                           : "without TLS (the token would cross the network in clear text)";
      return invalid_argument(
          "--host {} opens the endpoint beyond this machine {}: anyone who can reach it could run the "
          "model and make the server fetch URLs for them. Give --auth-token-file FILE (or set {}) and "
          "--tls-cert/--tls-key, or pass --insecure-no-auth to accept that risk",
          listener.host, missing, kAuthTokenEnv);
    }
  }
  KENNEL_RETURN_IF_ERROR(batcher.validate());
  return fetch.validate();
}

struct InferenceServer::State {
  std::atomic<bool> ready{false};
  std::unique_ptr<Predictor> predictor;
  std::unique_ptr<DynamicBatcher> batcher;
  std::unique_ptr<UrlFetcher> fetcher;
  std::unique_ptr<PixelBudget> pixels;
  std::optional<BearerCheck> auth;
  ServerMetrics metrics;
  json model_description;
};

InferenceServer::InferenceServer(ServeOptions options)
    : options_(std::move(options)), state_(std::make_shared<State>()) {}

InferenceServer::~InferenceServer() {
  stop();
  wait();
}

int InferenceServer::port() const { return listener_ ? listener_->port() : 0; }

Status InferenceServer::start() {
  KENNEL_RETURN_IF_ERROR(options_.validate());
  auto fetcher = make_url_fetcher(options_.fetch);
  if (!fetcher.ok()) return fetcher.status();
  state_->fetcher = std::move(fetcher).value();
  state_->pixels = std::make_unique<PixelBudget>(resolved_pixel_budget(options_));
  if (!options_.auth_token.empty()) state_->auth.emplace(options_.auth_token);
  listener_ = std::make_unique<HttpListener>(options_.listener);
  register_routes();
  auto state = state_;
  const bool access_log = options_.access_log;
  listener_->set_rejection_observer([state, access_log](int status, const std::string& reason) {
    state->metrics.record_rejection(status, reason);
    if (access_log) spdlog::info("- - - {} ({}: answered before routing)", status, reason);
  });
  HttpListener* listener = listener_.get();
  state_->metrics.set_open_connections_source([listener] { return listener->open_connections(); });
  PixelBudget* pixels = state_->pixels.get();
  state_->metrics.set_decode_pixels_source([pixels] { return pixels->in_use(); });
  return listener_->start();
}

Status InferenceServer::load(const std::filesystem::path& model_dir) {
  auto predictor = Predictor::load(model_dir, options_.predictor);
  if (!predictor.ok()) return predictor.status();
  State& state = *state_;
  state.predictor = std::move(predictor).value();
  Predictor* model = state.predictor.get();
  const int threads_per_worker = options_.predictor.threads;
  state.batcher = std::make_unique<DynamicBatcher>(
      [model, threads_per_worker](const at::Tensor& batch) {
        // OpenMP's thread count is per calling thread: set it once in each worker.
        thread_local bool configured = false;
        if (!configured && threads_per_worker > 0) at::set_num_threads(threads_per_worker);
        configured = true;
        return model->predict(batch);
      },
      options_.batcher);
  state.batcher->set_batch_observer([&state](int64_t size, double seconds) {
    state.metrics.record_batch(size, seconds);
  });
  state.metrics.set_queue_depth_source([&state] { return state.batcher->queue_depth(); });
  state.metrics.set_model_load_seconds(model->load_seconds());
  const auto& info = model->info();
  state.model_description = {{"model_dir", model_dir.string()},
                             {"arch", info.arch},
                             {"head", info.head_hidden},
                             {"num_classes", info.classes.size()},
                             {"classes", info.classes},
                             {"input_size", info.input_size},
                             {"resize", info.resize},
                             {"mean", info.mean},
                             {"std", info.std},
                             {"source_job", info.source_job},
                             {"precision", options_.predictor.precision},
                             {"max_batch_size", options_.batcher.max_batch_size},
                             {"max_batch_delay_ms", options_.batcher.max_delay_ms},
                             {"workers", options_.batcher.workers},
                             {"kennel_version", kVersion}};
  state.ready = true;
  return {};
}

void InferenceServer::stop() {
  if (listener_) listener_->stop();
}

void InferenceServer::wait() {
  if (listener_) listener_->wait();
  // Handlers have returned: nothing can enqueue any more.
  if (state_->batcher) state_->batcher->shutdown();
}

void InferenceServer::register_routes() {
  auto state = state_;
  const bool access_log = options_.access_log;
  httplib::Server& http = listener_->routes();

  http.set_pre_routing_handler([state](const httplib::Request& req, httplib::Response& res) {
    t_request_start = Clock::now();
    t_error_reason.clear();
    // /ping stays open for health checks; everything else (unknown routes too) needs the token.
    if (state->auth && req.path != "/ping" && !state->auth->accepts(req.get_header_value("Authorization"))) {
      res.status = 401;
      res.set_header("WWW-Authenticate", "Bearer realm=\"kennel\"");
      const std::string detail =
          req.has_header("Authorization")
              ? "the Authorization header does not carry this server's token"
              : fmt::format("this endpoint needs 'Authorization: Bearer <token>' (kennel predict: "
                            "--auth-token-file FILE or {})",
                            kAuthTokenEnv);
      res.set_content(json{{"error", "unauthenticated"}, {"detail", detail}}.dump() + "\n", "application/json");
      t_error_reason = "unauthenticated";
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_logger([state, access_log](const httplib::Request& req, const httplib::Response& res) {
    const double seconds = std::chrono::duration<double>(Clock::now() - t_request_start).count();
    state->metrics.record_request(route_label(req.path), res.status, seconds, t_error_reason);
    t_error_reason.clear();
    if (access_log) {
      spdlog::info("{} {} {} {} {}B {:.1f}ms", req.remote_addr, req.method, req.path, res.status, res.body.size(),
                   seconds * 1000);
    }
  });
  // Statuses httplib sets itself (404 route, 413 payload, 400 malformed HTTP) get the same JSON shape.
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string kind = "http error";
        std::string detail = fmt::format("HTTP {}", res.status);
        t_error_reason = "http_error";
        if (res.status == 404) {
          kind = "not found";
          detail = fmt::format("no route {} {}: use /ping, /invocations, /models or /metrics", req.method, req.path);
          t_error_reason = "no_route";
        } else if (res.status == 405) {
          kind = "method not allowed";
          detail = fmt::format("{} is not allowed on {}", req.method, req.path);
          t_error_reason = "method_not_allowed";
        } else if (res.status == 413) {
          kind = "payload too large";
          detail = "the request body is larger than the server's --max-body limit";
          t_error_reason = "payload_too_large";
        } else if (res.status == 400) {
          kind = "bad request";
          detail = "the HTTP request is malformed";
          t_error_reason = "malformed_http";
        }
        res.set_content(json{{"error", kind}, {"detail", detail}}.dump() + "\n", "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const c10::Error& e) {
      what = e.what_without_backtrace();
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("request failed with an internal error: {}", what);
    send_error(res, internal_error("internal error (please report): {}", what));
  });

  http.Get("/ping", [state](const httplib::Request&, httplib::Response& res) {
    if (!state->ready) {
      res.status = 503;
      t_error_reason = "model_loading";
      res.set_content("{\"status\": \"loading\"}\n", "application/json");
      return;
    }
    res.set_content("{\"status\": \"ok\"}\n", "application/json");
  });
  http.Get("/models", [state](const httplib::Request&, httplib::Response& res) {
    if (!state->ready) {
      return send_error(res, Status(ErrorCode::kUnavailable, "the model is still loading"), "model_loading");
    }
    res.set_content(state->model_description.dump(2) + "\n", "application/json");
  });
  http.Get("/metrics", [state](const httplib::Request&, httplib::Response& res) {
    res.set_content(state->metrics.render(), "text/plain; version=0.0.4");
  });
  // The listener has read the body whole (up to --max-body on the wire); the
  // content reader also bounds what gzip inflates it to.
  const auto max_body = static_cast<size_t>(options_.listener.max_body_bytes);
  const auto request_timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.request_timeout_seconds));
  const int fetch_concurrency = options_.fetch_concurrency;
  const int64_t max_pixels = options_.predictor.max_pixels > 0 ? options_.predictor.max_pixels : kDefaultMaxPixels;
  http.Post("/invocations", [state, max_body, request_timeout, fetch_concurrency, max_pixels](
                                const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& content_reader) {
    std::string body;
    bool too_large = req.has_header("Content-Length") &&
                     std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10) > max_body;
    const bool complete = too_large || content_reader([&](const char* data, size_t length) {
      if (body.size() + length > max_body) {
        too_large = true;
        return false;
      }
      body.append(data, length);
      return true;
    });
    if (too_large) {
      return send_error(res,
                        Status(ErrorCode::kResourceExhausted,
                               fmt::format("the request body (after decompression) is larger than the "
                                           "server's --max-body limit of {} bytes",
                                           max_body)),
                        "payload_too_large");
    }
    if (!complete) return send_error(res, invalid_argument("the request body could not be read completely"));
    if (!state->ready) {
      return send_error(res, Status(ErrorCode::kUnavailable, "the model is still loading"), "model_loading");
    }
    auto invocation = parse_invocation(req.get_header_value("Content-Type"), body,
                                       req.get_param_value("top_k"),
                                       req.get_header_value("X-Amzn-SageMaker-Custom-Attributes"));
    if (!invocation.ok()) return send_error(res, invocation.status());
    const auto deadline = t_request_start + request_timeout;
    std::vector<std::string> fetched(invocation->inputs.size());
    if (auto failure = fetch_urls(*state->fetcher, invocation->inputs, deadline, fetch_concurrency, fetched)) {
      return send_error(res, as_client_error(failure->status, failure->index), fetch_reason(failure->status.code()));
    }
    std::vector<at::Tensor> images;
    for (size_t i = 0; i < invocation->inputs.size(); ++i) {
      const ImageInput& input = invocation->inputs[i];
      const std::string& bytes = input.url.empty() ? input.bytes : fetched[i];
      const std::string where = input.url.empty() ? fmt::format("input {}", i)
                                                  : fmt::format("input {} ({})", i, input.url);
      // An image over --max-pixels is refused by preprocess before any pixel is allocated.
      PixelBudget::Lease lease;
      if (const int64_t pixels = pixels_to_decode(bytes, max_pixels); pixels <= max_pixels) {
        auto granted = state->pixels->acquire(pixels);
        if (!granted.ok()) return send_error(res, granted.status().with_context(where), "decode_budget");
        lease = std::move(granted).value();
      }
      auto image =
          state->predictor->preprocess(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
      if (!image.ok()) return send_error(res, image.status().with_context(where), "bad_image");
      images.push_back(std::move(image).value());
    }
    auto futures = state->batcher->enqueue(std::move(images));
    if (!futures.ok()) {
      return send_error(res, futures.status(),
                        futures.status().code() == ErrorCode::kUnavailable ? "queue_full" : "");
    }
    json rows = json::array();
    std::vector<at::Tensor> logits;
    for (auto& future : *futures) logits.push_back(future.get());
    const at::Tensor batch = at::stack(logits);
    state->metrics.add_images(batch.size(0));
    if (invocation->top_k > 0) {
      for (const auto& row : top_k(batch, invocation->top_k, state->predictor->info().classes)) {
        json entries = json::array();
        for (const auto& p : row) {
          entries.push_back({{"label", p.label}, {"index", p.index}, {"probability", p.probability}});
        }
        rows.push_back(entries);
      }
    } else {
      const at::Tensor cpu = batch.contiguous();
      const float* data = cpu.data_ptr<float>();
      const int64_t classes = cpu.size(1);
      for (int64_t i = 0; i < cpu.size(0); ++i) {
        rows.push_back(std::vector<float>(data + i * classes, data + (i + 1) * classes));
      }
    }
    res.set_content(rows.dump() + "\n", "application/json");
  });
}

}  // namespace kennel::serve
