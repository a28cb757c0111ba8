#include "kennel/serve/url_fetcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "unit/httplib_for_tests.h"

#include "unit/test_util.h"

namespace kennel::serve {
namespace {

using kennel::testing::TempDir;

// Bytes with NULs and high bytes, as an image body has.
const std::string kImage =
    std::string("\xFF\xD8\xFF\xE0\0\x10JFIF\0", 11) + std::string(3000, '\x7F');

// ---- a local HTTP server -------------------------------------------------------

struct SeenRequest {
  std::string path;
  std::string target;
  std::multimap<std::string, std::string> headers;  // lower-case names
};

class TestServer {
 public:
  explicit TestServer(const std::string& host = "127.0.0.1") {
    server_.set_keep_alive_timeout(1);
    server_.Get("/image.jpg", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kImage, "image/jpeg");
    });
    server_.Get("/status/(\\d+)", [](const httplib::Request& req, httplib::Response& res) {
      res.status = std::stoi(req.matches[1]);
      res.set_content("no", "text/plain");
    });
    // /redirect/N answers N redirects before the image.
    server_.Get("/redirect/(\\d+)", [](const httplib::Request& req, httplib::Response& res) {
      const int left = std::stoi(req.matches[1]);
      if (left == 0) {
        res.set_content(kImage, "image/jpeg");
      } else {
        res.set_redirect("/redirect/" + std::to_string(left - 1));
      }
    });
    server_.Get("/redirect-to", [](const httplib::Request& req, httplib::Response& res) {
      res.set_redirect(req.get_param_value("url"));
    });
    server_.Get("/huge", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(1 << 20, 'x'), "application/octet-stream");
    });
    // No Content-Length: only the running byte count can stop it.
    server_.Get("/huge-chunked", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/octet-stream",
                                       [sent = 0](size_t, httplib::DataSink& sink) mutable {
                                         if (sent++ == 64) {
                                           sink.done();
                                         } else {
                                           const std::string chunk(16 << 10, 'x');
                                           sink.write(chunk.data(), chunk.size());
                                         }
                                         return true;
                                       });
    });
    server_.Get("/slow", [this](const httplib::Request&, httplib::Response& res) {
      for (int i = 0; i < 20 && !stopping_; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      res.set_content(kImage, "image/jpeg");
    });
    server_.Get("/bucket/.*", [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        SeenRequest seen{req.path, req.target, {}};
        for (const auto& [name, value] : req.headers) {
          std::string lowered = name;
          for (char& c : lowered)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          seen.headers.emplace(lowered, value);
        }
        s3_requests_.push_back(std::move(seen));
      }
      if (req.path == "/bucket/missing.jpg") {
        res.status = 404;
        res.set_content(
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key "
            "does not exist.</Message></Error>",
            "application/xml");
        return;
      }
      res.set_content("s3-object", "image/jpeg");
    });
    port_ = server_.bind_to_any_port(host);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the accept loop has started would be a no-op, and join() would hang.
    while (port_ > 0 && !server_.is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~TestServer() {
    stopping_ = true;
    server_.stop();
    thread_.join();
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<SeenRequest> s3_requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return s3_requests_;
  }

 private:
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::vector<SeenRequest> s3_requests_;
};

