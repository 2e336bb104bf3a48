#include "ops/harness.hpp"

#include "quant/cache_format.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "backend/cpu/select.hpp"
#if defined(DSV4_HAVE_CUDA)
#include "backend/cuda/cuda_backend.hpp"
#endif
#include "support/emulated_device.hpp"
#include "support/isolated_backend.hpp"

namespace dsv4::test {

std::vector<BackendUnderTest> backends_under_test() {
  // Every CPU kernel tier compiled in that this machine runs, then the host-isolation wrapper
  // (over the best tier).
  std::vector<BackendUnderTest> v;
  for (const std::string& tier : cpu_tiers_compiled())
    if (cpu_tier_runs(tier)) v.push_back({"cpu/" + tier, [tier] { return make_cpu_backend(2, tier); }});
  v.push_back({"cpu-isolated", [] { return std::make_unique<IsolatedBackend>(2, size_t{8} << 30); }});
  // The CUDA backend's host code and kernels, emulated on the host (tests/support/emulated_device.hpp).
  v.push_back({"device-emu", [] { return std::make_unique<EmulatedDevice>(size_t{8} << 30); }});
#if defined(DSV4_HAVE_CUDA)
  if (cuda::device_count() > 0) v.push_back({"cuda", [] { return cuda::make_backend(0); }});
#endif
  return v;
}

DevMat to_backend(Backend& be, const MatW& host) {
  DevMat d;
  d.w = host;
  const uint64_t scale_bytes = host.scale_bytes();
  const uint64_t data_bytes = host.bytes() - scale_bytes;
  d.data = DevBuf(be, data_bytes);
  be.upload(d.data.as<void>(), host.data, data_bytes);
  d.w.data = d.data.as<const uint8_t>();
  if (scale_bytes > 0) {
    d.scale = DevBuf(be, scale_bytes);
    be.upload(d.scale.as<void>(), host.scale, scale_bytes);
    d.w.scale = d.scale.as<const uint8_t>();
  }
  return d;
}

FVec view(const DevBuf& b, size_t n) { return {b.as<const float>(), static_cast<int64_t>(n)}; }

EntryBuf::EntryBuf(Backend& be, const std::vector<float>& rows, int64_t width, int64_t rope, EntryFormat fmt, int64_t per_block) {
  const int64_t n = static_cast<int64_t>(rows.size()) / width, nb = std::max<int64_t>((n + per_block - 1) / per_block, 1);
  t.fmt = fmt;
  t.width = static_cast<int32_t>(width);
  t.rope = static_cast<int32_t>(rope);
  t.stride = static_cast<int32_t>(quant::entry_stride(fmt, width, rope));
  t.per_block = static_cast<int32_t>(per_block);
  t.offset = 64;  // not at the block start, as in the engine's blocks
  stored.assign(rows.size(), 0.0f);
  std::vector<unsigned char*> ptrs;
  for (int64_t b = 0; b < nb; ++b) {
    std::vector<unsigned char> img(64 + static_cast<size_t>(per_block * t.stride), 0xA5);
    for (int64_t w = b * per_block; w < std::min(n, (b + 1) * per_block); ++w) {
      unsigned char* e = img.data() + 64 + (w - b * per_block) * t.stride;
      quant::encode_entry(fmt, rows.data() + w * width, width, rope, e);
      quant::decode_entry(fmt, e, width, rope, stored.data() + w * width);
    }
    blocks.emplace_back(be, img.size());
    be.upload(blocks.back().as<void>(), img.data(), img.size());
    ptrs.push_back(blocks.back().as<unsigned char>());
  }
  table = to_backend(be, ptrs);
  t.blocks = table.as<unsigned char* const>();
}

std::vector<float> EntryBuf::read(Backend& be, int64_t n) const {
  std::vector<float> out(static_cast<size_t>(n * t.width));
  std::vector<unsigned char> e(static_cast<size_t>(t.stride));
  for (int64_t w = 0; w < n; ++w) {
    const size_t b = static_cast<size_t>(w / t.per_block);
    be.download(e.data(), blocks[b].as<unsigned char>() + t.offset + (w % t.per_block) * t.stride, e.size());
    quant::decode_entry(t.fmt, e.data(), t.width, t.rope, out.data() + w * t.width);
  }
  return out;
}

const char* entry_format_name(EntryFormat f) {
  switch (f) {
    case EntryFormat::F32: return "f32";
    case EntryFormat::BF16: return "bf16";
    case EntryFormat::FP8: return "fp8";
    case EntryFormat::I8: return "i8";
  }
  return "?";
}

TestStep make_step(Backend& be, const std::vector<TestSeq>& seqs, const std::vector<int32_t>& ids,
                   const std::vector<int32_t>& out_rows) {
  TestStep t;
  for (const auto& s : seqs) t.S += s.rows;
  const StepLayout l = StepLayout::for_rows(std::max<int64_t>(t.S, 1));
  std::vector<unsigned char> img(l.bytes, 0);
  const StepRef h = l.ref(img.data());
  // Each sequence's descriptor array (one layer) in backend memory.
  t.desc = DevBuf(be, std::max<size_t>(seqs.size(), 1) * sizeof(LayerState));
  std::vector<LayerState> desc;
  for (const auto& s : seqs) desc.push_back(s.state);
  if (!desc.empty()) be.upload(t.desc.as<void>(), desc.data(), desc.size() * sizeof(LayerState));
  int64_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto* sq = const_cast<StepSeq*>(h.seqs) + i;
    sq->state = t.desc.as<const LayerState>() + i;
    sq->p0 = seqs[i].p0;
    sq->row0 = static_cast<int32_t>(row);
    sq->rows = static_cast<int32_t>(seqs[i].rows);
    for (int64_t r = 0; r < seqs[i].rows; ++r, ++row) {
      const_cast<int64_t*>(h.pos)[row] = seqs[i].p0 + r;
      const_cast<int32_t*>(h.seq)[row] = static_cast<int32_t>(i);
      const_cast<int32_t*>(h.ids)[row] = ids.empty() ? 0 : ids[static_cast<size_t>(row)];
      t.pos.push_back(seqs[i].p0 + r);
      t.seq.push_back(static_cast<int32_t>(i));
    }
  }
  for (size_t k = 0; k < out_rows.size(); ++k) const_cast<int32_t*>(h.out)[k] = out_rows[k];
  auto* c = const_cast<int32_t*>(h.counts);
  c[kStepRows] = static_cast<int32_t>(t.S);
  c[kStepSeqs] = static_cast<int32_t>(seqs.size());
  c[kStepOut] = static_cast<int32_t>(out_rows.size());
  t.mem = DevBuf(be, l.bytes);
  be.upload(t.mem.as<void>(), img.data(), l.bytes);
  t.ref = l.ref(t.mem.as<void>());
  return t;
}

