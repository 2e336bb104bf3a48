// What changes when a row is computed alone or inside a batch with rows of other sequences: each
// op's result for the row must agree to 1e-5 relative; the test reports which ops are bitwise equal.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "ops/harness.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

struct Outcome {
  std::string op;
  double rel = 0;
  bool bitwise = false;
};

Outcome compare(const std::string& op, const std::vector<float>& alone, const std::vector<float>& in_batch) {
  Outcome o{op, 0, false};
  REQUIRE(alone.size() == in_batch.size());
  std::vector<double> ref(alone.begin(), alone.end());
  o.rel = rel_err_d(in_batch, ref);
  o.bitwise = std::memcmp(alone.data(), in_batch.data(), alone.size() * sizeof(float)) == 0;
  return o;
}

// y row `r` of x·Wᵀ computed with S = 1 and inside S rows.
Outcome linear_case(Backend& be, WFormat fmt, int64_t rows, int64_t cols, int64_t S, int64_t r) {
  OwnedMat m = make_mat(fmt, rows, cols, 5);
  DevMat w = to_backend(be, m.w);
  const auto x = random_floats(static_cast<size_t>(S * cols), 6);
  DevBuf xd = to_backend(be, x), y1(be, static_cast<size_t>(rows) * 4), yS(be, static_cast<size_t>(S * rows) * 4);
  be.linear(w.w, 0, rows, xd.as<const float>() + r * cols, cols, 1, y1.as<float>(), rows);
  be.linear(w.w, 0, rows, xd.as<const float>(), cols, S, yS.as<float>(), rows);
  const auto a = from_backend(be, y1, static_cast<size_t>(rows));
  const auto all = from_backend(be, yS, static_cast<size_t>(S * rows));
  return compare(std::string("linear ") + wformat_name(fmt) + " S=" + std::to_string(S),
                 a, std::vector<float>(all.begin() + r * rows, all.begin() + (r + 1) * rows));
}

}  // namespace

TEST_CASE("batch invariance: a row computed alone and inside a batch of other sequences' rows") {
  auto be = make_cpu_backend(2);
  std::vector<Outcome> out;
  for (WFormat f : {WFormat::F32, WFormat::BF16, WFormat::FP8, WFormat::FP4})
    for (int64_t S : {4, 40}) out.push_back(linear_case(*be, f, 256, 4096, S, 2));

  {  // attention: row of sequence 1 (position 300) alone, and among rows of three other sequences
    const int64_t H = 16, hd = 64, W = 8;
    auto ring = random_floats(static_cast<size_t>(W * hd), 1);
    auto entries = random_floats(static_cast<size_t>(80 * hd), 2);
    DevBuf ring_d = to_backend(*be, ring);
    EntryBuf ent_d(*be, entries, hd, 32, EntryFormat::F32, 16);
    TestSeq seq;
    seq.state.ring = ring_d.as<unsigned char>();
    seq.state.comp.entries = ent_d.t;
    auto run = [&](const std::vector<TestSeq>& seqs, int64_t row) {
      TestStep st = make_step(*be, seqs);
      const auto q = random_floats(static_cast<size_t>(st.S * H * hd), 3);
      const auto kv = random_floats(static_cast<size_t>(st.S * hd), 4);
      // the row under test gets the same q / kv in both runs
      auto qq = q;
      auto kk = kv;
      const auto q0 = random_floats(static_cast<size_t>(H * hd), 9), kv0 = random_floats(static_cast<size_t>(hd), 10);
      std::copy(q0.begin(), q0.end(), qq.begin() + row * H * hd);
      std::copy(kv0.begin(), kv0.end(), kk.begin() + row * hd);
      DevBuf qd = to_backend(*be, qq), kvd = to_backend(*be, kk), sink = to_backend(*be, random_floats(static_cast<size_t>(H), 5));
      DevBuf od(*be, static_cast<size_t>(st.S * H * hd) * 4);
      AttentionArgs a;
      a.S = st.S;
      a.H = H;
      a.hd = hd;
      a.W = W;
      a.step = st.ref;
      a.q = qd.as<const float>();
      a.kv = kvd.as<const float>();
      a.entries = true;
      a.ratio = 4;
      a.sink = sink.as<const float>();
      a.out = od.as<float>();
      be->attention(a);
      const auto o = from_backend(*be, od, static_cast<size_t>(st.S * H * hd));
      return std::vector<float>(o.begin() + row * H * hd, o.begin() + (row + 1) * H * hd);
    };
    TestSeq alone = seq;
    alone.p0 = 300;
    alone.rows = 1;
    TestSeq a1 = seq, a2 = seq, a3 = seq;
    a1.p0 = 40, a1.rows = 2;
    a2.p0 = 7, a2.rows = 3;
    a3.p0 = 150, a3.rows = 1;
    out.push_back(compare("attention (HCA rows)", run({alone}, 0), run({a1, alone, a2, a3}, 2)));
  }
  std::ostringstream msg;
  msg << "row alone vs in a batch (relative difference, bitwise):";
  for (const auto& o : out) {
    msg << "\n  " << o.op << ": " << o.rel << (o.bitwise ? " bitwise equal" : "");
    INFO(o.op);
    CHECK(o.rel <= 1e-5);
  }
  MESSAGE(msg.str());
}
