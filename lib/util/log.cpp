#include "util/log.hpp"

#include <mutex>

namespace dsv4 {
namespace {
std::mutex g_mu;
LogFn g_fn = nullptr;
void* g_user = nullptr;
}  // namespace

void set_log_callback(LogFn fn, void* user_data) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_fn = fn;
  g_user = user_data;
}

void log(LogLevel level, const std::string& message) {
  LogFn fn;
  void* user;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    fn = g_fn;
    user = g_user;
  }
  if (fn != nullptr) fn(static_cast<int>(level), message.c_str(), user);
}
}  // namespace dsv4
