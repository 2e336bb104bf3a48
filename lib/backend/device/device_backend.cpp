// The device backend's host side: every op as a fixed sequence of dsv4k kernel launches.
#include "backend/device/device_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_set>

#include "dsv4/error.hpp"
#include "util/checked.hpp"

namespace dsv4 {

namespace {
// Thrown inside a step being recorded when it would allocate or upload (not recordable): the
// recording is dropped and the step runs eagerly instead.
struct NotRecordable {};
// Scratch slots.
enum Slot : size_t {
  kMix = 0, kPre, kKvs, kKvTmp, kCompress, kQi, kQScale, kScore, kMoeScores, kMoeIdx, kMoeWeights, kMoeH, kAttnKeys, kAttnN, kAttnP, kAttnInv, kTopPrefix, kTopNeed, kTopHist, kTopTaken, kTopList, kGemmX, kGemmW, kSlots
};
}  // namespace

dsv4k::Mat to_kernel(const MatW& w) {
  dsv4k::Mat m;
  m.fmt = static_cast<int32_t>(w.fmt);
  m.rows = w.rows;
  m.cols = w.cols;
  m.data = w.data;
  m.scale = w.scale;
  m.scale_cols = w.scale_cols;
  return m;
}

DeviceBackend::~DeviceBackend() = default;

void DeviceBackend::free_internal() noexcept {
  for (void* p : weight_blocks_) dev_free(p);
  weight_blocks_.clear();
  for (void* p : host_blocks_) host_free(p);
  host_blocks_.clear();
  for (auto& b : ws_)
    if (b.p != nullptr) dev_free(b.p);
  ws_.clear();
  for (auto& [k, e] : experts_)
    if (e.dev != nullptr) dev_free(e.dev);
  experts_.clear();
  for (auto& [k, r] : steps_)
    if (r.rec != nullptr) drop(r.rec);
  steps_.clear();
}

void DeviceBackend::run_step(uint64_t key, const StepBody& body) {
  if (key == 0 || !record_steps_ || context_ == 0) {  // (without reserve() the indexer reads positions back)
    body();
    return;
  }
  Recorded& r = steps_[key];
  if (r.rec != nullptr && r.generation == generation_) {
    replay(r.rec);
    ++replays_;
    return;
  }
  if (r.rec != nullptr) {
    drop(r.rec);
    r.rec = nullptr;
  }
  if (!r.seen || r.generation != generation_) {  // the first run at this generation: scratch settles
    body();
    r.seen = true;
    r.generation = generation_;
    return;
  }
  begin_recording();
  recording_ = true;
  bool ok = true;
  try {
    body();
  } catch (const NotRecordable&) {
    ok = false;
  } catch (...) {
    recording_ = false;
    if (void* x = end_recording()) drop(x);
    throw;
  }
  recording_ = false;
  void* rec = end_recording();
  if (!ok || rec == nullptr) {
    if (rec != nullptr) drop(rec);
    r.seen = false;
    body();
    return;
  }
  r.rec = rec;
  replay(rec);
  ++replays_;
}

void* DeviceBackend::alloc(size_t bytes) {
  if (bytes == 0) bytes = 64;
  void* p = dev_alloc(bytes);
  dev_zero(p, bytes);
  std::lock_guard<std::mutex> lk(mem_mu_);
  sizes_[p] = bytes;
  buffer_bytes_ += bytes;
  return p;
}

void DeviceBackend::release(void* p) noexcept {
  if (p == nullptr) return;
  {
    std::lock_guard<std::mutex> lk(mem_mu_);
    auto it = sizes_.find(p);
    if (it != sizes_.end()) {
      buffer_bytes_ -= it->second;
      sizes_.erase(it);
    }
  }
  dev_free(p);
}

void DeviceBackend::upload(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) h2d(dst, src, bytes);
}
void DeviceBackend::download(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) d2h(dst, src, bytes);
}
void DeviceBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) d2d(dst, src, bytes);
}

