// The dsv4 command-line tool: subcommand dispatch and error reporting.
#include <iostream>
#include <string>

#include "common.hpp"
#include "dsv4.h"
#include "dsv4/backend.hpp"
#include "dsv4/error.hpp"

namespace dsv4::cli {
const std::chrono::steady_clock::time_point g_process_start = std::chrono::steady_clock::now();
}  // namespace dsv4::cli

namespace {

struct Command {
  const char* name;
  const char* summary;
};
constexpr Command kCommands[] = {
    {"generate", "generate text from a prompt (stdin or -p), streamed to stdout"},
    {"chat", "interactive chat with line editing and history"},
    {"tokenize", "token ids of text, or text of ids (--decode)"},
    {"info", "model summary, backends, devices, memory at a context length"},
    {"logits", "raw logits of token ids as .npy"},
    {"bench", "decode / prefill speed against measured ceilings"},
    {"serve", "OpenAI-compatible HTTP server with continuous batching"},
};

std::string usage() {
  std::string u = "dsv4 " DSV4_VERSION_STRING " - DeepSeek-V4 inference engine\n\nusage: dsv4 <command> [options]   (dsv4 <command> --help lists them)\n\ncommands:\n";
  for (const Command& c : kCommands) {
    std::string name = c.name;
    name.resize(10, ' ');
    u += "  " + name + c.summary + "\n";
  }
  u += "\nWithout -m, $DSV4_MODEL or the demo model installed with dsv4 is used.\n"
       "  -h, --help     this text\n  --version      print the version and exit\n";
  return u;
}

}  // namespace

int main(int argc, char** argv) {
  using dsv4::cli::UsageError;
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    (argc < 2 ? std::cerr : std::cout) << usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "--version" || cmd == "-V") {
    std::cout << "dsv4 " << dsv4_version() << " (C API " << dsv4_api_version() << "; backends " << dsv4_compiled_backends()
              << "; CPU kernel tiers";
    for (const auto& t : dsv4::cpu_kernel_tiers()) std::cout << " " << t;
    std::cout << ")\n";
    return 0;
  }
  try {
    if (cmd == "info") return dsv4::cli::cmd_info(argc, argv);
    if (cmd == "logits") return dsv4::cli::cmd_logits(argc, argv);
    if (cmd == "generate") return dsv4::cli::cmd_generate(argc, argv);
    if (cmd == "chat") return dsv4::cli::cmd_chat(argc, argv);
    if (cmd == "tokenize") return dsv4::cli::cmd_tokenize(argc, argv);
    if (cmd == "bench") return dsv4::cli::cmd_bench(argc, argv);
#ifdef DSV4_HAVE_SERVER
    if (cmd == "serve") return dsv4::cli::cmd_serve(argc, argv);
#else
    if (cmd == "serve") throw UsageError("this dsv4 was built without the server (needs cpp-httplib: libcpp-httplib-dev)");
#endif
    std::string hint;
    for (const Command& c : kCommands)
      if (cmd.size() > 1 && std::string(c.name).rfind(cmd.substr(0, 2), 0) == 0) hint = std::string(" (did you mean '") + c.name + "'?)";
    std::cerr << "dsv4: unknown command '" << cmd << "'" << hint << "\nRun 'dsv4 --help' for the commands.\n";
    return 2;
  } catch (const dsv4::cli::HelpRequested& h) {
    std::cout << h.text;
    return 0;
  } catch (const UsageError& e) {
    std::cerr << "dsv4 " << cmd << ": " << e.what() << "\nRun 'dsv4 " << cmd << " --help' for the options.\n";
    return 2;
  } catch (const dsv4::Error& e) {
    std::cerr << "dsv4: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "dsv4: error: " << e.what() << "\n";
    return 1;
  }
}
