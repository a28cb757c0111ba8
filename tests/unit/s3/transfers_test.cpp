// S3Client's file transfers against a scripted server: multipart uploads
// (parts, completion, abort on failure) and resumable, atomic downloads.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <set>

#include "kennel/s3/client.h"
#include "kennel/util/hash.h"
#include "unit/s3/scripted_transport.h"
#include "unit/test_util.h"

namespace kennel::s3 {
namespace {

namespace fs = std::filesystem;
using testing::Reply;
using testing::ScriptedTransport;
using testing::SentRequest;

std::string pattern(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 7919) >> 3);
  return bytes;
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string header(const SentRequest& request, const std::string& name) {
  const auto found = request.headers.find(name);
  return found == request.headers.end() ? "" : found->second;
}

// ---- uploads -------------------------------------------------------------------

// Answers the multipart protocol; `fail_part` (if > 0) always fails with 403.
Reply multipart_server(const SentRequest& request, int fail_part) {
  Reply reply;
  if (request.method == "POST" && request.url.find("?uploads=") != std::string::npos) {
    reply.body =
        "<InitiateMultipartUploadResult><UploadId>up+1/=</UploadId>"
        "</InitiateMultipartUploadResult>";
  } else if (request.method == "PUT") {
    const size_t at = request.url.find("partNumber=");
    const int part = at == std::string::npos ? 0 : std::stoi(request.url.substr(at + 11));
    if (part == fail_part) return Reply::s3_error(403, "AccessDenied", "no");
    reply.headers["etag"] = "\"" + sha256_hex(request.body).substr(0, 8) + "\"";
  } else if (request.method == "POST") {
    reply.body =
        "<CompleteMultipartUploadResult><ETag>\"whole-3\"</ETag>"
        "</CompleteMultipartUploadResult>";
  } else if (request.method == "DELETE") {
    reply.status = 204;
  }
  return reply;
}

TEST(TransfersTest, SmallFilesGoInOnePut) {
  kennel::testing::TempDir dir;
  write_file(dir / "small.bin", "tiny file");
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) {
    Reply reply;
    reply.headers["etag"] = "\"one\"";
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  uint64_t progressed = 0;
  UploadOptions options;
  options.on_progress = [&](uint64_t n) { progressed += n; };
  EXPECT_EQ(client->upload_file(dir / "small.bin", {"kennel-data", "s.bin"}, options).value().etag,
            "\"one\"");
  const auto sent = transport->sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].method, "PUT");
  EXPECT_EQ(sent[0].body, "tiny file");
  // Streamed from the file over plain http: hashed, not UNSIGNED-PAYLOAD.
  EXPECT_EQ(header(sent[0], "x-amz-content-sha256"), sha256_hex("tiny file"));
  EXPECT_EQ(progressed, 9u);
}

TEST(TransfersTest, LargeFilesGoInParallelPartsAndAreCompletedInOrder) {
  kennel::testing::TempDir dir;
  const std::string bytes = pattern((5u << 20) * 3 + 1234);  // 3 full parts and a short one
  write_file(dir / "big.bin", bytes);
  auto transport = std::make_shared<ScriptedTransport>(
      [](const SentRequest& request, size_t) { return multipart_server(request, 0); });
  auto client = testing::scripted_client(transport, nullptr);
  UploadOptions options;
  options.multipart_threshold = 5u << 20;
  options.part_size = 1u << 20;  // raised to S3's 5 MiB minimum
  options.concurrency = 3;
  options.put.metadata["sha256"] = sha256_hex(bytes);
  std::atomic<uint64_t> progressed{0};
  options.on_progress = [&](uint64_t n) { progressed += n; };
  EXPECT_EQ(
      client->upload_file(dir / "big.bin", {"kennel-data", "m/big.bin"}, options).value().etag,
      "\"whole-3\"");
  EXPECT_EQ(progressed.load(), bytes.size());

  const auto sent = transport->sent();
  ASSERT_EQ(sent.size(), 6u);  // create, 4 parts, complete
  EXPECT_EQ(sent[0].url, "http://127.0.0.1:9000/kennel-data/m/big.bin?uploads=");
  EXPECT_EQ(header(sent[0], "x-amz-meta-sha256"), sha256_hex(bytes));
  std::string reassembled(bytes.size(), '\0');
  std::set<int> parts;
  for (size_t i = 1; i <= 4; ++i) {
    const SentRequest& part = sent[i];
    const size_t at = part.url.find("partNumber=");
    const int number = std::stoi(part.url.substr(at + 11));
    parts.insert(number);
    EXPECT_NE(part.url.find("uploadId=up%2B1%2F%3D"), std::string::npos);
    EXPECT_EQ(part.body.size(), number == 4 ? 1234u : 5u << 20);
    reassembled.replace((number - 1) * (5u << 20), part.body.size(), part.body);
  }
  EXPECT_EQ(parts, (std::set<int>{1, 2, 3, 4}));
  EXPECT_EQ(reassembled, bytes);
  const SentRequest& complete = sent[5];
  EXPECT_EQ(complete.method, "POST");
  EXPECT_EQ(complete.url, "http://127.0.0.1:9000/kennel-data/m/big.bin?uploadId=up%2B1%2F%3D");
  size_t last = 0;
  for (int number = 1; number <= 4; ++number) {
    const size_t at = complete.body.find("<PartNumber>" + std::to_string(number) + "</PartNumber>");
    ASSERT_NE(at, std::string::npos);
    EXPECT_GT(at, last);
    last = at;
  }
}

