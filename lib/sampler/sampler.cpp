// The sampler chain and its built-in stages.
#include "dsv4/sampler.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "dsv4/error.hpp"

namespace dsv4 {

// ---- RNG: SplitMix64 seeding, xoshiro256** generation ----
void Rng::seed_with(uint64_t seed) {
  uint64_t z = seed;
  for (auto& s : s_) {
    z += 0x9e3779b97f4a7c15ull;
    uint64_t x = z;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    s = x ^ (x >> 31);
  }
}

uint64_t Rng::next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// ---- Candidates ----
void Candidates::reset(std::span<const float> logits) {
  n_ = logits.size();
  if (ids_.size() < n_) {
    ids_.resize(n_);
    logits_.resize(n_);
    tmp_ids_.resize(n_);
    tmp_logits_.resize(n_);
  }
  int32_t* id = ids_.data();
  for (size_t i = 0; i < n_; ++i) id[i] = static_cast<int32_t>(i);
  std::memcpy(logits_.data(), logits.data(), n_ * sizeof(float));
  identity_ = true;
  sorted_ = false;
  selected_ = -1;
}

void Candidates::truncate(size_t n) {
  if (n < n_) {
    n_ = n;
    identity_ = false;
  }
}

int64_t Candidates::find(int32_t id) const {
  if (identity_) return id >= 0 && static_cast<size_t>(id) < n_ ? id : -1;
  for (size_t i = 0; i < n_; ++i)
    if (ids_[i] == id) return static_cast<int64_t>(i);
  return -1;
}

void Candidates::sort_top(size_t k) {
  if (sorted_ || n_ == 0) return;
  k = std::min(k, n_);
  int32_t* perm = tmp_ids_.data();
  std::iota(perm, perm + n_, 0);
  // Descending by logit, ties by id, so the order is fully determined.
  auto better = [&](int32_t a, int32_t b) {
    return logits_[a] > logits_[b] || (logits_[a] == logits_[b] && ids_[a] < ids_[b]);
  };
  if (k < n_) std::nth_element(perm, perm + k, perm + n_, better);
  std::sort(perm, perm + k, better);
  for (size_t i = 0; i < n_; ++i) tmp_logits_[i] = logits_[perm[i]];
  for (size_t i = 0; i < n_; ++i) perm[i] = ids_[perm[i]];
  std::swap(ids_, tmp_ids_);
  std::swap(logits_, tmp_logits_);
  identity_ = false;
  sorted_ = k == n_;
}

std::span<const std::pair<float, int32_t>> Candidates::best(size_t k) {
  k = std::min(k, n_);
  // "a ranks before b": higher logit, then lower id.
  auto before = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  best_.clear();
  if (k * 8 < n_) {
    // Bounded heap whose front is the worst kept entry; most candidates fail one comparison.
    best_.reserve(k);
    for (size_t i = 0; i < n_; ++i) {
      const std::pair<float, int32_t> e{logits_[i], ids_[i]};
      if (best_.size() < k) {
        best_.push_back(e);
        std::push_heap(best_.begin(), best_.end(), before);
      } else if (before(e, best_.front())) {
        std::pop_heap(best_.begin(), best_.end(), before);
        best_.back() = e;
        std::push_heap(best_.begin(), best_.end(), before);
      }
    }
  } else {
    best_.resize(n_);
    for (size_t i = 0; i < n_; ++i) best_[i] = {logits_[i], ids_[i]};
    if (k < n_) std::nth_element(best_.begin(), best_.begin() + static_cast<std::ptrdiff_t>(k), best_.end(), before);
    best_.resize(k);
  }
  std::sort(best_.begin(), best_.end(), before);
  return {best_.data(), best_.size()};
}

void Candidates::keep_best(size_t n) {
  n = std::min(n, best_.size());
  for (size_t i = 0; i < n; ++i) {
    logits_[i] = best_[i].first;
    ids_[i] = best_[i].second;
  }
  n_ = n;
  identity_ = false;
  sorted_ = true;
}

namespace {

size_t argmax(const Candidates& c) {
  if (c.is_sorted()) return 0;
  const float* l = c.logits();
  size_t best = 0;
  float bv = l[0];
  for (size_t i = 1; i < c.size(); ++i)
    if (l[i] > bv) {
      bv = l[i];
      best = i;
    }
  if (!c.is_identity())  // equal logits rank the lower id first
    for (size_t i = 0; i < c.size(); ++i)
      if (l[i] == bv && c.ids()[i] < c.ids()[best]) best = i;
  return best;
}

class LogitBias final : public SamplerStage {
 public:
  explicit LogitBias(std::vector<std::pair<int32_t, float>> b) : bias_(std::move(b)) {}
  void apply(Candidates& c, SamplerContext&) override {
    for (auto [id, b] : bias_) {
      const int64_t i = c.find(id);
      if (i >= 0) c.logits()[i] += b;
    }
  }
  std::string name() const override { return "logit_bias"; }

