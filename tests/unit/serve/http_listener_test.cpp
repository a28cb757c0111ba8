#include "kennel/serve/http_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "unit/httplib_for_tests.h"

#include "unit/test_util.h"

namespace kennel::serve {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A raw TCP client: it sends exactly the bytes a test writes, when it writes them.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Everything received until the peer closes, `timeout` passes, or `until` appears.
  std::string receive(std::chrono::milliseconds timeout, const std::string& until = "") {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (!until.empty() && received_.find(until) != std::string::npos) break;
      pollfd entry{fd_, POLLIN, 0};
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (::poll(&entry, 1, static_cast<int>(std::max<int64_t>(1, left.count()))) <= 0) continue;
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      received_.append(chunk, static_cast<size_t>(n));
    }
    return received_;
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n";
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

class Listener : public ::testing::Test {
 protected:
  // Handlers: GET /hello, GET /sleep (300 ms), POST /echo (the body back).
  void start(ListenerOptions options) {
    options.host = "127.0.0.1";
    options.port = 0;
    listener_ = std::make_unique<HttpListener>(std::move(options));
    auto& routes = listener_->routes();
    routes.Get("/hello", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("hello", "text/plain");
    });
    routes.Get("/sleep", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(300ms);
      res.set_content("slept", "text/plain");
    });
    routes.Post("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      ++echoes_;
      res.set_content(req.body, "application/octet-stream");
    });
    listener_->set_rejection_observer([this](int status, const std::string& reason) {
      std::lock_guard lock(mutex_);
      ++rejections_[std::to_string(status) + " " + reason];
    });
    const Status started = listener_->start();
    ASSERT_TRUE(started.ok()) << started.to_string();
    port_ = listener_->port();
  }
  void TearDown() override {
    if (listener_) {
      listener_->stop();
      listener_->wait();
    }
  }
  int rejections(const std::string& key) {
    std::lock_guard lock(mutex_);
    return rejections_[key];
  }
  // A whole GET /hello on its own connection; the time it took.
  Clock::duration timed_hello() {
    const auto start = Clock::now();
    RawClient client(port_);
    EXPECT_TRUE(client.send(get("/hello", "Connection: close\r\n")));
    const std::string response = client.receive(5s);
    EXPECT_EQ(status_of(response), 200) << response;
    EXPECT_NE(response.find("hello"), std::string::npos);
    return Clock::now() - start;
  }

  std::unique_ptr<HttpListener> listener_;
  int port_ = 0;
  std::atomic<int> echoes_{0};
  std::mutex mutex_;
  std::map<std::string, int> rejections_;
};

TEST_F(Listener, AnswersKeepsAliveAndPipelines) {
  start({});
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  // Two requests in one packet, then a third on the same connection.
  ASSERT_TRUE(client.send(get("/hello") + get("/hello")));
  std::string response = client.receive(3s, "hellohello");
  EXPECT_EQ(status_of(response), 200) << response;
  ASSERT_TRUE(
      client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                  "Connection: close\r\n\r\nabcde"));
  response = client.receive(3s);
  EXPECT_NE(response.find("abcde"), std::string::npos) << response;
  EXPECT_TRUE(client.closed());
  EXPECT_EQ(echoes_.load(), 1);
}

TEST_F(Listener, ChunkedAndExpectContinueBodiesReachTheHandlerWhole) {
  start({});
  RawClient chunked(port_);
  ASSERT_TRUE(
      chunked.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n"));
  const std::string response = chunked.receive(3s, "abcdefg");
  EXPECT_EQ(status_of(response), 200) << response;
  EXPECT_NE(response.find("abcdefg"), std::string::npos) << response;

  RawClient expecting(port_);
  ASSERT_TRUE(
      expecting.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                     "Expect: 100-continue\r\n\r\n"));
  const std::string interim = expecting.receive(3s, "\r\n\r\n");
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(expecting.send("wxyz"));
  const std::string answer = expecting.receive(3s, "wxyz");
  EXPECT_NE(answer.find("HTTP/1.1 200"), std::string::npos) << answer;
  // One interim answer only: httplib must not send a second.
  EXPECT_EQ(answer.find("100 Continue", 10), std::string::npos) << answer;
}

