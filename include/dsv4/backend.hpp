// dsv4/backend.hpp: which compute backends this build has, which devices they see, and how a
// model is loaded onto one of them.
//
// A model is bound to one backend instance when it is loaded (Model::load with LoadOptions); all
// sessions of that model share it: its weights, its thread pool (CPU) and its step buffers. Asking
// for a backend that is not built, or a device that does not exist, throws UnsupportedError.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/export.hpp"

namespace dsv4 {

struct LoadOptions {
  std::string backend = "cpu";  // "cpu" (always built), "cuda" (builds with DSV4_CUDA)
  int device = 0;               // device index of that backend (the CPU has one: 0)
  int threads = 0;              // CPU worker threads of the model's pool, shared by all its sessions (0: one per hardware thread)
  std::string cpu_tier;         // CPU kernel tier: "" / "auto" = the best this CPU runs; or a lower one to force it
                                // ("portable", "avx2", "avx512", "avx512vnni"; "neon", "neondot" on AArch64)
  int64_t max_batch = 512;      // most rows (tokens of all sessions together) one step carries; bounds step buffers
  // The pool every session's cache blocks come from (sessions grow block by block as their
  // position advances). cache_pool_bytes: its budget, shared by all sessions of the model; 0 =
  // automatic: 90% of the backend's memory less the weights bound to it, and at least a quarter
  // of that memory. A session that would pass it gets a CapacityError before any state changes.
  uint64_t cache_pool_bytes = 0;
  int64_t cache_block_tokens = 0;  // positions per block; 0 = 1024 (must be a multiple of every compression ratio)
  // Device backends (cuda): where the weights go. All of them to device memory when they fit with
  // device_reserve_bytes to spare for caches and scratch (0: 5% of the device's memory, at least
  // 2 GiB). When they do not and host_experts is on, whole routed experts (spread evenly over the
  // layers) stay in pinned host memory that the kernels read over the bus: the model runs, and each
  // token's experts that live there cost bus bandwidth (BackendInfo::host_weight_bytes says how
  // much). Off: weights that do not fit in the free device memory are a CapacityError.
  bool host_experts = true;
  uint64_t device_reserve_bytes = 0;
  // Called during loading with the fraction done (0 … 1) and what is being done. May be empty.
  std::function<void(double fraction, std::string_view stage)> progress;
};

// What a backend instance can do and what it holds.
struct BackendInfo {
  std::string name;                  // "cpu", "cuda"
  int device = 0;
  std::string device_name;           // e.g. the CPU model, the GPU name
  std::string kernel_tier;           // CPU: instruction-set tier of the matrix kernels in use
  int threads = 0;                   // CPU worker threads (0 for devices)
  uint64_t memory_total = 0;         // bytes of the memory the backend allocates from
  uint64_t memory_available = 0;     // bytes free at the time of the query
  uint64_t weight_bytes = 0;         // weights bound to this backend (CPU: mapped, not copied; devices: in device memory)
  uint64_t host_weight_bytes = 0;    // devices: weights kept in pinned host memory the device reads (LoadOptions::host_experts)
  uint64_t buffer_bytes = 0;         // backend memory in use: sequence states, step buffers, scratch
  std::vector<std::string> formats;  // weight formats its matrix ops accept: F32 BF16 F16 FP8 FP4
  std::vector<std::string> ops;      // op families it implements
  bool graphs = false;               // whether decode steps are replayed as captured graphs
};

// One device a compiled-in backend can use.
struct DeviceInfo {
  std::string backend;     // "cpu", "cuda"
  int device = 0;
  std::string name;
  uint64_t memory_total = 0;
  int threads = 0;         // hardware threads (CPU)
};

// Backends this build has (always contains "cpu").
DSV4_API std::vector<std::string> compiled_backends();
// CPU kernel tiers this build has (lowest first), and the best one this machine runs.
DSV4_API std::vector<std::string> cpu_kernel_tiers();
DSV4_API std::string best_cpu_kernel_tier();
// Devices found now, for every compiled-in backend.
DSV4_API std::vector<DeviceInfo> available_devices();

}  // namespace dsv4
