// dsv4 generate / chat / tokenize: text in, text out.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>

#include "common.hpp"
#include "dsv4/chat.hpp"
#include "dsv4/model.hpp"
#include "dsv4/tokenizer.hpp"

namespace dsv4::cli {

namespace {

using Clock = std::chrono::steady_clock;

const std::set<std::string> kSamplingFlags = {"--temperature", "--top-k", "--top-p", "--min-p", "--seed", "--repetition-penalty"};

std::string read_stdin() {
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  return ss.str();
}

Tokenizer load_tokenizer(const Args& a) {
  if (auto t = a.get("--tokenizer")) return Tokenizer::load(*t);
  return Tokenizer::load(std::filesystem::path(model_dir(a)) / "tokenizer.json");
}

Sampler make_sampler(const Args& a) {
  if (a.has("--greedy")) {
    for (const auto& f : kSamplingFlags)
      if (a.has(f) && f != "--seed") throw UsageError("--greedy cannot be combined with " + f);
    return Sampler::make_greedy();
  }
  SamplerParams p;  // generation_config.json defaults: temperature 1.0, top_p 1.0
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
  p.seed = static_cast<uint64_t>(a.get_int("--seed", 0));
  if (p.top_k < 0) throw UsageError("--top-k must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
  if (!(p.min_p >= 0 && p.min_p <= 1)) throw UsageError("--min-p must be in [0, 1]");
  return Sampler::from_params(p);
}

SessionOptions session_options(const Args& a, const Model& m) {
  SessionOptions o;
  const int64_t max_pos = m.config().max_position_embeddings > 0 ? m.config().max_position_embeddings : 16384;
  o.max_context = a.get_int("--context", std::min<int64_t>(max_pos, 16384));
  if (o.max_context <= 0) throw UsageError("--context must be positive");
  return o;
}

double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Writes generated tokens to the right stream: answer text to `answer`, reasoning to `reasoning`.
struct Printer {
  const Tokenizer& tok;
  StreamDecoder answer_dec, reasoning_dec;
  std::FILE* answer;
  std::FILE* reasoning;  // may be null (hidden)
  std::string answer_text, reasoning_text;
  Printer(const Tokenizer& t, std::FILE* ans, std::FILE* rea) : tok(t), answer_dec(t), reasoning_dec(t), answer(ans), reasoning(rea) {}
  void put(std::FILE* f, const std::string& s) {
    if (f != nullptr && !s.empty()) {
      std::fwrite(s.data(), 1, s.size(), f);
      std::fflush(f);
    }
  }
  void token(int32_t id, ThinkingSplitter::Channel ch) {
    if (ch == ThinkingSplitter::Channel::Reasoning) {
      const std::string s = reasoning_dec.push(id);
      reasoning_text += s;
      put(reasoning, s);
    } else if (ch == ThinkingSplitter::Channel::Answer) {
      const std::string s = answer_dec.push(id);
      answer_text += s;
      put(answer, s);
    } else {
      const std::string s = reasoning_dec.flush();
      reasoning_text += s;
      put(reasoning, s + "\n");
    }
  }
  void finish() {
    std::string s = reasoning_dec.flush();
    reasoning_text += s;
    put(reasoning, s);
    s = answer_dec.flush();
    answer_text += s;
    put(answer, s);
  }
};

}  // namespace

int cmd_generate(int argc, char** argv) {
  std::set<std::string> valued = {"--model", "--prompt", "--max-tokens", "--think", "--threads", "--context", "--tokenizer", "--backend", "--device", "--cpu-tier"};
  valued.insert(kSamplingFlags.begin(), kSamplingFlags.end());
  Args a(argc, argv, 2, valued, {"--greedy", "--raw", "--hide-reasoning", "--show-ids"}, {{"-m", "--model"}, {"-p", "--prompt"}, {"-n", "--max-tokens"}});
  const int64_t max_tokens = a.get_int("--max-tokens", 256);
  if (max_tokens < 0 || max_tokens > (1 << 24)) throw UsageError("--max-tokens must be in [0, 16777216]");
  const ThinkMode mode = parse_think_mode(a.get("--think").value_or("none"));
  if (a.has("--raw") && a.has("--think")) throw UsageError("--raw and --think exclude each other (raw text has no chat format)");
  Sampler sampler = make_sampler(a);
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
  const SessionOptions so = session_options(a, *model);
  if (static_cast<int64_t>(ids.size()) > so.max_context)
    throw CapacityError("the prompt has " + std::to_string(ids.size()) + " tokens but the context limit is " +
                        std::to_string(so.max_context) + " (raise it with --context N)");
  Session session(model, so);
  const int32_t eos = fmt ? fmt->eos() : static_cast<int32_t>(model->config().eos_token_id);
  ThinkingSplitter split(fmt ? *fmt : ChatFormat(tok), fmt ? mode : ThinkMode::None);
  Printer out(tok, stdout, a.has("--hide-reasoning") ? nullptr : stderr);

  const auto t0 = Clock::now();
  auto logits = session.forward(ids);
  const auto t1 = Clock::now();
  int64_t generated = 0;
  std::vector<int32_t> gen_ids;
  Clock::time_point first{};
  std::string stop = "max tokens";
  for (int64_t i = 0; i < max_tokens; ++i) {
    const int32_t tok_id = sampler.sample(logits);
    if (i == 0) first = Clock::now();
    ++generated;
    gen_ids.push_back(tok_id);
    if (tok_id == eos) {
      stop = "end of sequence";
      break;
    }
    out.token(tok_id, split.route(tok_id));
    if (i + 1 == max_tokens) break;
    if (session.position() >= session.max_context()) {
      stop = "context limit";
      break;
    }
    logits = session.forward({&tok_id, 1});
  }
  out.finish();
  const auto t2 = Clock::now();
  if (::isatty(1)) std::fputc('\n', stdout);  // stdout carries exactly the generated text otherwise
  if (a.has("--show-ids")) {
    std::fputs("[dsv4] ids:", stderr);
    for (int32_t t : gen_ids) std::fprintf(stderr, " %d", t);
    std::fputc('\n', stderr);
  }
  const double decode_s = generated > 1 ? secs(first, t2) : 0;
  std::fprintf(stderr,
               "\n[dsv4] prompt %zu tokens, prefill %.1f tok/s | generated %lld tokens (%s), decode %.1f tok/s | "
               "first token %.0f ms after start\n",
               ids.size(), static_cast<double>(ids.size()) / secs(t0, t1), static_cast<long long>(generated), stop.c_str(),
               decode_s > 0 ? static_cast<double>(generated - 1) / decode_s : 0.0,
               generated > 0 ? 1000 * secs(g_process_start, first) : 0.0);
  return 0;
}

int cmd_chat(int argc, char** argv) {
  std::set<std::string> valued = {"--model", "--max-tokens", "--think", "--threads", "--context", "--tokenizer", "--system", "--backend", "--device", "--cpu-tier"};
  valued.insert(kSamplingFlags.begin(), kSamplingFlags.end());
  Args a(argc, argv, 2, valued, {"--greedy"}, {{"-m", "--model"}, {"-n", "--max-tokens"}});
  const ThinkMode mode = parse_think_mode(a.get("--think").value_or("none"));
  const int64_t max_tokens = a.get_int("--max-tokens", 512);
  Sampler sampler = make_sampler(a);
  const auto model = Model::load(model_dir(a), load_options(a));
  const Tokenizer tok = load_tokenizer(a);
  const ChatFormat fmt(tok);
  Session session(model, session_options(a, *model));
  const bool tty = ::isatty(0) && ::isatty(2);

  std::vector<ChatMessage> history;
  if (auto sys = a.get("--system")) history.push_back({"system", *sys, ""});
  std::vector<int32_t> fed;                                        // what the session holds
  std::vector<std::pair<size_t, SessionSnapshot>> checkpoints;     // states at turn boundaries
  std::string line;
  for (;;) {
    if (tty) std::fputs("\nyou> ", stderr);
    if (!std::getline(std::cin, line)) break;
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
    // Feed up to <｜Assistant｜>, remember that state, then the mode token.
    session.forward({ids.data() + fed.size(), ids.size() - 1 - fed.size()});
    checkpoints.emplace_back(ids.size() - 1, session.snapshot());
    auto logits = session.forward({&ids.back(), 1});
    fed = ids;

    ThinkingSplitter split(fmt, mode);
    Printer out(tok, stdout, stdout);
    if (mode != ThinkMode::None) std::fputs("[reasoning]\n", stdout);
    bool answer_started = mode == ThinkMode::None;
    for (int64_t i = 0; i < max_tokens; ++i) {
      const int32_t t = sampler.sample(logits);
      if (t == fmt.eos()) break;
      const auto ch = split.route(t);
      out.token(t, ch);
      if (ch == ThinkingSplitter::Channel::Marker && !answer_started) {
        std::fputs("[answer]\n", stdout);
        answer_started = true;
      }
      if (session.position() >= session.max_context()) break;
      logits = session.forward({&t, 1});
      fed.push_back(t);
    }
    out.finish();
    std::fputc('\n', stdout);
    std::fflush(stdout);
    history.push_back({"assistant", out.answer_text, out.reasoning_text});
  }
  return 0;
}

int cmd_tokenize(int argc, char** argv) {
  Args a(argc, argv, 2, {"--model", "--tokenizer"}, {"--decode", "--no-special"}, {{"-m", "--model"}});
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
