// `kennel predict`: classify images with a running endpoint (--endpoint) or a
// local model (--model), and print the top-K classes (or JSON with the logits).
#include <algorithm>
#include <iostream>
#include <optional>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "kennel/cli/command.h"
#include "kennel/data/image_header.h"
#include "kennel/models/model_dir.h"
#include "kennel/serve/auth.h"
#include "kennel/serve/predictor.h"
#include "kennel/serve/url_fetcher.h"
#include "kennel/util/fs.h"

namespace kennel::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Answer {
  std::string input;
  std::vector<float> logits;
  std::string error;
};

std::vector<std::string> expand_images(const std::vector<std::string>& images) {
  std::vector<std::string> out;
  for (const auto& image : images) {
    std::error_code error;
    if (!fs::is_directory(image, error)) {
      out.push_back(image);
      continue;
    }
    std::vector<std::string> found;
    for (auto it = fs::recursive_directory_iterator(image, error); !error && it != fs::recursive_directory_iterator();
         it.increment(error)) {
      if (it->is_regular_file(error) && data::has_image_extension(it->path().filename().string())) {
        found.push_back(it->path().string());
      }
    }
    std::sort(found.begin(), found.end());
    if (found.empty()) throw Error(failed_precondition("--image '{}' is a folder without images", image));
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

std::string content_type_for(const std::string& path) {
  std::string extension = fs::path(path).extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(), ::tolower);
  if (extension == ".png") return "image/png";
  if (extension == ".jpg" || extension == ".jpeg") return "image/jpeg";
  return "application/x-image";
}

std::string read_image(const std::string& path) {
  auto bytes = read_file_bytes(path, 256ull << 20);
  if (!bytes.ok()) throw Error(bytes.status().with_context("--image"));
  return std::string(bytes->begin(), bytes->end());
}

// Talks to `kennel serve` (or any server with the same contract), over
// http:// or https:// (certificates verified, against --ca-bundle if given),
// with the bearer token when there is one.
class EndpointClient {
 public:
  EndpointClient(const std::string& endpoint, const std::optional<std::string>& token,
                 const std::string& ca_bundle)
      : endpoint_(endpoint), client_(endpoint) {
    const bool https = endpoint.rfind("https://", 0) == 0;
    if (!client_.is_valid() || (!https && endpoint.rfind("http://", 0) != 0)) {
      throw Error(invalid_argument("--endpoint '{}' is not an http:// or https:// URL", endpoint));
    }
    if (!ca_bundle.empty()) {
      if (!https) throw Error(invalid_argument("--ca-bundle is for an https:// --endpoint, got '{}'", endpoint));
      if (!fs::is_regular_file(ca_bundle)) {
        throw Error(invalid_argument("--ca-bundle '{}' is not a file of PEM certificates", ca_bundle));
      }
      client_.set_ca_cert_path(ca_bundle.c_str());
    }
    client_.enable_server_certificate_verification(true);
    if (token) client_.set_bearer_token_auth(token->c_str());
    client_.set_connection_timeout(5);
    client_.set_read_timeout(120);
  }
  std::vector<std::string> classes() {
    auto response = client_.Get("/models");
    json model = parse(response, "GET /models");
    return model.at("classes").get<std::vector<std::string>>();
  }
  Answer invoke(const std::string& input, bool is_url) {
    httplib::Result response = is_url ? client_.Post("/invocations", json{{"url", input}}.dump(), "application/json")
                                      : client_.Post("/invocations", read_image(input), content_type_for(input));
    Answer answer{input, {}, {}};
    try {
      answer.logits = parse(response, "POST /invocations").at(0).get<std::vector<float>>();
    } catch (const Error& error) {
      if (error.status().code() != ErrorCode::kInvalidArgument) throw;
      answer.error = error.status().message();
    }
    return answer;
  }

 private:
  json parse(const httplib::Result& response, const std::string& what) {
    if (!response) {
      const bool tls_problem = response.error() == httplib::Error::SSLServerVerification ||
                               response.error() == httplib::Error::SSLConnection ||
                               response.error() == httplib::Error::SSLLoadingCerts;
      throw Error(Status(ErrorCode::kUnavailable,
                         fmt::format("{} {}: {} ({})", endpoint_, what, httplib::to_string(response.error()),
                                     tls_problem ? "for a self-signed certificate pass --ca-bundle CERT.pem"
                                                 : "is `kennel serve` running there?")));
    }
    if (response->status == 401) {
      json body = json::parse(response->body, nullptr, false);
      throw Error(Status(ErrorCode::kPermissionDenied,
                         fmt::format("{} {}: HTTP 401: {}", endpoint_, what,
                                     body.is_object() ? body.value("detail", response->body) : response->body)));
    }
    json body;
    try {
      body = json::parse(response->body);
    } catch (const std::exception&) {
      throw Error(Status(ErrorCode::kUpstreamFailed,
                         fmt::format("{} {}: HTTP {} with a body that is not JSON", endpoint_, what, response->status)));
    }
    if (response->status >= 400 && response->status < 500) {
      throw Error(invalid_argument("{}", body.value("detail", response->body)));
    }
    if (response->status != 200) {
      throw Error(Status(ErrorCode::kUpstreamFailed,
                         fmt::format("{} {}: HTTP {}: {}", endpoint_, what, response->status, body.value("detail", ""))));
    }
    return body;
  }

  std::string endpoint_;
  httplib::Client client_;
};

}  // namespace

