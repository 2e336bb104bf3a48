// The CUDA backend: device memory, transfers and kernel launches for the device backend.
#include "backend/cuda/cuda_backend.hpp"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "backend/cuda/lt_gemm.hpp"
#include "backend/device/device_backend.hpp"
#include "dsv4/error.hpp"
#include "dsv4k/launch.hpp"

namespace dsv4::cuda {

namespace {

std::string gib(size_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

class CudaBackend final : public DeviceBackend {
 public:
  explicit CudaBackend(int device) : dev_(device) {
    check(cudaSetDevice(dev_), "cudaSetDevice");
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, dev_), "cudaGetDeviceProperties");
    name_ = p.name;
    cc_ = std::to_string(p.major) + std::to_string(p.minor);
    total_ = p.totalGlobalMem;
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    if (lt_.available() && cudaMalloc(&lt_ws_, kLtWorkspace) != cudaSuccess) {
      cudaGetLastError();
      lt_ws_ = nullptr;
    }
  }
  ~CudaBackend() override {
    free_internal();
    cudaSetDevice(dev_);
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
    if (lt_ws_ != nullptr) cudaFree(lt_ws_);
    if (pinned_ != nullptr) cudaFreeHost(pinned_);
  }

  BackendInfo info() const override {
    BackendInfo b;
    b.name = "cuda";
    b.device = dev_;
    b.device_name = name_ + " (sm_" + cc_ + ")";
    b.kernel_tier = "warp GEMV + " + lt_.why() + (lt_.fallbacks() > 0 ? " (" + std::to_string(lt_.fallbacks()) + " products without an algorithm ran the reference kernel)" : "");
    b.memory_total = total_;
    size_t free = 0, total = 0;
    cudaSetDevice(dev_);
    if (cudaMemGetInfo(&free, &total) == cudaSuccess) b.memory_available = free;
    b.weight_bytes = weight_bytes();
    b.host_weight_bytes = host_weight_bytes();
    b.buffer_bytes = buffer_bytes();
    b.formats = {"F32", "BF16", "F16", "FP8", "FP4"};
    b.ops = {"linear", "embed", "rms_norm", "rope", "mhc", "attention", "compressor", "indexer", "moe", "gather"};
    b.graphs = true;
    return b;
  }