uint64_t DeviceBackend::weight_bytes() const {
  std::lock_guard<std::mutex> lk(mem_mu_);
  return weight_bytes_;
}
uint64_t DeviceBackend::host_weight_bytes() const {
  std::lock_guard<std::mutex> lk(mem_mu_);
  return host_weight_bytes_;
}
uint64_t DeviceBackend::buffer_bytes() const {
  std::lock_guard<std::mutex> lk(mem_mu_);
  return buffer_bytes_ + scratch_bytes();
}

uint64_t DeviceBackend::scratch_bytes() const {
  uint64_t n = 0;
  for (const auto& b : ws_) n += b.bytes;
  return n;
}

double DeviceBackend::copy_gbps() {
  // Best of five device-to-device copies of 256 MiB (each reads and writes it).
  const size_t n = size_t{256} << 20;
  void* a = alloc(n);
  void* b = nullptr;
  try {
    b = alloc(n);
  } catch (...) {
    release(a);
    throw;
  }
  double best = 0;
  copy(b, a, n);
  dev_sync();
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    copy(b, a, n);
    dev_sync();
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(n) / sec / 1e9);
  }
  release(a);
  release(b);
  return best;
}

void* DeviceBackend::scratch(size_t slot, size_t bytes) {
  if (slot >= ws_.size()) ws_.resize(kSlots);
  Block& b = ws_[slot];
  if (b.bytes < bytes) {
    if (recording_) throw NotRecordable{};
    ++generation_;
    const size_t grown = std::max(bytes, b.bytes + b.bytes / 2);
    void* p = dev_alloc(grown);  // before the old block goes: a failure leaves the backend as it was
    if (b.p != nullptr) dev_free(b.p);
    b.p = p;
    b.bytes = grown;
  }
  return b.p;
}

namespace {
uint64_t round256(uint64_t n) { return (n + 255) / 256 * 256; }
std::string gib(uint64_t b) { return std::to_string(static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0)).substr(0, 6) + " GiB"; }
}  // namespace

