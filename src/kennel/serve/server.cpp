#include "kennel/serve/server.h"

#include <sys/socket.h>

#include <chrono>
#include <cstdlib>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "kennel/serve/invocation.h"
#include "kennel/serve/metrics.h"
#include "kennel/util/version.h"

namespace kennel::serve {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

thread_local Clock::time_point t_request_start;

void send_error(httplib::Response& res, const Status& status) {
  res.status = http_status_for(status.code());
  if (status.code() == ErrorCode::kUnavailable) res.set_header("Retry-After", "1");
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

}  // namespace

Status ServeOptions::validate() const {
  if (port < 0 || port > 65535) return invalid_argument("--port must be in [0, 65535], got {}", port);
  if (max_body_bytes < 1) return invalid_argument("--max-body must be > 0, got {}", max_body_bytes);
  if (http_threads < 1 || http_threads > 1024) {
    return invalid_argument("--http-threads must be in [1, 1024], got {}", http_threads);
  }
  KENNEL_RETURN_IF_ERROR(batcher.validate());
  return fetch.validate();
}

struct InferenceServer::State {
  std::atomic<bool> ready{false};
  std::unique_ptr<Predictor> predictor;
  std::unique_ptr<DynamicBatcher> batcher;
  std::unique_ptr<UrlFetcher> fetcher;
  ServerMetrics metrics;
  json model_description;
};

InferenceServer::InferenceServer(ServeOptions options)
    : options_(std::move(options)), http_(std::make_unique<httplib::Server>()), state_(std::make_shared<State>()) {}

InferenceServer::~InferenceServer() {
  stop();
  wait();
}

Status InferenceServer::start() {
  KENNEL_RETURN_IF_ERROR(options_.validate());
  auto fetcher = make_url_fetcher(options_.fetch);
  if (!fetcher.ok()) return fetcher.status();
  state_->fetcher = std::move(fetcher).value();
  register_routes();
  const int threads = options_.http_threads;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http_->set_payload_max_length(static_cast<size_t>(options_.max_body_bytes));
  const auto read_timeout = std::chrono::duration<double>(options_.read_timeout_seconds);
  http_->set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(read_timeout));
  http_->set_keep_alive_timeout(2);
  http_->set_keep_alive_max_count(10'000);  // httplib's default of 5 forces reconnects under load
  // httplib's default sets SO_REUSEPORT, which lets a second server bind a port in use and
  // silently take a share of its connections. SO_REUSEADDR alone restarts cleanly.
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
    if (port_ < 0) port_ = 0;
  } else if (http_->bind_to_port(options_.host, options_.port)) {
    port_ = options_.port;
  }
  if (port_ <= 0) {
    return Status(ErrorCode::kUnavailable,
                  fmt::format("cannot listen on {}:{} (in use, or not an address of this machine): choose another "
                              "--port or --host",
                              options_.host, options_.port));
  }
  listener_ = std::thread([this] { http_->listen_after_bind(); });
  // httplib's stop() is a no-op until the accept loop runs, and wait() would then hang.
  for (int waited_ms = 0; !http_->is_running() && waited_ms < 5000; ++waited_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return {};
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
  if (http_) http_->stop();
}

void InferenceServer::wait() {
  if (listener_.joinable()) listener_.join();
  // Handlers have returned: nothing can enqueue any more.
  if (state_->batcher) state_->batcher->shutdown();
}

void InferenceServer::register_routes() {
  auto state = state_;
  const bool access_log = options_.access_log;

  http_->set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_request_start = Clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http_->set_logger([state, access_log](const httplib::Request& req, const httplib::Response& res) {
    const double seconds = std::chrono::duration<double>(Clock::now() - t_request_start).count();
    state->metrics.record_request(route_label(req.path), res.status, seconds);
    if (access_log) {
      spdlog::info("{} {} {} {} {}B {:.1f}ms", req.remote_addr, req.method, req.path, res.status, res.body.size(),
                   seconds * 1000);
    }
  });
  // Statuses httplib sets itself (404 route, 413 payload, 400 malformed HTTP) get the same JSON shape.
  http_->set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string kind = "http error";
        std::string detail = fmt::format("HTTP {}", res.status);
        if (res.status == 404) {
          kind = "not found";
          detail = fmt::format("no route {} {}: use /ping, /invocations, /models or /metrics", req.method, req.path);
        } else if (res.status == 405) {
          kind = "method not allowed";
          detail = fmt::format("{} is not allowed on {}", req.method, req.path);
        } else if (res.status == 413) {
          kind = "payload too large";
          detail = "the request body is larger than the server's --max-body limit";
        } else if (res.status == 400) {
          kind = "bad request";
          detail = "the HTTP request is malformed";
        }
        res.set_content(json{{"error", kind}, {"detail", detail}}.dump() + "\n", "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  http_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
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

  http_->Get("/ping", [state](const httplib::Request&, httplib::Response& res) {
    if (!state->ready) {
      res.status = 503;
      res.set_content("{\"status\": \"loading\"}\n", "application/json");
      return;
    }
    res.set_content("{\"status\": \"ok\"}\n", "application/json");
  });
  http_->Get("/models", [state](const httplib::Request&, httplib::Response& res) {
    if (!state->ready) return send_error(res, Status(ErrorCode::kUnavailable, "the model is still loading"));
    res.set_content(state->model_description.dump(2) + "\n", "application/json");
  });
  http_->Get("/metrics", [state](const httplib::Request&, httplib::Response& res) {
    res.set_content(state->metrics.render(), "text/plain; version=0.0.4");
  });
  // The body is read through a content reader so that --max-body bounds what is
  // held in memory whatever the framing: httplib 0.11 enforces its payload limit
  // only on Content-Length bodies, not on chunked or gzip-inflated ones.
  const auto max_body = static_cast<size_t>(options_.max_body_bytes);
  http_->Post("/invocations", [state, max_body](const httplib::Request& req, httplib::Response& res,
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
      return send_error(res, Status(ErrorCode::kResourceExhausted,
                                    fmt::format("the request body (after decompression) is larger than the "
                                                "server's --max-body limit of {} bytes",
                                                max_body)));
    }
    if (!complete) return send_error(res, invalid_argument("the request body could not be read completely"));
    if (!state->ready) return send_error(res, Status(ErrorCode::kUnavailable, "the model is still loading"));
    auto invocation = parse_invocation(req.get_header_value("Content-Type"), body,
                                       req.get_param_value("top_k"),
                                       req.get_header_value("X-Amzn-SageMaker-Custom-Attributes"));
    if (!invocation.ok()) return send_error(res, invocation.status());
    std::vector<at::Tensor> images;
    for (size_t i = 0; i < invocation->inputs.size(); ++i) {
      const ImageInput& input = invocation->inputs[i];
      std::string fetched;
      if (!input.url.empty()) {
        auto body = state->fetcher->fetch(input.url);
        if (!body.ok()) return send_error(res, as_client_error(body.status(), i));
        fetched = std::move(body).value();
      }
      const std::string& bytes = input.url.empty() ? input.bytes : fetched;
      auto image = state->predictor->preprocess(
          std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
      if (!image.ok()) {
        return send_error(res, image.status().with_context(input.url.empty() ? fmt::format("input {}", i)
                                                                               : fmt::format("input {} ({})", i,
                                                                                             input.url)));
      }
      images.push_back(std::move(image).value());
    }
    auto futures = state->batcher->enqueue(std::move(images));
    if (!futures.ok()) return send_error(res, futures.status());
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