TEST(TransfersTest, AFailedPartAbortsTheUpload) {
  kennel::testing::TempDir dir;
  write_file(dir / "big.bin", pattern((5u << 20) * 3));
  auto transport = std::make_shared<ScriptedTransport>(
      [](const SentRequest& request, size_t) { return multipart_server(request, 2); });
  auto client = testing::scripted_client(transport, nullptr);
  UploadOptions options;
  options.multipart_threshold = 1;
  options.part_size = 5u << 20;
  options.concurrency = 1;
  const Status status =
      client->upload_file(dir / "big.bin", {"kennel-data", "big.bin"}, options).status();
  EXPECT_EQ(status.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(status.message().find("part 2 of 3"), std::string::npos);
  EXPECT_NE(status.message().find((dir / "big.bin").string()), std::string::npos);
  const auto sent = transport->sent();
  EXPECT_EQ(sent.back().method, "DELETE");
  EXPECT_EQ(sent.back().url, "http://127.0.0.1:9000/kennel-data/big.bin?uploadId=up%2B1%2F%3D");
  for (const SentRequest& request : sent) {  // part 3 was never sent, nothing completed
    EXPECT_EQ(request.url.find("partNumber=3"), std::string::npos);
    EXPECT_FALSE(request.method == "POST" && request.url.find("uploads=") == std::string::npos);
  }
}

TEST(TransfersTest, ACompletionThatFailsInsideA200IsRetriedThenAborted) {
  kennel::testing::TempDir dir;
  write_file(dir / "big.bin", pattern(6u << 20));
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest& request, size_t) {
    if (request.method == "POST" && request.url.find("uploads=") == std::string::npos) {
      Reply reply;  // 200 status line, error document body
      reply.body = "<Error><Code>InternalError</Code><Message>retry</Message></Error>";
      return reply;
    }
    return multipart_server(request, 0);
  });
  std::vector<double> waits;
  auto client = testing::scripted_client(transport, &waits);
  UploadOptions options;
  options.multipart_threshold = 1;
  const Status status =
      client->upload_file(dir / "big.bin", {"kennel-data", "b"}, options).status();
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable);
  EXPECT_EQ(waits.size(), 4u);  // five completion attempts
  EXPECT_EQ(transport->sent().back().method, "DELETE");
}

TEST(TransfersTest, UploadErrorsNameTheFile) {
  auto transport =
      std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) { return Reply{}; });
  auto client = testing::scripted_client(transport, nullptr);
  const Status missing =
      client->upload_file("/nonexistent/kennel.bin", {"kennel-data", "k"}).status();
  EXPECT_EQ(missing.code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.message().find("/nonexistent/kennel.bin"), std::string::npos);
  EXPECT_EQ(client->upload_file("/tmp", {"kennel-data", "k"}).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_TRUE(transport->sent().empty());
}

// ---- downloads -----------------------------------------------------------------

// One object served with ranges and If-Match, as S3 serves it. `script` may
// replace the answer to request `index` (e.g. with a dropped connection).
struct ObjectServer {
  explicit ObjectServer(std::string object_bytes) : bytes(std::move(object_bytes)) {}

  std::string bytes;
  std::string etag = "\"v1\"";
  bool honour_if_match = true;
  std::function<std::optional<Reply>(const SentRequest&, size_t)> script;

  Reply operator()(const SentRequest& request, size_t index) const {
    if (script) {
      if (auto reply = script(request, index)) return *reply;
    }
    const std::string if_match = header(request, "If-Match");
    if (honour_if_match && !if_match.empty() && if_match != etag) {
      return Reply::s3_error(412, "PreconditionFailed");
    }
    Reply reply;
    reply.headers = {{"etag", etag},
                     {"last-modified", "Wed, 12 Oct 2009 17:50:00 GMT"},
                     {"x-amz-meta-sha256", sha256_hex(bytes)}};
    const std::string range = header(request, "Range");
    if (range.empty()) {
      reply.headers["content-length"] = std::to_string(bytes.size());
      reply.body = bytes;
      return reply;
    }
    const uint64_t first = std::stoull(range.substr(6));
    if (first >= bytes.size()) return Reply::s3_error(416, "InvalidRange");
    reply.status = 206;
    reply.headers["content-range"] = "bytes " + std::to_string(first) + "-" +
                                     std::to_string(bytes.size() - 1) + "/" +
                                     std::to_string(bytes.size());
    reply.body = bytes.substr(first);
    return reply;
  }
};