ModelWeights DeviceBackend::bind_weights(const ModelWeights& host, const ModelConfig& cfg) {
  // Every buffer once, in its stored format, into one device block (256-byte aligned slices; one
  // allocation instead of one per tensor, freed with the backend), and the experts that do not fit
  // into one host block (Placement). A first pass sizes the blocks: weights that do not fit are
  // refused before anything is uploaded.
  using HostSet = std::unordered_set<const uint8_t*>;
  struct Upload final : WeightVisitor {
    DeviceBackend& be;
    const HostSet* to_host = nullptr;  // data of the matrices kept in host memory
    bool sizing = true;
    uint8_t *base = nullptr, *hbase = nullptr;
    uint64_t off = 0, hoff = 0;
    explicit Upload(DeviceBackend& b) : be(b) {}
    const uint8_t* put(const void* src, size_t n, bool in_host) {
      if (src == nullptr || n == 0) return static_cast<const uint8_t*>(src);
      uint64_t& o = in_host ? hoff : off;
      const uint64_t at = o;
      o += round256(n);
      if (sizing) return static_cast<const uint8_t*>(src);
      if (in_host) {
        be.host_put(hbase + at, src, n);
        return hbase + at;
      }
      be.h2d(base + at, src, n);
      return base + at;
    }
    void matrix(MatW& w) override {
      if (w.empty()) return;
      const bool h = to_host != nullptr && to_host->count(w.data) > 0;
      const uint64_t scale_bytes = w.scale_bytes();
      const uint64_t data_bytes = w.bytes() - scale_bytes;
      w.data = put(w.data, data_bytes, h);
      if (w.scale != nullptr) w.scale = put(w.scale, scale_bytes, h);
    }
    void floats(FVec& v) override { v.ptr = reinterpret_cast<const float*>(put(v.ptr, v.size() * sizeof(float), false)); }
    void doubles(DVec& v) override { v.ptr = reinterpret_cast<const double*>(put(v.ptr, v.size() * sizeof(double), false)); }
    void bytes(const uint8_t*& p, size_t n) override { p = put(p, n, false); }
  };
  auto sized = [&](const HostSet* to_host) {
    Upload u(*this);
    u.to_host = to_host;
    ModelWeights probe = host;
    visit_weights(probe, cfg, u);
    return std::make_pair(std::max<uint64_t>(u.off, 256), u.hoff);
  };
  const std::string who = info().name + " device " + std::to_string(info().device);
  const uint64_t free = free_bytes();
  const uint64_t reserve = placement_.reserve_bytes > 0 ? placement_.reserve_bytes : std::max<uint64_t>(uint64_t{2} << 30, total_bytes() / 20);
  const uint64_t all = sized(nullptr).first;
  HostSet to_host;
  if (placement_.host_experts && all + reserve > free) {
    // Whole routed experts, the last expert of every layer first, then the one before, ... until
    // the rest fits with the reserve (each layer then reads about the same share over the bus).
    const uint64_t target = free > reserve ? free - reserve : 0;
    auto mat_bytes = [](const MatW& m) { return m.empty() ? 0 : round256(m.bytes() - m.scale_bytes()) + (m.scale != nullptr ? round256(m.scale_bytes()) : 0); };
    size_t most = 0;
    for (const auto& l : host.layers) most = std::max(most, l.moe.experts.size());
    uint64_t dev = all;
    for (size_t e = most; e-- > 0 && dev > target;)
      for (size_t li = 0; li < host.layers.size() && dev > target; ++li) {
        const auto& ex = host.layers[li].moe.experts;
        if (e >= ex.size()) continue;
        for (const MatW* m : {&ex[e].w1, &ex[e].w3, &ex[e].w2})
          if (!m->empty() && to_host.insert(m->data).second) dev -= std::min(dev, mat_bytes(*m));
      }
    if (dev > target)
      throw CapacityError(who + ": the weights need " + gib(dev) + " of device memory even with every routed expert in host memory; " + gib(free) +
                          " free, less " + gib(reserve) + " kept for caches and scratch (short by " + gib(dev - target) + "); nothing was uploaded");
  }
  const auto [need, hneed] = sized(to_host.empty() ? nullptr : &to_host);
  if (need > free)
    throw CapacityError(who + ": the weights need " + gib(need) + ", " + gib(free) + " free (short by " + gib(need - free) +
                        "); nothing was uploaded" + (placement_.host_experts ? "" : " (host-resident experts are off)"));
  Upload copy(*this);
  copy.sizing = false;
  copy.to_host = to_host.empty() ? nullptr : &to_host;
  if (hneed > 0) {
    copy.hbase = static_cast<uint8_t*>(host_alloc(hneed));
    if (copy.hbase == nullptr)
      throw CapacityError(who + ": the weights need " + gib(all) + ", " + gib(free) + " free, and this device cannot read experts from host memory; nothing was uploaded");
  }
  try {
    copy.base = static_cast<uint8_t*>(dev_alloc(need));
  } catch (...) {
    if (copy.hbase != nullptr) host_free(copy.hbase);
    throw;
  }
  ModelWeights w = host;
  try {
    visit_weights(w, cfg, copy);
  } catch (...) {
    dev_free(copy.base);
    if (copy.hbase != nullptr) host_free(copy.hbase);
    throw;
  }
  weight_blocks_.push_back(copy.base);
  if (copy.hbase != nullptr) host_blocks_.push_back(copy.hbase);
  std::lock_guard<std::mutex> lk(mem_mu_);
  weight_bytes_ += need;
  host_weight_bytes_ += hneed;
  return w;
}

void DeviceBackend::reserve(const ModelConfig& c, int64_t max_context) {
  if (max_context > context_) ++generation_;  // the indexer's grid follows the context
  context_ = std::max(context_, max_context);
  // The context-dependent scratch: the indexer's scores of a decode step (up to 3 rows).
  int64_t vis = 0;
  for (size_t l = 0; l < c.attn_kind.size(); ++l)
    if (c.attn_kind[l] == AttnKind::CSA && c.compress_ratio[l] > 0) vis = std::max(vis, max_context / c.compress_ratio[l]);
  if (vis > 0) scratch(kScore, sat_mul(sat_mul(sat_size(vis), 3), sizeof(float)));
}

