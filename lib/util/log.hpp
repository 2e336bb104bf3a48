// Library-internal logging: messages go to the host's callback (C ABI dsv4_set_log_callback), or nowhere.
#pragma once
#include <string>

namespace dsv4 {
enum class LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3 };
using LogFn = void (*)(int level, const char* message, void* user_data);
void set_log_callback(LogFn fn, void* user_data);
void log(LogLevel level, const std::string& message);
}  // namespace dsv4