 private:
  std::vector<std::pair<int32_t, float>> bias_;
};

class Penalties final : public SamplerStage {
 public:
  Penalties(int window, float rep, float pres, float freq) : window_(window), rep_(rep), pres_(pres), freq_(freq) {
    if (window < 0) throw InvalidArgument("penalties: window must be >= 0");
    if (rep <= 0) throw InvalidArgument("penalties: repetition penalty must be > 0");
    scratch_.reserve(static_cast<size_t>(window));
  }
  void apply(Candidates& c, SamplerContext& ctx) override {
    const size_t n = std::min(ctx.history.size(), static_cast<size_t>(window_));
    scratch_.assign(ctx.history.end() - static_cast<std::ptrdiff_t>(n), ctx.history.end());
    std::sort(scratch_.begin(), scratch_.end());
    for (size_t i = 0; i < scratch_.size();) {
      size_t j = i;
      while (j < scratch_.size() && scratch_[j] == scratch_[i]) ++j;
      const int64_t at = c.find(scratch_[i]);
      if (at >= 0) {
        float& l = c.logits()[at];
        l = l > 0 ? l / rep_ : l * rep_;
        l -= pres_ + freq_ * static_cast<float>(j - i);
      }
      i = j;
    }
  }
  std::string name() const override { return "penalties"; }

 private:
  int window_;
  float rep_, pres_, freq_;
  std::vector<int32_t> scratch_;
};

class Temperature final : public SamplerStage {
 public:
  explicit Temperature(float t) : t_(t) {}
  void apply(Candidates& c, SamplerContext&) override {
    if (t_ <= 0) {  // the limit t -> 0: all mass on the argmax
      const size_t b = argmax(c);
      int32_t* ids = c.ids();
      float* l = c.logits();
      std::swap(ids[0], ids[b]);
      std::swap(l[0], l[b]);
      c.truncate(1);
      c.mark_sorted();
      return;
    }
    const float inv = 1.0f / t_;
    const bool sorted = c.is_sorted();  // a positive scale keeps the order
    float* l = c.logits();
    for (size_t i = 0; i < c.size(); ++i) l[i] *= inv;
    if (sorted) c.mark_sorted();
  }
  std::string name() const override { return "temperature"; }

 private:
  float t_;
};

class TopK final : public SamplerStage {
 public:
  explicit TopK(int k) : k_(k) {
    if (k <= 0) throw InvalidArgument("top_k: k must be positive");
  }
  void apply(Candidates& c, SamplerContext&) override {
    if (c.is_sorted()) {
      c.truncate(static_cast<size_t>(k_));
      return;
    }
    c.best(static_cast<size_t>(k_));
    c.keep_best(static_cast<size_t>(k_));
  }
  std::string name() const override { return "top_k"; }

