// The OpenAI-compatible HTTP API of `dsv4 serve`, without the HTTP: request bodies to jobs (every
// field checked, errors in the OpenAI error shape), results and deltas to response bodies and
// server-sent-event chunks. Reasoning comes back as `reasoning_content`, as DeepSeek's API does.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "dsv4/chat.hpp"
#include "serve/scheduler.hpp"

namespace dsv4::serve {

// A request the API refuses: HTTP status, OpenAI error type, the offending parameter, a code.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int st, const std::string& message, std::string p = {}, std::string c = {}, std::string t = "invalid_request_error")
      : std::runtime_error(message), status(st), type(std::move(t)), param(std::move(p)), code(std::move(c)) {}
};
nlohmann::json error_body(const ApiError& e);

enum class Endpoint { Chat, Completion };

struct ApiRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::shared_ptr<Job> job;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
  std::string id;              // response id
  int64_t created = 0;         // unix seconds
};

struct ApiContext {
  const Tokenizer& tok;
  const ChatFormat& fmt;
  std::string model_id;
  int64_t context = 0;           // tokens per sequence
  int default_max_tokens = 512;
};

// Parses and validates a body of POST /v1/chat/completions or /v1/completions. Throws ApiError.
ApiRequest parse_request(Endpoint ep, const std::string& body, const ApiContext& ctx);

// The whole response of a finished non-streaming request.
nlohmann::json response_body(const ApiRequest& r, const ApiContext& ctx, const GenerationResult& res, int64_t cached_tokens);
// One SSE event ("data: {...}\n\n") for a delta; the first one of a chat stream carries the role.
std::string stream_chunk(const ApiRequest& r, const ApiContext& ctx, const GenerationDelta& d, bool first);
// The closing events: the finish reason, the usage (when asked for) and [DONE].
std::string stream_end(const ApiRequest& r, const ApiContext& ctx, const GenerationResult& res, int64_t cached_tokens);
std::string finish_name(FinishReason f);  // "stop" / "length" as OpenAI spells them

}  // namespace dsv4::serve