// Sets environment variables for one test and puts the old values back.
class ScopedEnv {
 public:
  void set(const std::string& name, const std::optional<std::string>& value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    apply(name, value);
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) apply(name, value);
  }

 private:
  static void apply(const std::string& name, const std::optional<std::string>& value) {
    if (value) {
      ::setenv(name.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

std::unique_ptr<UrlFetcher> make_fetcher(const FetchOptions& options) {
  auto fetcher = make_url_fetcher(options);
  EXPECT_TRUE(fetcher.ok()) << fetcher.status().to_string();
  return std::move(fetcher).value();
}

// Every test server listens on 127.0.0.1, which the default policy refuses
// (loopback is not public); tests that fetch from one open exactly that address.
FetchOptions quick_options() {
  FetchOptions options;
  options.connect_timeout_seconds = 1;
  options.total_timeout_seconds = 3;
  options.allowed_networks = {"127.0.0.1/32"};
  return options;
}

std::string file_url(const std::filesystem::path& path) {
  return "file://" + path.string();
}

// ---- options -------------------------------------------------------------------

TEST(FetchOptions, ValidateNamesTheField) {
  EXPECT_TRUE(FetchOptions().validate().ok());
  struct Case {
    void (*change)(FetchOptions&);
    const char* field;
  };
  const Case cases[] = {
      {[](FetchOptions& o) { o.connect_timeout_seconds = 0; }, "connect_timeout_seconds"},
      {[](FetchOptions& o) { o.total_timeout_seconds = -1; }, "total_timeout_seconds"},
      {[](FetchOptions& o) { o.total_timeout_seconds = std::nan(""); }, "total_timeout_seconds"},
      {[](FetchOptions& o) { o.max_redirects = -1; }, "max_redirects"},
      {[](FetchOptions& o) { o.max_bytes = 0; }, "max_bytes"},
      {[](FetchOptions& o) { o.denied_networks = {"10.0.0.0/8", "10.0.0.0/40"}; },
       "denied_networks[1]"},
      {[](FetchOptions& o) { o.allowed_networks = {"localhost"}; }, "allowed_networks[0]"},
      {[](FetchOptions& o) { o.pinned_hosts = {"example.com:80"}; }, "pinned_hosts[0]"},
      {[](FetchOptions& o) { o.ca_bundle = "/no/such/ca.pem"; }, "ca_bundle"},
      {[](FetchOptions& o) { o.s3_endpoint = "minio:9000"; }, "s3_endpoint"},
      {[](FetchOptions& o) { o.s3_region = "eu-west-1.evil.com/"; }, "s3_region"},
  };
  for (const Case& c : cases) {
    FetchOptions options;
    c.change(options);
    const Status status = options.validate();
    ASSERT_FALSE(status.ok()) << c.field;
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << c.field;
    EXPECT_NE(status.message().find(c.field), std::string::npos) << status.message();
    auto fetcher = make_url_fetcher(options);
    ASSERT_FALSE(fetcher.ok());
    EXPECT_EQ(fetcher.status().code(), ErrorCode::kInvalidArgument);
  }
  FetchOptions no_redirects;
  no_redirects.max_redirects = 0;
  EXPECT_TRUE(no_redirects.validate().ok());
}

TEST(UrlFetcher, RefusesWhatIsNotAFetchableUrl) {
  auto fetcher = make_fetcher(FetchOptions());
  for (const char* url : {"cat.jpg", "ftp://127.0.0.1/cat.jpg", "gopher://x/", "http://",
                          "s3://bucket", "s3://bucket/", "s3:///key", "s3://bad!bucket/k"}) {
    auto result = fetcher->fetch(url);
    ASSERT_FALSE(result.ok()) << url;
    EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument)
        << url << ": " << result.status().to_string();
  }
}

// ---- http ----------------------------------------------------------------------

class UrlFetcherHttp : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()); }
  TestServer server_;
};

TEST_F(UrlFetcherHttp, FetchesTheBody) {
  auto body = make_fetcher(quick_options())->fetch(server_.url("/image.jpg"));
  ASSERT_TRUE(body.ok()) << body.status().to_string();
  EXPECT_EQ(*body, kImage);
}

TEST_F(UrlFetcherHttp, MapsHttpErrors) {
  auto fetcher = make_fetcher(quick_options());
  auto missing = fetcher->fetch(server_.url("/status/404"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.status().message().find("404"), std::string::npos);
  EXPECT_NE(missing.status().message().find("/status/404"), std::string::npos);

  for (const char* status : {"403", "500", "503"}) {
    auto failed = fetcher->fetch(server_.url(std::string("/status/") + status));
    ASSERT_FALSE(failed.ok()) << status;
    EXPECT_EQ(failed.status().code(), ErrorCode::kUpstreamFailed) << status;
    EXPECT_NE(failed.status().message().find(status), std::string::npos)
        << failed.status().message();
  }
}

TEST_F(UrlFetcherHttp, FollowsRedirectsUpToTheLimit) {
  FetchOptions options = quick_options();
  options.max_redirects = 1;
  auto fetcher = make_fetcher(options);
  auto one_hop = fetcher->fetch(server_.url("/redirect/1"));
  ASSERT_TRUE(one_hop.ok()) << one_hop.status().to_string();
  EXPECT_EQ(*one_hop, kImage);

  auto too_many = fetcher->fetch(server_.url("/redirect/3"));
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().code(), ErrorCode::kUpstreamFailed);
  EXPECT_NE(too_many.status().message().find("max_redirects=1"), std::string::npos)
      << too_many.status().message();
}

TEST_F(UrlFetcherHttp, RefusesRedirectsToOtherSchemes) {
  auto fetcher = make_fetcher(quick_options());
  for (const char* target : {"file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/"}) {
    auto result = fetcher->fetch(server_.url(std::string("/redirect-to?url=") + target));
    ASSERT_FALSE(result.ok()) << target;
    EXPECT_EQ(result.status().code(), ErrorCode::kUpstreamFailed)
        << target << ": " << result.status().to_string();
  }
}

