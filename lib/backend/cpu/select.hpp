// Which CPU kernel tiers this binary has, which this machine runs, and the tier's backend.
// Compiled once for the baseline ISA (it must run everywhere to decide).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace dsv4 {

std::string cpu_model_name();
uint64_t system_memory_bytes(bool available_only);

// Tiers compiled into this binary, lowest first: portable, then avx2 / avx512 / avx512vnni
// (x86-64) or neon / neondot (AArch64), as built.
std::vector<std::string> cpu_tiers_compiled();
// Whether this CPU (and OS) can execute the tier's instructions.
bool cpu_tier_runs(const std::string& tier);
// The highest compiled tier this CPU runs.
std::string best_cpu_tier();
// What each tier needs, for messages ("AVX2+FMA+F16C", ...).
std::string cpu_tier_requirements(const std::string& tier);

}  // namespace dsv4
