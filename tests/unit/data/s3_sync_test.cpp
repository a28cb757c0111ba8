// data/s3_sync against an in-memory bucket played by a scripted transport:
// only new object versions are fetched, the view follows the prefix, keys
// cannot leave the view, uploads skip matching objects, and the manifest rule.
#include "kennel/data/s3_sync.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <mutex>

#include "kennel/util/hash.h"
#include "unit/s3/scripted_transport.h"
#include "unit/test_util.h"

namespace kennel::data {
namespace {

namespace fs = std::filesystem;
using s3::testing::Reply;
using s3::testing::ScriptedTransport;
using s3::testing::SentRequest;

struct StoredObject {
  std::string body;
  std::string etag;
  std::map<std::string, std::string> metadata;
};

// One bucket, "bkt", path-style at http://127.0.0.1:9000.
class MemoryBucket {
 public:
  Reply answer(const SentRequest& request) {
    std::lock_guard lock(mutex_);
    const std::string prefix = "http://127.0.0.1:9000/bkt";
    std::string rest = request.url.substr(prefix.size());
    std::string query;
    if (const size_t mark = rest.find('?'); mark != std::string::npos) {
      query = rest.substr(mark + 1);
      rest = rest.substr(0, mark);
    }
    const std::string key = rest.empty() ? "" : rest.substr(1);
    if (request.method == "GET" && query.find("list-type=2") != std::string::npos) return list(query);
    if (request.method == "PUT") {
      StoredObject object{request.body, "\"" + sha256_hex(request.body).substr(0, 16) + "\"", {}};
      for (const auto& [name, value] : request.headers) {
        std::string lower = name;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (lower.rfind("x-amz-meta-", 0) == 0) object.metadata[lower.substr(11)] = value;
      }
      objects_[key] = object;
      Reply reply;
      reply.headers["etag"] = object.etag;
      return reply;
    }
    if (request.method == "DELETE") {
      objects_.erase(key);
      Reply reply;
      reply.status = 204;
      return reply;
    }
    const auto found = objects_.find(key);
    if (found == objects_.end()) return Reply::s3_error(404, "NoSuchKey", "The specified key does not exist.");
    Reply reply;
    reply.headers["etag"] = found->second.etag;
    reply.headers["content-length"] = std::to_string(found->second.body.size());
    for (const auto& [name, value] : found->second.metadata) reply.headers["x-amz-meta-" + name] = value;
    if (request.method == "GET") reply.body = found->second.body;
    return reply;
  }

  void put(const std::string& key, const std::string& body, std::map<std::string, std::string> metadata = {}) {
    std::lock_guard lock(mutex_);
    objects_[key] = {body, "\"" + sha256_hex(body).substr(0, 16) + "\"", std::move(metadata)};
  }
  void erase(const std::string& key) {
    std::lock_guard lock(mutex_);
    objects_.erase(key);
  }

 private:
  Reply list(const std::string& query) {
    std::string prefix;
    if (const size_t at = query.find("prefix="); at != std::string::npos) {
      prefix = query.substr(at + 7, query.find('&', at) - at - 7);
      for (size_t slash; (slash = prefix.find("%2F")) != std::string::npos;) prefix.replace(slash, 3, "/");
    }
    Reply reply;
    reply.body = "<ListBucketResult><IsTruncated>false</IsTruncated>";
    for (const auto& [key, object] : objects_) {
      if (key.rfind(prefix, 0) != 0) continue;
      reply.body += "<Contents><Key>" + key + "</Key><Size>" + std::to_string(object.body.size()) +
                    "</Size><ETag>" + object.etag + "</ETag></Contents>";
    }
    reply.body += "</ListBucketResult>";
    return reply;
  }

