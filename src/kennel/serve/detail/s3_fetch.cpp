#include "kennel/serve/detail/s3_fetch.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace kennel::serve::detail {

namespace {

// The refusal text for an address the policy keeps out of reach.
std::string refusal_text(const IpAddress& ip, const AddressRefusal& why) {
  const std::string single = ip.to_string() + (ip.v6 ? "/128" : "/32");
  if (why.by_operator) {
    return fmt::format("{} is in {}, denied by --deny-network (an --allow-network {} would "
                       "override it)",
                       ip.to_string(), why.network, single);
  }
  return fmt::format("{} is in {} ({}), not a public address; to allow it, pass --allow-network "
                     "{} or name the store with --s3-endpoint / AWS_ENDPOINT_URL_S3",
                     ip.to_string(), why.network, why.what, single);
}

}  // namespace

S3Fetch::S3Fetch(const FetchOptions& options, const AddressPolicy& policy)
    : options_(options), policy_(policy) {}

Result<const s3::S3Client*> S3Fetch::client() {
  std::lock_guard lock(mutex_);
  if (client_) return client_.get();
  s3::S3Options s3_options = s3::command_line_options();
  if (!options_.s3_endpoint.empty()) s3_options.endpoint_url = options_.s3_endpoint;
  if (!options_.s3_region.empty()) s3_options.region = options_.s3_region;
  s3_options.ca_bundle = options_.ca_bundle.string();
  auto config = s3::resolve_s3_config(s3_options);
  if (!config.ok()) return config.status();
  // An endpoint the operator named (flag, environment, profile) is trusted;
  // AWS's own, derived from the region, is public and checked like any host.
  const bool operator_endpoint = !config->endpoint.is_aws();
  const AddressPolicy* policy = &policy_;
  s3::S3ClientOptions client_options;
  client_options.transport.connect_timeout_seconds = options_.connect_timeout_seconds;
  client_options.transport.total_timeout_seconds = options_.total_timeout_seconds;
  client_options.transport.connection_check = [policy, operator_endpoint](
                                                  int family, const unsigned char* bytes) {
    IpAddress ip;
    ip.v6 = family == AF_INET6;
    std::memcpy(ip.bytes.data(), bytes, ip.v6 ? 16 : 4);
    const auto refusal = policy->refusal(ip, operator_endpoint);
    return refusal ? refusal_text(ip, *refusal) : std::string();
  };
  // A client waits for its answer: a few quick retries, not a long back-off.
  client_options.retry.max_attempts = 3;
  client_options.retry.base_delay_seconds = 0.1;
  client_options.retry.max_delay_seconds = 1;
  auto client = s3::S3Client::create(std::move(*config), std::move(client_options));
  if (!client.ok()) return client.status();
  client_ = std::move(*client);
  return client_.get();
}

Result<std::string> S3Fetch::fetch(const std::string& url, const std::string& shown,
                                   UrlFetcher::Clock::time_point deadline) {
  auto object = s3::parse_s3_uri(url);
  if (!object.ok() || object->key.empty() || object->key.back() == '/') {
    return invalid_argument("{}: an S3 URL is s3://BUCKET/KEY{}", shown,
                            object.ok() ? "" : " (" + object.status().message() + ")");
  }
  if (deadline != UrlFetcher::Clock::time_point::max() && UrlFetcher::Clock::now() >= deadline) {
    return Status(ErrorCode::kDeadlineExceeded,
                  fmt::format("{}: not fetched: the request's deadline had passed", shown));
  }
  auto s3_client = client();
  if (!s3_client.ok()) return s3_client.status().with_context(fmt::format("fetching {}", shown));
  s3::GetOptions get;
  get.max_bytes = static_cast<uint64_t>(options_.max_bytes);
  auto got = (*s3_client)->get_object(*object, get);
  if (!got.ok()) return got.status().with_context(fmt::format("fetching {}", shown));
  if (deadline != UrlFetcher::Clock::time_point::max() && UrlFetcher::Clock::now() > deadline) {
    return Status(ErrorCode::kDeadlineExceeded,
                  fmt::format("{}: fetched after the request's deadline had passed", shown));
  }
  return std::move(got->body);
}

}  // namespace kennel::serve::detail
