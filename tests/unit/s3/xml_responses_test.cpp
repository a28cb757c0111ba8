#include "kennel/s3/xml_responses.h"

#include <gtest/gtest.h>

namespace kennel::s3 {
namespace {

TEST(XmlResponsesTest, ParsesAListPageWithUrlEncodedKeys) {
  // As S3 answers ListObjectsV2 with encoding-type=url (spaces as '+', '+' as %2B).
  const std::string xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>kennel-data</Name><Prefix>photos%2Fmy+dog%2F</Prefix><KeyCount>2</KeyCount>
  <MaxKeys>2</MaxKeys><Delimiter>%2F</Delimiter><EncodingType>url</EncodingType>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>photos%2Fmy+dog%2Fa%2Bb+%C3%BC.jpg</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>photos%2Fmy+dog%2Fbig.bin</Key><ETag>"a-2"</ETag><Size>18446744073709551615</Size></Contents>
  <CommonPrefixes><Prefix>photos%2Fmy+dog%2Fsub+dir%2F</Prefix></CommonPrefixes>
</ListBucketResult>)";
  const ListPage page = parse_list_objects_v2(xml).value();
  ASSERT_EQ(page.objects.size(), 2u);
  EXPECT_EQ(page.objects[0].key, "photos/my dog/a+b ü.jpg");
  EXPECT_EQ(page.objects[0].etag, "\"9b2cf535f27731c974343645a3985328\"");
  EXPECT_EQ(page.objects[0].size, 434234u);
  EXPECT_EQ(page.objects[0].last_modified, "2024-01-02T03:04:05.000Z");
  EXPECT_EQ(page.objects[0].storage_class, "STANDARD");
  EXPECT_EQ(page.objects[1].size, UINT64_MAX);
  ASSERT_EQ(page.common_prefixes.size(), 1u);
  EXPECT_EQ(page.common_prefixes[0], "photos/my dog/sub dir/");
  EXPECT_TRUE(page.is_truncated);
  EXPECT_EQ(page.next_continuation_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
}

TEST(XmlResponsesTest, KeysAreTakenLiterallyWithoutEncodingType) {
  const ListPage page = parse_list_objects_v2(
                            "<ListBucketResult><IsTruncated>false</IsTruncated>"
                            "<Contents><Key>a+b%20c</Key><Size>1</Size></Contents>"
                            "</ListBucketResult>")
                            .value();
  EXPECT_EQ(page.objects[0].key, "a+b%20c");
  EXPECT_FALSE(page.is_truncated);
  EXPECT_TRUE(parse_list_objects_v2("<ListBucketResult/>").value().objects.empty());
}

TEST(XmlResponsesTest, RejectsBrokenListings) {
  EXPECT_EQ(parse_list_objects_v2("<html>502 Bad Gateway</html>").status().code(),
            ErrorCode::kUpstreamFailed);
  EXPECT_EQ(parse_list_objects_v2("<ListBucketResult><Contents>").status().code(),
            ErrorCode::kUpstreamFailed);
  const Status size = parse_list_objects_v2(
                          "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents>"
                          "</ListBucketResult>")
                          .status();
  EXPECT_NE(size.message().find("Size '-1' for key 'k'"), std::string::npos);
  EXPECT_EQ(parse_list_objects_v2("<ListBucketResult><IsTruncated>true</IsTruncated>"
                                  "</ListBucketResult>")
                .status()
                .code(),
            ErrorCode::kUpstreamFailed);
  EXPECT_EQ(parse_list_objects_v2("<ListBucketResult><EncodingType>url</EncodingType><Contents>"
                                  "<Key>bad%zz</Key><Size>1</Size></Contents></ListBucketResult>")
                .status()
                .code(),
            ErrorCode::kUpstreamFailed);
}

TEST(XmlResponsesTest, MultipartDocuments) {
  EXPECT_EQ(parse_initiate_multipart_upload(
                "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                "<UploadId>VXBsb2FkIElE+/=</UploadId></InitiateMultipartUploadResult>")
                .value(),
            "VXBsb2FkIElE+/=");
  EXPECT_EQ(parse_initiate_multipart_upload("<InitiateMultipartUploadResult/>").status().code(),
            ErrorCode::kUpstreamFailed);
  const std::string body = complete_multipart_upload_body({{1, "\"aa\""}, {2, "\"b&b\""}});
  EXPECT_EQ(body,
            "<?xml version=\"1.0\"?><CompleteMultipartUpload "
            "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><PartNumber>1</PartNumber>"
            "<ETag>\"aa\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"b&amp;b\"</ETag>"
            "</Part></CompleteMultipartUpload>");
  EXPECT_EQ(parse_complete_multipart_upload(
                "<CompleteMultipartUploadResult><ETag>\"3858f62230ac3c915f300c664312c11f-9\""
                "</ETag></CompleteMultipartUploadResult>")
                .value(),
            "\"3858f62230ac3c915f300c664312c11f-9\"");
}

TEST(XmlResponsesTest, ErrorDocuments) {
  const auto error = parse_error_document(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
      "<Message>The specified key does not exist.</Message><Key>a b.jpg</Key>"
      "<BucketName>kennel-data</BucketName><RequestId>4442587FB7D0A2F9</RequestId></Error>");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "NoSuchKey");
  EXPECT_EQ(error->message, "The specified key does not exist.");
  EXPECT_EQ(error->key, "a b.jpg");
  EXPECT_EQ(error->bucket_name, "kennel-data");
  EXPECT_EQ(error->request_id, "4442587FB7D0A2F9");
  EXPECT_FALSE(parse_error_document(""));
  EXPECT_FALSE(parse_error_document("<CompleteMultipartUploadResult/>"));
  EXPECT_FALSE(parse_error_document("<Error><Message>no code</Message></Error>"));
  EXPECT_EQ(parse_error_document("<Error><Code>PermanentRedirect</Code><Region>eu-west-1</Region>"
                                 "</Error>")
                ->region,
            "eu-west-1");
}

TEST(XmlResponsesTest, FormUrlDecoding) {
  EXPECT_EQ(form_url_decode("a+b%2Bc%2f%C3%BC"), "a b+c/ü");
  EXPECT_EQ(form_url_decode(""), "");
  EXPECT_FALSE(form_url_decode("%"));
  EXPECT_FALSE(form_url_decode("%4"));
  EXPECT_FALSE(form_url_decode("%G0"));
}

}  // namespace
}  // namespace kennel::s3
