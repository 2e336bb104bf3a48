// CPU kernel tier selection and backend selection (baseline ISA).
#include "backend/cpu/select.hpp"
#if defined(DSV4_HAVE_CUDA)
#include "backend/cuda/cuda_backend.hpp"
#endif

#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#include <fstream>
#include <thread>

#include "dsv4/error.hpp"

// Each compiled tier's entry point (lib/backend/cpu/cpu_backend.cpp, one per tier).
#define DSV4_DECLARE_TIER(name) extern "C" dsv4::Backend* dsv4_cpu_make_##name(int threads);
#ifdef DSV4_HAVE_CPU_portable
DSV4_DECLARE_TIER(portable)
#endif
#ifdef DSV4_HAVE_CPU_avx2
DSV4_DECLARE_TIER(avx2)
#endif
#ifdef DSV4_HAVE_CPU_avx512
DSV4_DECLARE_TIER(avx512)
#endif
#ifdef DSV4_HAVE_CPU_avx512vnni
DSV4_DECLARE_TIER(avx512vnni)
#endif
#ifdef DSV4_HAVE_CPU_neon
DSV4_DECLARE_TIER(neon)
#endif
#ifdef DSV4_HAVE_CPU_neondot
DSV4_DECLARE_TIER(neondot)
#endif
#undef DSV4_DECLARE_TIER

namespace dsv4 {

namespace {

struct Tier {
  const char* name;
  Backend* (*make)(int);
  const char* needs;
};

// Lowest first.
const std::vector<Tier>& tiers() {
  static const std::vector<Tier> t = {
#ifdef DSV4_HAVE_CPU_portable
      {"portable", dsv4_cpu_make_portable, "nothing beyond the baseline ISA"},
#endif
#ifdef DSV4_HAVE_CPU_avx2
      {"avx2", dsv4_cpu_make_avx2, "AVX2, FMA, F16C, BMI2"},
#endif
#ifdef DSV4_HAVE_CPU_avx512
      {"avx512", dsv4_cpu_make_avx512, "AVX-512 F/BW/VL/DQ/CD (and the avx2 tier's features)"},
#endif
#ifdef DSV4_HAVE_CPU_avx512vnni
      {"avx512vnni", dsv4_cpu_make_avx512vnni, "AVX-512 F/BW/VL/DQ/CD, VNNI and VBMI"},
#endif
#ifdef DSV4_HAVE_CPU_neon
      {"neon", dsv4_cpu_make_neon, "AArch64 NEON"},
#endif
#ifdef DSV4_HAVE_CPU_neondot
      {"neondot", dsv4_cpu_make_neondot, "AArch64 NEON with the dot-product extension"},
#endif
  };
  return t;
}

const Tier* find(const std::string& name) {
  for (const Tier& t : tiers())
    if (name == t.name) return &t;
  return nullptr;
}

std::string tier_list() {
  std::string s;
  for (const Tier& t : tiers()) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

}  // namespace

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      if (p != std::string::npos) return line.substr(line.find_first_not_of(' ', p + 1));
    }
  return "cpu";
}

