// The requests Kennel sends, compared with the ones boto3 sends for the same
// operation and inputs. The expected URLs and Authorization headers are the
// output of tests/unit/s3/sigv4_baseline.py (part 2; Debian's botocore 1.29):
// run `/usr/bin/python3 tests/unit/s3/sigv4_baseline.py` to regenerate them.
#include "kennel/s3/request.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "kennel/util/hash.h"

namespace kennel::s3 {
namespace {

const auto kMay24_2013 = std::chrono::system_clock::from_time_t(1369353600);

S3Config config_for(const std::string& endpoint_url, const std::string& region,
                    AddressingStyle style, const std::string& session_token = "") {
  S3Config config;
  config.region = region;
  config.endpoint =
      endpoint_url.empty() ? aws_endpoint(region) : parse_endpoint(endpoint_url).value();
  config.addressing_style = style;
  config.credentials =
      Credentials{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", session_token,
                  "test", ""};
  return config;
}

// The URL with its query parameters sorted: boto3 sends them in its model's
// order, Kennel in canonical order; S3 reads either.
std::string sorted_query(const std::string& url) {
  const size_t question = url.find('?');
  if (question == std::string::npos) return url;
  std::vector<std::string> parts;
  size_t start = question + 1;
  while (start <= url.size()) {
    const size_t end = std::min(url.find('&', start), url.size());
    parts.push_back(url.substr(start, end - start));
    start = end + 1;
  }
  std::sort(parts.begin(), parts.end());
  std::string out = url.substr(0, question + 1);
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "&" : "") + parts[i];
  return out;
}

struct Prepared {
  std::string url;
  std::string payload_hash;
  std::string authorization;
};

Prepared prepare(const S3Request& request, const S3Config& config) {
  const std::string hash = payload_hash(request.body, config.endpoint).value();
  const HttpRequest http = prepare_request(request, config, hash, kMay24_2013);
  Prepared prepared{http.url, hash, ""};
  for (const HttpHeader& header : http.headers) {
    if (header.name == "Authorization") prepared.authorization = header.value;
  }
  return prepared;
}

TEST(RequestTest, ListWithContinuationTokenPrefixAndDelimiterMatchesBoto3) {
  ListRequest list;
  list.bucket = "kennel-data";
  list.prefix = "photos/my dog ünï/";
  list.delimiter = "/";
  list.max_keys = 2;
  list.continuation_token = "1a+b/c==";
  list.start_after = "photos/a b";
  const Prepared prepared =
      prepare(list_objects_v2_request(list),
              config_for("http://127.0.0.1:4568", "us-east-1", AddressingStyle::kPath));
  EXPECT_EQ(sorted_query(prepared.url),
            sorted_query("http://127.0.0.1:4568/kennel-data?list-type=2&prefix=photos%2Fmy%20dog%"
                         "20%C3%BCn%C3%AF%2F&delimiter=%2F&max-keys=2&continuation-token=1a%2Bb%"
                         "2Fc%3D%3D&start-after=photos%2Fa%20b&encoding-type=url"));
  EXPECT_EQ(prepared.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
            "Signature=c6f97efe080b390db2fb2d1a14d0840f915d0d93d077ddb840914eab9d337162");
}

TEST(RequestTest, ListOnAwsUsesVirtualHostsAndMatchesBoto3) {
  ListRequest list;
  list.bucket = "kennel-data";
  list.prefix = "train/001.Affenpinscher/";
  const Prepared prepared =
      prepare(list_objects_v2_request(list), config_for("", "eu-west-1", AddressingStyle::kAuto));
  EXPECT_EQ(sorted_query(prepared.url),
            sorted_query("https://kennel-data.s3.eu-west-1.amazonaws.com/"
                         "?list-type=2&prefix=train%2F001.Affenpinscher%2F&encoding-type=url"));
  EXPECT_EQ(prepared.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
            "Signature=3abf30a766f9dd95c5002b628b2c501cd6ff45b0fdfc74e470d5e808989d5d55");
}

TEST(RequestTest, RangedGetOfATrickyKeyMatchesBoto3) {
  const S3Uri object{"kennel-data", "dir/with space/~tilde%percent+plus=eq&amp?q#hash ü☃.jpg"};
  const Prepared prepared =
      prepare(get_object_request(object, ByteRange{0, 9}, ""),
              config_for("http://127.0.0.1:4568", "us-east-1", AddressingStyle::kPath));
  EXPECT_EQ(prepared.url,
            "http://127.0.0.1:4568/kennel-data/dir/with%20space/"
            "~tilde%25percent%2Bplus%3Deq%26amp%3Fq%23hash%20%C3%BC%E2%98%83.jpg");
  EXPECT_EQ(prepared.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=59fba93148bd0e22ee69e505bb0b74fa7587d61f4b514937ba2138ea04e9c44d");
}

TEST(RequestTest, HeadOfAUnicodeKeyOnAwsMatchesBoto3) {
  const Prepared prepared = prepare(head_object_request({"kennel-data", "a b/é.txt"}),
                                    config_for("", "eu-west-1", AddressingStyle::kVirtual));
  EXPECT_EQ(prepared.url, "https://kennel-data.s3.eu-west-1.amazonaws.com/a%20b/%C3%A9.txt");
  EXPECT_EQ(prepared.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
            "Signature=b62ec804a6c439538ed9665c3ced077631cdff21fca175979d82a44671792839");
}

TEST(RequestTest, PutWithMetadataSignsThePayloadAndMatchesBoto3) {
  const std::string body = "hello kennel";
  RequestBody request_body;
  request_body.bytes = body;
  PutOptions options;
  options.content_type = "text/plain";
  options.metadata["sha256"] = sha256_hex(body);
  const Prepared prepared =
      prepare(put_object_request({"kennel-data", "keys/with spaces & ~ % unicode ☃.txt"},
                                 request_body, options),
              config_for("http://127.0.0.1:4568", "us-east-1", AddressingStyle::kPath));
  EXPECT_EQ(prepared.url,
            "http://127.0.0.1:4568/kennel-data/keys/with%20spaces%20%26%20~%20%25%20unicode%20%E2%"
            "98%83.txt");
  EXPECT_EQ(prepared.payload_hash,
            "c57ea1d8208871d8b3a03054071f9fdcbc5658d2a114d08077a2872c75708976");
  EXPECT_EQ(prepared.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-sha256, "
            "Signature=e69b41f9afc2544334a8c7b6f616f2e4866079daec979b2683de746f8dcbee1c");
}

TEST(RequestTest, UploadPartMatchesBoto3) {
  const std::string part = "part three bytes";
  RequestBody body;
  body.bytes = part;
  const Prepared prepared = prepare(
      upload_part_request({"kennel-data", "big/model.safetensors"}, "VXBsb2FkIElE+/=", 3, body),
      config_for("http://127.0.0.1:4568", "us-east-1", AddressingStyle::kPath));
  EXPECT_EQ(prepared.url,
            "http://127.0.0.1:4568/kennel-data/big/"
            "model.safetensors?partNumber=3&uploadId=VXBsb2FkIElE%2B%2F%3D");
  EXPECT_EQ(prepared.payload_hash,
            "8284cfa5f0dcc41ff2046319d4ef9e9af17881cd54a57a8732838af5b9d80f71");
  EXPECT_EQ(prepared.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
            "Signature=81155fc7eaab99a04fca0714773d01799a2dcefc15848616746be1ad6e292a47");
}

TEST(RequestTest, DeleteOfADotSegmentKeyWithASessionTokenMatchesBoto3) {
  const Prepared prepared =
      prepare(delete_object_request({"kennel-data", "a/./b/../c~d"}),
              config_for("http://127.0.0.1:4568", "us-east-1", AddressingStyle::kPath,
                         "FwoGZXIvYXdzEXAMPLE+token/with=chars"));
  // '.' and '..' are kept: they are part of the key, not directories.
  EXPECT_EQ(prepared.url, "http://127.0.0.1:4568/kennel-data/a/./b/../c~d");
  EXPECT_EQ(prepared.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
            "Signature=bb207a95a3ec7338947bbf39c26766ddbc0b98fa0caaa6ccc3af252618902ac5");
}

TEST(RequestTest, FileBodiesAreUnsignedOverHttpsAndHashedOverHttp) {
  char path[] = "/tmp/kennel-s3-request-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "0123456789", 10), 10);
  RequestBody body;
  body.fd = fd;
  body.offset = 2;
  body.length = 5;
  EXPECT_EQ(payload_hash(body, aws_endpoint("eu-west-1")).value(), kUnsignedPayload);
  EXPECT_EQ(payload_hash(body, parse_endpoint("http://127.0.0.1:9000").value()).value(),
            sha256_hex("23456"));
  body.length = 50;  // past the end of the file
  EXPECT_EQ(payload_hash(body, parse_endpoint("http://127.0.0.1:9000").value()).status().code(),
            ErrorCode::kDataLoss);
  close(fd);
  unlink(path);
}

TEST(RequestTest, AnonymousRequestsCarryNoSignature) {
  S3Config config = config_for("http://127.0.0.1:4568", "us-east-1", AddressingStyle::kPath);
  config.credentials.reset();
  const HttpRequest http = prepare_request(head_object_request({"public", "cat.jpg"}), config,
                                           std::string(kEmptyPayloadSha256), kMay24_2013);
  ASSERT_EQ(http.headers.size(), 1u);
  EXPECT_EQ(http.headers[0].name, "Host");
  EXPECT_EQ(http.headers[0].value, "127.0.0.1:4568");
}

TEST(RequestTest, MultipartRequestsUseTheirSubresources) {
  const S3Uri object{"b-u-c", "k"};
  EXPECT_EQ(canonical_query_string(create_multipart_upload_request(object, {}).query), "uploads=");
  EXPECT_EQ(create_multipart_upload_request(object, {}).method, "POST");
  EXPECT_EQ(canonical_query_string(abort_multipart_upload_request(object, "id").query),
            "uploadId=id");
  EXPECT_EQ(abort_multipart_upload_request(object, "id").method, "DELETE");
  const std::string xml = "<CompleteMultipartUpload/>";
  const S3Request complete = complete_multipart_upload_request(object, "id", xml);
  EXPECT_EQ(complete.method, "POST");
  EXPECT_EQ(complete.body.bytes, xml);
}

TEST(RequestTest, MetadataMustBeStorableInHeaders) {
  EXPECT_TRUE(validate_metadata({{"sha256", "abc"}, {"source-job", "train_1"}}).ok());
  EXPECT_EQ(validate_metadata({{"Sha256", "x"}}).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(validate_metadata({{"a b", "x"}}).code(), ErrorCode::kInvalidArgument);
  const Status non_ascii = validate_metadata({{"label", "chien ü"}});
  EXPECT_EQ(non_ascii.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(non_ascii.message().find("'label'"), std::string::npos);
  EXPECT_EQ(validate_metadata({{"x", "line\nbreak"}}).code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace kennel::s3
