#include "terminal.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#ifdef DSV4_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

namespace dsv4::cli {

namespace {
std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted.store(true); }
}  // namespace

bool stderr_is_terminal() { return ::isatty(2) != 0; }

std::function<void(double, std::string_view)> load_progress() {
  if (!stderr_is_terminal()) return {};
  return [](double f, std::string_view stage) {
    std::fprintf(stderr, "\r\033[K[dsv4] loading the model: %3.0f%% %.*s", 100 * f, static_cast<int>(stage.size()), stage.data());
    if (f >= 1.0) std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  };
}

InterruptScope::InterruptScope() {
  g_interrupted.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}
InterruptScope::~InterruptScope() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}
bool InterruptScope::interrupted() { return g_interrupted.load(); }
void InterruptScope::clear() { g_interrupted.store(false); }

bool feed_prompt(Session& session, std::span<const int32_t> tokens) {
  using Clock = std::chrono::steady_clock;
  const bool show = stderr_is_terminal() && tokens.size() >= 2048;
  const size_t step = static_cast<size_t>(std::max<int64_t>(session.options().max_batch, 1));
  const auto t0 = Clock::now();
  size_t done = 0;
  while (done < tokens.size()) {
    if (InterruptScope::interrupted()) {
      if (show) std::fputs("\r\033[K", stderr);
      return false;
    }
    const size_t n = std::min(step, tokens.size() - done);
    session.forward(tokens.subspan(done, n));
    done += n;
    if (show) {
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      const double rate = s > 0 ? static_cast<double>(done) / s : 0.0;
      std::fprintf(stderr, "\r\033[K[dsv4] prompt %zu/%zu tokens, %.0f tok/s, %.0f s left", done, tokens.size(), rate,
                   rate > 0 ? static_cast<double>(tokens.size() - done) / rate : 0.0);
      std::fflush(stderr);
    }
  }
  if (show) std::fputs("\r\033[K", stderr);
  return true;
}

std::optional<std::string> read_line(const char* prompt) {
#ifdef DSV4_HAVE_LIBEDIT
  if (::isatty(0) && ::isatty(2)) {
    static bool init = false;
    static std::string history_file;
    if (!init) {
      init = true;
      if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
        history_file = std::string(home) + "/.dsv4_history";
        read_history(history_file.c_str());
      }
    }
    char* line = readline(prompt);
    if (line == nullptr) return std::nullopt;
    std::string s(line);
    std::free(line);
    if (!s.empty()) {
      add_history(s.c_str());
      if (!history_file.empty()) write_history(history_file.c_str());
    }
    return s;
  }
#endif
  if (::isatty(0) && ::isatty(2)) std::fputs(prompt, stderr);
  std::string s;
  if (!std::getline(std::cin, s)) return std::nullopt;
  return s;
}

}  // namespace dsv4::cli