double rel_err_d(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> v;
  add_linear_cases(v);
  add_norm_rope_cases(v);
  add_mhc_cases(v);
  add_attention_cases(v);
  add_compressor_indexer_cases(v);
  add_moe_cases(v);
  return v;
}

CaseResult run_case(const OpCase& c, Backend& be, bool perf) {
  CaseResult r;
  try {
    auto op = c.prepare(be);
    if (!op) return r;
    r.supported = true;
    r.tol = op->tol;
    op->run();
    r.error = op->error();
    if (perf) {
      using Clock = std::chrono::steady_clock;
      // Repeat for at least ~0.2 s (and 3 runs); report the median run.
      std::vector<double> t;
      const auto start = Clock::now();
      while (t.size() < 3 || (std::chrono::duration<double>(Clock::now() - start).count() < 0.2 && t.size() < 1000)) {
        const auto t0 = Clock::now();
        op->run();
        t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
      std::sort(t.begin(), t.end());
      r.us = t[t.size() / 2] * 1e6;
      r.gbps = op->bytes > 0 ? op->bytes / (r.us * 1e-6) / 1e9 : 0;
    }
  } catch (const std::exception& e) {
    r.supported = true;
    r.failure = e.what();
    r.error = INFINITY;
  }
  return r;
}

}  // namespace dsv4::test