  std::mutex mutex_;
  std::map<std::string, StoredObject> objects_;
};

class S3SyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    transport_ = std::make_shared<ScriptedTransport>(
        [this](const SentRequest& request, size_t) { return bucket_.answer(request); });
    client_ = s3::testing::scripted_client(transport_, nullptr);
    options_.quiet = true;
  }
  Result<SyncedTree> sync(const std::string& prefix = "ds/") {
    return sync_prefix(*client_, s3::S3Uri{"bkt", prefix}, dir_ / "objects", dir_ / "view", options_);
  }
  size_t gets_since(size_t from) const {
    size_t gets = 0;
    const auto sent = transport_->sent();
    for (size_t i = from; i < sent.size(); ++i) {
      if (sent[i].method == "GET" && sent[i].url.find("list-type") == std::string::npos &&
          sent[i].url.find(kManifestName) == std::string::npos) {
        ++gets;
      }
    }
    return gets;
  }
  std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  MemoryBucket bucket_;
  std::shared_ptr<ScriptedTransport> transport_;
  std::unique_ptr<s3::S3Client> client_;
  S3TransferOptions options_;
  kennel::testing::TempDir dir_;
};

TEST_F(S3SyncTest, OnlyNewObjectVersionsAreFetchedAndTheViewFollowsThePrefix) {
  bucket_.put("ds/train/a/1.jpg", "one");
  bucket_.put("ds/train/b/2.jpg", "two");
  bucket_.put("other/3.jpg", "three");
  auto first = sync("ds");  // "ds" is the folder "ds/"
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_EQ(first->downloaded, 2u);
  EXPECT_EQ(read(dir_ / "view/train/a/1.jpg"), "one");
  EXPECT_EQ(read(dir_ / "view/train/b/2.jpg"), "two");
  EXPECT_FALSE(fs::exists(dir_ / "view/3.jpg"));
  ASSERT_EQ(first->identities.size(), 2u);
  const std::string identity = first->identities.at("train/a/1.jpg");

  size_t before = transport_->sent().size();
  auto second = sync();
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->downloaded, 0u);
  EXPECT_EQ(gets_since(before), 0u);
  EXPECT_EQ(second->identities.at("train/a/1.jpg"), identity);

  bucket_.put("ds/train/a/1.jpg", "one, changed");
  bucket_.erase("ds/train/b/2.jpg");
  before = transport_->sent().size();
  auto third = sync();
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->downloaded, 1u);
  EXPECT_EQ(gets_since(before), 1u);
  EXPECT_EQ(read(dir_ / "view/train/a/1.jpg"), "one, changed");
  EXPECT_NE(third->identities.at("train/a/1.jpg"), identity);
  EXPECT_FALSE(fs::exists(dir_ / "view/train/b/2.jpg"));
  for (const auto& entry : fs::recursive_directory_iterator(dir_.path())) {
    EXPECT_NE(entry.path().extension(), ".part") << "a partial download was left: " << entry.path();
  }
}

TEST_F(S3SyncTest, KeysThatWouldLeaveTheViewAreSkipped) {
  bucket_.put("ds/ok.jpg", "ok");
  bucket_.put("ds/../escape.jpg", "no");
  bucket_.put("ds/a//b.jpg", "no");
  bucket_.put("ds/folder/", "");
  auto synced = sync();
  ASSERT_TRUE(synced.ok()) << synced.status().to_string();
  EXPECT_EQ(synced->identities.size(), 1u);
  EXPECT_FALSE(fs::exists(dir_ / "escape.jpg"));
}

