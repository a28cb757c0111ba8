#include "kennel/s3/addressing.h"

#include <gtest/gtest.h>

namespace kennel::s3 {
namespace {

TEST(AddressingTest, ParsesS3Uris) {
  const S3Uri object = parse_s3_uri("s3://kennel-data/train/001.Affenpinscher/a b.jpg").value();
  EXPECT_EQ(object.bucket, "kennel-data");
  EXPECT_EQ(object.key, "train/001.Affenpinscher/a b.jpg");
  EXPECT_EQ(object.text(), "s3://kennel-data/train/001.Affenpinscher/a b.jpg");
  EXPECT_EQ(parse_s3_uri("s3://bucket").value().key, "");
  EXPECT_EQ(parse_s3_uri("s3://bucket/").value().key, "");
  EXPECT_EQ(parse_s3_uri("S3://bucket/prefix/").value().key, "prefix/");
  // Keys are literal: '%' is part of the key, not an escape.
  EXPECT_EQ(parse_s3_uri("s3://bucket/100%25.txt").value().key, "100%25.txt");
  EXPECT_TRUE(is_s3_uri("s3://b"));
  EXPECT_FALSE(is_s3_uri("https://b"));
}

TEST(AddressingTest, RejectsBadS3UrisNamingThem) {
  const Status scheme = parse_s3_uri("gs://bucket/key").status();
  EXPECT_EQ(scheme.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(scheme.message().find("gs://bucket/key"), std::string::npos);
  EXPECT_EQ(parse_s3_uri("s3:///key").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(parse_s3_uri("s3://ab/key").status().code(), ErrorCode::kInvalidArgument);
  const Status characters = parse_s3_uri("s3://my bucket/key").status();
  EXPECT_NE(characters.message().find("'my bucket'"), std::string::npos);
}

TEST(AddressingTest, VirtualHostableBucketsAreDnsLabelsWithoutDots) {
  EXPECT_TRUE(is_virtual_hostable("kennel-data"));
  EXPECT_TRUE(is_virtual_hostable("abc"));
  EXPECT_FALSE(is_virtual_hostable("kennel.data"));  // breaks *.s3.amazonaws.com certificates
  EXPECT_FALSE(is_virtual_hostable("Kennel"));
  EXPECT_FALSE(is_virtual_hostable("kennel_data"));
  EXPECT_FALSE(is_virtual_hostable("-kennel"));
  EXPECT_FALSE(is_virtual_hostable("ab"));
  EXPECT_FALSE(is_virtual_hostable(std::string(64, 'a')));
}

TEST(AddressingTest, ParsesEndpoints) {
  const Endpoint local = parse_endpoint("http://127.0.0.1:9000").value();
  EXPECT_EQ(local.scheme, "http");
  EXPECT_EQ(local.host, "127.0.0.1");
  EXPECT_EQ(local.port, 9000);
  EXPECT_EQ(local.authority(), "127.0.0.1:9000");
  EXPECT_FALSE(local.is_aws());
  const Endpoint prefixed = parse_endpoint("HTTPS://MinIO.Lab:443/s3/").value();
  EXPECT_EQ(prefixed.host, "minio.lab");
  EXPECT_EQ(prefixed.authority(), "minio.lab");  // the default port is left out of Host
  EXPECT_EQ(prefixed.base_path, "/s3");
  EXPECT_EQ(prefixed.text(), "https://minio.lab/s3");
  const Endpoint v6 = parse_endpoint("http://[::1]:4568").value();
  EXPECT_EQ(v6.host, "[::1]");
  EXPECT_EQ(v6.authority(), "[::1]:4568");
  EXPECT_TRUE(parse_endpoint("https://s3.eu-west-1.amazonaws.com").value().is_aws());
  EXPECT_TRUE(parse_endpoint("https://s3.cn-north-1.amazonaws.com.cn").value().is_aws());
}

TEST(AddressingTest, RejectsBadEndpoints) {
  for (const char* bad :
       {"127.0.0.1:9000", "ftp://host", "http://", "http://host:0", "http://host:99999",
        "http://host:port", "http://host/?x=1", "http://user:pw@host", "http://[::1"}) {
    const Status status = parse_endpoint(bad).status();
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(parse_endpoint("http://user:pw@host").status().message().find("pw"), std::string::npos);
}

TEST(AddressingTest, AwsEndpointsFollowTheRegion) {
  EXPECT_EQ(aws_endpoint("us-east-1").text(), "https://s3.amazonaws.com");
  EXPECT_EQ(aws_endpoint("eu-west-1").text(), "https://s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(aws_endpoint("cn-north-1").text(), "https://s3.cn-north-1.amazonaws.com.cn");
}

TEST(AddressingTest, AutoIsVirtualOnAwsForHostableBucketsAndPathElsewhere) {
  const Endpoint aws = aws_endpoint("eu-west-1");
  const Endpoint minio = parse_endpoint("http://minio.lab:9000").value();
  EXPECT_EQ(effective_addressing(aws, AddressingStyle::kAuto, "kennel-data"),
            AddressingStyle::kVirtual);
  EXPECT_EQ(effective_addressing(aws, AddressingStyle::kAuto, "kennel.data"),
            AddressingStyle::kPath);
  EXPECT_EQ(effective_addressing(minio, AddressingStyle::kAuto, "kennel-data"),
            AddressingStyle::kPath);
  EXPECT_EQ(effective_addressing(minio, AddressingStyle::kVirtual, "kennel-data"),
            AddressingStyle::kVirtual);
  EXPECT_EQ(effective_addressing(aws, AddressingStyle::kPath, "kennel-data"),
            AddressingStyle::kPath);
}

TEST(AddressingTest, RequestTargetsForBothStyles) {
  const Endpoint aws = aws_endpoint("eu-west-1");
  const RequestTarget virtual_object =
      request_target(aws, AddressingStyle::kAuto, "kennel-data", "a b/ü.jpg", "");
  EXPECT_EQ(virtual_object.url, "https://kennel-data.s3.eu-west-1.amazonaws.com/a%20b/%C3%BC.jpg");
  EXPECT_EQ(virtual_object.host, "kennel-data.s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(virtual_object.canonical_uri, "/a%20b/%C3%BC.jpg");
  const RequestTarget virtual_bucket =
      request_target(aws, AddressingStyle::kAuto, "kennel-data", "", "list-type=2");
  EXPECT_EQ(virtual_bucket.url, "https://kennel-data.s3.eu-west-1.amazonaws.com/?list-type=2");
  EXPECT_EQ(virtual_bucket.canonical_uri, "/");

  const Endpoint local = parse_endpoint("http://127.0.0.1:4568/base").value();
  const RequestTarget path_object =
      request_target(local, AddressingStyle::kAuto, "kennel-data", "x/y+z", "");
  EXPECT_EQ(path_object.url, "http://127.0.0.1:4568/base/kennel-data/x/y%2Bz");
  EXPECT_EQ(path_object.host, "127.0.0.1:4568");
  EXPECT_EQ(path_object.canonical_uri, "/base/kennel-data/x/y%2Bz");
  const RequestTarget path_bucket =
      request_target(local, AddressingStyle::kPath, "kennel-data", "", "uploads=");
  EXPECT_EQ(path_bucket.url, "http://127.0.0.1:4568/base/kennel-data?uploads=");
  EXPECT_EQ(path_bucket.canonical_uri, "/base/kennel-data");
}

TEST(AddressingTest, ParsesAddressingStyles) {
  EXPECT_EQ(parse_addressing_style("Path").value(), AddressingStyle::kPath);
  EXPECT_EQ(parse_addressing_style("virtual").value(), AddressingStyle::kVirtual);
  EXPECT_EQ(parse_addressing_style("auto").value(), AddressingStyle::kAuto);
  EXPECT_EQ(parse_addressing_style("vhost").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_STREQ(addressing_style_name(AddressingStyle::kVirtual), "virtual");
}

}  // namespace
}  // namespace kennel::s3
