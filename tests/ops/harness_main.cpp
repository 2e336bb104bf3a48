// dsv4_ops: the op harness as a tool. Runs every case on every backend under test and prints the
// support matrix (per op family: cases passed / run, worst error against tolerance); with --perf
// also µs per call and GB/s per case.
//
//   dsv4_ops [--perf] [--real | --awkward] [--op NAME] [--backend NAME] [--skip-backend NAME]...
//
// Exit status 1 when any supported case fails.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ops/harness.hpp"

using namespace dsv4;
using namespace dsv4::test;

int main(int argc, char** argv) {
  bool perf = false, real_only = false, awkward_only = false;
  std::string only_op, only_backend;
  std::vector<std::string> skip_backends;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--perf") perf = true;
    else if (a == "--real") real_only = true;
    else if (a == "--awkward") awkward_only = true;
    else if (a == "--op" && i + 1 < argc) only_op = argv[++i];
    else if (a == "--backend" && i + 1 < argc) only_backend = argv[++i];
    else if (a == "--skip-backend" && i + 1 < argc) skip_backends.push_back(argv[++i]);
    else {
      std::fprintf(stderr, "usage: dsv4_ops [--perf] [--real | --awkward] [--op NAME] [--backend NAME] [--skip-backend NAME]...\n");
      return 2;
    }
  }
  const auto cases = all_cases();
  auto backends = backends_under_test();
  std::erase_if(backends, [&](const BackendUnderTest& b) { return std::find(skip_backends.begin(), skip_backends.end(), b.name) != skip_backends.end(); });
  struct Cell {
    int run = 0, pass = 0, unsupported = 0;
    double worst_ratio = 0;  // worst error / tolerance (tolerance 0: error itself)
  };
  std::map<std::string, std::map<std::string, Cell>> matrix;  // op -> backend -> cell
  bool failed = false;
  if (perf) std::printf("%-14s %-12s %-70s %10s %9s %10s\n", "op", "backend", "shape", "us", "GB/s", "error");
  for (const auto& c : cases) {
    if (!only_op.empty() && c.op != only_op) continue;
    if (real_only && !c.real) continue;
    if (awkward_only && c.real) continue;
    for (const auto& b : backends) {
      if (!only_backend.empty() && b.name != only_backend) continue;
      auto be = b.make();
      const CaseResult r = run_case(c, *be, perf);
      Cell& cell = matrix[c.op][b.name];
      if (!r.supported) {
        ++cell.unsupported;
        continue;
      }
      ++cell.run;
      const bool ok = r.failure.empty() && r.error <= r.tol;
      cell.pass += ok;
      cell.worst_ratio = std::max(cell.worst_ratio, r.tol > 0 ? r.error / r.tol : r.error);
      if (!ok) {
        failed = true;
        std::printf("FAIL %s / %s / %s: error %g, tolerance %g %s\n", b.name.c_str(), c.op.c_str(), c.shape.c_str(), r.error, r.tol,
                    r.failure.c_str());
      }
      if (perf)
        std::printf("%-14s %-12s %-70.70s %10.1f %9.2f %10.2e\n", c.op.c_str(), b.name.c_str(), c.shape.c_str(), r.us, r.gbps, r.error);
    }
  }
  std::printf("\nsupport matrix (cases passed / run; worst error as a fraction of its tolerance)\n%-14s", "op");
  for (const auto& b : backends)
    if (only_backend.empty() || b.name == only_backend) std::printf(" %-24s", b.name.c_str());
  std::printf("\n");
  for (const auto& [op, row] : matrix) {
    std::printf("%-14s", op.c_str());
    for (const auto& b : backends) {
      if (!only_backend.empty() && b.name != only_backend) continue;
      auto it = row.find(b.name);
      char buf[64];
      if (it == row.end() || it->second.run == 0) std::snprintf(buf, sizeof buf, "unsupported");
      else std::snprintf(buf, sizeof buf, "%d/%d  worst %.2f", it->second.pass, it->second.run, it->second.worst_ratio);
      std::printf(" %-24s", buf);
    }
    std::printf("\n");
  }
  return failed ? 1 : 0;
}
