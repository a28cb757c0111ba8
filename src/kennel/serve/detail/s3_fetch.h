// The s3:// half of UrlFetcher (url_fetcher.h): a client's {"url":
// "s3://bucket/key"} read through Kennel's S3 layer (s3/client.h) with the
// same settings and credential chain as every other S3 use (s3/config.h:
// environment, ~/.aws files, profiles), signed by Kennel's own SigV4 signer.
//
// The endpoint comes from the operator's configuration (s3_endpoint, else the
// chain's endpoint), never from the client, who picks only bucket and key. A
// configured endpoint is trusted: its connections skip the built-in
// non-public ranges but still obey denied_networks. AWS's own endpoint gets
// the full address policy. S3 redirects are not followed (the layer never
// follows them; a wrong region is reported by name).
//
// Settings are resolved at the first s3:// URL and kept once they resolve;
// a failure (no credentials, an unknown profile) is reported to that request
// and resolved again at the next.
// Thread-safety: fetch() may be called from many threads at once.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "kennel/s3/client.h"
#include "kennel/serve/address_policy.h"
#include "kennel/serve/url_fetcher.h"

namespace kennel::serve::detail {

class S3Fetch {
 public:
  S3Fetch(const FetchOptions& options, const AddressPolicy& policy);

  // The object's bytes (at most options.max_bytes). `shown` is the URL as
  // messages name it. Errors as url_fetcher.h lists them; kFailedPrecondition
  // for settings that do not resolve (no credentials, a bad profile).
  Result<std::string> fetch(const std::string& url, const std::string& shown,
                            UrlFetcher::Clock::time_point deadline);

 private:
  Result<const s3::S3Client*> client();

  const FetchOptions& options_;
  const AddressPolicy& policy_;
  std::mutex mutex_;
  std::unique_ptr<s3::S3Client> client_;
};

}  // namespace kennel::serve::detail