 protected:
  void* dev_alloc(size_t bytes) override {
    cudaSetDevice(dev_);
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      throw CapacityError("cuda device " + std::to_string(dev_) + ": cannot allocate " + gib(bytes) + " (" + gib(free) + " free of " +
                          gib(total) + "; " + cudaGetErrorString(e) + ")");
    }
    return p;
  }
  void dev_free(void* p) noexcept override {
    cudaSetDevice(dev_);
    cudaStreamSynchronize(stream_);  // kernels still reading it finish first
    cudaFree(p);
  }
  void dev_zero(void* p, size_t bytes) override {
    cudaSetDevice(dev_);
    check(cudaMemsetAsync(p, 0, bytes, stream_), "cudaMemsetAsync");
  }
  void h2d(void* dst, const void* src, size_t bytes) override {
    cudaSetDevice(dev_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "upload");
    check(cudaStreamSynchronize(stream_), "upload (a kernel before it failed)");
  }
  void d2h(void* dst, const void* src, size_t bytes) override {
    cudaSetDevice(dev_);
    if (bytes <= kPinnedMax) {  // logits and other small downloads go through pinned memory (grow-only)
      if (pinned_bytes_ < bytes) {
        if (pinned_ != nullptr) cudaFreeHost(pinned_);
        pinned_ = nullptr;
        pinned_bytes_ = 0;
        check(cudaMallocHost(&pinned_, bytes), "cudaMallocHost");
        pinned_bytes_ = bytes;
      }
      check(cudaMemcpyAsync(pinned_, src, bytes, cudaMemcpyDeviceToHost, stream_), "download");
      check(cudaStreamSynchronize(stream_), "download (a kernel before it failed)");
      std::memcpy(dst, pinned_, bytes);
      return;
    }
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "download");
    check(cudaStreamSynchronize(stream_), "download (a kernel before it failed)");
  }
  void d2d(void* dst, const void* src, size_t bytes) override {
    cudaSetDevice(dev_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "device copy");
  }
  void dev_sync() override {
    cudaSetDevice(dev_);
    check(cudaStreamSynchronize(stream_), "synchronise (a kernel before it failed)");
  }
  void begin_recording() override {
    cudaSetDevice(dev_);
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  }
  void* end_recording() override {
    cudaGraph_t g = nullptr;
    if (cudaStreamEndCapture(stream_, &g) != cudaSuccess || g == nullptr) {
      cudaGetLastError();
      return nullptr;
    }
    cudaGraphExec_t x = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&x, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return x;
  }
  void replay(void* rec) override { check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(rec), stream_), "cudaGraphLaunch"); }
  void drop(void* rec) noexcept override {
    cudaSetDevice(dev_);
    cudaStreamSynchronize(stream_);
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(rec));
  }
  uint64_t total_bytes() const override { return total_; }
  // Mapped pinned memory: with unified addressing (every 64-bit Linux system) the host pointer is
  // the device pointer; the kernels read it over the bus.
  void* host_alloc(size_t bytes) override {
    cudaSetDevice(dev_);
    void* p = nullptr;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess) {
      cudaGetLastError();
      throw CapacityError("cuda device " + std::to_string(dev_) + ": cannot pin " + gib(bytes) + " of host memory for the experts that do not fit");
    }
    void* d = nullptr;
    if (cudaHostGetDevicePointer(&d, p, 0) != cudaSuccess || d != p) {
      cudaGetLastError();
      cudaFreeHost(p);
      throw UnsupportedError("cuda device " + std::to_string(dev_) + ": mapped host memory without unified addressing");
    }
    return p;
  }
  void host_free(void* p) noexcept override {
    cudaSetDevice(dev_);
    cudaStreamSynchronize(stream_);
    cudaFreeHost(p);
  }
  void host_put(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  uint64_t free_bytes() const override {
    size_t free = 0, total = 0;
    cudaSetDevice(dev_);
    return cudaMemGetInfo(&free, &total) == cudaSuccess ? free : 0;
  }
#define DSV4K_CUDA_RUN(K) \
  void run(const dsv4k::K& k) override { go(k, "kernel " #K); }
  DSV4K_KERNELS(DSV4K_CUDA_RUN)
#undef DSV4K_CUDA_RUN

 private:
  template <class K>
  void go(const K& k, const char* what) {
    cudaSetDevice(dev_);  // the calling thread may not have this device current
    check(static_cast<cudaError_t>(dsv4k::launch(k, stream_)), what);
  }
  // Products through cuBLASLt; without it (or without an algorithm for the shape) the reference kernel.
  void go(const dsv4k::Bf16Gemm& k, const char* what) {
    cudaSetDevice(dev_);
    if (lt_ws_ != nullptr && lt_.run(k, stream_, lt_ws_, kLtWorkspace)) {
      check(cudaGetLastError(), what);
      return;
    }
    check(static_cast<cudaError_t>(dsv4k::launch(k, stream_)), what);
  }
  void check(cudaError_t e, const char* what) const {
    if (e == cudaSuccess) return;
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw CapacityError(std::string("cuda device ") + std::to_string(dev_) + ": " + what + ": out of device memory");
    }
    // A launch or a kernel fault: a bug, not bad input (the context may be unusable after a fault).
    throw std::runtime_error(std::string("cuda device ") + std::to_string(dev_) + ": " + what + " failed: " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
  }

  static constexpr size_t kPinnedMax = size_t{64} << 20;
  static constexpr size_t kLtWorkspace = size_t{32} << 20;  // cuBLASLt's workspace (split-K and the like)
  LtGemm lt_;
  void* lt_ws_ = nullptr;
  int dev_ = 0;
  cudaStream_t stream_ = nullptr;
  void* pinned_ = nullptr;
  size_t pinned_bytes_ = 0;
  std::string name_, cc_;
  size_t total_ = 0;
};

}  // namespace

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why != nullptr) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    return 0;
  }
  if (n == 0 && why != nullptr) *why = "cudaGetDeviceCount: 0 devices";
  return n;
}

std::vector<DeviceInfo> devices() {
  std::vector<DeviceInfo> v;
  const int n = device_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.backend = "cuda";
    d.device = i;
    d.name = std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
    d.memory_total = p.totalGlobalMem;
    v.push_back(d);
  }
  return v;
}

std::unique_ptr<Backend> make_backend(int device, bool host_experts, uint64_t reserve_bytes) {
  std::string why;
  const int n = device_count(&why);
  if (device < 0 || device >= n)
    throw UnsupportedError("cuda device " + std::to_string(device) + " does not exist (" +
                           (n == 0 ? "no CUDA device: " + why : std::to_string(n) + " devices") + ")");
  auto b = std::make_unique<CudaBackend>(device);
  b->set_placement({host_experts, reserve_bytes});
  return b;
}

}  // namespace dsv4::cuda
