// The signer on AWS's published "Examples of signature calculations" (S3 API
// reference, Authorization header, payload in a single chunk). Every expected
// value below was also recomputed by botocore's S3SigV4Auth from the same
// request: run tests/unit/s3/sigv4_baseline.py (part 1) to see them.
#include "kennel/s3/sigv4.h"

#include <gtest/gtest.h>

#include "kennel/util/hash.h"

namespace kennel::s3 {
namespace {

const Credentials kExampleCredentials{"AKIAIOSFODNN7EXAMPLE",
                                      "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "", "test", ""};
const SigningScope kExampleScope{"20130524T000000Z", "us-east-1", "s3"};

std::string signature_of(const SigningRequest& request) {
  return signature(signing_key(kExampleCredentials.secret_access_key, kExampleScope),
                   string_to_sign(canonical_request(request), kExampleScope));
}

TEST(SigV4Test, GetObjectWithRangeMatchesTheAwsExample) {
  SigningRequest request;
  request.method = "GET";
  request.canonical_uri = "/test.txt";
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                     {"Range", "bytes=0-9"},
                     {"x-amz-content-sha256", std::string(kEmptyPayloadSha256)},
                     {"x-amz-date", "20130524T000000Z"}};
  request.payload_hash = std::string(kEmptyPayloadSha256);
  EXPECT_EQ(
      canonical_request(request),
      "GET\n/test.txt\n\n"
      "host:examplebucket.s3.amazonaws.com\n"
      "range:bytes=0-9\n"
      "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
      "x-amz-date:20130524T000000Z\n\n"
      "host;range;x-amz-content-sha256;x-amz-date\n"
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(string_to_sign(canonical_request(request), kExampleScope),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(signature_of(request),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(authorization_header(request, kExampleCredentials, kExampleScope),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4Test, PutObjectMatchesTheAwsExample) {
  const std::string body = "Welcome to Amazon S3.";
  SigningRequest request;
  request.method = "PUT";
  // The example's key is "test$file.text": '$' is encoded once in the path.
  request.canonical_uri = "/" + uri_encode("test$file.text", true);
  request.payload_hash = sha256_hex(body);
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                     {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                     {"x-amz-date", "20130524T000000Z"},
                     {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                     {"x-amz-content-sha256", request.payload_hash}};
  EXPECT_EQ(request.canonical_uri, "/test%24file.text");
  EXPECT_EQ(request.payload_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  EXPECT_EQ(signed_headers(request.headers),
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
  EXPECT_EQ(string_to_sign(canonical_request(request), kExampleScope),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d");
  EXPECT_EQ(signature_of(request),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4Test, GetBucketLifecycleMatchesTheAwsExample) {
  SigningRequest request;
  request.method = "GET";
  request.canonical_uri = "/";
  request.query = {{"lifecycle", ""}};
  request.payload_hash = std::string(kEmptyPayloadSha256);
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-date", "20130524T000000Z"},
                     {"x-amz-content-sha256", request.payload_hash}};
  EXPECT_EQ(canonical_request(request).substr(0, 17), "GET\n/\nlifecycle=\n");
  EXPECT_EQ(string_to_sign(canonical_request(request), kExampleScope),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca");
  EXPECT_EQ(signature_of(request),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(SigV4Test, ListObjectsMatchesTheAwsExample) {
  SigningRequest request;
  request.method = "GET";
  request.canonical_uri = "/";
  request.query = {{"prefix", "J"}, {"max-keys", "2"}};  // sorted by the signer
  request.payload_hash = std::string(kEmptyPayloadSha256);
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-date", "20130524T000000Z"},
                     {"x-amz-content-sha256", request.payload_hash}};
  EXPECT_EQ(canonical_query_string(request.query), "max-keys=2&prefix=J");
  EXPECT_EQ(string_to_sign(canonical_request(request), kExampleScope),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7");
  EXPECT_EQ(signature_of(request),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4Test, SignRequestAddsTheDateHashTokenAndAuthorization) {
  SigningRequest request;
  request.method = "GET";
  request.canonical_uri = "/test.txt";
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"}, {"Range", "bytes=0-9"}};
  request.payload_hash = std::string(kEmptyPayloadSha256);
  const auto may_24_2013 = std::chrono::system_clock::from_time_t(1369353600);
  sign_request(request, kExampleCredentials, "us-east-1", may_24_2013);
  ASSERT_EQ(request.headers.size(), 5u);
  EXPECT_EQ(request.headers[2].name, "x-amz-date");
  EXPECT_EQ(request.headers[2].value, "20130524T000000Z");
  EXPECT_EQ(request.headers[3].name, "x-amz-content-sha256");
  EXPECT_EQ(request.headers[4].name, "Authorization");
  // The same request as the published GET example, so the same signature.
  EXPECT_NE(request.headers[4].value.find(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
            std::string::npos);

  Credentials temporary = kExampleCredentials;
  temporary.session_token = "token+/=";
  SigningRequest with_token;
  with_token.method = "GET";
  with_token.canonical_uri = "/";
  with_token.headers = {{"Host", "examplebucket.s3.amazonaws.com"}};
  with_token.payload_hash = std::string(kEmptyPayloadSha256);
  sign_request(with_token, temporary, "us-east-1", may_24_2013);
  EXPECT_EQ(with_token.headers[3].name, "x-amz-security-token");
  EXPECT_EQ(with_token.headers[3].value, "token+/=");
  EXPECT_NE(with_token.headers[4].value.find(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"),
            std::string::npos);
}

TEST(SigV4Test, UriEncodeKeepsOnlyUnreservedBytesAndOptionallySlash) {
  EXPECT_EQ(uri_encode("AZaz09-._~", false), "AZaz09-._~");
  EXPECT_EQ(uri_encode("a b+c=d&e/f%g", false), "a%20b%2Bc%3Dd%26e%2Ff%25g");
  EXPECT_EQ(uri_encode("dir/a b/ü.jpg", true), "dir/a%20b/%C3%BC.jpg");
  EXPECT_EQ(uri_encode("*'()!$", false), "%2A%27%28%29%21%24");
  // Already-encoded text is encoded again: the caller passes raw keys, never encoded ones.
  EXPECT_EQ(uri_encode("%20", true), "%2520");
}

TEST(SigV4Test, CanonicalQuerySortsByEncodedNameThenValue) {
  EXPECT_EQ(canonical_query_string({{"prefix", "a b/"},
                                    {"continuation-token", "1a+b/c=="},
                                    {"list-type", "2"},
                                    {"uploads", ""},
                                    {"a", "2"},
                                    {"a", "1"}}),
            "a=1&a=2&continuation-token=1a%2Bb%2Fc%3D%3D&list-type=2&prefix=a%20b%2F&uploads=");
  // Upper-case sorts before lower-case (byte order), as botocore sorts.
  EXPECT_EQ(canonical_query_string({{"uploadId", "x"}, {"partNumber", "3"}, {"Zeta", "z"}}),
            "Zeta=z&partNumber=3&uploadId=x");
  EXPECT_EQ(canonical_query_string({}), "");
}

TEST(SigV4Test, CanonicalHeadersAreLowerCaseTrimmedFoldedAndSorted) {
  const std::vector<HttpHeader> headers = {{"X-Amz-Meta-Note", "  two   spaces\tand tab  "},
                                           {"Host", "h"},
                                           {"x-amz-meta-list", "a"},
                                           {"X-AMZ-META-LIST", "b"}};
  EXPECT_EQ(canonical_headers(headers),
            "host:h\nx-amz-meta-list:a,b\nx-amz-meta-note:two spaces and tab\n");
  EXPECT_EQ(signed_headers(headers), "host;x-amz-meta-list;x-amz-meta-note");
}

TEST(SigV4Test, SigningKeyDependsOnDateRegionAndService) {
  const std::string key = signing_key("secret", {"20130524T000000Z", "us-east-1", "s3"});
  EXPECT_EQ(key.size(), 32u);
  EXPECT_NE(key, signing_key("secret", {"20130525T000000Z", "us-east-1", "s3"}));
  EXPECT_NE(key, signing_key("secret", {"20130524T000000Z", "eu-west-1", "s3"}));
  // Only the date part of the timestamp enters the key.
  EXPECT_EQ(key, signing_key("secret", {"20130524T235959Z", "us-east-1", "s3"}));
}

TEST(SigV4Test, AmzDateIsUtc) {
  EXPECT_EQ(amz_date(std::chrono::system_clock::from_time_t(0)), "19700101T000000Z");
  EXPECT_EQ(amz_date(std::chrono::system_clock::from_time_t(1369353600 + 3661)),
            "20130524T010101Z");
}

}  // namespace
}  // namespace kennel::s3
