// S3Client's single requests, retries and error messages, against a scripted
// transport (no network).
#include "kennel/s3/client.h"

#include <gtest/gtest.h>

#include "unit/s3/scripted_transport.h"

namespace kennel::s3 {
namespace {

using testing::Reply;
using testing::ScriptedTransport;
using testing::SentRequest;

TEST(ClientTest, GetReturnsBodyAndObjectInfo) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) {
    Reply reply;
    reply.status = 206;
    reply.headers = {{"content-range", "bytes 2-5/100"},
                     {"etag", "\"abc\""},
                     {"last-modified", "Wed, 12 Oct 2009 17:50:00 GMT"},
                     {"content-type", "image/jpeg"},
                     {"x-amz-meta-sha256", "00ff"}};
    reply.body = "2345";
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  GetOptions options;
  options.range = ByteRange{2, 5};
  options.if_match = "\"abc\"";
  const GetResult result = client->get_object({"kennel-data", "a b.jpg"}, options).value();
  EXPECT_EQ(result.body, "2345");
  EXPECT_EQ(result.info.size, 100u);
  EXPECT_EQ(result.info.etag, "\"abc\"");
  EXPECT_EQ(result.info.content_type, "image/jpeg");
  EXPECT_EQ(result.info.metadata.at("sha256"), "00ff");
  const auto sent = transport->sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].method, "GET");
  EXPECT_EQ(sent[0].url, "http://127.0.0.1:9000/kennel-data/a%20b.jpg");
  EXPECT_EQ(sent[0].headers.at("Range"), "bytes=2-5");
  EXPECT_EQ(sent[0].headers.at("If-Match"), "\"abc\"");
  EXPECT_EQ(sent[0].headers.at("Host"), "127.0.0.1:9000");
  EXPECT_NE(sent[0].headers.at("Authorization").find("SignedHeaders=host;if-match;range;"),
            std::string::npos);
}

TEST(ClientTest, RetriesThrottlingAndResetsThenSucceeds) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t index) {
    switch (index) {
      case 0:
        return Reply::s3_error(503, "SlowDown", "Please reduce your request rate.");
      case 1:
        return Reply::error(56, "partial bo");  // connection reset mid-body
      case 2:
        return Reply::s3_error(500, "InternalError");
      default: {
        Reply reply;
        reply.body = "whole body";
        return reply;
      }
    }
  });
  std::vector<double> waits;
  auto client = testing::scripted_client(transport, &waits);
  const GetResult result = client->get_object({"kennel-data", "k"}).value();
  EXPECT_EQ(result.body, "whole body");  // nothing of the cut attempt is kept
  EXPECT_EQ(transport->sent().size(), 4u);
  // Full jitter at uniform 0.5: half of 0.25 * 2^(n-1).
  EXPECT_EQ(waits, (std::vector<double>{0.125, 0.25, 0.5}));
}

TEST(ClientTest, GivesUpAfterMaxAttemptsSayingHowManyWereMade) {
  auto transport = std::make_shared<ScriptedTransport>(
      [](const SentRequest&, size_t) { return Reply::s3_error(503, "SlowDown"); });
  std::vector<double> waits;
  auto client = testing::scripted_client(transport, &waits);
  const Status status = client->head_object({"kennel-data", "k"}).status();
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable);
  EXPECT_NE(status.message().find("after 5 attempts"), std::string::npos);
  EXPECT_EQ(transport->sent().size(), 5u);
  EXPECT_EQ(waits.size(), 4u);
}

TEST(ClientTest, ClientErrorsAreNotRetried) {
  for (const auto& [status, code] : std::vector<std::pair<long, std::string>>{
           {403, "AccessDenied"}, {404, "NoSuchKey"}, {400, "InvalidArgument"}}) {
    auto transport = std::make_shared<ScriptedTransport>(
        [status = status, code = code](const SentRequest&, size_t) {
          return Reply::s3_error(status, code);
        });
    std::vector<double> waits;
    auto client = testing::scripted_client(transport, &waits);
    EXPECT_FALSE(client->get_object({"kennel-data", "k"}).ok());
    EXPECT_EQ(transport->sent().size(), 1u) << code;
    EXPECT_TRUE(waits.empty());
  }
}

TEST(ClientTest, RequestTimeoutIsRetriedDespiteItsStatus400) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t index) {
    return index == 0 ? Reply::s3_error(400, "RequestTimeout") : Reply{};
  });
  auto client = testing::scripted_client(transport, nullptr);
  EXPECT_TRUE(client->put_object({"kennel-data", "k"}, "bytes").ok());
  EXPECT_EQ(transport->sent().size(), 2u);
}

