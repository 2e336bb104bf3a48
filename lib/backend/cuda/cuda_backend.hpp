// The CUDA backend (built with DSV4_HAVE_CUDA): the device backend (backend/device) on one CUDA
// device, its kernels launched in order on one stream. Weights are uploaded once, in their stored
// formats; every op runs on the device; the host sees only uploads (a step's ids and positions)
// and downloads (logits).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace dsv4::cuda {

// Devices the CUDA runtime sees now; `why` (when not null) gets the runtime's reason when none.
int device_count(std::string* why = nullptr);
std::vector<DeviceInfo> devices();
// The backend on `device`, placing weights as LoadOptions' host_experts / device_reserve_bytes
// say; throws UnsupportedError when there is no such device.
std::unique_ptr<Backend> make_backend(int device, bool host_experts = true, uint64_t reserve_bytes = 0);

}  // namespace dsv4::cuda