int64_t DeviceBackend::position_bound(const StepRef& step, int64_t S) {
  if (context_ > 0) return context_;
  if (recording_) throw NotRecordable{};
  std::vector<int64_t> pos(static_cast<size_t>(S));
  d2h(pos.data(), step.pos, static_cast<size_t>(S) * sizeof(int64_t));
  int64_t mx = 0;
  for (int64_t p : pos) mx = std::max(mx, p);
  return mx + 1;
}

// ---- ops ----

void DeviceBackend::linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y, int64_t ldy) {
  if (r0 < 0 || n < 0 || r0 + n > w.rows) throw InvalidArgument("linear: rows [" + std::to_string(r0) + ", " + std::to_string(r0 + n) +
                                                               ") outside a matrix of " + std::to_string(w.rows));
  if (gemm_min_rows_ > 0 && S >= gemm_min_rows_ && n > 0 && (w.fmt == WFormat::BF16 || w.fmt == WFormat::FP8 || w.fmt == WFormat::FP4)) {
    linear_gemm(w, r0, n, x, ldx, S, y, ldy);
    return;
  }
  dsv4k::LinearRows k;  // the warp-per-row kernel (dsv4k::Linear is its one-thread-per-output reference)
  k.w = to_kernel(w);
  k.r0 = r0;
  k.n = n;
  k.S = S;
  k.x = x;
  k.ldx = ldx;
  k.y = y;
  k.ldy = ldy;
  launch(k);
}

void DeviceBackend::linear_gemm(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y, int64_t ldy) {
  const int64_t K = w.cols;
  ++gemm_products_;
  dsv4k::SplitBf16 sp;
  sp.x = x;
  sp.ldx = ldx;
  sp.S = S;
  sp.K = K;
  sp.plane = S * K;
  sp.planes = static_cast<uint16_t*>(scratch(kGemmX, sat_mul(sat_mul(sat_size(sp.plane), dsv4k::kSplitPlanes), sizeof(uint16_t))));
  launch(sp);
  // FP8/FP4: decoded in tiles of whole 128-row blocks, at most 32 MiB of bf16 each (BF16: as stored).
  constexpr int64_t kTileBytes = int64_t{32} << 20;
  const bool stored = w.fmt == WFormat::BF16;
  const int64_t tile = stored ? n : std::min<int64_t>(n, std::max<int64_t>(128, kTileBytes / (2 * std::max<int64_t>(K, 1)) / 128 * 128));
  uint16_t* wt = stored ? nullptr : static_cast<uint16_t*>(scratch(kGemmW, sat_mul(sat_mul(sat_size(tile), sat_size(K)), sizeof(uint16_t))));
  for (int64_t j0 = 0; j0 < n; j0 += tile) {
    const int64_t m = std::min(tile, n - j0);
    dsv4k::Bf16Gemm g;
    if (stored) {
      g.a = reinterpret_cast<const uint16_t*>(w.data) + (r0 + j0) * K;
    } else {
      dsv4k::DecodeBf16 d;
      d.w = to_kernel(w);
      d.r0 = r0 + j0;
      d.n = m;
      d.out = wt;
      launch(d);
      g.a = wt;
    }
    g.lda = K;
    g.ldb = K;
    g.y = y + j0;
    g.ldy = ldy;
    g.n = m;
    g.S = S;
    g.K = K;
    for (int p = dsv4k::kSplitPlanes - 1; p >= 0; --p) {  // the small terms first
      g.b = sp.planes + p * sp.plane;
      g.accumulate = p != dsv4k::kSplitPlanes - 1;
      launch(g);
    }
  }
}