TEST_F(UrlFetcherHttp, RefusesBodiesOverMaxBytes) {
  FetchOptions options = quick_options();
  options.max_bytes = 64 << 10;
  auto fetcher = make_fetcher(options);
  for (const char* path : {"/huge", "/huge-chunked"}) {
    auto result = fetcher->fetch(server_.url(path));
    ASSERT_FALSE(result.ok()) << path;
    EXPECT_EQ(result.status().code(), ErrorCode::kResourceExhausted)
        << path << ": " << result.status().to_string();
    EXPECT_NE(result.status().message().find("65536"), std::string::npos);
  }
  options.max_bytes = static_cast<int64_t>(kImage.size());  // exactly at the limit is fine
  auto exact = make_fetcher(options)->fetch(server_.url("/image.jpg"));
  ASSERT_TRUE(exact.ok()) << exact.status().to_string();
}

TEST_F(UrlFetcherHttp, TotalTimeoutIsDeadlineExceeded) {
  FetchOptions options = quick_options();
  options.total_timeout_seconds = 0.3;
  const auto start = std::chrono::steady_clock::now();
  auto result = make_fetcher(options)->fetch(server_.url("/slow"));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kDeadlineExceeded) << result.status().to_string();
  EXPECT_LT(elapsed, std::chrono::milliseconds(900));
}

TEST_F(UrlFetcherHttp, ConnectionRefusedIsUpstreamFailed) {
  // A port that was just free: bind, read the port, close.
  const int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(probe);
  auto result = make_fetcher(quick_options())
                    ->fetch("http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/x");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kUpstreamFailed) << result.status().to_string();
}

TEST_F(UrlFetcherHttp, RefusesRedirectToMetadataAddress) {
  auto result =
      make_fetcher(quick_options())
          ->fetch(server_.url("/redirect-to?url=http://169.254.169.254/latest/meta-data/"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kPermissionDenied) << result.status().to_string();
  const std::string& message = result.status().message();
  EXPECT_NE(message.find("169.254.169.254"), std::string::npos) << message;
  EXPECT_NE(message.find("cloud metadata"), std::string::npos) << message;
  EXPECT_NE(message.find("--allow-network 169.254.169.254/32"), std::string::npos) << message;
  EXPECT_NE(message.find("redirected to http://169.254.169.254/latest/meta-data/"),
            std::string::npos)
      << message;

  // Other spellings of the same address, asked for directly.
  for (const char* url : {"http://[::ffff:169.254.169.254]/", "http://0xa9fea9fe/"}) {
    auto direct = make_fetcher(quick_options())->fetch(url);
    ASSERT_FALSE(direct.ok()) << url;
    EXPECT_EQ(direct.status().code(), ErrorCode::kPermissionDenied)
        << url << ": " << direct.status().to_string();
    EXPECT_EQ(direct.status().message().find("redirected"), std::string::npos)
        << direct.status().message();
  }
}

TEST_F(UrlFetcherHttp, DeniedAddressIsNeverConnectedTo) {
  // A listener on 127.0.0.2 that nobody may reach: any connect would be
  // queued in its backlog, whether or not anyone accepts it.
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.2", &address.sin_addr);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(listener);
    GTEST_SKIP() << "cannot bind 127.0.0.2 here";
  }
  ASSERT_EQ(::listen(listener, 8), 0);
  socklen_t length = sizeof(address);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  const std::string target = "http://127.0.0.2:" + std::to_string(ntohs(address.sin_port)) + "/";

  FetchOptions options = quick_options();
  options.denied_networks = {"127.0.0.2/32"};
  auto fetcher = make_fetcher(options);
  auto direct = fetcher->fetch(target);
  auto redirected = fetcher->fetch(server_.url("/redirect-to?url=" + target));
  for (const auto* result : {&direct, &redirected}) {
    ASSERT_FALSE(result->ok());
    EXPECT_EQ(result->status().code(), ErrorCode::kPermissionDenied)
        << result->status().to_string();
    EXPECT_NE(result->status().message().find("127.0.0.2"), std::string::npos);
  }
  EXPECT_LT(::accept(listener, nullptr, nullptr), 0) << "something connected to 127.0.0.2";
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
  ::close(listener);
}

TEST_F(UrlFetcherHttp, DenyListAndAllowList) {
  FetchOptions options = quick_options();
  options.allowed_networks.clear();
  options.denied_networks = {"127.0.0.0/8"};
  auto denied = make_fetcher(options)->fetch(server_.url("/image.jpg"));
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), ErrorCode::kPermissionDenied) << denied.status().to_string();
  EXPECT_NE(denied.status().message().find("127.0.0.1"), std::string::npos);

  // The IPv4-mapped spelling of the same address reaches the same host.
  auto mapped = make_fetcher(options)->fetch(
      "http://[::ffff:127.0.0.1]:" + std::to_string(server_.port()) + "/image.jpg");
  ASSERT_FALSE(mapped.ok());
  EXPECT_EQ(mapped.status().code(), ErrorCode::kPermissionDenied) << mapped.status().to_string();

  options.allowed_networks = {"127.0.0.1/32"};
  auto allowed = make_fetcher(options)->fetch(server_.url("/image.jpg"));
  ASSERT_TRUE(allowed.ok()) << allowed.status().to_string();
  EXPECT_EQ(*allowed, kImage);
}

