#include "support/emulated_device.hpp"

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "dsv4/error.hpp"
#include "util/thread_pool.hpp"

namespace dsv4::test {

class EmulatedDevice::Open {
 public:
  explicit Open(EmulatedDevice& d) : d_(d) { d_.open(); }
  ~Open() { d_.close(); }
  Open(const Open&) = delete;
  Open& operator=(const Open&) = delete;

 private:
  EmulatedDevice& d_;
};

EmulatedDevice::EmulatedDevice(size_t reserve_bytes, int threads, size_t device_bytes)
    : reserved_(reserve_bytes), device_bytes_(device_bytes), threads_(threads), pool_(ThreadPool::shared(threads)) {
  void* p = mmap(nullptr, reserved_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("EmulatedDevice: cannot reserve address space");
  base_ = static_cast<uint8_t*>(p);
}

EmulatedDevice::~EmulatedDevice() {
  free_internal();
  munmap(base_, reserved_);
}

BackendInfo EmulatedDevice::info() const {
  BackendInfo b;
  b.name = "device-emu";
  b.device_name = "dsv4k kernels emulated on the host";
  b.kernel_tier = "reference";
  b.memory_total = total_bytes();
  b.memory_available = free_bytes();
  b.weight_bytes = weight_bytes();
  b.host_weight_bytes = host_weight_bytes();
  b.buffer_bytes = buffer_bytes();
  b.formats = {"F32", "BF16", "F16", "FP8", "FP4"};
  b.ops = {"linear", "embed", "rms_norm", "rope", "mhc", "attention", "compressor", "indexer", "moe", "gather"};
  b.graphs = true;
  return b;
}

bool EmulatedDevice::contains(const void* p) const {
  const auto* q = static_cast<const uint8_t*>(p);
  return q >= base_ && q < base_ + reserved_;
}

void EmulatedDevice::open() {
  if (depth_++ == 0 && used_ > 0 && mprotect(base_, used_, PROT_READ | PROT_WRITE) != 0)
    throw std::runtime_error("EmulatedDevice: mprotect failed");
}

void EmulatedDevice::close() {
  if (--depth_ == 0 && used_ > 0) mprotect(base_, used_, PROT_NONE);
}

bool EmulatedDevice::in_host_block(const void* p) const {
  const auto* q = static_cast<const uint8_t*>(p);
  for (const auto& [b, n] : host_blocks_)
    if (q >= b && q < b + n) return true;
  return false;
}

void* EmulatedDevice::take(size_t bytes) {
  const size_t page = 4096, n = (std::max<size_t>(bytes, 1) + page - 1) / page * page;
  if (n > reserved_ - used_) throw CapacityError("EmulatedDevice: region of " + std::to_string(reserved_) + " bytes is full");
  uint8_t* p = base_ + used_;
  used_ += n;
  if (depth_ > 0) mprotect(p, n, PROT_READ | PROT_WRITE);
  return p;
}

void* EmulatedDevice::dev_alloc(size_t bytes) {
  if (bytes > free_bytes()) throw CapacityError("EmulatedDevice: " + std::to_string(bytes) + " bytes asked, " + std::to_string(free_bytes()) + " free");
  void* p = take(bytes);
  device_used_ += (std::max<size_t>(bytes, 1) + 4095) / 4096 * 4096;
  return p;
}

void* EmulatedDevice::host_alloc(size_t bytes) {
  if (bytes > reserved_ - used_) return nullptr;
  void* p = take(bytes);
  host_blocks_.emplace_back(static_cast<const uint8_t*>(p), bytes);
  return p;
}

void EmulatedDevice::dev_zero(void* p, size_t bytes) {
  Open o(*this);
  std::memset(p, 0, bytes);
}
void EmulatedDevice::h2d(void* dst, const void* src, size_t bytes) {
  if (rec_ != nullptr) throw std::logic_error("EmulatedDevice: an upload inside a recorded step");
  Open o(*this);
  std::memcpy(dst, src, bytes);
}
void EmulatedDevice::d2h(void* dst, const void* src, size_t bytes) {
  if (rec_ != nullptr) throw std::logic_error("EmulatedDevice: a download inside a recorded step");
  Open o(*this);
  std::memcpy(dst, src, bytes);
}
void EmulatedDevice::d2d(void* dst, const void* src, size_t bytes) {
  if (rec_ != nullptr) {
    rec_->push_back([this, dst, src, bytes] { d2d(dst, src, bytes); });
    return;
  }
  Open o(*this);
  std::memmove(dst, src, bytes);
}

void EmulatedDevice::begin_recording() { rec_ = new Recording; }
void* EmulatedDevice::end_recording() {
  Recording* r = rec_;
  rec_ = nullptr;
  return r;
}
void EmulatedDevice::replay(void* rec) {
  for (auto& f : *static_cast<Recording*>(rec)) f();
}
void EmulatedDevice::drop(void* rec) noexcept { delete static_cast<Recording*>(rec); }

template <class K>
void EmulatedDevice::exec(const K& k) {
  Open o(*this);
  ++launches_;
  const int64_t n = k.count();
  pool_->parallel_for(n, 1, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if constexpr (dsv4k::is_warp_kernel<K>::value) dsv4k::run_warp_item_host(k, i);
      else k(i);
    }
  }, threads_);
}

}  // namespace dsv4::test