void DeviceBackend::embed(const MatW& table, const StepRef& step, int64_t S, int64_t nc, float* X) {
  dsv4k::Embed k;
  k.table = to_kernel(table);
  k.step = step;
  k.S = S;
  k.nc = nc;
  k.X = X;
  launch(k);
}

void DeviceBackend::gather_rows(const float* src, int64_t ld, const StepRef& step, int64_t n, int64_t width, float* dst) {
  dsv4k::GatherRows k;
  k.src = src;
  k.ld = ld;
  k.step = step;
  k.n = n;
  k.width = width;
  k.dst = dst;
  launch(k);
}

void DeviceBackend::rms_norm(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, float eps) {
  dsv4k::RmsNorm k;
  k.x = x;
  k.rows = rows;
  k.n = n;
  k.ld = ld;
  k.weight = weight;
  k.eps = eps;
  launch(k);
}

void DeviceBackend::rope_tables(const StepRef& step, int64_t S, const double* freqs, int64_t half, float* cos, float* sin) {
  dsv4k::RopeTables k;
  k.step = step;
  k.S = S;
  k.half = half;
  k.freqs = freqs;
  k.cos_ = cos;
  k.sin_ = sin;
  launch(k);
}

void DeviceBackend::rope(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hs, int64_t offset, int64_t rd, const float* cos,
                         const float* sin, bool inverse) {
  dsv4k::Rope k;
  k.x = x;
  k.rows = rows;
  k.ld = ld;
  k.heads = heads;
  k.hs = hs;
  k.offset = offset;
  k.rd = rd;
  k.cos_ = cos;
  k.sin_ = sin;
  k.inverse = inverse;
  launch(k);
}

void DeviceBackend::hc_pre(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, const float* norm_w, float* xin,
                           float* coef) {
  const int64_t nc = c.hc_mult, D = c.hidden_size, nmix = (2 + nc) * nc;
  if (nc > dsv4k::kMaxStreams) throw UnsupportedError("hc_pre: more than " + std::to_string(dsv4k::kMaxStreams) + " streams");
  auto* mix = static_cast<float*>(scratch(kMix, static_cast<size_t>(S * nmix) * sizeof(float)));
  auto* pre = static_cast<float*>(scratch(kPre, static_cast<size_t>(S * nc) * sizeof(float)));
  linear(hw.fn, 0, nmix, X, nc * D, S, mix, nmix);
  dsv4k::HcCoef k;
  k.X = X;
  k.mix = mix;
  k.base = hw.base.data();
  k.scale = hw.scale.data();
  k.S = S;
  k.nc = nc;
  k.D = D;
  k.nmix = nmix;
  k.iters = c.hc_sinkhorn_iters;
  k.eps = static_cast<float>(c.hc_eps);
  k.rms_eps = c.rms_norm_eps;
  k.pre = pre;
  k.coef = coef;
  launch(k);
  dsv4k::HcCollapse col;
  col.X = X;
  col.pre = pre;
  col.S = S;
  col.nc = nc;
  col.D = D;
  col.out = xin;
  launch(col);
  rms_norm(xin, S, D, D, norm_w, static_cast<float>(c.rms_norm_eps));
}

void DeviceBackend::hc_post(const ModelConfig& c, float* X, const float* y, const float* coef, int64_t S) {
  if (c.hc_mult > dsv4k::kMaxStreams) throw UnsupportedError("hc_post: more than " + std::to_string(dsv4k::kMaxStreams) + " streams");
  dsv4k::HcPost k;
  k.X = X;
  k.y = y;
  k.coef = coef;
  k.S = S;
  k.nc = c.hc_mult;
  k.D = c.hidden_size;
  launch(k);
}

