// Helpers shared by the dsv4 subcommands.
#pragma once
#include <chrono>
#include <set>
#include <string>

#include "args.hpp"
#include "dsv4/backend.hpp"
#include "dsv4/config.hpp"

namespace dsv4::cli {

// When the process started (for time-to-first-token).
extern const std::chrono::steady_clock::time_point g_process_start;

// The model directory: -m/--model, else $DSV4_MODEL, else the embedded demo model.
std::string model_dir(const Args& a);
std::string human_bytes(double bytes);
std::string require(const Args& a, const std::string& flag);
// --backend NAME (default cpu), --device N (default 0), --threads N (default: one per hardware thread).
LoadOptions load_options(const Args& a);
// --cache-type (UsageError for an unknown one).
CacheType cache_type(const Args& a);

int cmd_info(int argc, char** argv);
int cmd_logits(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_chat(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_serve(int argc, char** argv);

}  // namespace dsv4::cli
