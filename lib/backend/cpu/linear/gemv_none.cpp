// The portable tier has no fused decode kernels: products decode tiles to fp32 and multiply them
// with Eigen (linear.cpp), compiled for the baseline ISA.
#include "backend/cpu/linear/gemv.hpp"

namespace dsv4::DSV4_CPU_NS {

bool gemv_available() { return false; }
int64_t gemv_max_batch(const MatW&) { return 0; }
size_t gemv_scratch_floats(const MatW&, int64_t) { return 1; }
size_t gemv_prepared_floats(const MatW&, int64_t) { return 0; }
bool gemv_needs_prepared_x(const MatW&) { return false; }
const char* gemv_tier() { return "none"; }
bool decode_rows_fast(const MatW&, int64_t, int64_t, float*) { return false; }
void gemv_prepare_x(const MatW&, const float*, int64_t, int64_t, float*) {}
void gemv_rows(const MatW&, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, const float*, float*) {}

}  // namespace dsv4::DSV4_CPU_NS
