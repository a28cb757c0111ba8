// A stand-in for the network in S3 client tests: each request is answered by
// a function of the request (and of how many came before), so a test can play
// a 503, a connection reset half-way through a body, or a whole S3 server's
// worth of answers, and then look at every request the client sent.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "kennel/s3/client.h"
#include "kennel/s3/config.h"
#include "kennel/s3/transport.h"

namespace kennel::s3::testing {

struct Reply {
  long status = 200;
  std::map<std::string, std::string> headers;
  std::string body;
  // A libcurl error ending the exchange after `delivered` bytes of the body.
  int transport_error = 0;
  size_t delivered = std::string::npos;

  static Reply error(int curl_code, std::string partial_body = "") {
    Reply reply;
    reply.transport_error = curl_code;
    reply.body = std::move(partial_body);
    reply.delivered = reply.body.size();
    return reply;
  }
  static Reply s3_error(long status, const std::string& code, const std::string& message = "") {
    Reply reply;
    reply.status = status;
    reply.body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code +
                 "</Code><Message>" + message + "</Message></Error>";
    return reply;
  }
};

struct SentRequest {
  std::string method;
  std::string url;
  std::map<std::string, std::string> headers;  // as sent
  std::string body;                            // read out of memory or the file
};

class ScriptedTransport final : public HttpTransport {
 public:
  using Script = std::function<Reply(const SentRequest& request, size_t index)>;
  explicit ScriptedTransport(Script script) : script_(std::move(script)) {}

  HttpExchange perform(const HttpRequest& request, BodySink* sink) override {
    SentRequest sent{request.method, request.url, {}, {}};
    for (const HttpHeader& header : request.headers) sent.headers[header.name] = header.value;
    if (request.body.from_file()) {
      sent.body.resize(request.body.length);
      const ssize_t got = pread(request.body.fd, sent.body.data(), request.body.length,
                                static_cast<off_t>(request.body.offset));
      sent.body.resize(got > 0 ? static_cast<size_t>(got) : 0);
    } else {
      sent.body = std::string(request.body.bytes);
    }
    size_t index;
    {
      std::lock_guard lock(mutex_);
      index = sent_.size();
      sent_.push_back(sent);
    }
    const Reply reply = script_(sent, index);
    HttpExchange exchange;
    exchange.response.status = reply.status;
    exchange.response.headers = reply.headers;
    const std::string body = reply.body.substr(0, reply.delivered);
    const bool success = reply.status >= 200 && reply.status < 300;
    if (sink && success && reply.status != 0) {
      if (!sink->on_headers(exchange.response) || (!body.empty() && !sink->on_data(body))) {
        exchange.sink_refused = true;
        exchange.transport_error = 23;  // CURLE_WRITE_ERROR
        exchange.transport_message = "the sink refused the body";
        return exchange;
      }
    } else {
      exchange.response.body = body;
    }
    if (reply.transport_error) {
      exchange.transport_error = reply.transport_error;
      exchange.transport_message = "scripted failure " + std::to_string(reply.transport_error);
    }
    return exchange;
  }

  std::vector<SentRequest> sent() const {
    std::lock_guard lock(mutex_);
    return sent_;
  }

 private:
  Script script_;
  mutable std::mutex mutex_;
  std::vector<SentRequest> sent_;
};

// A path-style config for a local store, with credentials from profile 'ml'.
inline S3Config local_config() {
  S3Config config;
  config.profile = "ml";
  config.region = "us-east-1";
  config.region_source = "default";
  config.endpoint = parse_endpoint("http://127.0.0.1:9000").value();
  config.endpoint_source = "AWS_ENDPOINT_URL";
  config.credentials = Credentials{"AKIAIOSFODNN7EXAMPLE", "secret", "",
                                   "profile 'ml' in /home/me/.aws/credentials", "ml"};
  return config;
}

// A client over `transport` that records its back-off waits instead of sleeping.
inline std::unique_ptr<S3Client> scripted_client(std::shared_ptr<ScriptedTransport> transport,
                                                 std::vector<double>* waits,
                                                 S3Config config = local_config()) {
  S3ClientSeams seams;
  seams.transport = std::move(transport);
  seams.sleep = [waits](double seconds) {
    if (waits) waits->push_back(seconds);
  };
  seams.uniform01 = [] { return 0.5; };
  return S3Client::create(std::move(config), {}, std::move(seams)).value();
}

}  // namespace kennel::s3::testing
