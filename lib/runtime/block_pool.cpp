#include "runtime/block_pool.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include "dsv4/error.hpp"

namespace dsv4 {

namespace {
std::string mib(uint64_t b) { return std::to_string((b + (1u << 19)) >> 20) + " MiB"; }
}  // namespace

BlockPool::BlockPool(Backend& be, uint64_t limit_bytes)
    : be_(be), limit_(limit_bytes == 0 ? std::numeric_limits<uint64_t>::max() : limit_bytes) {}

BlockPool::~BlockPool() { trim(); }

void BlockPool::set_limit(uint64_t limit_bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  limit_ = limit_bytes == 0 ? std::numeric_limits<uint64_t>::max() : limit_bytes;
}

void BlockPool::acquire(size_t bytes, size_t count, std::vector<unsigned char*>& out, const char* what) {
  if (count == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  auto& fl = free_lists_[bytes];
  const size_t reuse = std::min(count, fl.size()), fresh = count - reuse;
  const uint64_t need = static_cast<uint64_t>(fresh) * bytes;
  auto over = [&] { return need > limit_ || in_use_ + free_ > limit_ - need; };
  if (bytes != 0 && over())  // free blocks of other sizes make room first
    for (auto& [sz, other] : free_lists_) {
      if (sz == bytes) continue;
      for (unsigned char* b : other) be_.release(b);
      free_ -= static_cast<uint64_t>(other.size()) * sz;
      other.clear();
    }
  if (bytes != 0 && (fresh > std::numeric_limits<uint64_t>::max() / bytes || over()))
    throw CapacityError(std::string(what) + ": " + std::to_string(count) + " more cache blocks of " + mib(bytes) +
                        " would exceed the model's cache pool limit of " + mib(limit_) + " (" + mib(in_use_) +
                        " in use by sessions, " + mib(free_) + " free); free or reset sessions, use a smaller cache type, or raise "
                        "LoadOptions::cache_pool_bytes");
  const size_t out0 = out.size();
  try {
    out.reserve(out0 + count);
    for (size_t i = 0; i < fresh; ++i) out.push_back(static_cast<unsigned char*>(be_.alloc(bytes)));
  } catch (const CapacityError& e) {
    for (size_t i = out0; i < out.size(); ++i) be_.release(out[i]);
    out.resize(out0);
    throw CapacityError(std::string(what) + ": the backend's memory cannot hold " + std::to_string(fresh) + " more cache blocks of " +
                        mib(bytes) + " (" + e.what() + ")");
  } catch (...) {
    for (size_t i = out0; i < out.size(); ++i) be_.release(out[i]);
    out.resize(out0);
    throw;
  }
  for (size_t i = 0; i < reuse; ++i) {
    out.push_back(fl.back());
    fl.pop_back();
  }
  in_use_ += static_cast<uint64_t>(count) * bytes;
  free_ -= static_cast<uint64_t>(reuse) * bytes;
  peak_ = std::max(peak_, in_use_ + free_);
}

void BlockPool::release(size_t bytes, const unsigned char* const* blocks, size_t count) noexcept {
  if (count == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  auto& fl = free_lists_[bytes];
  try {
    fl.reserve(fl.size() + count);
  } catch (...) {  // no room to list them: give them straight back
    for (size_t i = 0; i < count; ++i) be_.release(const_cast<unsigned char*>(blocks[i]));
    in_use_ -= static_cast<uint64_t>(count) * bytes;
    return;
  }
  for (size_t i = 0; i < count; ++i) fl.push_back(const_cast<unsigned char*>(blocks[i]));
  in_use_ -= static_cast<uint64_t>(count) * bytes;
  free_ += static_cast<uint64_t>(count) * bytes;
}

void BlockPool::trim() noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [bytes, fl] : free_lists_) {
    for (unsigned char* b : fl) be_.release(b);
    free_ -= static_cast<uint64_t>(fl.size()) * bytes;
    fl.clear();
  }
}

PoolStats BlockPool::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return {limit_, in_use_, free_, peak_};
}

}  // namespace dsv4
