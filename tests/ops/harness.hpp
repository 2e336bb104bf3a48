// The op harness: every backend op against a naive double-precision reference, on awkward shapes
// (1, 13, 137) and real V4-Flash shapes, for every backend under test. The doctest suite
// (test_ops.cpp) checks every case; the `dsv4_ops` tool prints the support matrix and, with
// --perf, µs and GB/s per op.
//
// Cases see a backend only through the Backend interface: inputs go in with upload(), results
// come out with download(), so the same case runs on a device backend (and on the host-isolation
// test backend, whose memory faults when touched from outside an op).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "ops/encode.hpp"

namespace dsv4::test {

// A backend the harness runs every case on.
struct BackendUnderTest {
  std::string name;
  std::function<std::unique_ptr<Backend>()> make;
};
// cpu, cpu-isolated (and every other backend compiled in).
std::vector<BackendUnderTest> backends_under_test();

// A block of backend memory, released with its owner.
class DevBuf {
 public:
  DevBuf() = default;
  DevBuf(Backend& be, size_t bytes) : be_(&be), p_(be.alloc(bytes)), bytes_(bytes) {}
  ~DevBuf() {
    if (be_ != nullptr) be_->release(p_);
  }
  DevBuf(DevBuf&& o) noexcept : be_(o.be_), p_(o.p_), bytes_(o.bytes_) { o.be_ = nullptr; }
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(be_, o.be_);
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  template <class T = float>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  Backend* be_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Backend memory holding a copy of host data, and back.
template <class T>
DevBuf to_backend(Backend& be, const std::vector<T>& v) {
  DevBuf b(be, std::max<size_t>(v.size(), 1) * sizeof(T));
  if (!v.empty()) be.upload(b.as<void>(), v.data(), v.size() * sizeof(T));
  return b;
}
template <class T = float>
std::vector<T> from_backend(Backend& be, const DevBuf& b, size_t n) {
  std::vector<T> v(n);
  if (n > 0) be.download(v.data(), b.as<void>(), n * sizeof(T));
  return v;
}

// A weight matrix (and small vectors) copied into backend memory; `w` views the copy.
struct DevMat {
  DevBuf data, scale;
  MatW w;
};
DevMat to_backend(Backend& be, const MatW& host);
FVec view(const DevBuf& b, size_t n);

// Compressed entries (or indexer keys) in backend memory as the engine lays them out: `fmt`,
// `per_block` entries per block, each block its own allocation, and a table pointing at them.
// `stored` is the host copy of the values as stored (decode of encode of the given rows).
struct EntryBuf {
  EntryBuf() = default;
  EntryBuf(Backend& be, const std::vector<float>& rows, int64_t width, int64_t rope, EntryFormat fmt, int64_t per_block);
  std::vector<float> read(Backend& be, int64_t n) const;  // entries [0, n) decoded
  std::vector<DevBuf> blocks;
  DevBuf table;
  EntryTable t;
  std::vector<float> stored;
};
const char* entry_format_name(EntryFormat f);

// One sequence's part of a test step: its state buffers (backend memory) and its rows.
struct TestSeq {
  int64_t p0 = 0, rows = 0;
  LayerState state;  // backend pointers, laid out by the case (only layer 0 is used)
};
// A step in backend memory over the given sequences (ids are `id_of(row)`).
struct TestStep {
  DevBuf mem, desc;
  StepRef ref;
  int64_t S = 0;
  std::vector<int64_t> pos;  // host copy: position of each row
  std::vector<int32_t> seq;  // host copy: sequence of each row
};
TestStep make_step(Backend& be, const std::vector<TestSeq>& seqs, const std::vector<int32_t>& ids = {},
                   const std::vector<int32_t>& out_rows = {});

// A prepared op call: inputs in backend memory, the reference computed on the host.
class PreparedOp {
 public:
  virtual ~PreparedOp() = default;
  virtual void run() = 0;        // the op call(s) under test (what --perf times)
  virtual double error() = 0;    // after run(): error against the reference, in the case's metric
  double tol = 1e-5;             // pass when error() <= tol
  double bytes = 0;              // bytes one run() must move (weights, caches, activations)
};

struct OpCase {
  std::string op;     // op family: linear, rope, mhc, attention, compressor, indexer, moe, ...
  std::string shape;  // a short description of the shape
  bool real = false;  // a real V4-Flash shape (the rest are awkward shapes)
  // Builds the case on a backend; returns null when the backend does not support it.
  std::function<std::unique_ptr<PreparedOp>(Backend&)> prepare;
};

std::vector<OpCase> all_cases();
void add_linear_cases(std::vector<OpCase>& v);
void add_norm_rope_cases(std::vector<OpCase>& v);
void add_mhc_cases(std::vector<OpCase>& v);
void add_attention_cases(std::vector<OpCase>& v);
void add_compressor_indexer_cases(std::vector<OpCase>& v);
void add_moe_cases(std::vector<OpCase>& v);

struct CaseResult {
  bool supported = false;
  double error = 0, tol = 0, us = 0, gbps = 0;
  std::string failure;  // an exception's message
};
// Prepares and runs one case once (and, with `perf`, times repeated runs).
CaseResult run_case(const OpCase& c, Backend& be, bool perf);

// ‖a − b‖ / ‖b‖ in double.
double rel_err_d(const std::vector<float>& a, const std::vector<double>& b);

}  // namespace dsv4::test
