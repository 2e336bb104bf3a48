// Decode steps after the first allocate nothing on the heap (counted by replacing operator new).
#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

#include "dsv4/model.hpp"
#include "support/support.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocs{0};
}  // namespace

// Every form of the global allocation functions is replaced, so that each pair matches (mixing
// a replaced delete with the runtime's nothrow or aligned new is an alloc/dealloc mismatch).
namespace {
void* counted(std::size_t n, std::size_t align) noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}
void* counted_or_throw(std::size_t n, std::size_t align) {
  if (void* p = counted(n, align)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return counted_or_throw(n, 0); }
void* operator new[](std::size_t n) { return counted_or_throw(n, 0); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return counted(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return counted(n, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

TEST_CASE("no heap allocation per decoded token") {
  using namespace dsv4;
  const auto g = test::load_golden("mid_flash");
  const auto model = Model::load(test::golden_dir("mid_flash"));
  SessionOptions opt;
  opt.threads = 2;
  Session s(model, opt);
  s.forward({g.ids.data(), 300});
  s.forward({g.ids.data() + 300, 1});  // first decode step sizes the buffers
  g_allocs = 0;
  g_counting = true;
  for (int i = 0; i < 90; ++i) s.forward({g.ids.data() + 301 + i, 1});  // crosses CSA ends and the HCA end at 383
  g_counting = false;
  CHECK(g_allocs.load() == 0);
  // The counter itself works.
  g_counting = true;
  auto* probe = new std::vector<int>(10);
  g_counting = false;
  delete probe;
  CHECK(g_allocs.load() >= 1);
}

TEST_CASE("no heap allocation per batched decode step (forward_batch of three sessions)") {
  using namespace dsv4;
  const auto g = test::load_golden("mid_flash");
  const auto model = Model::load(test::golden_dir("mid_flash"));
  std::vector<std::unique_ptr<Session>> s;
  for (int i = 0; i < 3; ++i) {
    s.push_back(std::make_unique<Session>(model));
    s.back()->forward({g.ids.data(), static_cast<size_t>(100 + 50 * i)});
  }
  std::vector<BatchItem> items(3);
  auto step = [&] {
    for (size_t i = 0; i < 3; ++i) items[i] = {s[i].get(), {g.ids.data() + s[i]->position(), 1}};
    forward_batch(items);
  };
  step();  // the first batched step sizes the buffers
  g_allocs = 0;
  g_counting = true;
  for (int i = 0; i < 60; ++i) step();
  g_counting = false;
  CHECK(g_allocs.load() == 0);
}