 private:
  int k_;
};

class TopP final : public SamplerStage {
 public:
  explicit TopP(float p) : p_(p) {
    if (!(p > 0 && p <= 1)) throw InvalidArgument("top_p: p must be in (0, 1]");
  }
  void apply(Candidates& c, SamplerContext&) override {
    if (p_ >= 1 || c.size() <= 1) return;
    const float* l = std::as_const(c).logits();
    const float mx = *std::max_element(l, l + c.size());
    double total = 0;
    for (size_t i = 0; i < c.size(); ++i) total += std::exp(static_cast<double>(l[i]) - mx);
    // Rank a growing number of the best candidates until they hold mass p: usually a small
    // fraction of a 129K vocabulary, so nothing sorts it whole.
    for (size_t k = 64;; k *= 4) {
      const auto top = c.best(k);
      double cum = 0;
      for (size_t i = 0; i < top.size(); ++i) {
        cum += std::exp(static_cast<double>(top[i].first) - mx) / total;
        if (cum >= p_) {
          c.keep_best(i + 1);
          return;
        }
      }
      if (top.size() == c.size()) return;
    }
  }
  std::string name() const override { return "top_p"; }

 private:
  float p_;
};

class MinP final : public SamplerStage {
 public:
  explicit MinP(float p) : p_(p) {
    if (!(p >= 0 && p <= 1)) throw InvalidArgument("min_p: p must be in [0, 1]");
  }
  void apply(Candidates& c, SamplerContext&) override {
    if (p_ <= 0 || c.size() == 0) return;
    const bool sorted = c.is_sorted();  // compaction keeps the order
    const float* cl = std::as_const(c).logits();
    const float mx = *std::max_element(cl, cl + c.size());
    const double cut = static_cast<double>(mx) + std::log(static_cast<double>(p_));  // prob >= p · max prob
    int32_t* ids = c.ids();
    float* l = c.logits();
    size_t w = 0;
    for (size_t i = 0; i < c.size(); ++i)
      if (static_cast<double>(l[i]) >= cut) {
        ids[w] = ids[i];
        l[w] = l[i];
        ++w;
      }
    if (w < c.size()) c.truncate(w);
    if (sorted) c.mark_sorted();
  }
  std::string name() const override { return "min_p"; }

 private:
  float p_;
};

class Greedy final : public SamplerStage {
 public:
  void apply(Candidates& c, SamplerContext&) override { c.select(argmax(c)); }
  std::string name() const override { return "greedy"; }
};

class Dist final : public SamplerStage {
 public:
  void apply(Candidates& c, SamplerContext& ctx) override {
    const float* l = std::as_const(c).logits();
    const float mx = *std::max_element(l, l + c.size());
    double total = 0;
    for (size_t i = 0; i < c.size(); ++i) total += std::exp(static_cast<double>(l[i]) - mx);
    const double u = ctx.rng.uniform() * total;
    double cum = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      cum += std::exp(static_cast<double>(l[i]) - mx);
      if (u < cum) {
        c.select(i);
        return;
      }
    }
    c.select(c.size() - 1);
  }
  std::string name() const override { return "dist"; }
};

}  // namespace

namespace stages {
std::unique_ptr<SamplerStage> logit_bias(std::vector<std::pair<int32_t, float>> b) { return std::make_unique<LogitBias>(std::move(b)); }
std::unique_ptr<SamplerStage> penalties(int w, float r, float p, float f) { return std::make_unique<Penalties>(w, r, p, f); }
std::unique_ptr<SamplerStage> temperature(float t) { return std::make_unique<Temperature>(t); }
std::unique_ptr<SamplerStage> top_k(int k) { return std::make_unique<TopK>(k); }
std::unique_ptr<SamplerStage> top_p(float p) { return std::make_unique<TopP>(p); }
std::unique_ptr<SamplerStage> min_p(float p) { return std::make_unique<MinP>(p); }
std::unique_ptr<SamplerStage> greedy() { return std::make_unique<Greedy>(); }
std::unique_ptr<SamplerStage> dist() { return std::make_unique<Dist>(); }
}  // namespace stages

// ---- Sampler ----
Sampler::Sampler(uint64_t seed) : rng_(seed) { history_.reserve(history_cap_); }

