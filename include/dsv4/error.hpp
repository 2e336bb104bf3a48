// dsv4/error.hpp: the typed errors every dsv4 call may throw.
//
// The library never aborts or exits on bad input. Each failure is thrown as a subclass of
// dsv4::Error whose what() is one actionable line (which file / tensor / key / argument, what
// was expected, what was found). After an Error thrown by Session::forward the session is
// unchanged (inputs are validated before any state is touched).
#pragma once
#include <stdexcept>
#include <string>

#include "dsv4/export.hpp"

namespace dsv4 {

enum class ErrorKind {
  Io,               // a file could not be opened, read or mapped
  Format,           // a file is malformed (safetensors header, JSON, offsets, dtype)
  Config,           // config.json is missing a key or is inconsistent
  Shape,            // a tensor's dtype or shape differs from what the config implies
  MissingTensor,    // a required tensor is absent from the checkpoint
  InvalidArgument,  // a caller-supplied value is out of range (token id, empty input, option)
  Capacity,         // a limit would be exceeded: a session's max_context, the model's cache pool, memory
  Unsupported,      // a backend, device or feature that this build or machine does not have
  Cancelled,        // the host's cancel callback asked a long call to stop (Session::set_cancel_callback)
};

class DSV4_API Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

#define DSV4_DECLARE_ERROR(Name, Kind)                                   \
  class DSV4_API Name : public Error {                                   \
   public:                                                               \
    explicit Name(const std::string& m) : Error(ErrorKind::Kind, m) {}   \
  };
DSV4_DECLARE_ERROR(IoError, Io)
DSV4_DECLARE_ERROR(FormatError, Format)
DSV4_DECLARE_ERROR(ConfigError, Config)
DSV4_DECLARE_ERROR(ShapeError, Shape)
DSV4_DECLARE_ERROR(MissingTensorError, MissingTensor)
DSV4_DECLARE_ERROR(InvalidArgument, InvalidArgument)
DSV4_DECLARE_ERROR(CapacityError, Capacity)
DSV4_DECLARE_ERROR(UnsupportedError, Unsupported)
DSV4_DECLARE_ERROR(CancelledError, Cancelled)
#undef DSV4_DECLARE_ERROR

}  // namespace dsv4