TEST_F(Listener, IdleAndSlowClientsHoldNoHandlerThread) {
  ListenerOptions options;
  options.threads = 1;
  options.header_timeout_seconds = 0.6;
  options.body_timeout_seconds = 0.6;
  start(options);
  // 20 connections that say nothing, one trickling its headers, one trickling its body.
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(std::make_unique<RawClient>(port_));
  RawClient slow_head(port_);
  ASSERT_TRUE(slow_head.send("GET /hello HTTP/1.1\r\nHo"));
  RawClient slow_body(port_);
  ASSERT_TRUE(slow_body.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab"));
  std::this_thread::sleep_for(100ms);
  // The one handler thread is free for a well-behaved client.
  EXPECT_LT(timed_hello(), 300ms);
  // The slow ones are answered 408 at their deadline and closed.
  const std::string head_answer = slow_head.receive(3s);
  EXPECT_EQ(status_of(head_answer), 408) << head_answer;
  EXPECT_NE(head_answer.find("--header-timeout"), std::string::npos) << head_answer;
  const std::string body_answer = slow_body.receive(3s);
  EXPECT_EQ(status_of(body_answer), 408) << body_answer;
  EXPECT_NE(body_answer.find("--body-timeout"), std::string::npos) << body_answer;
  EXPECT_EQ(echoes_.load(), 0);
  EXPECT_EQ(rejections("408 header_timeout"), 1);
  EXPECT_EQ(rejections("408 body_timeout"), 1);
  // Connections that never sent a byte are closed silently at the header deadline.
  for (auto& client : idle) {
    EXPECT_EQ(client->receive(3s), "");
    EXPECT_TRUE(client->closed());
  }
}

TEST_F(Listener, ABusyHandlerDoesNotDelayReading) {
  ListenerOptions options;
  options.threads = 2;
  start(options);
  RawClient sleeper(port_);
  ASSERT_TRUE(sleeper.send(get("/sleep")));
  std::this_thread::sleep_for(50ms);
  EXPECT_LT(timed_hello(), 250ms);
  EXPECT_NE(sleeper.receive(3s, "slept").find("slept"), std::string::npos);
}

TEST_F(Listener, TooManyConnectionsAre503AtOnce) {
  ListenerOptions options;
  options.max_connections = 3;
  start(options);
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<RawClient>(port_));
    ASSERT_TRUE(held.back()->send(get("/hello")));
    EXPECT_NE(held.back()->receive(3s, "hello").find("hello"), std::string::npos);
  }
  RawClient extra(port_);
  ASSERT_TRUE(extra.send(get("/hello")));
  const std::string refused = extra.receive(3s);
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
  EXPECT_NE(refused.find("--max-connections"), std::string::npos) << refused;
  EXPECT_EQ(rejections("503 too_many_connections"), 1);
  held.clear();  // closing them makes room again
  std::this_thread::sleep_for(100ms);
  timed_hello();
}

