#include "kennel/s3/client.h"

#include <charconv>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "kennel/s3/errors.h"
#include "kennel/s3/request.h"
#include "kennel/s3/xml_responses.h"

namespace kennel::s3 {

namespace {

std::optional<uint64_t> parse_size(std::string_view text) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Keeps a 2xx body in memory up to a limit.
class MemorySink final : public BodySink {
 public:
  MemorySink(uint64_t max_bytes, std::string subject)
      : max_bytes_(max_bytes), subject_(std::move(subject)) {}

  bool on_headers(const HttpResponse& response) override {
    body_.clear();  // a retried attempt starts over
    const auto length = parse_size(response.header("content-length"));
    if (length && *length > max_bytes_) return refuse();
    return true;
  }
  bool on_data(std::string_view chunk) override {
    if (body_.size() + chunk.size() > max_bytes_) return refuse();
    body_.append(chunk);
    return true;
  }
  std::string take() { return std::move(body_); }

 private:
  bool refuse() {
    refusal = Status(ErrorCode::kResourceExhausted,
                     fmt::format("{} is larger than the {} bytes Kennel reads into memory; "
                                 "download it to a file instead",
                                 subject_, max_bytes_));
    return false;
  }

  const uint64_t max_bytes_;
  const std::string subject_;
  std::string body_;
};

}  // namespace

ObjectInfo object_info_from_headers(const HttpResponse& response) {
  ObjectInfo info;
  const std::string range = response.header("content-range");  // "bytes 0-9/443"
  const size_t slash = range.rfind('/');
  std::optional<uint64_t> size;
  if (slash != std::string::npos) size = parse_size(std::string_view(range).substr(slash + 1));
  if (!size) size = parse_size(response.header("content-length"));
  info.size = size.value_or(0);
  info.etag = response.header("etag");
  info.last_modified = response.header("last-modified");
  info.content_type = response.header("content-type");
  constexpr std::string_view kMetaPrefix = "x-amz-meta-";
  for (const auto& [name, value] : response.headers) {
    if (name.rfind(kMetaPrefix, 0) == 0) info.metadata[name.substr(kMetaPrefix.size())] = value;
  }
  return info;
}

S3Client::S3Client(S3Config config, S3ClientOptions options, S3ClientSeams seams)
    : config_(std::move(config)), options_(std::move(options)), seams_(std::move(seams)) {}

Result<std::unique_ptr<S3Client>> S3Client::create(S3Config config, S3ClientOptions options,
                                                   S3ClientSeams seams) {
  if (options.transport.ca_bundle.empty()) options.transport.ca_bundle = config.ca_bundle;
  if (options.retry.max_attempts < 1) {
    return invalid_argument("retry.max_attempts must be at least 1, got {}",
                            options.retry.max_attempts);
  }
  if (!seams.transport) {
    auto transport = make_curl_transport(options.transport);
    if (!transport.ok()) return transport.status();
    seams.transport = std::move(*transport);
  }
  if (!seams.now) seams.now = [] { return std::chrono::system_clock::now(); };
  if (!seams.sleep) {
    seams.sleep = [](double seconds) {
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    };
  }
  if (!seams.uniform01) {
    seams.uniform01 = [] {
      thread_local std::mt19937_64 generator{std::random_device{}()};
      return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
    };
  }
  return std::unique_ptr<S3Client>(
      new S3Client(std::move(config), std::move(options), std::move(seams)));
}

HttpExchange S3Client::attempt(const S3Request& request, const std::string& payload_hash,
                               BodySink* sink) const {
  const HttpRequest http = prepare_request(request, config_, payload_hash, seams_.now());
  return seams_.transport->perform(http, sink);
}

void S3Client::wait_before_retry(int failed_attempts) const {
  seams_.sleep(backoff_delay_seconds(options_.retry, failed_attempts, seams_.uniform01()));
}

Result<HttpResponse> S3Client::send(const S3Request& request, BodySink* sink) const {
  auto hash = payload_hash(request.body, config_.endpoint);
  if (!hash.ok()) return hash.status().with_context(request_subject(request));
  const int max_attempts = options_.retry.max_attempts;
  for (int attempts = 1;; ++attempts) {
    HttpExchange exchange = attempt(request, *hash, sink);
    if (exchange.sink_refused) return sink->refusal;
    bool retryable = false;
    Status failure;
    if (!exchange.completed()) {
      retryable = exchange.refused_connection.empty() &&
                  is_retryable_transport_error(exchange.transport_error);
      failure = status_for_transport_error(exchange, request, config_, attempts);
    } else {
      const HttpResponse& response = exchange.response;
      // CompleteMultipartUpload can fail after its 200 status line went out:
      // the error document then arrives as the body of a 200.
      const auto error_document =
          request.operation == "CompleteMultipartUpload" && is_success(response.status)
              ? parse_error_document(response.body)
              : std::nullopt;
      if (is_success(response.status) && !error_document) return std::move(exchange.response);
      const auto document = error_document ? error_document : parse_error_document(response.body);
      retryable = is_retryable_http_status(is_success(response.status) ? 500 : response.status,
                                           document ? document->code : "");
      failure = status_for_response(response, request, config_, attempts);
    }
    if (!retryable || attempts >= max_attempts) return failure;
    spdlog::info("{}; retrying (attempt {} of {})", failure.message(), attempts + 1, max_attempts);
    wait_before_retry(attempts);
  }
}

Result<GetResult> S3Client::get_object(const S3Uri& object, const GetOptions& options) const {
  if (object.key.empty()) return invalid_argument("{}: a GET needs a key", object.text());
  const auto& range = options.range;
  if (range && range->last && *range->last < range->first) {
    return invalid_argument("{}: byte range {}-{} ends before it starts", object.text(),
                            range->first, *range->last);
  }
  MemorySink sink(options.max_bytes, object.text());
  auto response = send(get_object_request(object, range, options.if_match), &sink);
  if (!response.ok()) return response.status();
  GetResult result;
  result.info = object_info_from_headers(*response);
  result.body = sink.take();
  if (range && response->status == 200) {
    // A server that ignores Range sends the whole object: cut the range out here.
    const uint64_t first = std::min<uint64_t>(range->first, result.body.size());
    const uint64_t end =
        range->last ? std::min<uint64_t>(*range->last + 1, result.body.size()) : result.body.size();
    result.body = result.body.substr(first, end > first ? end - first : 0);
  }
  return result;
}

Result<ObjectInfo> S3Client::head_object(const S3Uri& object) const {
  auto response = send(head_object_request(object));
  if (!response.ok()) return response.status();
  return object_info_from_headers(*response);
}

Result<ListPage> S3Client::list_objects_page(const ListRequest& request) const {
  if (request.max_keys < 1 || request.max_keys > 1000) {
    return invalid_argument("max_keys must be 1 to 1000, got {}", request.max_keys);
  }
  auto response = send(list_objects_v2_request(request));
  if (!response.ok()) return response.status();
  auto page = parse_list_objects_v2(response->body);
  if (!page.ok()) {
    return page.status().with_context(
        fmt::format("listing s3://{}/{}", request.bucket, request.prefix));
  }
  return page;
}

Status S3Client::for_each_list_page(ListRequest request,
                                    const std::function<Status(const ListPage&)>& on_page) const {
  while (true) {
    auto page = list_objects_page(request);
    if (!page.ok()) return page.status();
    KENNEL_RETURN_IF_ERROR(on_page(*page));
    if (!page->is_truncated) return {};
    if (page->next_continuation_token == request.continuation_token) {
      return Status(ErrorCode::kUpstreamFailed,
                    fmt::format("listing s3://{}/{}: the server returned the same continuation "
                                "token twice; stopping instead of looping",
                                request.bucket, request.prefix));
    }
    request.continuation_token = page->next_continuation_token;
  }
}

Result<ListPage> S3Client::list_objects(const ListRequest& request) const {
  ListPage all;
  const Status status = for_each_list_page(request, [&](const ListPage& page) {
    all.objects.insert(all.objects.end(), page.objects.begin(), page.objects.end());
    all.common_prefixes.insert(all.common_prefixes.end(), page.common_prefixes.begin(),
                               page.common_prefixes.end());
    return Status();
  });
  if (!status.ok()) return status;
  return all;
}

Result<PutResult> S3Client::put_object(const S3Uri& object, std::string_view bytes,
                                       const PutOptions& options) const {
  if (object.key.empty()) return invalid_argument("{}: an upload needs a key", object.text());
  KENNEL_RETURN_IF_ERROR(validate_metadata(options.metadata).with_context(object.text()));
  RequestBody body;
  body.bytes = bytes;
  auto response = send(put_object_request(object, body, options));
  if (!response.ok()) return response.status();
  return PutResult{response->header("etag")};
}

Status S3Client::delete_object(const S3Uri& object) const {
  if (object.key.empty()) return invalid_argument("{}: a delete needs a key", object.text());
  auto response = send(delete_object_request(object));
  return response.ok() ? Status() : response.status();
}

Result<std::unique_ptr<S3Client>> make_s3_client(const S3Options& options,
                                                 const S3ClientOptions& client_options) {
  auto config = resolve_s3_config(options);
  if (!config.ok()) return config.status();
  return S3Client::create(std::move(*config), client_options);
}

}  // namespace kennel::s3