void DeviceBackend::hc_head(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, float* h) {
  const int64_t nc = c.hc_mult, D = c.hidden_size;
  auto* mix = static_cast<float*>(scratch(kMix, static_cast<size_t>(S * nc) * sizeof(float)));
  auto* pre = static_cast<float*>(scratch(kPre, static_cast<size_t>(S * nc) * sizeof(float)));
  linear(hw.fn, 0, nc, X, nc * D, S, mix, nc);
  dsv4k::HcCoef k;
  k.X = X;
  k.mix = mix;
  k.base = hw.base.data();
  k.scale = hw.scale.data();
  k.S = S;
  k.nc = nc;
  k.D = D;
  k.nmix = nc;
  k.eps = static_cast<float>(c.hc_eps);
  k.rms_eps = c.rms_norm_eps;
  k.head = true;
  k.pre = pre;
  launch(k);
  dsv4k::HcCollapse col;
  col.X = X;
  col.pre = pre;
  col.S = S;
  col.nc = nc;
  col.D = D;
  col.out = h;
  launch(col);
}

void DeviceBackend::attention(const AttentionArgs& a) {
  auto* kvs = static_cast<float*>(scratch(kKvs, static_cast<size_t>(a.S * a.hd) * sizeof(float)));
  auto* tmp = static_cast<unsigned char*>(scratch(kKvTmp, static_cast<size_t>(a.S * (4 * a.hd + 64))));
  dsv4k::RoundRows r;
  r.step = a.step;
  r.S = a.S;
  r.layer = a.layer;
  r.hd = a.hd;
  r.kv = a.kv;
  r.kvs = kvs;
  r.tmp = tmp;
  launch(r);
  dsv4k::Attention k;
  k.step = a.step;
  k.S = a.S;
  k.H = a.H;
  k.hd = a.hd;
  k.W = a.W;
  k.layer = a.layer;
  k.q = a.q;
  k.kvs = kvs;
  k.entries = a.entries;
  k.ratio = a.ratio;
  k.select = a.select;
  k.topk = a.topk;
  k.sink = a.sink;
  k.scale = 1.0f / std::sqrt(static_cast<float>(a.hd));
  k.out = a.out;
  if (reference_attention_) {
    launch(k);
    return;
  }
  // List the keys, then logits, softmax and output as wide kernels, in chunks of rows whose
  // logits take at most 256 MiB (a decode step is one chunk).
  const int64_t maxk = a.W + (a.entries ? (a.select != nullptr ? a.topk : position_bound(a.step, a.S) / std::max<int64_t>(a.ratio, 1)) : 0);
  constexpr int64_t kLogitBytes = int64_t{256} << 20;
  const int64_t R = std::clamp<int64_t>(kLogitBytes / std::max<int64_t>(int64_t{4} * a.H * maxk, 1), 1, a.S);
  dsv4k::AttnKeys keys;
  keys.a = k;
  keys.maxk = maxk;
  keys.keys = static_cast<int32_t*>(scratch(kAttnKeys, sat_mul(sat_mul(sat_size(R), sat_size(maxk)), sizeof(int32_t))));
  keys.nkeys = static_cast<int32_t*>(scratch(kAttnN, static_cast<size_t>(R) * sizeof(int32_t)));
  float* p = static_cast<float*>(scratch(kAttnP, sat_mul(sat_mul(sat_size(R * a.H), sat_size(maxk)), sizeof(float))));
  float* inv = static_cast<float*>(scratch(kAttnInv, static_cast<size_t>(R * a.H) * sizeof(float)));
  for (int64_t s0 = 0; s0 < a.S; s0 += R) {
    keys.s0 = s0;
    keys.R = std::min(R, a.S - s0);
    launch(keys);
    launch(dsv4k::AttnLogits{k, maxk, keys.keys, keys.nkeys, p, s0, keys.R});
    launch(dsv4k::AttnSoftmax{k, maxk, keys.nkeys, p, inv, s0, keys.R});
    launch(dsv4k::AttnOut{k, maxk, keys.keys, keys.nkeys, p, inv, s0, keys.R});
  }
}

void DeviceBackend::store_window(const StepRef& step, int64_t S, int64_t layer, const float* kv, int64_t W, int64_t hd) {
  dsv4k::StoreWindow k;
  k.step = step;
  k.S = S;
  k.layer = layer;
  k.W = W;
  k.hd = hd;
  k.kv = kv;
  launch(k);
}

