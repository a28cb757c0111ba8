// What a POST /invocations asks for, parsed from its content type and body —
// the cloud inference-container contract the dog-breed client code speaks:
//
//   application/json   {"url": U} | {"urls": [U, ...]} | {"image": "<base64>"}
//                      | {"instances": [{"url": U} | {"image": B} | "U", ...]}
//   image/jpeg, image/png, image/bmp, image/webp, image/tiff,
//   application/x-image, application/octet-stream: the raw image bytes
//
// top_k comes from `?top_k=K` or the `X-Amzn-SageMaker-Custom-Attributes:
// top_k=K` header; 0 means "answer with raw logits".
//
// Errors (mapped to HTTP by status.h): kUnsupportedMediaType (415) for any
// other content type; kInvalidArgument (400) for malformed JSON, no usable
// key, bad base64, an empty body, a bad top_k, or more than max_images inputs.
// Messages name the key or value at fault. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::serve {

struct ImageInput {
  std::string url;    // set for {"url"} inputs
  std::string bytes;  // set for raw bodies and {"image"} inputs
};

struct Invocation {
  std::vector<ImageInput> inputs;
  int64_t top_k = 0;
};

struct InvocationLimits {
  int64_t max_images = 64;  // inputs in one request
  int64_t max_top_k = 1000;
};

Result<Invocation> parse_invocation(std::string_view content_type, std::string_view body,
                                    std::string_view top_k_query, std::string_view custom_attributes,
                                    const InvocationLimits& limits = {});

// RFC 4648 base64 (standard or URL-safe alphabet, padding optional, whitespace
// ignored); also accepts a `data:image/...;base64,` prefix. kInvalidArgument on bad input.
Result<std::string> decode_base64(std::string_view text);

}  // namespace kennel::serve
