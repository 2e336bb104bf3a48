#include "serve/openai.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "dsv4/error.hpp"

namespace dsv4::serve {

using json = nlohmann::json;

namespace {

constexpr int kMaxDepth = 32;  // nesting of a request body (messages hold two levels)

std::atomic<uint64_t> g_counter{0};

std::string next_id(const char* prefix) {
  static const uint64_t salt = std::random_device{}();
  return std::string(prefix) + std::to_string(salt % 100000) + "-" + std::to_string(++g_counter);
}

[[noreturn]] void bad(const std::string& message, const std::string& param, const std::string& code = "invalid_value") {
  throw ApiError(400, message, param, code);
}

const json* get(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

double number(const json& j, const char* key, double dflt, double lo, double hi) {
  const json* v = get(j, key);
  if (v == nullptr) return dflt;
  if (!v->is_number()) bad(std::string("'") + key + "' must be a number", key, "invalid_type");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(std::string("'") + key + "' must be in [" + num(lo) + ", " + num(hi) + "], got " + v->dump(), key);
  return x;
}

int64_t integer(const json& j, const char* key, int64_t dflt, int64_t lo, int64_t hi) {
  const json* v = get(j, key);
  if (v == nullptr) return dflt;
  if (!v->is_number_integer()) bad(std::string("'") + key + "' must be an integer", key, "invalid_type");
  const int64_t x = v->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v->get<uint64_t>(), static_cast<uint64_t>(INT64_MAX))) : v->get<int64_t>();
  if (x < lo || x > hi) bad(std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v->dump(), key);
  return x;
}

bool boolean(const json& j, const char* key, bool dflt) {
  const json* v = get(j, key);
  if (v == nullptr) return dflt;
  if (!v->is_boolean()) bad(std::string("'") + key + "' must be a boolean", key, "invalid_type");
  return v->get<bool>();
}

std::string utf8_string(const json& v, const std::string& what) {
  if (!v.is_string()) bad("'" + what + "' must be a string", what, "invalid_type");
  return v.get<std::string>();  // nlohmann rejects invalid UTF-8 while parsing
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string content_of(const json& m, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "].content";
  const json* c = get(m, "content");
  if (c == nullptr) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) bad("'" + where + "' must be a string or an array of text parts", where, "invalid_type");
  std::string s;
  for (const json& part : *c) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      bad("'" + where + "': only parts of type \"text\" are supported", where);
    s += part["text"].get<std::string>();
  }
  return s;
}

std::string valid_utf8(const std::string& bytes) {
  // A token's bytes may be part of a character: show what is valid, U+FFFD for the rest.
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t bad_at = utf8_first_invalid(std::string_view(bytes).substr(i));
    if (bad_at == std::string::npos) {
      out += bytes.substr(i);
      break;
    }
    out += bytes.substr(i, bad_at);
    out += "\xef\xbf\xbd";
    i += bad_at + 1;
  }
  return out;
}

json bytes_of(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

json chat_logprob(const TokenLogprob& lp, const Tokenizer& tok) {
  json top = json::array();
  for (const auto& [id, v] : lp.top) {
    const std::string b = id < tok.vocab_size() ? tok.token_bytes(id) : std::string();
    top.push_back({{"token", valid_utf8(b)}, {"logprob", v}, {"bytes", bytes_of(b)}});
  }
  return {{"token", valid_utf8(lp.bytes)}, {"logprob", lp.logprob}, {"bytes", bytes_of(lp.bytes)}, {"top_logprobs", top}};
}

json usage(const GenerationResult& r, int64_t cached) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }

}  // namespace

std::string finish_name(FinishReason f) { return f == FinishReason::Stop ? "stop" : "length"; }

json error_body(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}};
  err["param"] = e.param.empty() ? json() : json(e.param);
  err["code"] = e.code.empty() ? json() : json(e.code);
  return {{"error", err}};
}

