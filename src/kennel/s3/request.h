// Each S3 operation Kennel uses, as a plain request value built before
// anything is sent, and the one function that turns such a value into the
// signed HTTP request on the wire. Kept apart from the client so that tests
// compare exactly what Kennel sends with what botocore would send
// (tests/unit/s3/sigv4_baseline.py).
// Thread-safety: values and pure functions (payload_hash reads a file).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "kennel/s3/addressing.h"
#include "kennel/s3/config.h"
#include "kennel/s3/objects.h"
#include "kennel/s3/sigv4.h"
#include "kennel/s3/transport.h"

namespace kennel::s3 {

struct S3Request {
  std::string operation;  // "GetObject", "ListObjectsV2", ...: for messages and error mapping
  std::string method;
  std::string bucket;
  std::string key;  // "" addresses the bucket
  std::vector<QueryParameter> query;
  std::vector<HttpHeader> headers;  // besides Host and the signing headers
  RequestBody body;
};

S3Request get_object_request(const S3Uri& object, const std::optional<ByteRange>& range,
                             const std::string& if_match);
S3Request head_object_request(const S3Uri& object);
// Asks for EncodingType=url, as botocore does, so that any key survives XML.
S3Request list_objects_v2_request(const ListRequest& list);
S3Request put_object_request(const S3Uri& object, const RequestBody& body,
                             const PutOptions& options);
S3Request create_multipart_upload_request(const S3Uri& object, const PutOptions& options);
S3Request upload_part_request(const S3Uri& object, const std::string& upload_id, int part_number,
                              const RequestBody& body);
// `xml` must outlive the request (the body points at it).
S3Request complete_multipart_upload_request(const S3Uri& object, const std::string& upload_id,
                                            const std::string& xml);
S3Request abort_multipart_upload_request(const S3Uri& object, const std::string& upload_id);
S3Request delete_object_request(const S3Uri& object);

// kInvalidArgument naming the entry for a metadata name or value S3 cannot store.
Status validate_metadata(const std::map<std::string, std::string>& metadata);

// The x-amz-content-sha256 value under sigv4.h's payload rule: the SHA-256 of
// a body in memory; for a file body UNSIGNED-PAYLOAD over https, else the
// SHA-256 of the file range (read here). kDataLoss when the file cannot be read.
Result<std::string> payload_hash(const RequestBody& body, const Endpoint& endpoint);

// The request as sent: URL (addressing resolved), Host, the request's own
// headers, and, unless the config is anonymous, x-amz-date,
// x-amz-content-sha256, x-amz-security-token and Authorization for `now`.
HttpRequest prepare_request(const S3Request& request, const S3Config& config,
                            const std::string& payload_hash,
                            std::chrono::system_clock::time_point now);

}  // namespace kennel::s3