void DeviceBackend::compress(const CompressorW& w, CompressorSlot slot, const StepRef& step, int64_t S, int64_t layer, const float* kv,
                             const float* g, const double* freqs, int64_t rd, float eps) {
  dsv4k::Compress k;
  k.step = step;
  k.S = S;
  k.layer = layer;
  k.indexer = slot == CompressorSlot::Indexer;
  k.m = w.ratio;
  k.width = w.width;
  k.c = w.overlap ? 2 : 1;
  k.kv = kv;
  k.g = g;
  k.ape = w.ape.data();
  k.norm = w.norm.data();
  k.freqs = freqs;
  k.rd = rd;
  k.eps = eps;
  k.scratch = static_cast<float*>(scratch(kCompress, static_cast<size_t>(S * w.width) * sizeof(float)));
  if (reference_compressor_) {
    launch(k);
    return;
  }
  const dsv4k::CompressView v{k};  // the same bits in four wide launches (their order matters)
  launch(dsv4k::CompressPool{v});
  launch(dsv4k::CompressFinish{v});
  launch(dsv4k::CompressPrev{v});
  launch(dsv4k::CompressPend{v});
}

void DeviceBackend::indexer_select(const IndexerArgs& a) {
  const int64_t cap = std::max<int64_t>(position_bound(a.step, a.S) / a.ratio, 1);
  auto* qi = static_cast<int16_t*>(scratch(kQi, static_cast<size_t>(a.S * a.nI * a.ihd) * sizeof(int16_t)));
  auto* qs = static_cast<float*>(scratch(kQScale, static_cast<size_t>(a.S * a.nI) * sizeof(float)));
  auto* score = static_cast<float*>(scratch(kScore, sat_mul(sat_mul(sat_size(a.S), sat_size(cap)), sizeof(float))));
  dsv4k::IndexQuery q;
  q.q = a.q;
  q.S = a.S;
  q.nI = a.nI;
  q.ihd = a.ihd;
  q.qi = qi;
  q.qscale = qs;
  launch(q);
  dsv4k::IndexScore k;
  k.step = a.step;
  k.S = a.S;
  k.layer = a.layer;
  k.ratio = a.ratio;
  k.nI = a.nI;
  k.ihd = a.ihd;
  k.cap = cap;
  k.q = a.q;
  k.qi = qi;
  k.qscale = qs;
  k.wts = a.wts;
  k.wts_scale = a.wts_scale;
  k.score = score;
  launch(k);
  // The top k by radix select (dsv4k::IndexSelect, ranking every key against every other, is its reference).
  dsv4k::TopkState t;
  t.step = a.step;
  t.S = a.S;
  t.ratio = a.ratio;
  t.cap = cap;
  t.topk = a.topk;
  t.score = score;
  t.prefix = static_cast<uint64_t*>(scratch(kTopPrefix, static_cast<size_t>(a.S) * sizeof(uint64_t)));
  t.need = static_cast<int32_t*>(scratch(kTopNeed, static_cast<size_t>(a.S) * sizeof(int32_t)));
  t.hist = static_cast<int32_t*>(scratch(kTopHist, static_cast<size_t>(a.S * 256) * sizeof(int32_t)));
  t.taken = static_cast<int32_t*>(scratch(kTopTaken, static_cast<size_t>(a.S) * sizeof(int32_t)));
  t.list = static_cast<int32_t*>(scratch(kTopList, static_cast<size_t>(a.S * std::max<int64_t>(a.topk, 1)) * sizeof(int32_t)));
  t.select = a.select;
  launch(dsv4k::TopkInit{t});
  for (int pass = 0; pass < 8; ++pass) {
    launch(dsv4k::TopkHist{t, pass});
    launch(dsv4k::TopkPick{t, pass});
  }
  launch(dsv4k::TopkCollect{t});
  launch(dsv4k::TopkRank{t});
}