void register_predict_command(CLI::App& app, CommandContext& context) {
  struct Flags {
    std::string endpoint;
    std::string model;
    std::vector<std::string> urls;
    std::vector<std::string> images;
    int64_t top_k = 5;
    bool json = false;
    std::string file_root;
    std::string auth_token_file;
    std::string ca_bundle;
    std::vector<std::string> allow_networks;
    std::vector<std::string> deny_networks;
    serve::PredictorOptions predictor;
  };
  auto flags = std::make_shared<Flags>();
  auto* predict = app.add_subcommand("predict", "Classify images with an endpoint (--endpoint) or a local model (--model)");
  auto* endpoint = predict->add_option("--endpoint", flags->endpoint,
                                       "Endpoint base URL, e.g. http://127.0.0.1:8080 or https://host:8443");
  auto* model = predict->add_option("--model", flags->model, "Model directory or job name (runs locally, no server)");
  endpoint->excludes(model);
  predict->add_option("--url", flags->urls, "Image URL (repeatable): http(s)://, s3://, file://");
  predict->add_option("--image", flags->images, "Image file or folder (repeatable)");
  predict->add_option("--top-k", flags->top_k, "Classes shown per image")->capture_default_str();
  add_inference_precision_flags(*predict, flags->predictor.precision, flags->predictor.int8_min_agreement,
                                "With --model: ");
  predict->add_option("--allow-file-root", flags->file_root, "With --model: allow file:// URLs below this folder");
  predict->add_option("--auth-token-file", flags->auth_token_file,
                      "With --endpoint: file holding the endpoint's token (mode 600; default: $KENNEL_AUTH_TOKEN)");
  predict->add_option("--ca-bundle", flags->ca_bundle,
                      "PEM CA certificates to trust for https:// (a self-signed endpoint's certificate)");
  predict->add_option("--allow-network", flags->allow_networks,
                      "With --model: CIDR that URLs may reach although not public (repeatable)");
  predict->add_option("--deny-network", flags->deny_networks,
                      "With --model: CIDR that URLs may not reach (repeatable)");
  predict->add_flag("--json", flags->json, "One JSON object per image, with the logits");
  predict->callback([flags, &context] {
    if (flags->endpoint.empty() == flags->model.empty()) {
      throw Error(invalid_argument("give either --endpoint URL or --model DIR"));
    }
    if (flags->urls.empty() && flags->images.empty()) throw Error(invalid_argument("give --url or --image"));
    if (flags->top_k < 1) throw Error(invalid_argument("--top-k must be >= 1, got {}", flags->top_k));
    const auto images = expand_images(flags->images);
    std::vector<Answer> answers;
    std::vector<std::string> classes;
    if (!flags->endpoint.empty()) {
      auto token = serve::load_auth_token(flags->auth_token_file);
      if (!token.ok()) throw Error(token.status());
      EndpointClient client(flags->endpoint, *token, flags->ca_bundle);
      classes = client.classes();
      for (const auto& url : flags->urls) answers.push_back(client.invoke(url, true));
      for (const auto& image : images) answers.push_back(client.invoke(image, false));
    } else {
      auto model_dir = models::resolve_model_dir(flags->model, context.global.home_dir());
      if (!model_dir.ok()) throw Error(model_dir.status());
      auto predictor = serve::Predictor::load(*model_dir, flags->predictor);
      if (!predictor.ok()) throw Error(predictor.status());
      classes = (*predictor)->info().classes;
      serve::FetchOptions fetch;
      fetch.file_root = flags->file_root;
      fetch.allowed_networks = flags->allow_networks;
      fetch.denied_networks = flags->deny_networks;
      fetch.ca_bundle = flags->ca_bundle;
      auto fetcher = serve::make_url_fetcher(fetch);
      if (!fetcher.ok()) throw Error(fetcher.status());
      auto run = [&](const std::string& input, Result<std::string> bytes) {
        Answer answer{input, {}, {}};
        if (!bytes.ok()) {
          answer.error = bytes.status().message();
          return answer;
        }
        auto image = (*predictor)->preprocess(std::span(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()));
        if (!image.ok()) {
          answer.error = image.status().message();
          return answer;
        }
        const at::Tensor logits = (*predictor)->predict(image->unsqueeze(0));
        answer.logits.assign(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.size(1));
        return answer;
      };
      for (const auto& url : flags->urls) answers.push_back(run(url, (*fetcher)->fetch(url)));
      for (const auto& image : images) {
        auto bytes = read_file_bytes(image, 256ull << 20);
        answers.push_back(run(image, bytes.ok() ? Result<std::string>(std::string(bytes->begin(), bytes->end()))
                                                : Result<std::string>(bytes.status())));
      }
    }
    int failures = 0;
    for (const auto& answer : answers) {
      if (!answer.error.empty()) ++failures;
      const auto top = answer.error.empty() ? serve::top_k_of_row(answer.logits, flags->top_k, classes)
                                            : std::vector<serve::Prediction>{};
      if (flags->json) {
        json line = {{"input", answer.input}};
        if (!answer.error.empty()) {
          line["error"] = answer.error;
        } else {
          json entries = json::array();
          for (const auto& p : top) entries.push_back({{"label", p.label}, {"index", p.index}, {"probability", p.probability}});
          line["top_k"] = entries;
          line["logits"] = answer.logits;
        }
        std::cout << line.dump() << "\n";
        continue;
      }
      std::cout << answer.input << "\n";
      if (!answer.error.empty()) std::cout << "  error: " << answer.error << "\n";
      for (const auto& p : top) std::cout << fmt::format("  {:>6.2f}%  {}\n", p.probability * 100, p.label);
    }
    if (failures > 0) context.exit_code = 1;
  });
}

}  // namespace kennel::cli
