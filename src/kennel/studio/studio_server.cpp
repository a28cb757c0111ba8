#include "kennel/studio/studio_server.h"

#include <sys/socket.h>

#include <charconv>
#include <chrono>

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "kennel/studio/api.h"
#include "kennel/studio/detail/json_files.h"
#include "kennel/studio/embedded_assets.h"
#include "kennel/studio/web_guard.h"
#include "kennel/util/fs.h"
#include "kennel/util/version.h"

namespace kennel::studio {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kMaxFileBytes = uint64_t{512} << 20;
constexpr const char* kPageShell = "/assets/index.html";
constexpr const char* kTokenPlaceholder = "{{csrf_token}}";
// Where the shell names the page's first API request, so the browser starts it while the page's
// scripts load (main.js then gets the preloaded answer).
constexpr const char* kFirstRequestPlaceholder = "{{first_request}}";

// The pages: scripts from this server only, no inline script, no framing, no form posts.
constexpr const char* kPagePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
// Files from job folders (a profile report, a log): shown, never run as this site.
constexpr const char* kFilePolicy =
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'";

// Sets a body that httplib will not compress: with Accept-Encoding "br" (every browser) it
// brotli-compresses text at quality 11, seconds per megabyte (the chart library took 6.5 s to
// arrive), and compression buys nothing on loopback. A sized content provider is sent as is.
void set_body(httplib::Response& res, std::string_view body, const std::string& type,
              std::shared_ptr<const std::string> owner = nullptr) {
  if (body.empty()) return res.set_content("", type);
  res.set_content_provider(body.size(), type,
                           [body, owner](size_t offset, size_t length, httplib::DataSink& sink) {
                             return sink.write(body.data() + offset, length);
                           });
}

void set_body(httplib::Response& res, std::string body, const std::string& type) {
  auto owner = std::make_shared<const std::string>(std::move(body));
  set_body(res, *owner, type, owner);
}

void send_json(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  set_body(res, body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const Status& status) {
  send_json(res, {{"error", error_code_name(status.code())}, {"detail", status.message()}},
            http_status_for(status.code()));
}

void send_result(httplib::Response& res, const Result<json>& result) {
  if (result.ok()) return send_json(res, *result);
  send_error(res, result.status());
}

const EmbeddedAsset* find_asset(std::string_view path) {
  for (const auto& asset : embedded_assets()) {
    if (asset.path == path) return &asset;
  }
  return nullptr;
}

std::string content_type_for(const fs::path& path) {
  const std::string extension = path.extension().string();
  if (extension == ".html" || extension == ".htm") return "text/html; charset=utf-8";
  if (extension == ".json" || extension == ".jsonl") return "application/json";
  if (extension == ".txt" || extension == ".log" || extension == ".csv")
    return "text/plain; charset=utf-8";
  if (extension == ".png") return "image/png";
  if (extension == ".svg") return "image/svg+xml";
  if (extension == ".gz") return "application/gzip";
  return "application/octet-stream";
}

std::optional<int64_t> parse_int(const std::string& text) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

Status StudioOptions::validate() const {
  if (port < 0 || port > 65535)
    return invalid_argument("--port must be in [0, 65535], got {}", port);
  if (http_threads < 1 || http_threads > 256) {
    return invalid_argument("--http-threads must be in [1, 256], got {}", http_threads);
  }
  if (!is_loopback_host(host)) {
    return invalid_argument(
        "--host {}: kennel studio listens on loopback addresses only (127.0.0.1, ::1, localhost), "
        "because "
        "its pages can stop jobs and read every job's files; from another machine, tunnel to it: "
        "ssh -L 8070:127.0.0.1:8070 THIS_HOST, then open http://127.0.0.1:8070",
        host);
  }
  return {};
}

struct StudioServer::State {
  explicit State(std::unique_ptr<StudioSource> source_in)
      : source(std::move(source_in)), api(*source), csrf_token(random_token()) {}
  std::unique_ptr<StudioSource> source;
  StudioApi api;
  std::string csrf_token;
  std::unique_ptr<WebGuard> guard;  // made once the port is known
  std::string page;                 // the shell with this run's token
};

StudioServer::StudioServer(StudioOptions options, std::unique_ptr<StudioSource> source)
    : options_(std::move(options)),
      state_(std::make_shared<State>(std::move(source))),
      http_(std::make_unique<httplib::Server>()) {}

StudioServer::~StudioServer() {
  stop();
  wait();
}

std::string StudioServer::url() const {
  const bool v6 = options_.host.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}", v6 ? "[" : "", options_.host, v6 ? "]" : "", port_);
}

Status StudioServer::start() {
  KENNEL_RETURN_IF_ERROR(options_.validate());
  const EmbeddedAsset* shell = find_asset(kPageShell);
  if (!shell) return internal_error("the page shell {} is not embedded in this build", kPageShell);
  std::string page(shell->body);
  if (const size_t at = page.find(kTokenPlaceholder); at != std::string::npos) {
    page.replace(at, std::string_view(kTokenPlaceholder).size(), state_->csrf_token);
  }
  state_->page = std::move(page);

  const int threads = options_.http_threads;
  http_->new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  http_->set_payload_max_length(64 << 10);  // Studio takes no uploads
  http_->set_read_timeout(10, 0);
  http_->set_keep_alive_timeout(5);
  // SO_REUSEADDR only: httplib's default SO_REUSEPORT lets a second server share the port silently.
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
    return Status(
        ErrorCode::kUnavailable,
        fmt::format(
            "cannot listen on {}:{} (in use, or not an address of this machine): choose another "
            "--port",
            options_.host, options_.port));
  }
  state_->guard = std::make_unique<WebGuard>(port_, options_.allowed_hosts, state_->csrf_token);
  register_routes();
  listener_ = std::thread([this] { http_->listen_after_bind(); });
  for (int waited_ms = 0; !http_->is_running() && waited_ms < 5000; ++waited_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return {};
}

void StudioServer::stop() {
  if (http_) http_->stop();
}

void StudioServer::wait() {
  if (listener_.joinable()) listener_.join();
}

void StudioServer::register_routes() {
  auto state = state_;
  const bool access_log = options_.access_log;

  http_->set_pre_routing_handler([state](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("X-Frame-Options", "DENY");
    res.set_header("Referrer-Policy", "same-origin");
    res.set_header("Cross-Origin-Resource-Policy", "same-origin");
    const GuardRequest request{.method = req.method,
                               .path = req.path,
                               .host = req.get_header_value("Host"),
                               .origin = req.get_header_value("Origin"),
                               .referer = req.get_header_value("Referer"),
                               .sec_fetch_site = req.get_header_value("Sec-Fetch-Site"),
                               .csrf_token = req.get_header_value("X-Kennel-CSRF")};
    if (Status allowed = state->guard->check(request); !allowed.ok()) {
      spdlog::warn("studio: refused {} {} (Host '{}', Origin '{}'): {}", req.method, req.path,
                   request.host, request.origin, allowed.message());
      send_error(res, allowed);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  if (access_log) {
    http_->set_logger([](const httplib::Request& req, const httplib::Response& res) {
      spdlog::info("studio: {} {} {} {}B", req.method, req.path, res.status, res.body.size());
    });
  }
  http_->set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                   httplib::Response& res) {
    // A handler's own answer (every one sets a Content-Type) stays; httplib's bare ones get JSON.
    if (res.has_header("Content-Type")) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, Status(res.status == 404 ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument,
                           fmt::format("HTTP {} for {} {}", res.status, req.method, req.path)));
    return httplib::Server::HandlerResponse::Handled;
  }));
  http_->set_exception_handler([](const httplib::Request& req, httplib::Response& res,
                                  std::exception_ptr error) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("studio: {} {} failed with an internal error: {}", req.method, req.path, what);
    send_error(res, internal_error("internal error (please report): {}", what));
  });

  // ---- pages: one shell; a page for something that does not exist answers 404 ----
  // Each route's shell is written once, here: only its preload differs.
  const auto page = [state](int status, const std::string& first_request = "") {
    std::string html = state->page;
    if (const size_t at = html.find(kFirstRequestPlaceholder); at != std::string::npos) {
      html.replace(at, std::string_view(kFirstRequestPlaceholder).size(),
                   first_request.empty()
                       ? std::string()
                       : fmt::format(R"(<link rel="preload" href="{}" as="fetch" crossorigin>)", first_request));
    }
    auto shell = std::make_shared<const std::string>(std::move(html));
    return [status, shell](const httplib::Request&, httplib::Response& res) {
      res.status = status;
      res.set_header("Content-Security-Policy", kPagePolicy);
      res.set_header("Cache-Control", "no-store");
      set_body(res, *shell, "text/html; charset=utf-8", shell);
    };
  };
  http_->Get("/",
             [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/jobs"); });
  for (const auto& [path, first_request] : std::vector<std::pair<const char*, const char*>>{
           {"/jobs", "/api/jobs"}, {"/studies", "/api/studies"}, {"/endpoints", "/api/endpoints"}, {"/compare", ""}})
    http_->Get(path, page(200, first_request));
  const auto found_page = page(200), missing_page = page(404);
  http_->Get(R"(/jobs/([^/]+))", [state, found_page, missing_page](const httplib::Request& req,
                                                                    httplib::Response& res) {
    const auto record = state->source->get_job(req.matches[1]);
    (record.ok() || record.status().code() != ErrorCode::kNotFound ? found_page : missing_page)(req, res);
  });
  http_->Get(
      R"(/studies/([^/]+))", [state, found_page, missing_page](const httplib::Request& req, httplib::Response& res) {
        const auto record = state->source->get_job(req.matches[1]);
        const bool missing = (!record.ok() && record.status().code() == ErrorCode::kNotFound) ||
                             (record.ok() && record->kind != "tuning");
        (missing ? missing_page : found_page)(req, res);
      });

  http_->Get(R"(/assets/([A-Za-z0-9_.-]+))",
             [](const httplib::Request& req, httplib::Response& res) {
               const EmbeddedAsset* asset = req.path == kPageShell ? nullptr : find_asset(req.path);
               if (!asset) return send_error(res, not_found("no asset {}", req.path));
               res.set_header("ETag", std::string(asset->etag));
               res.set_header("Cache-Control", "no-cache");
               if (req.get_header_value("If-None-Match") == asset->etag) {
                 res.status = 304;
                 return;
               }
               set_body(res, asset->body, std::string(asset->content_type));
             });

  // ---- the API ----
  http_->Get("/api/info", [state](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"source", state->source->describe()}, {"kennel_version", kVersion}});
  });
  http_->Get("/api/jobs", [state](const httplib::Request&, httplib::Response& res) {
    send_result(res, state->api.jobs());
  });
  http_->Get(R"(/api/jobs/([^/]+))", [state](const httplib::Request& req, httplib::Response& res) {
    send_result(res, state->api.job(req.matches[1]));
  });
  http_->Get(R"(/api/jobs/([^/]+)/metrics)",
             [state](const httplib::Request& req, httplib::Response& res) {
               int64_t since = -1;
               if (req.has_param("since")) {
                 const auto parsed = parse_int(req.get_param_value("since"));
                 if (!parsed) {
                   return send_error(res, invalid_argument("since='{}' is not a step number",
                                                           req.get_param_value("since")));
                 }
                 since = *parsed;
               }
               send_result(res, state->api.metrics(req.matches[1], since));
             });
  http_->Get(R"(/api/jobs/([^/]+)/tensors)", [state](const httplib::Request& req,
                                                     httplib::Response& res) {
    std::optional<int64_t> step;
    if (req.has_param("step")) {
      step = parse_int(req.get_param_value("step"));
      if (!step)
        return send_error(
            res, invalid_argument("step='{}' is not a step number", req.get_param_value("step")));
    }
    const std::string pattern =
        req.has_param("tensor") ? "^" + detail::regex_escape(req.get_param_value("tensor")) + "$"
                                : req.get_param_value("match");
    send_result(res, state->api.tensors(req.matches[1], pattern, step));
  });
  http_->Post(R"(/api/jobs/([^/]+)/stop)",
              [state](const httplib::Request& req, httplib::Response& res) {
                const std::string name = req.matches[1];
                auto stopped = state->api.stop(name);
                if (stopped.ok())
                  spdlog::info("studio: stop requested for job '{}' from the page", name);
                send_result(res, stopped);
              });
  http_->Get("/api/studies", [state](const httplib::Request&, httplib::Response& res) {
    send_result(res, state->api.studies());
  });
  http_->Get(R"(/api/studies/([^/]+))",
             [state](const httplib::Request& req, httplib::Response& res) {
               send_result(res, state->api.study(req.matches[1]));
             });
  http_->Get("/api/endpoints", [state](const httplib::Request&, httplib::Response& res) {
    send_json(res, state->api.endpoints());
  });

  // ---- files inside a job's or a study's folder ----
  const auto serve_file = [](httplib::Response& res, const Result<fs::path>& root,
                             const std::string& relative) {
    if (!root.ok()) return send_error(res, root.status());
    auto bytes = read_file_beneath(*root, relative, kMaxFileBytes);
    if (!bytes.ok()) {
      // Say what was refused, not where the folder is.
      Status status = bytes.status();
      return send_error(res,
                        Status(status.code() == ErrorCode::kInvalidArgument ? ErrorCode::kNotFound
                                                                            : status.code(),
                               fmt::format("{}: {}", relative, status.message())));
    }
    res.set_header("Content-Security-Policy", kFilePolicy);
    res.set_header("Cache-Control", "no-store");
    const std::string type = content_type_for(relative);
    if (type == "application/octet-stream" || type == "application/gzip") {
      res.set_header("Content-Disposition", "attachment");
    }
    set_body(res, std::string(bytes->begin(), bytes->end()), type);
  };
  http_->Get(R"(/files/jobs/([^/]+)/(.+))",
             [state, serve_file](const httplib::Request& req, httplib::Response& res) {
               serve_file(res, state->api.job_dir(req.matches[1]), req.matches[2]);
             });
  http_->Get(R"(/files/studies/([^/]+)/(.+))",
             [state, serve_file](const httplib::Request& req, httplib::Response& res) {
               serve_file(res, state->api.study_dir(req.matches[1]), req.matches[2]);
             });
}

}  // namespace kennel::studio