TEST_F(UrlFetcherHttp, MessagesDoNotEchoCredentials) {
  auto fetcher = make_fetcher(quick_options());
  const std::string url = "http://alice:hunter2@127.0.0.1:" + std::to_string(server_.port()) +
                          "/status/404?X-Amz-Signature=deadbeef&size=big";
  auto result = fetcher->fetch(url);
  ASSERT_FALSE(result.ok());
  const std::string& message = result.status().message();
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
  EXPECT_EQ(message.find("alice"), std::string::npos) << message;
  EXPECT_EQ(message.find("deadbeef"), std::string::npos) << message;
  EXPECT_NE(message.find("127.0.0.1"), std::string::npos) << message;
  EXPECT_NE(message.find("size=big"), std::string::npos) << message;
}

// ---- the default policy: only public addresses -----------------------------------

// A listening socket nobody may reach. The kernel completes a TCP connection
// into the backlog whether or not anyone accepts it, so an empty backlog at
// the end proves that no connection (no packet of one) arrived.
class QuietListener {
 public:
  // `address`: "127.0.0.1" or "::1"; port 0 = any free one.
  QuietListener(const std::string& address, int port) {
    const bool v6 = address.find(':') != std::string::npos;
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (v6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(static_cast<uint16_t>(port));
      ::inet_pton(AF_INET6, address.c_str(), &in6->sin6_addr);
      length = sizeof(sockaddr_in6);
    } else {
      auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
      in4->sin_family = AF_INET;
      in4->sin_port = htons(static_cast<uint16_t>(port));
      ::inet_pton(AF_INET, address.c_str(), &in4->sin_addr);
      length = sizeof(sockaddr_in);
    }
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&storage), length) != 0 ||
        ::listen(fd_, 16) != 0) {
      close();
      return;
    }
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&storage), &length);
    port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                     : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  }
  ~QuietListener() { close(); }
  QuietListener(const QuietListener&) = delete;
  QuietListener& operator=(const QuietListener&) = delete;

  bool ok() const { return fd_ >= 0; }
  int port() const { return port_; }
  // Accepts what is waiting; true when anything had connected.
  bool saw_connection() {
    bool seen = false;
    for (int client; (client = ::accept(fd_, nullptr, nullptr)) >= 0;) {
      ::close(client);
      seen = true;
    }
    return seen;
  }

 private:
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  int port_ = 0;
};

void expect_refused(const Result<std::string>& result, const std::string& url,
                    const std::string& address) {
  ASSERT_FALSE(result.ok()) << url << " was fetched";
  EXPECT_EQ(result.status().code(), ErrorCode::kPermissionDenied)
      << url << ": " << result.status().to_string();
  const std::string& message = result.status().message();
  EXPECT_NE(message.find("denied"), std::string::npos) << message;
  EXPECT_NE(message.find(address), std::string::npos) << url << ": " << message;
  EXPECT_NE(message.find("--allow-network"), std::string::npos) << message;
}

TEST(UrlFetcherPolicy, LoopbackInEverySpellingIsRefusedWithoutAConnection) {
  QuietListener v4("127.0.0.1", 0);
  ASSERT_TRUE(v4.ok());
  const std::string port = std::to_string(v4.port());
  QuietListener v6("::1", v4.port());  // `localhost` may try ::1 too: watch it on the same port
  FetchOptions options;  // the defaults: nothing opened
  options.connect_timeout_seconds = 1;
  options.total_timeout_seconds = 2;
  auto fetcher = make_fetcher(options);
  const std::pair<std::string, std::string> cases[] = {
      {"http://127.0.0.1:" + port + "/x.jpg", "127.0.0.1"},
      {"http://localhost:" + port + "/x.jpg", ""},  // 127.0.0.1 or ::1, whichever comes first
      {"http://LocalHost:" + port + "/x.jpg", ""},
      {"http://127.1:" + port + "/x.jpg", "127.0.0.1"},
      {"http://2130706433:" + port + "/x.jpg", "127.0.0.1"},
      {"http://0x7f000001:" + port + "/x.jpg", "127.0.0.1"},
      {"http://0177.0.0.1:" + port + "/x.jpg", "127.0.0.1"},
      {"http://[::ffff:127.0.0.1]:" + port + "/x.jpg", "::ffff:127.0.0.1"},
      {"http://[::ffff:7f00:1]:" + port + "/x.jpg", "::ffff:127.0.0.1"},
      {"http://0.0.0.0:" + port + "/x.jpg", "0.0.0.0"},
      {"http://0:" + port + "/x.jpg", "0.0.0.0"},
      {"http://[::1]:" + port + "/x.jpg", "::1"},
      {"http://[::]:" + port + "/x.jpg", "::"},
      {"https://127.0.0.1:" + port + "/x.jpg", "127.0.0.1"},
  };
  for (const auto& [url, address] : cases) {
    auto result = fetcher->fetch(url);
    expect_refused(result, url, address);
  }
  EXPECT_FALSE(v4.saw_connection()) << "something connected to 127.0.0.1:" << port;
  if (v6.ok()) {
    EXPECT_FALSE(v6.saw_connection()) << "something connected to [::1]:" << port;
  }
}