ApiRequest parse_request(Endpoint ep, const std::string& body, const ApiContext& ctx) {
  json j;
  try {
    j = json::parse(body, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxDepth) throw ApiError(400, "the request body nests deeper than " + std::to_string(kMaxDepth) + " levels", "", "invalid_json");
      return true;
    });
  } catch (const ApiError&) {
    throw;
  } catch (const json::exception& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what(), "", "invalid_json");
  }
  if (!j.is_object()) bad("the request body must be a JSON object", "", "invalid_json");
  ApiRequest r;
  r.endpoint = ep;
  r.id = next_id(ep == Endpoint::Chat ? "chatcmpl-" : "cmpl-");
  r.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (const json* m = get(j, "model")) {
    if (!m->is_string()) bad("'model' must be a string", "model", "invalid_type");
    if (m->get<std::string>() != ctx.model_id)
      throw ApiError(404, "the model '" + m->get<std::string>() + "' does not exist; this server has '" + ctx.model_id + "'", "model", "model_not_found");
  }
  if (integer(j, "n", 1, 1, 1) != 1) bad("'n' must be 1", "n");
  auto job = std::make_shared<Job>();
  GenerationParams& p = job->params;
  // Sampling.
  p.sampling.temperature = static_cast<float>(number(j, "temperature", 1.0, 0.0, 2.0));
  p.sampling.top_p = static_cast<float>(number(j, "top_p", 1.0, 0.0, 1.0));
  if (!(p.sampling.top_p > 0)) bad("'top_p' must be in (0, 1]", "top_p");
  p.sampling.top_k = static_cast<int>(integer(j, "top_k", 0, 0, 1 << 20));
  p.sampling.min_p = static_cast<float>(number(j, "min_p", 0.0, 0.0, 1.0));
  p.sampling.presence_penalty = static_cast<float>(number(j, "presence_penalty", 0.0, -2.0, 2.0));
  p.sampling.frequency_penalty = static_cast<float>(number(j, "frequency_penalty", 0.0, -2.0, 2.0));
  p.sampling.repetition_penalty = static_cast<float>(number(j, "repetition_penalty", 1.0, 0.01, 10.0));
  if (get(j, "seed")) p.sampling.seed = static_cast<uint64_t>(integer(j, "seed", 0, INT64_MIN, INT64_MAX));
  else p.sampling.seed = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
  // Limits and stops.
  const int64_t max_completion = integer(j, "max_completion_tokens", -1, 0, INT32_MAX);
  const int64_t max_tokens = integer(j, "max_tokens", max_completion >= 0 ? max_completion : ctx.default_max_tokens, 0, INT32_MAX);
  p.max_tokens = static_cast<int>(max_completion >= 0 ? max_completion : max_tokens);
  if (const json* st = get(j, "stop")) {
    if (st->is_string()) p.stop = {st->get<std::string>()};
    else if (st->is_array()) {
      if (st->size() > 16) bad("'stop' holds at most 16 strings", "stop");
      for (const json& s : *st) p.stop.push_back(utf8_string(s, "stop"));
    } else {
      bad("'stop' must be a string or an array of strings", "stop", "invalid_type");
    }
    for (const auto& s : p.stop)
      if (s.empty()) bad("stop strings must not be empty", "stop");
  }
  r.stream = boolean(j, "stream", false);
  if (const json* so = get(j, "stream_options")) {
    if (!so->is_object()) bad("'stream_options' must be an object", "stream_options", "invalid_type");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  // Log-probabilities: chat uses logprobs (bool) + top_logprobs; completions logprobs (int).
  if (ep == Endpoint::Chat) {
    r.logprobs = boolean(j, "logprobs", false);
    const int64_t top = integer(j, "top_logprobs", 0, 0, 20);
    if (top > 0 && !r.logprobs) bad("'top_logprobs' needs 'logprobs': true", "top_logprobs");
    p.logprobs = r.logprobs ? static_cast<int>(top) : -1;
  } else {
    const int64_t lp = integer(j, "logprobs", -1, 0, 20);
    r.logprobs = lp >= 0 && get(j, "logprobs") != nullptr;
    p.logprobs = r.logprobs ? static_cast<int>(lp) : -1;
  }
  // The prompt.
  if (ep == Endpoint::Chat) {
    const json* msgs = get(j, "messages");
    if (msgs == nullptr) bad("'messages' is required", "messages", "missing_required_parameter");
    if (!msgs->is_array()) bad("'messages' must be an array", "messages", "invalid_type");
    if (msgs->empty()) bad("'messages' must not be empty", "messages");
    std::vector<ChatMessage> chat;
    for (size_t i = 0; i < msgs->size(); ++i) {
      const json& m = (*msgs)[i];
      if (!m.is_object()) bad("'messages[" + std::to_string(i) + "]' must be an object", "messages", "invalid_type");
      const json* role = get(m, "role");
      if (role == nullptr || !role->is_string()) bad("'messages[" + std::to_string(i) + "].role' must be a string", "messages", "invalid_type");
      const std::string rl = role->get<std::string>();
      if (rl != "system" && rl != "user" && rl != "assistant" && rl != "tool" && rl != "developer")
        bad("'messages[" + std::to_string(i) + "].role' must be system, user, assistant or tool, got '" + rl + "'", "messages");
      std::string reasoning;
      if (const json* rc = get(m, "reasoning_content")) reasoning = utf8_string(*rc, "messages[" + std::to_string(i) + "].reasoning_content");
      chat.push_back({rl == "developer" ? "system" : rl, content_of(m, i), reasoning});
    }
    job->chat = true;
    job->mode = ThinkMode::None;
    if (const json* effort = get(j, "reasoning_effort")) {
      const std::string e = utf8_string(*effort, "reasoning_effort");
      if (e == "none") job->mode = ThinkMode::None;
      else if (e == "low" || e == "medium" || e == "high") job->mode = ThinkMode::High;
      else if (e == "max") job->mode = ThinkMode::Max;
      else bad("'reasoning_effort' must be none, low, medium, high or max, got '" + e + "'", "reasoning_effort");
    }
    if (const json* th = get(j, "thinking")) {  // DeepSeek's {"type": "enabled" | "disabled"}
      if (!th->is_object() || !th->contains("type") || !(*th)["type"].is_string()) bad("'thinking' must be {\"type\": \"enabled\" | \"disabled\"}", "thinking", "invalid_type");
      const std::string t = (*th)["type"].get<std::string>();
      if (t == "enabled") job->mode = job->mode == ThinkMode::None ? ThinkMode::High : job->mode;
      else if (t == "disabled") job->mode = ThinkMode::None;
      else bad("'thinking.type' must be enabled or disabled", "thinking");
    }
    job->prompt = ctx.fmt.encode(chat, job->mode);
  } else {
    const json* pr = get(j, "prompt");
    if (pr == nullptr) bad("'prompt' is required", "prompt", "missing_required_parameter");
    std::string text;
    if (pr->is_string()) text = pr->get<std::string>();
    else if (pr->is_array() && pr->size() == 1 && (*pr)[0].is_string()) text = (*pr)[0].get<std::string>();
    else bad("'prompt' must be a string", "prompt", "invalid_type");
    job->chat = false;
    job->prompt = ctx.tok.encode(text, false);
    if (job->prompt.empty()) bad("'prompt' must not be empty", "prompt");
  }
  if (static_cast<int64_t>(job->prompt.size()) >= ctx.context)
    throw ApiError(400, "the prompt has " + std::to_string(job->prompt.size()) + " tokens; this server's context holds " + std::to_string(ctx.context) +
                            " tokens for the prompt and the completion together",
                   "messages", "context_length_exceeded");
  // The parameters as the library checks them (same messages as the C++ API).
  try {
    TextStream check(ctx.tok, nullptr, ThinkMode::None, p);
  } catch (const Error& e) {
    bad(e.what(), "");
  }
  r.job = job;
  return r;
}