TEST(TransfersTest, DownloadIsAtomicAndReportsTheObject) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(100000));
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  auto client = testing::scripted_client(transport, nullptr);
  uint64_t progressed = 0;
  DownloadOptions options;
  options.on_progress = [&](uint64_t n) { progressed += n; };
  const fs::path destination = dir / "nested" / "dir" / "object.bin";
  const ObjectInfo info =
      client->download_file({"kennel-data", "object.bin"}, destination, options).value();
  EXPECT_EQ(read_file(destination), server.bytes);
  EXPECT_EQ(info.size, server.bytes.size());
  EXPECT_EQ(info.etag, "\"v1\"");
  EXPECT_EQ(info.metadata.at("sha256"), sha256_hex(server.bytes));
  EXPECT_EQ(progressed, server.bytes.size());
  EXPECT_FALSE(fs::exists(dir / "nested" / "dir" / "object.bin.part"));
  EXPECT_FALSE(fs::exists(dir / "nested" / "dir" / "object.bin.part.etag"));
}

TEST(TransfersTest, ADroppedConnectionContinuesWithARangeForTheSameVersion) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(50000));
  server.script = [&server](const SentRequest&, size_t index) -> std::optional<Reply> {
    if (index != 0) return std::nullopt;
    Reply cut;  // the first 20000 bytes arrive, then the connection resets
    cut.headers = {{"etag", server.etag}, {"content-length", "50000"}};
    cut.body = server.bytes.substr(0, 20000);
    cut.transport_error = 56;
    return cut;
  };
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  std::vector<double> waits;
  auto client = testing::scripted_client(transport, &waits);
  ASSERT_TRUE(client->download_file({"kennel-data", "o"}, dir / "o.bin").ok());
  EXPECT_EQ(read_file(dir / "o.bin"), server.bytes);
  const auto sent = transport->sent();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(header(sent[1], "Range"), "bytes=20000-");
  EXPECT_EQ(header(sent[1], "If-Match"), "\"v1\"");
  EXPECT_EQ(waits.size(), 1u);
}

TEST(TransfersTest, AKilledDownloadResumesFromItsPartFile) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(30000));
  // What a process killed mid-download leaves behind.
  write_file(dir / "o.bin.part", server.bytes.substr(0, 12345));
  write_file(dir / "o.bin.part.etag", "\"v1\"");
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  auto client = testing::scripted_client(transport, nullptr);
  uint64_t progressed = 0;
  DownloadOptions options;
  options.on_progress = [&](uint64_t n) { progressed += n; };
  ASSERT_TRUE(client->download_file({"kennel-data", "o"}, dir / "o.bin", options).ok());
  EXPECT_EQ(read_file(dir / "o.bin"), server.bytes);
  ASSERT_EQ(transport->sent().size(), 1u);
  EXPECT_EQ(header(transport->sent()[0], "Range"), "bytes=12345-");
  EXPECT_EQ(progressed, 30000u - 12345u);
}

TEST(TransfersTest, APartFileOfAnotherVersionIsDiscarded) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(30000));
  server.etag = "\"v2\"";
  write_file(dir / "o.bin.part", std::string(12345, 'x'));
  write_file(dir / "o.bin.part.etag", "\"v1\"");
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  auto client = testing::scripted_client(transport, nullptr);
  ASSERT_TRUE(client->download_file({"kennel-data", "o"}, dir / "o.bin").ok());
  EXPECT_EQ(read_file(dir / "o.bin"), server.bytes);
  const auto sent = transport->sent();
  ASSERT_EQ(sent.size(), 2u);  // the ranged If-Match request fails with 412, then a fresh GET
  EXPECT_EQ(header(sent[1], "Range"), "");
  EXPECT_EQ(header(sent[1], "If-Match"), "");
}

TEST(TransfersTest, AServerThatIgnoresIfMatchCannotMixVersions) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(30000));
  server.etag = "\"v2\"";
  server.honour_if_match = false;
  write_file(dir / "o.bin.part", std::string(12345, 'x'));
  write_file(dir / "o.bin.part.etag", "\"v1\"");
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  auto client = testing::scripted_client(transport, nullptr);
  ASSERT_TRUE(client->download_file({"kennel-data", "o"}, dir / "o.bin").ok());
  EXPECT_EQ(read_file(dir / "o.bin"), server.bytes);
}