TEST(UrlFetcherPolicy, PrivateAndMetadataAddressesAreRefusedBeforeConnecting) {
  FetchOptions options;
  options.connect_timeout_seconds = 1;
  options.total_timeout_seconds = 2;
  auto fetcher = make_fetcher(options);
  // Nothing listens there, and nothing is sent: a connect attempt would time
  // out or be refused (kUpstreamFailed / kDeadlineExceeded), not be denied.
  for (const char* url : {"http://10.0.0.1/x", "http://192.168.0.1/x", "http://172.16.0.1/x",
                          "http://100.64.0.1/x", "http://169.254.169.254/latest/meta-data/",
                          "http://100.100.100.200/latest/meta-data/", "http://192.0.0.192/",
                          "http://[fd00:ec2::254]/", "http://[fe80::1]/", "http://[fc00::1]/",
                          "http://224.0.0.1/", "http://255.255.255.255/", "http://198.18.0.1/",
                          "http://192.0.2.1/", "http://[64:ff9b::a9fe:a9fe]/",
                          "http://[2002:a9fe:a9fe::1]/", "http://[2001::1]/"}) {
    const auto started = std::chrono::steady_clock::now();
    auto result = fetcher->fetch(url);
    ASSERT_FALSE(result.ok()) << url;
    EXPECT_EQ(result.status().code(), ErrorCode::kPermissionDenied)
        << url << ": " << result.status().to_string();
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(500)) << url;
  }
}

TEST_F(UrlFetcherHttp, RedirectFromAnAllowedHostToADeniedOneIsRefusedAtTheHop) {
  QuietListener loopback2("127.0.0.2", 0);
  if (!loopback2.ok()) GTEST_SKIP() << "cannot bind 127.0.0.2 here";
  QuietListener v6("::1", 0);
  std::vector<std::pair<std::string, std::string>> targets = {
      {"http://127.0.0.2:" + std::to_string(loopback2.port()) + "/x.jpg", "127.0.0.2"},
      {"http://2130706434:" + std::to_string(loopback2.port()) + "/x.jpg", "127.0.0.2"},
  };
  if (v6.ok()) targets.push_back({"http://[::1]:" + std::to_string(v6.port()) + "/x.jpg", "::1"});
  auto fetcher = make_fetcher(quick_options());  // opens 127.0.0.1/32 only
  auto allowed = fetcher->fetch(server_.url("/image.jpg"));
  ASSERT_TRUE(allowed.ok()) << allowed.status().to_string();
  for (const auto& [target, address] : targets) {
    auto result = fetcher->fetch(server_.url("/redirect-to?url=" + target));
    expect_refused(result, target, address);
    EXPECT_NE(result.status().message().find("redirected to"), std::string::npos)
        << result.status().message();
  }
  EXPECT_FALSE(loopback2.saw_connection()) << "something connected to 127.0.0.2";
  if (v6.ok()) {
    EXPECT_FALSE(v6.saw_connection()) << "something connected to [::1]";
  }
}

TEST_F(UrlFetcherHttp, ANameResolvingToADeniedAddressIsRefused) {
  // CURLOPT_RESOLVE plays DNS: the name answers with whatever address an
  // attacker's DNS server would, and only the address is judged.
  QuietListener denied("127.0.0.2", 0);
  if (!denied.ok()) GTEST_SKIP() << "cannot bind 127.0.0.2 here";
  const std::string denied_port = std::to_string(denied.port());
  const std::string server_port = std::to_string(server_.port());
  FetchOptions options = quick_options();
  options.pinned_hosts = {"images.example.com:" + server_port + ":127.0.0.1",
                          "rebound.example.com:" + denied_port + ":127.0.0.2",
                          "rebound.example.com:" + server_port + ":127.0.0.2"};
  auto fetcher = make_fetcher(options);
  // The pin works: a pinned name reaching the allowed address is fetched.
  auto through_pin = fetcher->fetch("http://images.example.com:" + server_port + "/image.jpg");
  ASSERT_TRUE(through_pin.ok()) << through_pin.status().to_string();
  EXPECT_EQ(*through_pin, kImage);
  // Directly, and after a redirect from the allowed host.
  const std::string rebound = "http://rebound.example.com:" + denied_port + "/x.jpg";
  expect_refused(fetcher->fetch(rebound), rebound, "127.0.0.2");
  expect_refused(fetcher->fetch(server_.url("/redirect-to?url=" + rebound)), rebound, "127.0.0.2");
  EXPECT_FALSE(denied.saw_connection()) << "something connected to 127.0.0.2";
}