json response_body(const ApiRequest& r, const ApiContext& ctx, const GenerationResult& res, int64_t cached) {
  json choice = {{"index", 0}, {"finish_reason", finish_name(res.finish)}};
  if (r.endpoint == Endpoint::Chat) {
    json msg = {{"role", "assistant"}, {"content", res.content}};
    if (r.job->mode != ThinkMode::None) msg["reasoning_content"] = res.reasoning;
    choice["message"] = msg;
    if (r.logprobs) {
      json content = json::array();
      for (const auto& lp : res.logprobs) content.push_back(chat_logprob(lp, ctx.tok));
      choice["logprobs"] = {{"content", content}};
    } else {
      choice["logprobs"] = nullptr;
    }
  } else {
    choice["text"] = res.content;
    if (r.logprobs) {
      json tokens = json::array(), lps = json::array(), tops = json::array();
      for (const auto& lp : res.logprobs) {
        tokens.push_back(valid_utf8(lp.bytes));
        lps.push_back(lp.logprob);
        json t = json::object();
        for (const auto& [id, v] : lp.top) t[valid_utf8(id < ctx.tok.vocab_size() ? ctx.tok.token_bytes(id) : std::string())] = v;
        tops.push_back(t);
      }
      choice["logprobs"] = {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}};
    } else {
      choice["logprobs"] = nullptr;
    }
  }
  return {{"id", r.id},
          {"object", r.endpoint == Endpoint::Chat ? "chat.completion" : "text_completion"},
          {"created", r.created},
          {"model", ctx.model_id},
          {"choices", json::array({choice})},
          {"usage", usage(res, cached)}};
}

std::string stream_chunk(const ApiRequest& r, const ApiContext& ctx, const GenerationDelta& d, bool first) {
  json choice = {{"index", 0}, {"finish_reason", nullptr}};
  if (r.endpoint == Endpoint::Chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty()) delta["content"] = d.content;
    choice["delta"] = delta;
    choice["logprobs"] = r.logprobs && d.logprob ? json{{"content", json::array({chat_logprob(*d.logprob, ctx.tok)})}} : json();
  } else {
    choice["text"] = d.content;
    choice["logprobs"] = r.logprobs && d.logprob ? json{{"tokens", {valid_utf8(d.logprob->bytes)}}, {"token_logprobs", {d.logprob->logprob}}} : json();
  }
  return sse({{"id", r.id},
              {"object", r.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion"},
              {"created", r.created},
              {"model", ctx.model_id},
              {"choices", json::array({choice})}});
}

std::string stream_end(const ApiRequest& r, const ApiContext& ctx, const GenerationResult& res, int64_t cached) {
  json choice = {{"index", 0}, {"finish_reason", finish_name(res.finish)}};
  if (r.endpoint == Endpoint::Chat) choice["delta"] = json::object();
  else choice["text"] = "";
  const char* object = r.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion";
  std::string out = sse({{"id", r.id}, {"object", object}, {"created", r.created}, {"model", ctx.model_id}, {"choices", json::array({choice})}});
  if (r.include_usage)
    out += sse({{"id", r.id}, {"object", object}, {"created", r.created}, {"model", ctx.model_id}, {"choices", json::array()}, {"usage", usage(res, cached)}});
  return out + "data: [DONE]\n\n";
}

}  // namespace dsv4::serve
