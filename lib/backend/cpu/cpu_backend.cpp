#include "backend/cpu/cpu_backend.hpp"

#include <thread>

namespace dsv4 {

namespace {
int resolve_threads(int threads) {
  if (threads > 0) return threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}
}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(resolve_threads(threads)) {}

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace dsv4
