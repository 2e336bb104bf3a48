// dsv4/log.hpp: where the library's log messages go.
//
// The library logs a few lines (model loaded, settings it had to change, resources it could not
// get) through one logger. By default messages at Warning and above are written to stderr as
// "dsv4: warning: ...". A host that installs its own callback receives every message at or above
// the level instead, and nothing is written to stderr.
//
// Thread-safety: these functions may be called from any thread. The callback is called from the
// thread that made the dsv4 call producing the message, one message at a time (calls are
// serialised); it must not call set_log_callback or set_log_level itself.
#pragma once
#include <functional>
#include <string_view>

#include "dsv4/export.hpp"

namespace dsv4 {

enum class LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3, Off = 4 };

using LogCallback = std::function<void(LogLevel level, std::string_view message)>;

// Installs `callback` as the sink; an empty callback restores the default (stderr).
DSV4_API void set_log_callback(LogCallback callback);
// Messages below `level` are dropped (default Warning; Off: nothing at all).
DSV4_API void set_log_level(LogLevel level);
DSV4_API LogLevel log_level();
DSV4_API const char* log_level_name(LogLevel level);  // "debug", "info", "warning", "error", "off"

}  // namespace dsv4
