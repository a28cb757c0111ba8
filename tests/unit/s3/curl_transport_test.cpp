// The libcurl transport against a real HTTP server on loopback (cpp-httplib):
// methods, bodies from memory and files, headers both ways, error bodies,
// connection failures, and concurrent use.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "kennel/s3/transport.h"

namespace kennel::s3 {
namespace {

struct Seen {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class LoopbackServer {
 public:
  LoopbackServer() {
    const auto record = [this](const httplib::Request& request) {
      Seen seen{request.method, request.target, {}, request.body};
      for (const auto& [name, value] : request.headers) {
        std::string lowered = name;
        for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        seen.headers[lowered] = value;
      }
      std::lock_guard lock(mutex_);
      seen_.push_back(std::move(seen));
    };
    server_.Get("/obj", [record](const httplib::Request& request, httplib::Response& response) {
      record(request);
      response.set_header("ETag", "\"abc\"");
      response.set_header("X-Amz-Meta-Sha256", "00ff");
      response.set_content("hello", "text/plain");
    });
    server_.Get("/big-error", [](const httplib::Request&, httplib::Response& response) {
      response.status = 500;
      response.set_content(std::string(100 << 10, 'e'), "application/xml");
    });
    server_.Get("/cut", [](const httplib::Request&, httplib::Response& response) {
      response.set_content_provider(1000, "application/octet-stream",
                                    [](size_t offset, size_t, httplib::DataSink& sink) {
                                      if (offset > 0) return false;  // drop the connection
                                      sink.write(std::string(400, 'c').data(), 400);
                                      return true;
                                    });
    });
    server_.Get(R"(/dots/.*)",
                [record](const httplib::Request& request, httplib::Response& response) {
                  record(request);
                  response.set_content(request.target, "text/plain");
                });
    server_.Put("/upload", [record](const httplib::Request& request, httplib::Response& response) {
      record(request);
      response.set_header("ETag", "\"put\"");
    });
    server_.Post("/post", [record](const httplib::Request& request, httplib::Response& response) {
      record(request);
      response.set_content("<Done/>", "application/xml");
    });
    server_.Delete("/obj", [record](const httplib::Request& request, httplib::Response& response) {
      record(request);
      response.status = 204;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (port_ > 0 && !server_.is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~LoopbackServer() {
    server_.stop();
    thread_.join();
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
};

class CollectingSink final : public BodySink {
 public:
  bool on_headers(const HttpResponse& response) override {
    ++headers_calls;
    status = response.status;
    return true;
  }
  bool on_data(std::string_view chunk) override {
    body.append(chunk);
    return refuse_after == 0 || body.size() < refuse_after;
  }
  int headers_calls = 0;
  long status = 0;
  std::string body;
  size_t refuse_after = 0;
};

class CurlTransportTest : public ::testing::Test {
 protected:
  CurlTransportTest() {
    TransportOptions options;
    options.connect_timeout_seconds = 5;
    options.total_timeout_seconds = 20;
    transport_ = make_curl_transport(options).value();
  }
  HttpRequest request(const std::string& method, const std::string& path) const {
    HttpRequest request;
    request.method = method;
    request.url = server_.url(path);
    return request;
  }

  LoopbackServer server_;
  std::unique_ptr<HttpTransport> transport_;
};

TEST_F(CurlTransportTest, GetKeepsTheBodyAndLowerCasesHeaders) {
  HttpRequest get = request("GET", "/obj");
  get.headers.push_back({"x-amz-date", "20130524T000000Z"});
  const HttpExchange exchange = transport_->perform(get, nullptr);
  ASSERT_TRUE(exchange.completed()) << exchange.transport_message;
  EXPECT_EQ(exchange.response.status, 200);
  EXPECT_EQ(exchange.response.body, "hello");
  EXPECT_EQ(exchange.response.header("etag"), "\"abc\"");
  EXPECT_EQ(exchange.response.header("x-amz-meta-sha256"), "00ff");
  const Seen seen = server_.seen().at(0);
  EXPECT_EQ(seen.headers.at("x-amz-date"), "20130524T000000Z");
  EXPECT_EQ(seen.headers.count("accept"), 0u);  // nothing unsigned that S3 might look at
}

TEST_F(CurlTransportTest, ASinkGetsTheHeadersOnceThenTheBody) {
  CollectingSink sink;
  const HttpExchange exchange = transport_->perform(request("GET", "/obj"), &sink);
  ASSERT_TRUE(exchange.completed());
  EXPECT_EQ(sink.headers_calls, 1);
  EXPECT_EQ(sink.status, 200);
  EXPECT_EQ(sink.body, "hello");
  EXPECT_EQ(exchange.response.body, "");
}

TEST_F(CurlTransportTest, HeadReturnsHeadersWithoutABody) {
  const HttpExchange exchange = transport_->perform(request("HEAD", "/obj"), nullptr);
  ASSERT_TRUE(exchange.completed());
  EXPECT_EQ(exchange.response.status, 200);
  EXPECT_EQ(exchange.response.header("content-length"), "5");
  EXPECT_EQ(exchange.response.body, "");
}

TEST_F(CurlTransportTest, PutStreamsAFileRangeWithTheCallersHostHeader) {
  char path[] = "/tmp/kennel-curl-transport-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string content = "0123456789abcdefghij";
  ASSERT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  HttpRequest put = request("PUT", "/upload");
  put.headers.push_back({"Host", "kennel-data.127.0.0.1"});
  put.body.fd = fd;
  put.body.offset = 5;
  put.body.length = 10;
  const HttpExchange exchange = transport_->perform(put, nullptr);
  close(fd);
  unlink(path);
  ASSERT_TRUE(exchange.completed()) << exchange.transport_message;
  EXPECT_EQ(exchange.response.header("etag"), "\"put\"");
  const Seen seen = server_.seen().at(0);
  EXPECT_EQ(seen.body, "56789abcde");
  EXPECT_EQ(seen.headers.at("host"), "kennel-data.127.0.0.1");
  EXPECT_EQ(seen.headers.at("content-length"), "10");
  EXPECT_EQ(seen.headers.count("expect"), 0u);
}

TEST_F(CurlTransportTest, PostAndDeleteSendTheirMethodAndLength) {
  HttpRequest post = request("POST", "/post");
  const HttpExchange posted = transport_->perform(post, nullptr);
  ASSERT_TRUE(posted.completed());
  EXPECT_EQ(posted.response.body, "<Done/>");
  const std::string xml = "<CompleteMultipartUpload/>";
  post.body.bytes = xml;
  ASSERT_TRUE(transport_->perform(post, nullptr).completed());
  const HttpExchange deleted = transport_->perform(request("DELETE", "/obj"), nullptr);
  EXPECT_EQ(deleted.response.status, 204);
  const auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].headers.at("content-length"), "0");
  EXPECT_EQ(seen[1].body, xml);
  EXPECT_EQ(seen[2].method, "DELETE");
}

TEST_F(CurlTransportTest, ErrorBodiesBypassTheSinkAndAreCapped) {
  CollectingSink sink;
  const HttpExchange exchange = transport_->perform(request("GET", "/big-error"), &sink);
  ASSERT_TRUE(exchange.completed());
  EXPECT_EQ(exchange.response.status, 500);
  EXPECT_EQ(exchange.response.body.size(), 64u << 10);
  EXPECT_EQ(sink.headers_calls, 0);
}

TEST_F(CurlTransportTest, ADroppedConnectionIsAPartialTransfer) {
  CollectingSink sink;
  const HttpExchange exchange = transport_->perform(request("GET", "/cut"), &sink);
  EXPECT_EQ(exchange.transport_error, 18);  // CURLE_PARTIAL_FILE
  EXPECT_EQ(sink.body.size(), 400u);
}

TEST_F(CurlTransportTest, ARefusingSinkStopsTheTransfer) {
  CollectingSink sink;
  sink.refuse_after = 1;
  const HttpExchange exchange = transport_->perform(request("GET", "/obj"), &sink);
  EXPECT_TRUE(exchange.sink_refused);
  EXPECT_FALSE(exchange.completed());
}

TEST_F(CurlTransportTest, DotSegmentsOfKeysAreSentAsIs) {
  const HttpExchange exchange = transport_->perform(request("GET", "/dots/a/./b/../c"), nullptr);
  ASSERT_TRUE(exchange.completed());
  EXPECT_EQ(exchange.response.body, "/dots/a/./b/../c");
}

TEST_F(CurlTransportTest, ARefusedConnectionIsError7) {
  // A port that was just free: bind a socket without listening, note the port, close it.
  const int probe = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(probe, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int port = ntohs(address.sin_port);
  close(probe);
  HttpRequest get;
  get.method = "GET";
  get.url = "http://127.0.0.1:" + std::to_string(port) + "/x";
  const HttpExchange exchange = transport_->perform(get, nullptr);
  EXPECT_EQ(exchange.transport_error, 7);  // CURLE_COULDNT_CONNECT
  EXPECT_EQ(exchange.response.status, 0);
}

TEST_F(CurlTransportTest, ManyThreadsShareOneTransport) {
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 15; ++i) {
        const HttpExchange exchange = transport_->perform(request("GET", "/obj"), nullptr);
        if (!exchange.completed() || exchange.response.body != "hello") ++wrong;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace kennel::s3
