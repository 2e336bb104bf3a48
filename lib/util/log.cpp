// The library's logger: one spdlog logger whose only sink forwards each message to the host's
// callback, or to stderr when there is none.
#include "util/log.hpp"

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

namespace dsv4 {
namespace {

spdlog::level::level_enum to_spdlog(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return spdlog::level::debug;
    case LogLevel::Info: return spdlog::level::info;
    case LogLevel::Warning: return spdlog::level::warn;
    case LogLevel::Error: return spdlog::level::err;
    case LogLevel::Off: return spdlog::level::off;
  }
  return spdlog::level::off;
}

LogLevel from_spdlog(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LogLevel::Debug;
    case spdlog::level::info: return LogLevel::Info;
    case spdlog::level::warn: return LogLevel::Warning;
    case spdlog::level::err:
    case spdlog::level::critical: return LogLevel::Error;
    default: return LogLevel::Off;
  }
}

// base_sink serialises sink_it_ under its mutex, so the callback sees one message at a time.
class HostSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void set(LogCallback cb) {
    std::lock_guard<std::mutex> lk(mutex_);
    cb_ = std::move(cb);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    const LogLevel level = from_spdlog(msg.level);
    if (cb_) {
      try {
        cb_(level, text);
      } catch (...) {
        // A throwing host callback must not unwind through the library.
      }
      return;
    }
    std::fprintf(stderr, "dsv4: %s: %.*s\n", log_level_name(level), static_cast<int>(text.size()), text.data());
  }
  void flush_() override { std::fflush(stderr); }

 private:
  LogCallback cb_;
};

struct Logger {
  std::shared_ptr<HostSink> sink = std::make_shared<HostSink>();
  spdlog::logger logger{"dsv4", sink};
  Logger() { logger.set_level(spdlog::level::warn); }
};

Logger& instance() {
  static Logger l;  // not registered with spdlog's global registry: a host's spdlog setup is untouched
  return l;
}

}  // namespace

void set_log_callback(LogCallback callback) { instance().sink->set(std::move(callback)); }
void set_log_level(LogLevel level) { instance().logger.set_level(to_spdlog(level)); }
LogLevel log_level() { return from_spdlog(instance().logger.level()); }
const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warning: return "warning";
    case LogLevel::Error: return "error";
    case LogLevel::Off: return "off";
  }
  return "off";
}

bool log_enabled(LogLevel level) { return level != LogLevel::Off && instance().logger.should_log(to_spdlog(level)); }

void log(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  instance().logger.log(to_spdlog(level), spdlog::string_view_t(message.data(), message.size()));
}

}  // namespace dsv4