Status failure_for(const Reply& reply, const S3Uri& object = {"kennel-data", "cats/a.jpg"},
                   S3Config config = testing::local_config()) {
  auto transport =
      std::make_shared<ScriptedTransport>([reply](const SentRequest&, size_t) { return reply; });
  auto client = testing::scripted_client(transport, nullptr, std::move(config));
  return client->get_object(object).status();
}

TEST(ClientTest, ErrorsSayWhatIsWrongInTheUsersTerms) {
  Status status = failure_for(Reply::s3_error(404, "NoSuchBucket", "The bucket does not exist"));
  EXPECT_EQ(status.code(), ErrorCode::kNotFound);
  EXPECT_NE(status.message().find("bucket 'kennel-data' does not exist at http://127.0.0.1:9000"),
            std::string::npos);

  status = failure_for(Reply::s3_error(404, "NoSuchKey"));
  EXPECT_EQ(status.code(), ErrorCode::kNotFound);
  EXPECT_NE(status.message().find("s3://kennel-data/cats/a.jpg does not exist"), std::string::npos);

  status = failure_for(Reply::s3_error(403, "SignatureDoesNotMatch"));
  EXPECT_EQ(status.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(status.message().find("the secret key for profile 'ml' is wrong "
                                  "(SignatureDoesNotMatch)"),
            std::string::npos);
  EXPECT_NE(status.message().find("/home/me/.aws/credentials"), std::string::npos);

  status = failure_for(Reply::s3_error(403, "InvalidAccessKeyId"));
  EXPECT_NE(status.message().find("access key ****************MPLE from profile 'ml'"),
            std::string::npos);

  status = failure_for(Reply::s3_error(403, "AccessDenied", "Access Denied"));
  EXPECT_EQ(status.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(status.message().find("access to s3://kennel-data/cats/a.jpg denied"),
            std::string::npos);
  EXPECT_NE(status.message().find("s3:GetObject"), std::string::npos);

  S3Config anonymous = testing::local_config();
  anonymous.credentials.reset();
  status = failure_for(Reply::s3_error(403, "AccessDenied"), {"kennel-data", "k"}, anonymous);
  EXPECT_NE(status.message().find("--no-sign-request"), std::string::npos);

  Reply redirect = Reply::s3_error(301, "PermanentRedirect");
  redirect.headers["x-amz-bucket-region"] = "eu-west-1";
  status = failure_for(redirect);
  EXPECT_EQ(status.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("bucket 'kennel-data' is in region eu-west-1, not us-east-1"),
            std::string::npos);
  EXPECT_NE(status.message().find("AWS_REGION=eu-west-1"), std::string::npos);

  status = failure_for(Reply::s3_error(403, "RequestTimeTooSkewed"));
  EXPECT_NE(status.message().find("clock"), std::string::npos);

  status = failure_for(Reply::s3_error(412, "PreconditionFailed"));
  EXPECT_EQ(status.code(), ErrorCode::kFailedPrecondition);

  status = failure_for(Reply::error(60));
  EXPECT_EQ(status.code(), ErrorCode::kUpstreamFailed);
  EXPECT_NE(status.message().find("--ca-bundle"), std::string::npos);

  status = failure_for(Reply::error(28));
  EXPECT_EQ(status.code(), ErrorCode::kDeadlineExceeded);
  EXPECT_NE(status.message().find("after 5 attempts"), std::string::npos);
}

TEST(ClientTest, HeadErrorsWithoutABodyStillExplainThemselves) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest& request, size_t) {
    Reply reply;
    reply.status = request.url.find("missing") != std::string::npos ? 404 : 403;
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  const Status missing = client->head_object({"kennel-data", "missing"}).status();
  EXPECT_EQ(missing.code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.message().find("HTTP 404 to HEAD"), std::string::npos);
  const Status denied = client->head_object({"kennel-data", "private"}).status();
  EXPECT_EQ(denied.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(denied.message().find("s3:ListBucket"), std::string::npos);
}

TEST(ClientTest, GetRefusesBodiesLargerThanTheLimit) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) {
    Reply reply;
    reply.headers["content-length"] = "1000";
    reply.body = std::string(1000, 'x');
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  GetOptions options;
  options.max_bytes = 100;
  const Status status = client->get_object({"kennel-data", "big"}, options).status();
  EXPECT_EQ(status.code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(transport->sent().size(), 1u);  // not retried
}

// Three pages of two keys; the continuation tokens hold '+', '/' and '='.
Reply list_page(const SentRequest& request) {
  const bool first = request.url.find("continuation-token") == std::string::npos;
  const bool second = request.url.find("continuation-token=tok%2B1%2F%3D") != std::string::npos;
  std::string body = "<ListBucketResult><EncodingType>url</EncodingType>";
  if (first) {
    body +=
        "<IsTruncated>true</IsTruncated><NextContinuationToken>tok+1/=</NextContinuationToken>"
        "<Contents><Key>p%2Fa</Key><Size>1</Size></Contents>"
        "<Contents><Key>p%2Fb</Key><Size>2</Size></Contents>";
  } else if (second) {
    body +=
        "<IsTruncated>true</IsTruncated><NextContinuationToken>tok+2/=</NextContinuationToken>"
        "<Contents><Key>p%2Fc+d</Key><Size>3</Size></Contents>"
        "<Contents><Key>p%2Fe</Key><Size>4</Size></Contents>";
  } else {
    body += "<IsTruncated>false</IsTruncated><Contents><Key>p%2Ff</Key><Size>5</Size></Contents>";
  }
  Reply reply;
  reply.body = body + "</ListBucketResult>";
  return reply;
}

TEST(ClientTest, ListFollowsContinuationTokensAcrossPages) {
  auto transport = std::make_shared<ScriptedTransport>(
      [](const SentRequest& request, size_t) { return list_page(request); });
  auto client = testing::scripted_client(transport, nullptr);
  ListRequest request;
  request.bucket = "kennel-data";
  request.prefix = "p/";
  request.max_keys = 2;
  const ListPage all = client->list_objects(request).value();
  ASSERT_EQ(all.objects.size(), 5u);
  EXPECT_EQ(all.objects[2].key, "p/c d");
  EXPECT_EQ(all.objects[4].size, 5u);
  EXPECT_FALSE(all.is_truncated);
  const auto sent = transport->sent();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(
      sent[0].url,
      "http://127.0.0.1:9000/kennel-data?encoding-type=url&list-type=2&max-keys=2&prefix=p%2F");
  EXPECT_NE(sent[2].url.find("continuation-token=tok%2B2%2F%3D"), std::string::npos);

  int pages = 0;
  const Status stopped = client->for_each_list_page(request, [&](const ListPage&) {
    return ++pages == 2 ? Status(ErrorCode::kCancelled, "enough") : Status();
  });
  EXPECT_EQ(stopped.code(), ErrorCode::kCancelled);
  EXPECT_EQ(pages, 2);
}

TEST(ClientTest, ListStopsWhenTheServerRepeatsItsToken) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) {
    Reply reply;
    reply.body =
        "<ListBucketResult><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>same</NextContinuationToken></ListBucketResult>";
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  ListRequest request;
  request.bucket = "kennel-data";
  EXPECT_EQ(client->list_objects(request).status().code(), ErrorCode::kUpstreamFailed);
  EXPECT_EQ(transport->sent().size(), 2u);
  request.max_keys = 0;
  EXPECT_EQ(client->list_objects(request).status().code(), ErrorCode::kInvalidArgument);
}

TEST(ClientTest, PutSendsMetadataAndSignsThePayload) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) {
    Reply reply;
    reply.headers["etag"] = "\"e\"";
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  PutOptions options;
  options.content_type = "application/json";
  options.metadata["sha256"] = "abc";
  EXPECT_EQ(client->put_object({"kennel-data", "m.json"}, "{}", options).value().etag, "\"e\"");
  const SentRequest sent = transport->sent().at(0);
  EXPECT_EQ(sent.method, "PUT");
  EXPECT_EQ(sent.body, "{}");
  EXPECT_EQ(sent.headers.at("x-amz-meta-sha256"), "abc");
  EXPECT_EQ(sent.headers.at("Content-Type"), "application/json");
  EXPECT_EQ(sent.headers.at("x-amz-content-sha256"),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  options.metadata["Bad Name"] = "x";
  EXPECT_EQ(client->put_object({"kennel-data", "m.json"}, "{}", options).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(client->put_object({"kennel-data", ""}, "{}").status().code(),
            ErrorCode::kInvalidArgument);
}

TEST(ClientTest, DeleteAcceptsNoContent) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest&, size_t) {
    Reply reply;
    reply.status = 204;
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  EXPECT_TRUE(client->delete_object({"kennel-data", "k"}).ok());
  EXPECT_EQ(transport->sent().at(0).method, "DELETE");
}

TEST(ClientTest, ConcurrentCallsShareOneClient) {
  auto transport = std::make_shared<ScriptedTransport>([](const SentRequest& request, size_t) {
    Reply reply;
    reply.body = request.url.substr(request.url.rfind('/') + 1);
    return reply;
  });
  auto client = testing::scripted_client(transport, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string key = "k" + std::to_string(t * 100 + i);
        auto result = client->get_object({"kennel-data", key});
        if (!result.ok() || result->body != key) ++wrong;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(transport->sent().size(), 400u);
}

}  // namespace
}  // namespace kennel::s3
