// dsv4 generate / chat / tokenize: text in, text out.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <random>
#include <sstream>

#include "common.hpp"
#include "terminal.hpp"
#include "dsv4/chat.hpp"
#include "dsv4/generate.hpp"
#include "dsv4/model.hpp"
#include "dsv4/tokenizer.hpp"

namespace dsv4::cli {

namespace {

using Clock = std::chrono::steady_clock;

const std::vector<std::string> kSamplingFlags = {"--temperature", "--top-k", "--top-p", "--min-p", "--seed", "--repetition-penalty"};

std::string read_stdin() {
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  return ss.str();
}

Tokenizer load_tokenizer(const Args& a) {
  if (auto t = a.get("--tokenizer")) return Tokenizer::load(*t);
  return Tokenizer::load(std::filesystem::path(model_dir(a)) / "tokenizer.json");
}

// The sampling flags as parameters (--greedy: temperature 0).
SamplerParams sampler_params(const Args& a) {
  SamplerParams p;  // generation_config.json defaults: temperature 1.0, top_p 1.0
  if (a.has("--greedy")) {
    for (const auto& f : kSamplingFlags)
      if (a.has(f) && f != "--seed") throw UsageError("--greedy cannot be combined with " + f);
    p.temperature = 0;
    return p;
  }
  auto num = [&](const char* flag, float dflt) {
    auto v = a.get(flag);
    if (!v) return dflt;
    char* end = nullptr;
    const float x = std::strtof(v->c_str(), &end);
    if (end == v->c_str() || *end != '\0') throw UsageError(std::string(flag) + " takes a number, got '" + *v + "'");
    return x;
  };
  p.temperature = num("--temperature", 1.0f);
  p.top_k = static_cast<int>(a.get_int("--top-k", 0));
  p.top_p = num("--top-p", 1.0f);
  p.min_p = num("--min-p", 0.0f);
  p.repetition_penalty = num("--repetition-penalty", 1.0f);
  const int64_t seed = a.get_int("--seed", 0);
  if (seed < -1) throw UsageError("--seed must be >= 0, or -1 for a random seed");
  if (seed == -1) {
    p.seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
    std::fprintf(stderr, "[dsv4] seed %llu\n", static_cast<unsigned long long>(p.seed));
  } else {
    p.seed = static_cast<uint64_t>(seed);
  }
  if (p.top_k < 0) throw UsageError("--top-k must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
  if (!(p.min_p >= 0 && p.min_p <= 1)) throw UsageError("--min-p must be in [0, 1]");
  if (std::isnan(p.temperature)) throw UsageError("--temperature must be a number");
  return p;
}

SessionOptions session_options(const Args& a, const Model& m) {
  SessionOptions o;
  const int64_t max_pos = m.config().max_position_embeddings > 0 ? m.config().max_position_embeddings : 16384;
  o.max_context = a.get_int("--context", max_pos);
  if (o.max_context <= 0) throw UsageError("--context must be positive");
  o.cache_type = cache_type(a);
  o.cache_window = a.has("--cache-window");
  return o;
}

double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void put(std::FILE* f, const std::string& s) {
  if (f != nullptr && !s.empty()) {
    std::fwrite(s.data(), 1, s.size(), f);
    std::fflush(f);
  }
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  Args a("generate", "Generate text from a prompt (chat format unless --raw): the text to stdout, reasoning and statistics to stderr.",
         argc, argv,
         {{{"-p,--prompt", "the prompt", "read from stdin", false, "TEXT"},
           {"-n,--max-tokens", "most tokens to generate", "256", false, "N"},
           {"--think", "reasoning mode: none, high or max", "none", false, "MODE"},
           {"--context", "context limit in tokens (memory grows with use)", "the model maximum", false, "N"},
           {"--stop", "stop string (not printed)", "", false, "TEXT"},
           {"--raw", "plain-text completion: no BOS, no chat format", "", true, ""},
           {"--hide-reasoning", "do not print the reasoning", "", true, ""},
           {"--show-ids", "print the generated token ids to stderr", "", true, ""},
           {"--prompt-cache", "load the prompt's state from FILE when it holds a prefix of this prompt; save it there after the prompt",
            "", false, "FILE"},
           {"-v,--verbose", "log the library's info messages", "", true, ""}},
          model_opts(), sampling_opts(), cache_opts(), backend_opts()});
  const int64_t max_tokens = a.get_int("--max-tokens", 256);
  if (max_tokens < 0 || max_tokens > (1 << 24)) throw UsageError("--max-tokens must be in [0, 16777216]");
  const ThinkMode mode = parse_think_mode(a.get("--think").value_or("none"));
  if (a.has("--raw") && a.has("--think")) throw UsageError("--raw and --think exclude each other (raw text has no chat format)");
  GenerationParams gp;
  gp.sampling = sampler_params(a);
  gp.max_tokens = static_cast<int>(max_tokens);
  if (auto stop = a.get("--stop")) gp.stop = {*stop};
  const std::string text = a.get("--prompt") ? *a.get("--prompt") : read_stdin();
  if (text.empty()) throw UsageError("empty prompt: give -p TEXT or text on stdin");

  const auto model = Model::load(model_dir(a), load_options(a));
  const Tokenizer tok = load_tokenizer(a);
  std::vector<int32_t> ids;
  std::optional<ChatFormat> fmt;
  if (a.has("--raw")) {
    ids = tok.encode(text, false);
  } else {
    fmt.emplace(tok);
    ids = fmt->encode({{"user", text, ""}}, mode);
  }
  if (ids.empty()) throw UsageError("the prompt encodes to no tokens");
  const SessionOptions so = session_options(a, *model);
  if (static_cast<int64_t>(ids.size()) > so.max_context)
    throw CapacityError("the prompt has " + std::to_string(ids.size()) + " tokens but the context limit is " +
                        std::to_string(so.max_context) + " (raise it with --context N)");
  Session session(model, so);
  std::FILE* reasoning_out = a.has("--hide-reasoning") ? nullptr : stderr;

  const auto t0 = Clock::now();
  // --prompt-cache: the state after a previous prompt, with that prompt's ids as metadata; used
  // when it is a prefix of this prompt, then replaced by the state after this one.
  size_t reused = 0;
  const auto cache = a.get("--prompt-cache");
  if (cache && std::filesystem::exists(*cache)) {
    try {
      const std::string md = session.load_state(*cache);
      const size_t n = md.size() / sizeof(int32_t);
      std::vector<int32_t> prev(n);
      if (n > 0) std::memcpy(prev.data(), md.data(), n * sizeof(int32_t));
      if (md.size() % sizeof(int32_t) == 0 && static_cast<int64_t>(n) == session.position() && n < ids.size() &&
          std::equal(prev.begin(), prev.end(), ids.begin())) {
        reused = n;
      } else {
        session.reset();
      }
    } catch (const Error& e) {
      std::fprintf(stderr, "[dsv4] prompt cache %s not used: %s\n", cache->c_str(), e.what());
      session.reset();
    }
    std::fprintf(stderr, "[dsv4] prompt cache: %zu of %zu prompt tokens reused\n", reused, ids.size());
  }
  // The prompt but its last token, in steps (progress on a terminal); the last one starts generation.
  feed_prompt(session, std::span<const int32_t>(ids).subspan(reused, ids.size() - 1 - reused));
  if (cache) {
    const std::string md(reinterpret_cast<const char*>(ids.data()), (ids.size() - 1) * sizeof(int32_t));
    session.save_state(*cache, md);
  }
  Clock::time_point first{};
  bool in_reasoning = fmt && mode != ThinkMode::None;
  const GenerationResult r = generate_tokens(session, tok, fmt ? &*fmt : nullptr, mode, {&ids.back(), 1}, gp, [&](const GenerationDelta& d) {
    if (first == Clock::time_point{}) first = Clock::now();
    put(reasoning_out, d.reasoning);
    if (in_reasoning && !d.content.empty()) {
      put(reasoning_out, "\n");  // the reasoning ended
      in_reasoning = false;
    }
    put(stdout, d.content);
    return true;
  });
  const auto t2 = Clock::now();
  if (::isatty(1)) std::fputc('\n', stdout);  // stdout carries exactly the generated text otherwise
  if (a.has("--show-ids")) {
    std::fputs("[dsv4] ids:", stderr);
    for (int32_t t : r.tokens) std::fprintf(stderr, " %d", t);
    std::fputc('\n', stderr);
  }
  const int64_t generated = r.completion_tokens;
  const double decode_s = generated > 1 ? secs(first, t2) : 0;
  const char* why = r.finish == FinishReason::Stop ? "end of sequence or stop" : r.finish == FinishReason::Length ? "max tokens" : "context limit";
  std::fprintf(stderr,
               "\n[dsv4] prompt %zu tokens, prefill %.1f tok/s | generated %lld tokens (%s), decode %.1f tok/s | "
               "first token %.0f ms after start\n",
               ids.size(), generated > 0 ? static_cast<double>(ids.size()) / secs(t0, first) : 0.0, static_cast<long long>(generated), why,
               decode_s > 0 ? static_cast<double>(generated - 1) / decode_s : 0.0,
               generated > 0 ? 1000 * secs(g_process_start, first) : 0.0);
  return 0;
}

int cmd_chat(int argc, char** argv) {
  Args a("chat", "Interactive chat: one line per turn; /reset starts over, /exit ends. Ctrl-C stops a reply, Ctrl-D ends.", argc, argv,
         {{{"-n,--max-tokens", "most tokens per reply", "512", false, "N"},
           {"--think", "reasoning mode: none, high or max", "none", false, "MODE"},
           {"--system", "system prompt", "", false, "TEXT"},
           {"--context", "context limit in tokens (memory grows with use)", "the model maximum", false, "N"},
           {"--stop", "stop string (not printed)", "", false, "TEXT"},
           {"-v,--verbose", "log the library's info messages", "", true, ""}},
          model_opts(), sampling_opts(), cache_opts(), backend_opts()});
  const ThinkMode mode = parse_think_mode(a.get("--think").value_or("none"));
  GenerationParams gp;
  gp.sampling = sampler_params(a);
  gp.max_tokens = static_cast<int>(a.get_int("--max-tokens", 512));
  if (gp.max_tokens < 0) throw UsageError("--max-tokens must be >= 0");
  if (auto stop = a.get("--stop")) gp.stop = {*stop};
  const auto model = Model::load(model_dir(a), load_options(a));
  const Tokenizer tok = load_tokenizer(a);
  const ChatFormat fmt(tok);
  Session session(model, session_options(a, *model));

  std::vector<ChatMessage> history;
  if (auto sys = a.get("--system")) history.push_back({"system", *sys, ""});
  std::vector<int32_t> fed;                                        // what the session holds
  std::vector<std::pair<size_t, SessionSnapshot>> checkpoints;     // states at turn boundaries
  for (;;) {
    // At the prompt Ctrl-C ends the program as usual; during a reply it ends the reply.
    const std::optional<std::string> got = read_line("\nyou> ");
    if (!got) break;
    const std::string& line = *got;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.resize(history.empty() || history[0].role != "system" ? 0 : 1);
      session.reset();
      fed.clear();
      checkpoints.clear();
      std::fputs("[history cleared]\n", stderr);
      continue;
    }
    if (line.empty()) continue;
    history.push_back({"user", line, ""});
    const std::vector<int32_t> ids = fmt.encode(history, mode);
    // Reuse the longest matching state: earlier turns are re-rendered without their reasoning.
    size_t common = 0;
    while (common < fed.size() && common < ids.size() && fed[common] == ids[common]) ++common;
    if (common < fed.size()) {
      while (!checkpoints.empty() && checkpoints.back().first > common) checkpoints.pop_back();
      if (checkpoints.empty()) {
        session.reset();
        fed.clear();
      } else {
        session.restore(checkpoints.back().second);
        fed.assign(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(checkpoints.back().first));
      }
    }
    if (static_cast<int64_t>(ids.size()) >= session.max_context()) {
      std::fprintf(stderr, "[the conversation has %zu tokens: over the context limit %lld; /reset to start over]\n", ids.size(),
                   static_cast<long long>(session.max_context()));
      history.pop_back();
      continue;
    }
    // Feed up to <｜Assistant｜>, remember that state, then generate from the mode token on.
    InterruptScope interrupt;
    if (ids.size() - 1 > fed.size() &&
        !feed_prompt(session, std::span<const int32_t>(ids).subspan(fed.size(), ids.size() - 1 - fed.size()))) {
      fed.assign(ids.begin(), ids.begin() + session.position());  // what got fed stays: the next turn reuses it
      history.pop_back();
      std::fputs("[stopped]\n", stderr);
      continue;
    }
    checkpoints.emplace_back(ids.size() - 1, session.snapshot());
    if (mode != ThinkMode::None) std::fputs("[reasoning]\n", stdout);
    bool answer_started = mode == ThinkMode::None;
    const GenerationResult r = generate_tokens(session, tok, &fmt, mode, {&ids.back(), 1}, gp, [&](const GenerationDelta& d) {
      put(stdout, d.reasoning);
      if (!answer_started && !d.content.empty()) {
        std::fputs("\n[answer]\n", stdout);
        answer_started = true;
      }
      put(stdout, d.content);
      return !InterruptScope::interrupted();
    });
    fed = ids;
    fed.insert(fed.end(), r.tokens.begin(), r.tokens.end() - (r.tokens.empty() ? 0 : 1));  // the last sampled token is not fed
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (r.finish == FinishReason::Cancelled) std::fputs("[stopped]\n", stderr);
    history.push_back({"assistant", r.content, r.reasoning});
  }
  return 0;
}

int cmd_tokenize(int argc, char** argv) {
  Args a("tokenize", "Token ids of the text on stdin (or, with --decode, the text of the ids on stdin).", argc, argv,
         {model_opts(),
          {{"--decode", "read token ids, print their text", "", true, ""},
           {"--no-special", "do not recognise special-token strings in the text", "", true, ""}}});
  const Tokenizer tok = load_tokenizer(a);
  const std::string in = read_stdin();
  if (a.has("--decode")) {
    std::vector<int32_t> ids;
    for (int64_t v : parse_int_list(in, "token ids")) {
      if (v < 0 || v >= tok.vocab_size()) throw UsageError("token id " + std::to_string(v) + " is outside the vocabulary");
      ids.push_back(static_cast<int32_t>(v));
    }
    const std::string s = tok.decode(ids);
    std::fwrite(s.data(), 1, s.size(), stdout);
    return 0;
  }
  const auto ids = tok.encode(in, !a.has("--no-special"));
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n");
  return 0;
}

}  // namespace dsv4::cli
