#include "kennel/s3/request.h"

#include <unistd.h>

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "kennel/util/hash.h"

namespace kennel::s3 {

namespace {

S3Request object_request(std::string operation, std::string method, const S3Uri& object) {
  S3Request request;
  request.operation = std::move(operation);
  request.method = std::move(method);
  request.bucket = object.bucket;
  request.key = object.key;
  return request;
}

void add_put_headers(S3Request& request, const PutOptions& options) {
  if (!options.content_type.empty())
    request.headers.push_back({"Content-Type", options.content_type});
  for (const auto& [name, value] : options.metadata) {
    request.headers.push_back({"x-amz-meta-" + name, value});
  }
}

Result<std::string> sha256_of_file_range(const RequestBody& body) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  &EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    return internal_error("OpenSSL could not start a SHA-256 digest");
  }
  std::vector<char> buffer(1 << 20);
  uint64_t done = 0;
  while (done < body.length) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), body.length - done));
    const ssize_t got =
        ::pread(body.fd, buffer.data(), want, static_cast<off_t>(body.offset + done));
    if (got <= 0) {
      return Status(ErrorCode::kDataLoss,
                    got == 0 ? std::string("the file became shorter while it was being hashed")
                             : std::string("reading the file to hash it: ") + std::strerror(errno));
    }
    EVP_DigestUpdate(context.get(), buffer.data(), static_cast<size_t>(got));
    done += static_cast<uint64_t>(got);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context.get(), digest, &length);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kDigits[digest[i] >> 4];
    hex += kDigits[digest[i] & 0xF];
  }
  return hex;
}

}  // namespace

S3Request get_object_request(const S3Uri& object, const std::optional<ByteRange>& range,
                             const std::string& if_match) {
  S3Request request = object_request("GetObject", "GET", object);
  if (range) request.headers.push_back({"Range", range->header()});
  if (!if_match.empty()) request.headers.push_back({"If-Match", if_match});
  return request;
}

S3Request head_object_request(const S3Uri& object) {
  return object_request("HeadObject", "HEAD", object);
}

S3Request list_objects_v2_request(const ListRequest& list) {
  S3Request request = object_request("ListObjectsV2", "GET", S3Uri{list.bucket, ""});
  request.query.push_back({"list-type", "2"});
  request.query.push_back({"encoding-type", "url"});
  if (!list.prefix.empty()) request.query.push_back({"prefix", list.prefix});
  if (!list.delimiter.empty()) request.query.push_back({"delimiter", list.delimiter});
  if (!list.continuation_token.empty()) {
    request.query.push_back({"continuation-token", list.continuation_token});
  }
  if (!list.start_after.empty()) request.query.push_back({"start-after", list.start_after});
  if (list.max_keys != 1000) request.query.push_back({"max-keys", std::to_string(list.max_keys)});
  return request;
}

S3Request put_object_request(const S3Uri& object, const RequestBody& body,
                             const PutOptions& options) {
  S3Request request = object_request("PutObject", "PUT", object);
  add_put_headers(request, options);
  request.body = body;
  return request;
}

S3Request create_multipart_upload_request(const S3Uri& object, const PutOptions& options) {
  S3Request request = object_request("CreateMultipartUpload", "POST", object);
  request.query.push_back({"uploads", ""});
  add_put_headers(request, options);
  return request;
}

S3Request upload_part_request(const S3Uri& object, const std::string& upload_id, int part_number,
                              const RequestBody& body) {
  S3Request request = object_request("UploadPart", "PUT", object);
  request.query.push_back({"partNumber", std::to_string(part_number)});
  request.query.push_back({"uploadId", upload_id});
  request.body = body;
  return request;
}

S3Request complete_multipart_upload_request(const S3Uri& object, const std::string& upload_id,
                                            const std::string& xml) {
  S3Request request = object_request("CompleteMultipartUpload", "POST", object);
  request.query.push_back({"uploadId", upload_id});
  request.headers.push_back({"Content-Type", "application/xml"});
  request.body.bytes = xml;
  return request;
}

S3Request abort_multipart_upload_request(const S3Uri& object, const std::string& upload_id) {
  S3Request request = object_request("AbortMultipartUpload", "DELETE", object);
  request.query.push_back({"uploadId", upload_id});
  return request;
}

S3Request delete_object_request(const S3Uri& object) {
  return object_request("DeleteObject", "DELETE", object);
}

Status validate_metadata(const std::map<std::string, std::string>& metadata) {
  for (const auto& [name, value] : metadata) {
    if (name.empty()) return invalid_argument("an S3 metadata name is empty");
    for (const char c : name) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
        return invalid_argument(
            "S3 metadata name '{}' may hold only lower-case letters, digits, '-' and '_'", name);
      }
    }
    for (const char c : value) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte < 0x20 || byte > 0x7E) {
        return invalid_argument(
            "S3 metadata '{}' must be printable ASCII (S3 keeps it in an HTTP header); encode "
            "other text first",
            name);
      }
    }
  }
  return {};
}

Result<std::string> payload_hash(const RequestBody& body, const Endpoint& endpoint) {
  if (!body.from_file()) return sha256_hex(body.bytes);
  if (endpoint.scheme == "https") return std::string(kUnsignedPayload);
  return sha256_of_file_range(body);
}

HttpRequest prepare_request(const S3Request& request, const S3Config& config,
                            const std::string& payload_hash,
                            std::chrono::system_clock::time_point now) {
  const std::string query = canonical_query_string(request.query);
  const RequestTarget target =
      request_target(config.endpoint, config.addressing_style, request.bucket, request.key, query);
  SigningRequest signing;
  signing.method = request.method;
  signing.canonical_uri = target.canonical_uri;
  signing.query = request.query;
  signing.headers.push_back({"Host", target.host});
  signing.headers.insert(signing.headers.end(), request.headers.begin(), request.headers.end());
  signing.payload_hash = payload_hash;
  if (config.credentials) sign_request(signing, *config.credentials, config.region, now);

  HttpRequest http;
  http.method = request.method;
  http.url = target.url;
  http.headers = std::move(signing.headers);
  http.body = request.body;
  return http;
}

}  // namespace kennel::s3
