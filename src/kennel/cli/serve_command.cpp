// `kennel serve MODEL_DIR|JOB`: the inference endpoint until SIGINT/SIGTERM,
// which stop accepting, let in-flight requests finish and exit 0.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <iostream>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

#include "kennel/cli/command.h"
#include "kennel/models/model_dir.h"
#include "kennel/serve/auth.h"
#include "kennel/serve/server.h"
#include "kennel/store/endpoint_registry.h"
#include "kennel/util/stop_signal.h"

namespace kennel::cli {

namespace {

// Polls for SIGINT/SIGTERM on its own thread and calls `on_signal` once.
class StopSignalWatcher {
 public:
  explicit StopSignalWatcher(std::function<void(int)> on_signal) {
    thread_ = std::thread([this, on_signal = std::move(on_signal)] {
      while (!done_) {
        if (const int signal_number = StopSignalScope::received(); signal_number != 0) {
          on_signal(signal_number);
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  ~StopSignalWatcher() {
    done_ = true;
    thread_.join();
  }
  StopSignalWatcher(const StopSignalWatcher&) = delete;
  StopSignalWatcher& operator=(const StopSignalWatcher&) = delete;

 private:
  StopSignalScope scope_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Lists this server in the home's endpoints/ (for `kennel studio`) while it runs; the home
// must exist already: serving a model directory does not create one.
std::optional<store::EndpointRegistration> register_endpoint(const CommandContext& context, const std::string& model,
                                                             const std::filesystem::path& model_dir,
                                                             const std::string& host, int port, bool tls) {
  const auto home = context.global.home_dir();
  std::error_code error;
  if (!std::filesystem::is_directory(home, error)) return std::nullopt;
  const std::string address = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  store::EndpointRecord record;
  record.url = fmt::format("{}://{}:{}", tls ? "https" : "http", address, port);
  record.model = model;
  record.model_dir = model_dir.string();
  auto registration = store::EndpointRegistration::create(home, std::move(record));
  if (!registration.ok()) {
    spdlog::warn("not listed for kennel studio: {}", registration.status().message());
    return std::nullopt;
  }
  return std::move(registration).value();
}

}  // namespace

void register_serve_command(CLI::App& app, CommandContext& context) {
  struct Flags {
    std::string model;
    serve::ServeOptions options;
    bool no_access_log = false;
    double drain_seconds = 30;
    std::vector<std::string> allow_networks;
    std::vector<std::string> deny_networks;
    std::string file_root;
    std::string auth_token_file;
    std::string tls_cert;
    std::string tls_key;
    std::string ca_bundle;
  };
  auto flags = std::make_shared<Flags>();
  auto& o = flags->options;
  auto& l = o.listener;
  auto* serve = app.add_subcommand("serve",
                                   "Serve a model over HTTP: GET /ping, POST /invocations, GET /models, GET /metrics");
  serve->add_option("model", flags->model, "Model directory (with model.json) or the name of a completed job")
      ->required();
  serve->add_option("--host", l.host,
                    "Address to listen on; beyond loopback (e.g. 0.0.0.0) it needs --auth-token-file and "
                    "--tls-cert/--tls-key, or --insecure-no-auth")
      ->capture_default_str();
  serve->add_option("--port", l.port, "Port (0 = any free port)")->capture_default_str();
  serve->add_option("--max-batch-size", o.batcher.max_batch_size, "Images per model batch at most")
      ->capture_default_str();
  serve->add_option("--max-batch-delay-ms", o.batcher.max_delay_ms, "How long an image waits for a fuller batch")
      ->capture_default_str();
  serve->add_option("--max-queue", o.batcher.max_queue, "Images waiting for the model before 503s")
      ->capture_default_str();
  serve->add_option("--workers", o.batcher.workers, "Model workers running batches concurrently")
      ->capture_default_str();
  serve->add_option("--threads", o.predictor.threads, "CPU threads of each model worker (0 = the cores shared among the workers)")
      ->capture_default_str();
  serve->add_option("--http-threads", l.threads, "Requests handled (and images decoded) at once")
      ->capture_default_str();
  add_inference_precision_flags(*serve, o.predictor.precision, o.predictor.int8_min_agreement);
  serve->add_flag("--fold-batchnorm,!--no-fold-batchnorm", o.predictor.fold_batchnorm,
                  "Fold BatchNorm into the convolution before it (default on; --no-fold-batchnorm to compare)");
  serve->add_flag("--warm-up,!--no-warm-up", o.warm_up,
                  "Run warm-up batches before /ping answers 200 (default on)");
  serve->add_option("--max-body", l.max_body_bytes, "Largest request body, bytes (larger: 413)")
      ->capture_default_str();
  serve->add_option("--max-pixels", o.predictor.max_pixels, "Refuse images whose header claims more pixels")
      ->capture_default_str();
  serve->add_option("--decode-pixel-budget", o.decode_pixel_budget,
                    "Pixels decoded at once across requests; beyond it 503 (0 = twice --max-pixels)")
      ->capture_default_str();
  serve->add_option("--max-connections", l.max_connections,
                    "Open client connections at most; more are answered 503")
      ->capture_default_str();
  serve->add_option("--header-timeout", l.header_timeout_seconds,
                    "Seconds for a request's headers to arrive once begun (then 408)")
      ->capture_default_str();
  serve->add_option("--body-timeout", l.body_timeout_seconds, "Seconds for a request's body to arrive (then 408)")
      ->capture_default_str();
  serve->add_option("--idle-timeout", l.idle_timeout_seconds, "Seconds an idle keep-alive connection stays open")
      ->capture_default_str();
  serve->add_option("--request-timeout", o.request_timeout_seconds,
                    "Seconds for fetching all the URLs of one request")
      ->capture_default_str();
  serve->add_option("--fetch-concurrency", o.fetch_concurrency, "URLs of one request fetched at once")
      ->capture_default_str();
  serve->add_option("--auth-token-file", flags->auth_token_file,
                    "File holding the token every route but /ping requires (Authorization: Bearer); mode "
                    "600. Default: $KENNEL_AUTH_TOKEN, else no authentication");
  serve->add_option("--tls-cert", flags->tls_cert, "PEM certificate (chain): serve HTTPS only");
  serve->add_option("--tls-key", flags->tls_key, "PEM private key of --tls-cert");
  serve->add_flag("--insecure-no-auth", o.insecure_no_auth,
                  "Allow a --host beyond loopback without a token and TLS (anyone who reaches it can use it)");
  serve->add_option("--allow-file-root", flags->file_root,
                    "Serve file:// URLs from below this folder (default: file:// refused)");
  serve->add_option("--allow-network", flags->allow_networks,
                    "CIDR that URLs may reach although not public (repeatable), e.g. 10.0.0.0/8; a cloud "
                    "metadata address opens only when named exactly (169.254.169.254/32)");
  serve->add_option("--deny-network", flags->deny_networks,
                    "CIDR that URLs may not reach, on top of every non-public range (repeatable)");
  serve->add_option("--fetch-timeout", o.fetch.total_timeout_seconds, "Seconds to fetch one URL")
      ->capture_default_str();
  serve->add_option("--max-fetch-bytes", o.fetch.max_bytes, "Largest image a URL may return, bytes")
      ->capture_default_str();
  serve->add_option("--ca-bundle", flags->ca_bundle, "PEM CA certificates for https:// URLs (default: the system's)");
  serve->add_option("--s3-endpoint", o.fetch.s3_endpoint,
                    "S3-compatible endpoint for s3:// URLs, trusted even on a private address "
                    "(default: $AWS_ENDPOINT_URL_S3, else AWS)");
  serve->add_flag("--no-access-log", flags->no_access_log, "Do not log one line per request");
  serve->add_option("--drain-seconds", flags->drain_seconds,
                    "On SIGINT/SIGTERM, wait this long for in-flight requests, then exit 1")
      ->capture_default_str();
  serve->callback([flags, &context] {
    auto options = flags->options;
    options.access_log = !flags->no_access_log;
    options.fetch.file_root = flags->file_root;
    options.fetch.denied_networks = flags->deny_networks;
    options.fetch.allowed_networks = flags->allow_networks;
    options.listener.tls_cert = flags->tls_cert;
    options.listener.tls_key = flags->tls_key;
    options.fetch.ca_bundle = flags->ca_bundle;
    auto token = serve::load_auth_token(flags->auth_token_file);
    if (!token.ok()) throw Error(token.status());
    if (token->has_value()) options.auth_token = **token;
    auto model_dir = models::resolve_model_dir(flags->model, context.global.home_dir());
    if (!model_dir.ok()) throw Error(model_dir.status());

    serve::InferenceServer server(options);
    std::atomic<int> stop_signal{0};
    if (!(flags->drain_seconds > 0)) throw Error(invalid_argument("--drain-seconds must be > 0"));
    StopSignalWatcher watcher([&, drain = flags->drain_seconds](int signal_number) {
      stop_signal = signal_number;
      server.stop();
      // Draining is bounded: a client that never finishes must not keep the process alive.
      std::thread([drain] {
        std::this_thread::sleep_for(std::chrono::duration<double>(drain));
        std::fprintf(stderr, "kennel serve: in-flight requests still running after --drain-seconds %g: exiting\n",
                     drain);
        std::_Exit(1);
      }).detach();
    });
    if (Status started = server.start(); !started.ok()) throw Error(started);
    spdlog::info("loading {} ...", model_dir->string());
    if (Status loaded = server.load(*model_dir); !loaded.ok()) {
      server.stop();
      server.wait();
      throw Error(loaded);
    }
    const bool tls = !options.listener.tls_cert.empty();
    const std::string& host = options.listener.host;
    const std::string shown_host = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    std::cout << fmt::format("kennel serve: {} ready on {}://{}:{} (POST /invocations; {}Ctrl-C stops)\n",
                             model_dir->string(), tls ? "https" : "http", shown_host, server.port(),
                             options.auth_token.empty() ? "" : "token required; ")
              << std::flush;
    const auto registration = register_endpoint(context, flags->model, *model_dir, host, server.port(), tls);
    server.wait();
    if (stop_signal != 0) {
      std::cout << fmt::format("kennel serve: stopped by {} after finishing in-flight requests\n",
                               StopSignalScope::name(stop_signal))
                << std::flush;
    }
  });
}

}  // namespace kennel::cli