TEST_F(Listener, OversizeAndAmbiguousRequestsAreRefusedUnread) {
  ListenerOptions options;
  options.max_body_bytes = 1000;
  options.max_header_bytes = 2048;
  start(options);
  struct Case {
    std::string request;
    int status;
    std::string reason;
  };
  const Case cases[] = {
      {"POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413, "payload_too_large"},
      {"POST /echo HTTP/1.1\r\nContent-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n", 413,
       "payload_too_large"},
      {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + std::string(1001, 'x') +
           "\r\n0\r\n\r\n",
       413, "payload_too_large"},
      {"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400,
       "malformed_http"},
      {"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400,
       "malformed_http"},
      {"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "malformed_http"},
      {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "malformed_http"},
      {"GET /hello HTTP/1.1\r\nX-Big: " + std::string(3000, 'a') + "\r\n\r\n", 431,
       "headers_too_large"},
  };
  for (const Case& c : cases) {
    RawClient client(port_);
    ASSERT_TRUE(client.send(c.request));
    const std::string response = client.receive(3s);
    EXPECT_EQ(status_of(response), c.status) << c.request.substr(0, 80) << "\n" << response;
    EXPECT_NE(response.find("\"detail\""), std::string::npos) << response;
    EXPECT_NE(response.find("Connection: close"), std::string::npos) << response;
    EXPECT_TRUE(client.closed()) << c.request.substr(0, 80);
  }
  EXPECT_EQ(echoes_.load(), 0);
  EXPECT_EQ(rejections("413 payload_too_large"), 3);
  EXPECT_EQ(rejections("400 malformed_http"), 4);
  EXPECT_EQ(rejections("431 headers_too_large"), 1);
  // Without Content-Length or Transfer-Encoding a request has no body: it is
  // answered at once instead of waiting for the client to close.
  RawClient no_length(port_);
  ASSERT_TRUE(no_length.send("POST /echo HTTP/1.1\r\nHost: t\r\n\r\n"));
  EXPECT_EQ(status_of(no_length.receive(1s, "\r\n\r\n")), 200);
}

TEST_F(Listener, StopClosesIdleConnectionsAndFinishesHandlers) {
  start({});
  RawClient idle(port_);
  ASSERT_TRUE(idle.send(get("/hello")));
  idle.receive(3s, "hello");
  RawClient busy(port_);
  ASSERT_TRUE(busy.send(get("/sleep")));
  std::this_thread::sleep_for(100ms);
  const auto stopping = Clock::now();
  listener_->stop();
  listener_->wait();
  EXPECT_LT(Clock::now() - stopping, 2s);
  const std::string answer = busy.receive(2s);
  EXPECT_NE(answer.find("slept"), std::string::npos) << answer;
  EXPECT_TRUE(busy.closed());
  idle.receive(1s);
  EXPECT_TRUE(idle.closed());
  listener_.reset();
}

TEST(ListenerOptions, ValidateNamesTheOption) {
  EXPECT_TRUE(ListenerOptions().validate().ok());
  const std::pair<void (*)(ListenerOptions&), const char*> cases[] = {
      {[](ListenerOptions& o) { o.threads = 0; }, "--http-threads"},
      {[](ListenerOptions& o) { o.max_connections = 0; }, "--max-connections"},
      {[](ListenerOptions& o) { o.header_timeout_seconds = 0; }, "--header-timeout"},
      {[](ListenerOptions& o) { o.body_timeout_seconds = -1; }, "--body-timeout"},
      {[](ListenerOptions& o) { o.max_body_bytes = 0; }, "--max-body"},
      {[](ListenerOptions& o) { o.tls_cert = "cert.pem"; }, "--tls-key"},
      {[](ListenerOptions& o) { o.max_buffered_bytes = 10; }, "max_buffered_bytes"},
  };
  for (const auto& [change, option] : cases) {
    ListenerOptions options;
    change(options);
    const Status status = options.validate();
    ASSERT_FALSE(status.ok()) << option;
    EXPECT_NE(status.message().find(option), std::string::npos) << status.message();
  }
}

TEST(ListenerStart, ABusyPortIsUnavailableNamingIt) {
  ListenerOptions options;
  options.port = 0;
  HttpListener first(options);
  ASSERT_TRUE(first.start().ok());
  options.port = first.port();
  HttpListener second(options);
  const Status status = second.start();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable);
  EXPECT_NE(status.message().find("127.0.0.1:" + std::to_string(first.port())), std::string::npos)
      << status.message();
  first.stop();
  first.wait();
}

// ---- TLS --------------------------------------------------------------------------

// A self-signed certificate for 127.0.0.1 and its key, written as PEM files.
void write_self_signed(const std::filesystem::path& cert, const std::filesystem::path& key) {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  X509* x509 = X509_new();
  X509_set_version(x509, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x509), 1);
  X509_gmtime_adj(X509_getm_notBefore(x509), -60);
  X509_gmtime_adj(X509_getm_notAfter(x509), 3600);
  X509_set_pubkey(x509, pkey);
  X509_NAME* name = X509_get_subject_name(x509);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(x509, name);
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, x509, x509, nullptr, nullptr, 0);
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(nullptr, &context, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  X509_add_ext(x509, san, -1);
  X509_EXTENSION_free(san);
  X509_sign(x509, pkey, EVP_sha256());
  FILE* cert_file = std::fopen(cert.c_str(), "w");
  PEM_write_X509(cert_file, x509);
  std::fclose(cert_file);
  FILE* key_file = std::fopen(key.c_str(), "w");
  PEM_write_PrivateKey(key_file, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(key_file);
  ::chmod(key.c_str(), 0600);
  X509_free(x509);
  EVP_PKEY_free(pkey);
}

TEST_F(Listener, SpeaksTlsWithTheGivenCertificate) {
  testing::TempDir dir;
  write_self_signed(dir / "cert.pem", dir / "key.pem");
  ListenerOptions options;
  options.tls_cert = dir / "cert.pem";
  options.tls_key = dir / "key.pem";
  options.threads = 1;
  start(options);
  httplib::SSLClient client("127.0.0.1", port_);
  client.set_ca_cert_path((dir / "cert.pem").c_str());
  client.enable_server_certificate_verification(true);
  client.set_connection_timeout(3);
  client.set_read_timeout(3);
  for (int i = 0; i < 3; ++i) {  // the second and third reuse the connection
    auto response = client.Get("/hello");
    ASSERT_TRUE(response) << httplib::to_string(response.error());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "hello");
  }
  auto posted = client.Post("/echo", std::string(200000, 'z'), "application/octet-stream");
  ASSERT_TRUE(posted) << httplib::to_string(posted.error());
  EXPECT_EQ(posted->body.size(), 200000u);
  // A plain-HTTP client gets no answer from a TLS listener, and costs no thread.
  RawClient plain(port_);
  ASSERT_TRUE(plain.send(get("/hello", "Connection: close\r\n")));
  EXPECT_EQ(plain.receive(2s).find("HTTP/1.1 200"), std::string::npos);
  // Without the CA the certificate is not trusted.
  httplib::SSLClient untrusting("127.0.0.1", port_);
  untrusting.enable_server_certificate_verification(true);
  untrusting.set_ca_cert_path((dir / "missing.pem").c_str());
  EXPECT_FALSE(untrusting.Get("/hello"));
}

TEST(ListenerStart, RefusesUnusableTlsFiles) {
  testing::TempDir dir;
  write_self_signed(dir / "cert.pem", dir / "key.pem");
  ListenerOptions options;
  options.port = 0;
  options.tls_cert = dir / "cert.pem";
  options.tls_key = dir / "key.pem";
  ::chmod((dir / "key.pem").c_str(), 0644);
  Status status = HttpListener(options).start();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("chmod"), std::string::npos) << status.message();
  ::chmod((dir / "key.pem").c_str(), 0600);
  options.tls_cert = dir / "key.pem";
  status = HttpListener(options).start();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("--tls-cert"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace kennel::serve