Sampler Sampler::from_params(const SamplerParams& p) {
  // Out-of-range values are errors, never silently "off".
  if (std::isnan(p.temperature)) throw InvalidArgument("temperature is NaN");
  if (p.top_k < 0) throw InvalidArgument("top_k must be >= 0 (0: off), got " + std::to_string(p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1)) throw InvalidArgument("top_p must be in (0, 1] (1: off), got " + std::to_string(p.top_p));
  if (!(p.min_p >= 0 && p.min_p <= 1)) throw InvalidArgument("min_p must be in [0, 1] (0: off), got " + std::to_string(p.min_p));
  if (!(p.repetition_penalty > 0) || !std::isfinite(p.repetition_penalty))
    throw InvalidArgument("repetition_penalty must be a positive number (1: off), got " + std::to_string(p.repetition_penalty));
  if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty)) throw InvalidArgument("presence / frequency penalties must be finite");
  if (p.penalty_window < 0) throw InvalidArgument("penalty_window must be >= 0, got " + std::to_string(p.penalty_window));
  Sampler s(p.seed);
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
    s.add(stages::penalties(p.penalty_window, p.repetition_penalty, p.presence_penalty, p.frequency_penalty));
  if (p.temperature <= 0) {
    s.add(stages::greedy());
    return s;
  }
  if (p.temperature != 1.0f) s.add(stages::temperature(p.temperature));
  if (p.top_k > 0) s.add(stages::top_k(p.top_k));
  if (p.top_p < 1.0f) s.add(stages::top_p(p.top_p));
  if (p.min_p > 0.0f) s.add(stages::min_p(p.min_p));
  s.add(stages::dist());
  return s;
}

Sampler Sampler::make_greedy() {
  Sampler s(0);
  s.add(stages::greedy());
  return s;
}

Sampler& Sampler::add(std::unique_ptr<SamplerStage> stage) {
  if (!stage) throw InvalidArgument("Sampler::add: null stage");
  stages_.push_back(std::move(stage));
  return *this;
}

std::vector<std::string> Sampler::stage_names() const {
  std::vector<std::string> v;
  for (const auto& s : stages_) v.push_back(s->name());
  return v;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (logits.empty()) throw InvalidArgument("Sampler::sample: empty logits");
  if (stages_.size() == 1 && dynamic_cast<const Greedy*>(stages_[0].get()) != nullptr) {
    // A pure greedy chain needs no working set: a vectorised max, then its first position.
    const float mx = Eigen::Map<const Eigen::ArrayXf>(logits.data(), static_cast<Eigen::Index>(logits.size())).maxCoeff();
    int32_t tok = static_cast<int32_t>(std::find(logits.begin(), logits.end(), mx) - logits.begin());
    if (static_cast<size_t>(tok) == logits.size())  // NaN somewhere: fall back to the ordered scan
      tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    accept(tok);
    return tok;
  }
  cand_.reset(logits);
  SamplerContext ctx{rng_, history_};
  for (auto& st : stages_) {
    st->apply(cand_, ctx);
    if (cand_.size() == 0) throw InvalidArgument("Sampler::sample: stage '" + st->name() + "' removed every candidate");
    if (cand_.selected() >= 0) break;
  }
  if (cand_.selected() < 0) {
    Dist d;
    d.apply(cand_, ctx);
  }
  const int64_t sel = cand_.selected();
  if (sel < 0 || static_cast<size_t>(sel) >= cand_.size())
    throw InvalidArgument("Sampler::sample: a stage selected index " + std::to_string(sel) + " outside the candidates");
  const int32_t tok = cand_.ids()[sel];
  if (tok < 0 || static_cast<size_t>(tok) >= logits.size())
    throw InvalidArgument("Sampler::sample: a stage produced token id " + std::to_string(tok) + " outside the vocabulary [0, " +
                          std::to_string(logits.size()) + ")");
  accept(tok);
  return tok;
}

void Sampler::accept(int32_t token) {
  if (history_.size() == history_cap_) history_.erase(history_.begin(), history_.begin() + static_cast<std::ptrdiff_t>(history_cap_ / 2));
  history_.push_back(token);
}

void Sampler::reset(uint64_t seed) {
  rng_.seed_with(seed);
  history_.clear();
}

void Sampler::set_history_capacity(size_t n) {
  history_cap_ = std::max<size_t>(n, 2);
  history_.reserve(history_cap_);
  if (history_.size() > history_cap_) history_.erase(history_.begin(), history_.end() - static_cast<std::ptrdiff_t>(history_cap_));
}

}  // namespace dsv4
