#include "kennel/s3/xml_responses.h"

#include <charconv>
#include <sstream>

#include <pugixml.hpp>

namespace kennel::s3 {

namespace {

constexpr size_t kShownBytes = 200;

std::string excerpt(std::string_view xml) {
  std::string shown(xml.substr(0, kShownBytes));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return xml.size() > kShownBytes ? shown + "..." : shown;
}

Status bad_document(std::string_view what, std::string_view xml) {
  return {ErrorCode::kUpstreamFailed,
          fmt::format("the S3 server sent {} (the response began: '{}')", what, excerpt(xml))};
}

Result<pugi::xml_document> parse(std::string_view xml) {
  pugi::xml_document document;
  const pugi::xml_parse_result result = document.load_buffer(xml.data(), xml.size());
  if (!result) {
    return bad_document(
        fmt::format("malformed XML ({} at byte {})", result.description(), result.offset), xml);
  }
  return document;
}

std::string text_of(const pugi::xml_node& parent, const char* name) {
  return parent.child(name).child_value();
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> form_url_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

Result<ListPage> parse_list_objects_v2(std::string_view xml) {
  auto document = parse(xml);
  if (!document.ok()) return document.status();
  const pugi::xml_node root = document->child("ListBucketResult");
  if (!root) return bad_document("no ListBucketResult to a ListObjectsV2 request", xml);
  const bool url_encoded = std::string_view(text_of(root, "EncodingType")) == "url";
  auto decoded = [&](const std::string& text) -> Result<std::string> {
    if (!url_encoded) return text;
    auto value = form_url_decode(text);
    if (!value) return bad_document(fmt::format("a malformed URL-encoded key '{}'", text), xml);
    return *value;
  };

  ListPage page;
  for (const pugi::xml_node contents : root.children("Contents")) {
    ObjectSummary object;
    auto key = decoded(text_of(contents, "Key"));
    if (!key.ok()) return key.status();
    object.key = std::move(*key);
    const std::string size = text_of(contents, "Size");
    const auto [end, error] = std::from_chars(size.data(), size.data() + size.size(), object.size);
    if (size.empty() || error != std::errc() || end != size.data() + size.size()) {
      return bad_document(fmt::format("Size '{}' for key '{}', not a number", size, object.key),
                          xml);
    }
    object.etag = text_of(contents, "ETag");
    object.last_modified = text_of(contents, "LastModified");
    object.storage_class = text_of(contents, "StorageClass");
    page.objects.push_back(std::move(object));
  }
  for (const pugi::xml_node prefix : root.children("CommonPrefixes")) {
    auto value = decoded(text_of(prefix, "Prefix"));
    if (!value.ok()) return value.status();
    page.common_prefixes.push_back(std::move(*value));
  }
  page.is_truncated = std::string_view(text_of(root, "IsTruncated")) == "true";
  page.next_continuation_token = text_of(root, "NextContinuationToken");
  if (page.is_truncated && page.next_continuation_token.empty()) {
    return bad_document("a truncated listing without a NextContinuationToken", xml);
  }
  return page;
}

Result<std::string> parse_initiate_multipart_upload(std::string_view xml) {
  auto document = parse(xml);
  if (!document.ok()) return document.status();
  const std::string upload_id =
      text_of(document->child("InitiateMultipartUploadResult"), "UploadId");
  if (upload_id.empty()) return bad_document("no UploadId to CreateMultipartUpload", xml);
  return upload_id;
}

std::string complete_multipart_upload_body(const std::vector<CompletedPart>& parts) {
  pugi::xml_document document;
  pugi::xml_node root = document.append_child("CompleteMultipartUpload");
  root.append_attribute("xmlns") = "http://s3.amazonaws.com/doc/2006-03-01/";
  for (const CompletedPart& part : parts) {
    pugi::xml_node node = root.append_child("Part");
    node.append_child("PartNumber").text() = part.part_number;
    node.append_child("ETag").text() = part.etag.c_str();
  }
  std::ostringstream out;
  document.save(out, "", pugi::format_raw);
  return out.str();
}

std::optional<S3ErrorDocument> parse_error_document(std::string_view xml) {
  pugi::xml_document document;
  if (!document.load_buffer(xml.data(), xml.size())) return std::nullopt;
  const pugi::xml_node root = document.child("Error");
  if (!root) return std::nullopt;
  S3ErrorDocument error;
  error.code = text_of(root, "Code");
  error.message = text_of(root, "Message");
  error.bucket_name = text_of(root, "BucketName");
  error.key = text_of(root, "Key");
  error.region = text_of(root, "Region");
  error.request_id = text_of(root, "RequestId");
  if (error.code.empty()) return std::nullopt;
  return error;
}

Result<std::string> parse_complete_multipart_upload(std::string_view xml) {
  auto document = parse(xml);
  if (!document.ok()) return document.status();
  const std::string etag = text_of(document->child("CompleteMultipartUploadResult"), "ETag");
  if (etag.empty()) return bad_document("no ETag to CompleteMultipartUpload", xml);
  return etag;
}

}  // namespace kennel::s3