uint64_t system_memory_bytes(bool available_only) {
  const long pages = sysconf(available_only ? _SC_AVPHYS_PAGES : _SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

std::vector<std::string> cpu_tiers_compiled() {
  std::vector<std::string> v;
  for (const Tier& t : tiers()) v.emplace_back(t.name);
  return v;
}

bool cpu_tier_runs(const std::string& tier) {
  if (find(tier) == nullptr) return false;
  if (tier == "portable") return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // F16C straight from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows it.
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & (1u << 29)) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c &&
                    __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
  if (tier == "avx2") return avx2;
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd");
  if (tier == "avx512") return avx512;
  if (tier == "avx512vnni") return avx512 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
#elif defined(__aarch64__)
  if (tier == "neon") return true;  // AArch64 always has Advanced SIMD
  if (tier == "neondot") return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
  return false;
}

std::string best_cpu_tier() {
  std::string best = "portable";
  for (const Tier& t : tiers())
    if (cpu_tier_runs(t.name)) best = t.name;
  return best;
}

std::string cpu_tier_requirements(const std::string& tier) {
  const Tier* t = find(tier);
  return t != nullptr ? t->needs : "";
}

std::unique_ptr<Backend> make_cpu_backend(int threads, const std::string& tier) {
  const std::string name = tier.empty() || tier == "auto" ? best_cpu_tier() : tier;
  const Tier* t = find(name);
  if (t == nullptr)
    throw UnsupportedError("CPU kernel tier '" + name + "' is not compiled into this library (it has: " + tier_list() + ")");
  if (!cpu_tier_runs(name))
    throw UnsupportedError("CPU kernel tier '" + name + "' needs " + t->needs + ", which this CPU (" + cpu_model_name() +
                           ") lacks; the best it runs is '" + best_cpu_tier() + "'");
  return std::unique_ptr<Backend>(t->make(threads));
}

std::vector<std::string> compiled_backends() {
#if defined(DSV4_HAVE_CUDA)
  return {"cpu", "cuda"};
#else
  return {"cpu"};
#endif
}
std::vector<std::string> cpu_kernel_tiers() { return cpu_tiers_compiled(); }
std::string best_cpu_kernel_tier() { return best_cpu_tier(); }

std::vector<DeviceInfo> available_devices() {
  DeviceInfo d;
  d.backend = "cpu";
  d.device = 0;
  d.name = cpu_model_name() + " (kernel tier " + best_cpu_tier() + ")";
  d.memory_total = system_memory_bytes(false);
  const unsigned hw = std::thread::hardware_concurrency();
  d.threads = hw == 0 ? 1 : static_cast<int>(hw);
  std::vector<DeviceInfo> v{d};
#if defined(DSV4_HAVE_CUDA)
  for (auto& g : cuda::devices()) v.push_back(g);
#endif
  return v;
}

void check_backend(const LoadOptions& o) {
  if (o.threads < 0) throw InvalidArgument("LoadOptions::threads must be >= 0 (0: one per hardware thread)");
  if (o.max_batch <= 0) throw InvalidArgument("LoadOptions::max_batch must be positive");
  if (o.backend == "cpu") {
    if (o.device != 0) throw UnsupportedError("backend cpu has one device (0); device " + std::to_string(o.device) + " does not exist");
    if (!o.cpu_tier.empty() && o.cpu_tier != "auto") {
      if (find(o.cpu_tier) == nullptr)
        throw UnsupportedError("CPU kernel tier '" + o.cpu_tier + "' is not compiled into this library (it has: " + tier_list() + ")");
      if (!cpu_tier_runs(o.cpu_tier))
        throw UnsupportedError("CPU kernel tier '" + o.cpu_tier + "' needs " + find(o.cpu_tier)->needs + ", which this CPU lacks");
    }
    return;
  }
  if (o.backend == "cuda") {
#if defined(DSV4_HAVE_CUDA)
    std::string why;
    const int n = cuda::device_count(&why);
    if (o.device < 0 || o.device >= n)
      throw UnsupportedError("cuda device " + std::to_string(o.device) + " does not exist (" +
                             (n == 0 ? "no CUDA device: " + why : std::to_string(n) + " devices") + ")");
    return;
#else
    throw UnsupportedError("backend cuda is not built into this library (it was compiled without a CUDA compiler or with DSV4_CUDA=OFF); available: cpu");
#endif
  }
  throw UnsupportedError("unknown backend '" + o.backend + "' (this build has: " + (compiled_backends().size() > 1 ? "cpu, cuda" : "cpu") + ")");
}

std::unique_ptr<Backend> make_backend(const LoadOptions& o) {
  check_backend(o);
#if defined(DSV4_HAVE_CUDA)
  if (o.backend == "cuda") return cuda::make_backend(o.device, o.host_experts, o.device_reserve_bytes);
#endif
  return make_cpu_backend(o.threads, o.cpu_tier);
}

}  // namespace dsv4