TEST_F(S3SyncTest, AnEmptyPrefixIsNotFoundNamingIt) {
  auto synced = sync("nothing/");
  ASSERT_FALSE(synced.ok());
  EXPECT_EQ(synced.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(synced.status().message().find("s3://bkt/nothing/"), std::string::npos);
}

TEST_F(S3SyncTest, ARecordedSha256ThatDoesNotMatchIsDataLoss) {
  bucket_.put("ds/x.jpg", "bytes", {{"sha256", sha256_hex(std::string("other bytes"))}});
  auto synced = sync();
  ASSERT_FALSE(synced.ok());
  EXPECT_EQ(synced.status().code(), ErrorCode::kDataLoss) << synced.status().to_string();
}

TEST_F(S3SyncTest, UploadsRecordSha256AndSkipWhatMatches) {
  fs::create_directories(dir_ / "local/train/a");
  std::ofstream(dir_ / "local/train/a/1.jpg") << "one";
  std::ofstream(dir_ / "local/train/a/2.jpg") << "two";
  auto first = upload_tree(*client_, dir_ / "local", s3::S3Uri{"bkt", "up"}, options_);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_EQ(first->uploaded, 2u);
  auto head = client_->head_object(s3::S3Uri{"bkt", "up/train/a/1.jpg"});
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->metadata.at("sha256"), sha256_hex(std::string("one")));

  std::ofstream(dir_ / "local/train/a/2.jpg") << "TWO";  // same size, other bytes
  const size_t before = transport_->sent().size();
  auto second = upload_tree(*client_, dir_ / "local", s3::S3Uri{"bkt", "up"}, options_);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->skipped, 1u);
  EXPECT_EQ(second->uploaded, 1u);
  size_t puts = 0;
  const auto sent = transport_->sent();
  for (size_t i = before; i < sent.size(); ++i) puts += sent[i].method == "PUT";
  EXPECT_EQ(puts, 1u);
}

TEST_F(S3SyncTest, AManifestCommitsExactlyItsFiles) {
  fs::create_directories(dir_ / "set");
  std::ofstream(dir_ / "set/model.json") << "{}";
  std::ofstream(dir_ / "set/model.safetensors") << "weights";
  const std::vector<CommittedFile> files = {{dir_ / "set/model.json", "model.json"},
                                            {dir_ / "set/model.safetensors", "model.safetensors"}};
  ASSERT_TRUE(upload_committed_set(*client_, s3::S3Uri{"bkt", "ds"}, files, options_).ok());
  const auto sent = transport_->sent();
  ASSERT_FALSE(sent.empty());
  EXPECT_NE(sent.back().url.find(kManifestName), std::string::npos) << "the manifest is written last";

  bucket_.put("ds/half-uploaded.bin", "next set");  // not committed: never taken
  auto synced = sync();
  ASSERT_TRUE(synced.ok()) << synced.status().to_string();
  EXPECT_EQ(synced->identities.size(), 2u);
  EXPECT_FALSE(fs::exists(dir_ / "view/half-uploaded.bin"));
  EXPECT_EQ(read(dir_ / "view/model.safetensors"), "weights");

  bucket_.erase("ds/model.safetensors");
  auto broken = sync();
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(broken.status().message().find("model.safetensors"), std::string::npos);
}

TEST_F(S3SyncTest, ANewSetDeletesWhatOnlyThePreviousOneListed) {
  fs::create_directories(dir_ / "ck");
  std::ofstream(dir_ / "ck/checkpoint-1.pt") << "1";
  ASSERT_TRUE(upload_committed_set(*client_, s3::S3Uri{"bkt", "ds/"}, {{dir_ / "ck/checkpoint-1.pt", "checkpoint-1.pt"}},
                                   options_).ok());
  std::ofstream(dir_ / "ck/checkpoint-2.pt") << "2";
  ASSERT_TRUE(upload_committed_set(*client_, s3::S3Uri{"bkt", "ds/"}, {{dir_ / "ck/checkpoint-2.pt", "checkpoint-2.pt"}},
                                   options_).ok());
  EXPECT_FALSE(client_->head_object(s3::S3Uri{"bkt", "ds/checkpoint-1.pt"}).ok());
  auto synced = sync();
  ASSERT_TRUE(synced.ok());
  EXPECT_EQ(synced->identities.count("checkpoint-2.pt"), 1u);
  EXPECT_EQ(synced->identities.size(), 1u);
}

}  // namespace
}  // namespace kennel::data
