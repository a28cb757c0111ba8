// S3's XML documents, read and written with pugixml: ListObjectsV2 results,
// the multipart-upload documents, and error documents.
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kennel/s3/objects.h"
#include "kennel/util/status.h"

namespace kennel::s3 {

// A ListBucketResult (ListObjectsV2). Keys and prefixes are URL-decoded when
// the document says <EncodingType>url</EncodingType> (Kennel asks for it: XML
// 1.0 cannot carry every byte a key may hold). kUpstreamFailed for a document
// that is not a ListBucketResult, a truncated page without a continuation
// token, or a size that is not a number.
Result<ListPage> parse_list_objects_v2(std::string_view xml);

// The UploadId of an InitiateMultipartUploadResult; kUpstreamFailed when absent.
Result<std::string> parse_initiate_multipart_upload(std::string_view xml);

struct CompletedPart {
  int part_number = 0;
  std::string etag;
};
// The CompleteMultipartUpload request body, parts in the order given.
std::string complete_multipart_upload_body(const std::vector<CompletedPart>& parts);

// S3's error document: <Error><Code>NoSuchKey</Code><Message>...</Message>...</Error>.
struct S3ErrorDocument {
  std::string code;
  std::string message;
  std::string bucket_name;
  std::string key;
  std::string region;  // <Region>, sent with region redirects
  std::string request_id;
};
// nullopt when `xml` is not an error document (S3 answers some requests, such
// as CompleteMultipartUpload, with HTTP 200 and an error document).
std::optional<S3ErrorDocument> parse_error_document(std::string_view xml);

// The ETag of a CompleteMultipartUploadResult. kUpstreamFailed when absent.
Result<std::string> parse_complete_multipart_upload(std::string_view xml);

// application/x-www-form-urlencoded decoding (%XX and '+' as space), as S3
// uses for EncodingType=url. nullopt for a malformed %-escape.
std::optional<std::string> form_url_decode(std::string_view text);

}  // namespace kennel::s3
