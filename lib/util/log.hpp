// Library-internal logging through the public sink (dsv4/log.hpp).
#pragma once
#include <string>

#include "dsv4/log.hpp"

namespace dsv4 {
// Whether a message at `level` would go anywhere (to skip building it).
bool log_enabled(LogLevel level);
void log(LogLevel level, const std::string& message);
}  // namespace dsv4
