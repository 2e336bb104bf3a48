// The dsv4 command-line tool: subcommand dispatch and error reporting.
#include <iostream>
#include <string>

#include "common.hpp"
#include "dsv4/error.hpp"

namespace dsv4::cli {
const std::chrono::steady_clock::time_point g_process_start = std::chrono::steady_clock::now();
}  // namespace dsv4::cli

namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  dsv4 generate [-m DIR] (-p TEXT | stdin) [-n MAX_TOKENS] [--greedy | --temperature T --top-k K --top-p P\n"
    "                --min-p P --seed S] [--think none|high|max] [--raw] [--threads N] [--context N]\n"
    "  dsv4 chat [-m DIR] [--think none|high|max] [sampling flags as generate] [--system TEXT]\n"
    "  dsv4 tokenize [-m DIR | --tokenizer FILE] [--decode]   (text or ids on stdin)\n"
    "  dsv4 info [-m DIR] [--context N]\n"
    "  dsv4 bench [--preset flash|pro | --config FILE] [--layers N] [--contexts 1024,65536] [--prompts 512,4096]\n"
    "             [--batch 1,4,16,64] [--threads N] [--steps N] [--max-batch N] [--json]\n"
    "  dsv4 logits [-m DIR] (--ids 1,2,3 | --ids-file FILE) -o OUT.npy [--chunks 13,27,24] [--threads N]\n"
    "  dsv4 serve [-m DIR] [--host 127.0.0.1] [--port 8080] [--parallel 4] [--context 4096] [--queue 64] [--api-key K]\n"
    "             [--max-tokens 512] [--prefill-chunk 128] [--max-body BYTES] [--alias NAME] [--tokenizer FILE]\n"
    "  dsv4 serve --synthetic flash|pro [--layers 4] --tokenizer FILE ...   (random weights at V4 size, for load tests)\n"
    "\n"
    "  Every command that runs a model takes --backend cpu|cuda (default cpu) and --device N (default 0);\n"
    "  --threads N sizes the backend's worker pool (default: one per hardware thread); --cpu-tier NAME\n"
    "  forces a lower CPU kernel tier (portable, avx2, avx512, avx512vnni; neon, neondot on AArch64).\n"
    "  Without -m, $DSV4_MODEL or the embedded demo model is used.\n"
    "  generate  streams the generated text to stdout, statistics to stderr; --raw feeds the prompt as\n"
    "            plain text (no BOS, no chat format)\n"
    "  info    config summary, parameters and bytes by dtype, memory estimate at a context length\n"
    "  logits  float32 .npy [n_tokens, vocab]; --chunks feeds the prompt in pieces of those sizes,\n"
    "          the rest one token at a time\n"
    "  serve   OpenAI-compatible HTTP API (POST /v1/chat/completions, /v1/completions, GET /v1/models,\n"
    "          /health) with continuous batching over --parallel sequences; loopback unless --host\n";

}  // namespace

int main(int argc, char** argv) {
  using dsv4::cli::UsageError;
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
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
    throw UsageError("unknown command '" + cmd + "'");
  } catch (const UsageError& e) {
    std::cerr << "dsv4: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const dsv4::Error& e) {
    std::cerr << "dsv4: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "dsv4: error: " << e.what() << "\n";
    return 1;
  }
}