TEST(TransfersTest, APartFileAsLongAsTheObjectStartsOver) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(1000));
  write_file(dir / "o.bin.part", server.bytes);
  write_file(dir / "o.bin.part.etag", "\"v1\"");
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  auto client = testing::scripted_client(transport, nullptr);
  ASSERT_TRUE(client->download_file({"kennel-data", "o"}, dir / "o.bin").ok());
  EXPECT_EQ(read_file(dir / "o.bin"), server.bytes);
  EXPECT_EQ(transport->sent().size(), 2u);  // 416, then the whole object
}

TEST(TransfersTest, AChangedObjectFailsWhenAVersionWasAskedFor) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(1000));
  server.etag = "\"v2\"";
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  auto client = testing::scripted_client(transport, nullptr);
  DownloadOptions options;
  options.if_match = "\"v1\"";  // from a listing made before the object changed
  const Status status =
      client->download_file({"kennel-data", "o"}, dir / "o.bin", options).status();
  EXPECT_EQ(status.code(), ErrorCode::kFailedPrecondition);
  EXPECT_FALSE(fs::exists(dir / "o.bin"));
}

TEST(TransfersTest, AFailedDownloadLeavesNoDestinationButAResumablePart) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(10000));
  server.script = [&server](const SentRequest&, size_t index) -> std::optional<Reply> {
    if (index == 0) {
      Reply cut;
      cut.headers = {{"etag", server.etag}};
      cut.body = server.bytes.substr(0, 4000);
      cut.transport_error = 18;
      return cut;
    }
    return Reply::s3_error(403, "AccessDenied");
  };
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  auto client = testing::scripted_client(transport, nullptr);
  const Status status = client->download_file({"kennel-data", "o"}, dir / "o.bin").status();
  EXPECT_EQ(status.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(status.message().find("downloading s3://kennel-data/o to"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "o.bin"));
  EXPECT_EQ(fs::file_size(dir / "o.bin.part"), 4000u);
  EXPECT_EQ(read_file(dir / "o.bin.part.etag"), "\"v1\"");

  // The next call (access fixed) picks up where this one stopped.
  server.script = nullptr;
  ASSERT_TRUE(client->download_file({"kennel-data", "o"}, dir / "o.bin").ok());
  EXPECT_EQ(read_file(dir / "o.bin"), server.bytes);
  EXPECT_EQ(header(transport->sent().back(), "Range"), "bytes=4000-");
}

TEST(TransfersTest, AnObjectReplacedBetweenAttemptsIsFetchedAgainWhole) {
  kennel::testing::TempDir dir;
  ObjectServer server(pattern(20000));
  server.script = [&server](const SentRequest&, size_t index) -> std::optional<Reply> {
    if (index != 0) return std::nullopt;
    Reply cut;  // version 1 begins to arrive, then the connection drops
    cut.headers = {{"etag", "\"v1\""}};
    cut.body = std::string(5000, 'o');
    cut.transport_error = 56;
    return cut;
  };
  server.etag = "\"v2\"";  // meanwhile the object was overwritten
  auto transport = std::make_shared<ScriptedTransport>(std::ref(server));
  auto client = testing::scripted_client(transport, nullptr);
  ASSERT_TRUE(client->download_file({"kennel-data", "o"}, dir / "o.bin").ok());
  EXPECT_EQ(read_file(dir / "o.bin"), server.bytes);
  const auto sent = transport->sent();
  ASSERT_EQ(sent.size(), 3u);  // cut, 412 for the ranged If-Match "v1", whole v2
  EXPECT_EQ(header(sent[1], "If-Match"), "\"v1\"");
  EXPECT_EQ(header(sent[2], "Range"), "");
}

TEST(TransfersTest, RangedGetsFromServersThatIgnoreRangeAreCutLocally) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) {
    Reply reply;
    reply.body = "0123456789";
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  GetOptions options;
  options.range = ByteRange{2, 4};
  EXPECT_EQ(client->get_object({"kennel-data", "o"}, options).value().body, "234");
  options.range = ByteRange{8, std::nullopt};
  EXPECT_EQ(client->get_object({"kennel-data", "o"}, options).value().body, "89");
  options.range = ByteRange{5, 4};
  EXPECT_EQ(client->get_object({"kennel-data", "o"}, options).status().code(),
            ErrorCode::kInvalidArgument);
}

TEST(TransfersTest, AShortBodyIsDataLossNotASuccess) {
  kennel::testing::TempDir dir;
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) {
    Reply reply;
    reply.headers = {{"etag", "\"v\""}, {"content-length", "100"}};
    reply.body = std::string(60, 'x');  // a server that closes cleanly but early
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  const Status status = client->download_file({"kennel-data", "o"}, dir / "o.bin").status();
  EXPECT_EQ(status.code(), ErrorCode::kDataLoss);
  EXPECT_FALSE(fs::exists(dir / "o.bin"));
}

}  // namespace
}  // namespace kennel::s3
