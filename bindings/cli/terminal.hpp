// Terminal conveniences of the CLI: progress lines (on a terminal only), Ctrl-C that stops the
// current reply instead of the program, and line editing with history for chat.
#pragma once
#include <atomic>
#include <optional>
#include <span>
#include <string>

#include "dsv4/backend.hpp"
#include "dsv4/model.hpp"

namespace dsv4::cli {

bool stderr_is_terminal();

// Progress of a model load as one rewritten line on stderr (terminal only); empty otherwise.
std::function<void(double, std::string_view)> load_progress();

// While alive, Ctrl-C sets interrupted() instead of ending the process (restored on destruction).
class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;
  static bool interrupted();
  static void clear();
};

// Feeds `tokens` to the session in steps of its max_batch, printing "prompt 4096/24000 tokens,
// 410 tok/s" on a terminal when the prompt is long. Returns false when Ctrl-C (within an
// InterruptScope) stopped it; the tokens fed so far stay fed (session.position() says how many).
bool feed_prompt(Session& session, std::span<const int32_t> tokens);

// Reads a line with editing and history when stdin is a terminal (libedit where built), else
// from std::cin. nullopt at end of input.
std::optional<std::string> read_line(const char* prompt);

}  // namespace dsv4::cli
