// The device backend (lib/backend/device) over an emulated device: its memory is one host region
// mapped PROT_NONE, opened only while a kernel, an upload or a download runs, and its kernels are
// the dsv4k kernels the CUDA backend launches, run here item by item on the CPU. The suite runs
// every golden and every op case through it, so the CUDA backend's host code (parameters, scratch,
// launch order) and its kernels' arithmetic are checked on machines without a GPU; what this
// cannot check is the CUDA launch itself (grids, streams, device memory).
#pragma once
#include <cstddef>
#include <cstdint>

#include <algorithm>
#include <utility>

#include <functional>
#include <memory>
#include <vector>

#include "backend/device/device_backend.hpp"
#include "util/thread_pool.hpp"

namespace dsv4::test {

class EmulatedDevice final : public DeviceBackend {
 public:
  // `reserve_bytes` of address space for everything; `device_bytes` of it count as device memory
  // (the rest can only back host_alloc: "host memory the device reads", for host-resident experts).
  explicit EmulatedDevice(size_t reserve_bytes = size_t{16} << 30, int threads = 2, size_t device_bytes = SIZE_MAX);
  ~EmulatedDevice() override;
  BackendInfo info() const override;
  uint64_t launches() const { return launches_; }
  bool contains(const void* p) const;
  bool in_host_block(const void* p) const;  // inside memory host_alloc gave

 protected:
  void* dev_alloc(size_t bytes) override;
  void dev_free(void*) noexcept override {}  // the region goes with the backend
  void dev_zero(void* p, size_t bytes) override;
  void h2d(void* dst, const void* src, size_t bytes) override;
  void d2h(void* dst, const void* src, size_t bytes) override;
  void d2d(void* dst, const void* src, size_t bytes) override;
  uint64_t free_bytes() const override { return std::min(reserved_ - used_, device_bytes_ - std::min(device_bytes_, device_used_)); }
  uint64_t total_bytes() const override { return std::min(reserved_, device_bytes_); }
  void* host_alloc(size_t bytes) override;
  void dev_sync() override {}  // every kernel ran to its end before run() returned
  void begin_recording() override;
  void* end_recording() override;
  void replay(void* rec) override;
  void drop(void* rec) noexcept override;
#define DSV4K_EMU_RUN(K) void run(const dsv4k::K& k) override { submit(k); }
  DSV4K_KERNELS(DSV4K_EMU_RUN)
#undef DSV4K_EMU_RUN

 private:
  class Open;
  template <class K>
  void exec(const K& k);
  template <class K>
  void submit(const K& k) {  // run now, or append to the recording
    if (rec_ != nullptr) rec_->push_back([this, k] { exec(k); });
    else exec(k);
  }
  using Recording = std::vector<std::function<void()>>;
  Recording* rec_ = nullptr;
  void open();
  void close();
  uint8_t* base_ = nullptr;
  void* take(size_t bytes);  // from the region
  size_t reserved_ = 0, used_ = 0, device_bytes_ = SIZE_MAX, device_used_ = 0;
  std::vector<std::pair<const uint8_t*, size_t>> host_blocks_;
  int depth_ = 0, threads_ = 2;
  uint64_t launches_ = 0;
  std::shared_ptr<ThreadPool> pool_;
};

}  // namespace dsv4::test