TEST_F(UrlFetcherHttp, TheCallersDeadlineCutsAFetchShort) {
  FetchOptions options = quick_options();
  options.total_timeout_seconds = 10;
  auto fetcher = make_fetcher(options);
  const auto started = std::chrono::steady_clock::now();
  auto result = fetcher->fetch(server_.url("/slow"), started + std::chrono::milliseconds(300));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kDeadlineExceeded) << result.status().to_string();
  EXPECT_NE(result.status().message().find("request's deadline"), std::string::npos)
      << result.status().message();
  EXPECT_LT(elapsed, std::chrono::milliseconds(900));
  // A deadline already past fetches nothing.
  auto late = fetcher->fetch(server_.url("/image.jpg"), started);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), ErrorCode::kDeadlineExceeded);
  // A far deadline leaves total_timeout_seconds in charge.
  auto fine = fetcher->fetch(server_.url("/image.jpg"), started + std::chrono::hours(1));
  ASSERT_TRUE(fine.ok()) << fine.status().to_string();
}

// ---- s3 ------------------------------------------------------------------------

std::string hex(const unsigned char* bytes, size_t size) {
  std::string out;
  for (size_t i = 0; i < size; ++i) out += fmt::format("{:02x}", bytes[i]);
  return out;
}

std::string sha256_hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  return hex(digest, length);
}

std::string hmac_sha256(const std::string& key, const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string field(const std::string& text, const std::string& name) {
  const size_t start = text.find(name + "=");
  if (start == std::string::npos) return "";
  const size_t value = start + name.size() + 1;
  return text.substr(value, text.find(',', value) - value);
}

// What S3 itself checks: rebuilds the canonical request from what arrived and
// recomputes the SigV4 signature with the secret.
std::string expected_signature(const SeenRequest& request, const std::string& secret,
                               const std::string& region) {
  const std::string authorization = request.headers.find("authorization")->second;
  const std::string signed_headers = field(authorization, "SignedHeaders");
  std::string canonical_headers;
  size_t start = 0;
  while (start <= signed_headers.size()) {
    const size_t end = std::min(signed_headers.find(';', start), signed_headers.size());
    const std::string name = signed_headers.substr(start, end - start);
    const auto header = request.headers.find(name);
    canonical_headers +=
        name + ":" + (header == request.headers.end() ? "" : header->second) + "\n";
    start = end + 1;
  }
  // S3 encodes each path segment once (RFC 3986 unreserved characters kept).
  std::string canonical_path;
  for (const char c : request.path) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || std::string_view("-._~/").find(c) != std::string_view::npos) {
      canonical_path += c;
    } else {
      canonical_path += fmt::format("%{:02X}", byte);
    }
  }
  const std::string canonical_request = "GET\n" + canonical_path + "\n\n" + canonical_headers +
                                        "\n" + signed_headers + "\n" +
                                        request.headers.find("x-amz-content-sha256")->second;
  const std::string date_time = request.headers.find("x-amz-date")->second;
  const std::string date = date_time.substr(0, 8);
  const std::string scope = date + "/" + region + "/s3/aws4_request";
  const std::string string_to_sign =
      "AWS4-HMAC-SHA256\n" + date_time + "\n" + scope + "\n" + sha256_hex(canonical_request);
  std::string key = hmac_sha256("AWS4" + secret, date);
  key = hmac_sha256(key, region);
  key = hmac_sha256(key, "s3");
  key = hmac_sha256(key, "aws4_request");
  const std::string signature = hmac_sha256(key, string_to_sign);
  return hex(reinterpret_cast<const unsigned char*>(signature.data()), signature.size());
}