const dsv4k::ExpertMats* DeviceBackend::expert_table(const MoeW& w) {
  expert_tmp_.resize(w.experts.size());
  for (size_t e = 0; e < w.experts.size(); ++e)
    expert_tmp_[e] = {to_kernel(w.experts[e].w1), to_kernel(w.experts[e].w3), to_kernel(w.experts[e].w2)};
  Experts& t = experts_[w.experts.data()];
  const size_t bytes = expert_tmp_.size() * sizeof(dsv4k::ExpertMats);
  if (t.dev == nullptr || t.host.size() != expert_tmp_.size() || std::memcmp(t.host.data(), expert_tmp_.data(), bytes) != 0) {
    if (recording_) throw NotRecordable{};
    ++generation_;
    void* p = dev_alloc(std::max<size_t>(bytes, 64));
    h2d(p, expert_tmp_.data(), bytes);
    if (t.dev != nullptr) dev_free(t.dev);
    t.dev = p;
    t.host = expert_tmp_;
  }
  return static_cast<const dsv4k::ExpertMats*>(t.dev);
}

void DeviceBackend::moe(const MoeW& w, const ModelConfig& c, MoeKind kind, const float* x, const StepRef& step, int64_t S, float* out) {
  const int64_t D = c.hidden_size, E = c.n_routed_experts, K = c.experts_per_token, I = c.moe_intermediate_size;
  if (E > dsv4k::kMaxExperts) throw UnsupportedError("moe: more than " + std::to_string(dsv4k::kMaxExperts) + " routed experts");
  if (static_cast<int64_t>(w.experts.size()) != E) throw InvalidArgument("moe: " + std::to_string(w.experts.size()) + " experts bound, config has " + std::to_string(E));
  auto* scores = static_cast<float*>(scratch(kMoeScores, static_cast<size_t>(S * E) * sizeof(float)));
  auto* idx = static_cast<int32_t*>(scratch(kMoeIdx, static_cast<size_t>(S * K) * sizeof(int32_t)));
  auto* wk = static_cast<float*>(scratch(kMoeWeights, static_cast<size_t>(S * K) * sizeof(float)));
  auto* h = static_cast<float*>(scratch(kMoeH, static_cast<size_t>(S * (K + 1) * I) * sizeof(float)));
  const dsv4k::ExpertMats* table = expert_table(w);
  linear(w.gate, 0, E, x, D, S, scores, E);
  dsv4k::MoeRoute r;
  r.scores = scores;
  r.bias = kind == MoeKind::Hash ? nullptr : w.bias.data();
  r.tid2eid = kind == MoeKind::Hash ? w.tid2eid : nullptr;
  r.tid_i64 = w.tid2eid_is_i64;
  r.step = step;
  r.S = S;
  r.E = E;
  r.K = K;
  r.scaling = c.routed_scaling_factor;
  r.idx = idx;
  r.weights = wk;
  launch(r);
  dsv4k::ExpertMats shared;
  if (w.shared) shared = {to_kernel(w.shared->w1), to_kernel(w.shared->w3), to_kernel(w.shared->w2)};
  dsv4k::MoeUp up;
  up.experts = table;
  up.shared = shared;
  up.has_shared = w.shared.has_value();
  up.idx = idx;
  up.x = x;
  up.S = S;
  up.K = K;
  up.D = D;
  up.I = I;
  up.limit = static_cast<float>(c.swiglu_limit);
  up.h = h;
  launch(dsv4k::MoeUpRows{up});
  dsv4k::MoeDown down;
  down.experts = table;
  down.shared = shared;
  down.has_shared = w.shared.has_value();
  down.idx = idx;
  down.weights = wk;
  down.h = h;
  down.S = S;
  down.K = K;
  down.D = D;
  down.I = I;
  down.out = out;
  if (K + 1 <= dsv4k::MoeDownRows::kSums) launch(dsv4k::MoeDownRows{down});
  else launch(down);
  stats_.expert_evals += static_cast<uint64_t>(S * K);
}

}  // namespace dsv4