class UrlFetcherS3 : public UrlFetcherHttp {
 protected:
  void SetUp() override {
    UrlFetcherHttp::SetUp();
    env_.set("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    env_.set("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    env_.set("AWS_SESSION_TOKEN", std::nullopt);
    env_.set("AWS_REGION", "eu-west-2");
    env_.set("AWS_DEFAULT_REGION", std::nullopt);
    env_.set("AWS_ENDPOINT_URL_S3", std::nullopt);
    env_.set("AWS_ENDPOINT_URL", std::nullopt);
    options_ = quick_options();
    options_.s3_endpoint = "http://127.0.0.1:" + std::to_string(server_.port()) + "/";
  }
  ScopedEnv env_;
  FetchOptions options_;
};

TEST_F(UrlFetcherS3, SignsTheRequestWithSigV4) {
  env_.set("AWS_SESSION_TOKEN", "session-token-123");
  auto body = make_fetcher(options_)->fetch("s3://bucket/some/key.jpg");
  ASSERT_TRUE(body.ok()) << body.status().to_string();
  EXPECT_EQ(*body, "s3-object");

  const auto requests = server_.s3_requests();
  ASSERT_EQ(requests.size(), 1u);
  const SeenRequest& request = requests[0];
  EXPECT_EQ(request.path, "/bucket/some/key.jpg");
  ASSERT_EQ(request.headers.count("authorization"), 1u);
  ASSERT_EQ(request.headers.count("x-amz-date"), 1u);
  ASSERT_EQ(request.headers.count("x-amz-content-sha256"), 1u);
  const std::string authorization = request.headers.find("authorization")->second;
  const std::string date = request.headers.find("x-amz-date")->second.substr(0, 8);
  EXPECT_EQ(
      authorization.rfind(
          "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" + date + "/eu-west-2/s3/aws4_request", 0),
      0u)
      << authorization;
  EXPECT_EQ(request.headers.find("x-amz-content-sha256")->second, sha256_hex(""));
  ASSERT_EQ(request.headers.count("x-amz-security-token"), 1u);
  EXPECT_EQ(request.headers.find("x-amz-security-token")->second, "session-token-123");
  const std::string signed_headers = field(authorization, "SignedHeaders");
  for (const char* name : {"host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"}) {
    EXPECT_NE(signed_headers.find(name), std::string::npos) << name << " in " << signed_headers;
  }
  EXPECT_EQ(field(authorization, "Signature"),
            expected_signature(request, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-2"))
      << authorization;
}

TEST_F(UrlFetcherS3, EncodesKeysSegmentBySegment) {
  options_.s3_region = "ap-south-1";  // the option wins over AWS_REGION
  auto body = make_fetcher(options_)->fetch("s3://bucket/photos 2024/a+b=c&d.jpg");
  ASSERT_TRUE(body.ok()) << body.status().to_string();
  const auto requests = server_.s3_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/bucket/photos%202024/a%2Bb%3Dc%26d.jpg");
  const std::string authorization = requests[0].headers.find("authorization")->second;
  EXPECT_NE(authorization.find("/ap-south-1/s3/aws4_request"), std::string::npos);
  EXPECT_EQ(
      field(authorization, "Signature"),
      expected_signature(requests[0], "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "ap-south-1"));
}

TEST_F(UrlFetcherS3, EndpointFromTheEnvironment) {
  env_.set("AWS_ENDPOINT_URL", options_.s3_endpoint);
  options_.s3_endpoint.clear();
  auto body = make_fetcher(options_)->fetch("s3://bucket/k.jpg");
  ASSERT_TRUE(body.ok()) << body.status().to_string();
  ASSERT_EQ(server_.s3_requests().size(), 1u);
}

TEST_F(UrlFetcherS3, MissingKeyIsNotFoundWithS3sReason) {
  auto result = make_fetcher(options_)->fetch("s3://bucket/missing.jpg");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(result.status().message().find("NoSuchKey"), std::string::npos)
      << result.status().message();
}

TEST_F(UrlFetcherS3, CredentialsComeFromTheSameChainAsEveryS3Use) {
  // No key in the environment: the profile's, from the shared credentials file.
  TempDir dir;
  {
    std::ofstream out(dir / "credentials");
    out << "[ml]\naws_access_key_id = AKIDPROFILE\n"
           "aws_secret_access_key = profile/secret+KEY\n";
  }
  env_.set("AWS_ACCESS_KEY_ID", std::nullopt);
  env_.set("AWS_SECRET_ACCESS_KEY", std::nullopt);
  env_.set("AWS_SHARED_CREDENTIALS_FILE", (dir / "credentials").string());
  env_.set("AWS_CONFIG_FILE", (dir / "no-config").string());
  env_.set("AWS_PROFILE", "ml");
  auto body = make_fetcher(options_)->fetch("s3://bucket/some/key.jpg");
  ASSERT_TRUE(body.ok()) << body.status().to_string();
  const auto requests = server_.s3_requests();
  ASSERT_EQ(requests.size(), 1u);
  const std::string authorization = requests[0].headers.find("authorization")->second;
  EXPECT_NE(authorization.find("Credential=AKIDPROFILE/"), std::string::npos) << authorization;
  EXPECT_EQ(field(authorization, "Signature"), expected_signature(requests[0], "profile/secret+KEY", "eu-west-2"));
}

TEST_F(UrlFetcherS3, MissingCredentialsSayWhatToSet) {
  env_.set("AWS_SECRET_ACCESS_KEY", std::nullopt);
  auto result = make_fetcher(options_)->fetch("s3://bucket/some/key.jpg");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(result.status().message().find("AWS_ACCESS_KEY_ID"), std::string::npos);
  EXPECT_NE(result.status().message().find("AWS_SECRET_ACCESS_KEY"), std::string::npos);
  EXPECT_TRUE(server_.s3_requests().empty());
}

TEST_F(UrlFetcherS3, TheConfiguredEndpointIsTrustedAndOnlyIt) {
  // The defaults refuse loopback; the operator's own S3 endpoint on it still works ...
  options_.allowed_networks.clear();
  auto fetcher = make_fetcher(options_);
  auto body = fetcher->fetch("s3://bucket/some/key.jpg");
  ASSERT_TRUE(body.ok()) << body.status().to_string();
  EXPECT_EQ(*body, "s3-object");
  // ... as from the environment ...
  env_.set("AWS_ENDPOINT_URL_S3", options_.s3_endpoint);
  FetchOptions from_env = options_;
  from_env.s3_endpoint.clear();
  auto via_env = make_fetcher(from_env)->fetch("s3://bucket/k.jpg");
  ASSERT_TRUE(via_env.ok()) << via_env.status().to_string();
  EXPECT_EQ(server_.s3_requests().size(), 2u);
  // ... but a client naming the same host in an http URL is refused.
  const std::string url = options_.s3_endpoint + "bucket/some/key.jpg";
  expect_refused(fetcher->fetch(url), url, "127.0.0.1");
  EXPECT_EQ(server_.s3_requests().size(), 2u);
}

TEST_F(UrlFetcherS3, DeniedNetworksStillApplyToTheConfiguredEndpoint) {
  options_.allowed_networks.clear();
  options_.denied_networks = {"127.0.0.0/8"};
  auto result = make_fetcher(options_)->fetch("s3://bucket/some/key.jpg");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kPermissionDenied) << result.status().to_string();
  EXPECT_TRUE(server_.s3_requests().empty());
}

// ---- file ----------------------------------------------------------------------

class UrlFetcherFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "root/cats");
    write("root/cats/tabby 1.jpg", kImage);
    write("outside.jpg", "secret");
    write("root2/sibling.jpg", "sibling");
    options_.file_root = dir_ / "root";
  }
  void write(const std::string& name, const std::string& bytes) {
    kennel::testing::write_bytes(dir_ / name, std::vector<uint8_t>(bytes.begin(), bytes.end()));
  }
  Result<std::string> fetch(const std::string& url) { return make_fetcher(options_)->fetch(url); }

  TempDir dir_;
  FetchOptions options_;
};

TEST_F(UrlFetcherFile, ReadsFilesInsideTheRoot) {
  auto body = fetch(file_url(dir_ / "root/cats/tabby%201.jpg"));
  ASSERT_TRUE(body.ok()) << body.status().to_string();
  EXPECT_EQ(*body, kImage);
  auto with_host = fetch("file://localhost" + (dir_ / "root/cats/tabby%201.jpg").string());
  ASSERT_TRUE(with_host.ok()) << with_host.status().to_string();
  // A symlink that stays inside the root is fine.
  std::filesystem::create_symlink(dir_ / "root/cats", dir_ / "root/felines");
  auto via_link = fetch(file_url(dir_ / "root/felines/tabby%201.jpg"));
  ASSERT_TRUE(via_link.ok()) << via_link.status().to_string();
}

TEST_F(UrlFetcherFile, RefusesPathsLeavingTheRoot) {
  std::filesystem::create_symlink(dir_ / "outside.jpg", dir_ / "root/cats/link.jpg");
  std::filesystem::create_symlink(dir_.path(), dir_ / "root/up");
  for (const std::string& url : {
           file_url(dir_ / "root/../outside.jpg"),
           file_url(dir_ / "root/cats/%2E%2E/%2E%2E/outside.jpg"),
           file_url(dir_ / "root/cats/link.jpg"),
           file_url(dir_ / "root/up/outside.jpg"),
           file_url(dir_ / "root2/sibling.jpg"),
           std::string("file:///etc/passwd"),
       }) {
    auto result = fetch(url);
    ASSERT_FALSE(result.ok()) << url;
    EXPECT_EQ(result.status().code(), ErrorCode::kPermissionDenied)
        << url << ": " << result.status().to_string();
  }
}

TEST_F(UrlFetcherFile, ErrorsNameTheProblem) {
  auto missing = fetch(file_url(dir_ / "root/cats/none.jpg"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound) << missing.status().to_string();

  auto directory = fetch(file_url(dir_ / "root/cats"));
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.status().code(), ErrorCode::kInvalidArgument);

  for (const char* url : {"file://otherhost/etc/passwd", "file://", "file:///root/%zz"}) {
    auto result = fetch(url);
    ASSERT_FALSE(result.ok()) << url;
    EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument) << url;
  }

  options_.max_bytes = 100;
  auto too_big = fetch(file_url(dir_ / "root/cats/tabby%201.jpg"));
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), ErrorCode::kResourceExhausted);
}

TEST_F(UrlFetcherFile, NoRootRefusesFileUrls) {
  options_.file_root.clear();
  auto result = fetch(file_url(dir_ / "root/cats/tabby%201.jpg"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("root"), std::string::npos);
}

}  // namespace
}  // namespace kennel::serve
