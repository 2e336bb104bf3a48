// The Python module `dsv4` (extension `dsv4._dsv4`): Model, Session, Sampler, Snapshot.
// numpy in and out; the GIL is released during forward passes, generation and sampling.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <optional>

#include "dsv4/chat.hpp"
#include "dsv4/generate.hpp"
#include "dsv4/log.hpp"
#include "dsv4/model.hpp"
#include "dsv4/tokenizer.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

struct PyModel {
  std::shared_ptr<const dsv4::Model> m;
};

// A Session plus what keeps Python use safe: a lock against concurrent calls and a closed state.
struct PySession {
  std::unique_ptr<dsv4::Session> s;
  std::mutex mu;                           // held by the call running on the session
  std::atomic<std::thread::id> owner{};    // the thread holding `mu` (to refuse re-entry from callbacks)
  py::object cancel;  // Session.set_cancel(fn): asked between steps and tokens (None: never)
  int views_last = 0, views_all = 0;       // live forward(copy=False) arrays (counted by ViewGuard, under the GIL)
  int64_t all_capacity = 0;                // floats of the session's all-logits buffer (it only grows)
  dsv4::Session& get() {
    if (!s) throw py::value_error("this Session is closed");
    return *s;
  }
};

struct PySampler {
  dsv4::Sampler s;
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();  // held while the chain runs (GIL released)
  explicit PySampler(dsv4::Sampler x) : s(std::move(x)) {}
  PySampler(PySampler&&) = default;
  PySampler(const PySampler&) = delete;
};

// One call at a time on a Session or Sampler: another thread's concurrent call, or a call from
// inside a callback of the running one (on_token, a custom stage, the cancel check), is refused
// with ValueError instead of racing or deadlocking.
class CallLock {
 public:
  CallLock(std::mutex& mu, std::atomic<std::thread::id>* owner, const std::string& what) : owner_(owner) {
    if (owner_ != nullptr && owner_->load() == std::this_thread::get_id())
      throw py::value_error(what + ": not allowed from inside a callback of this object's running call");
    lk_ = std::unique_lock<std::mutex>(mu, std::try_to_lock);
    if (!lk_.owns_lock()) throw py::value_error(what + ": this object is in use by another thread (one call at a time)");
    if (owner_ != nullptr) owner_->store(std::this_thread::get_id());
  }
  CallLock(CallLock&& o) noexcept : lk_(std::move(o.lk_)), owner_(o.owner_) { o.owner_ = nullptr; }
  ~CallLock() {
    if (owner_ != nullptr && lk_.owns_lock()) owner_->store(std::thread::id());
  }

 private:
  std::unique_lock<std::mutex> lk_;
  std::atomic<std::thread::id>* owner_;
};
CallLock lock_session(PySession& ps, const std::string& what) {
  ps.get();
  return CallLock(ps.mu, &ps.owner, what);
}
CallLock lock_sampler(PySampler& sp, const std::string& what) { return CallLock(*sp.mu, nullptr, what); }

// The base object of forward(copy=False) arrays: keeps the Session alive and counts the views,
// so close() and a forward that would move the buffer can refuse while views exist.
struct ViewGuard {
  py::object session;
  PySession* ps;
  bool all;
  ViewGuard(py::object s, PySession* p, bool a) : session(std::move(s)), ps(p), all(a) { ++(all ? ps->views_all : ps->views_last); }
  ~ViewGuard() { --(all ? ps->views_all : ps->views_last); }
  ViewGuard(const ViewGuard&) = delete;
  ViewGuard& operator=(const ViewGuard&) = delete;
};

// A str or os.PathLike as a filesystem path (bytes paths too, as os.fsdecode reads them).
std::string fspath(const py::object& path) {
  py::object p = py::module_::import("os").attr("fspath")(path);
  if (py::isinstance<py::bytes>(p)) p = py::module_::import("os").attr("fsdecode")(p);
  return p.cast<std::string>();
}

// Tokens from a Python sequence of ints, or anything array-like with an integer dtype: numpy
// arrays, objects with the buffer protocol (array.array, memoryview) or __array__ / __dlpack__
// (torch CPU tensors, ...). Rejects other dtypes, str and bytes.
std::vector<int32_t> to_tokens(const py::handle& obj) {
  std::vector<int32_t> out;
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) || PyByteArray_Check(obj.ptr()))
    throw py::type_error("tokens must be integer ids (a list, array or tensor), not text or bytes: encode text with a Tokenizer first");
  py::object as_array;
  if (py::isinstance<py::array>(obj)) {
    as_array = py::reinterpret_borrow<py::object>(obj);
  } else if (PyObject_CheckBuffer(obj.ptr()) || py::hasattr(obj, "__array__") || py::hasattr(obj, "__array_interface__")) {
    as_array = py::module_::import("numpy").attr("asarray")(obj);
  } else if (py::hasattr(obj, "__dlpack__")) {
    as_array = py::module_::import("numpy").attr("from_dlpack")(obj);
  }
  if (as_array) {
    auto arr = py::reinterpret_borrow<py::array>(as_array);
    const char kind = arr.dtype().kind();
    if (kind != 'i' && kind != 'u')
      throw py::type_error("tokens must be an integer array, got dtype " + std::string(py::str(arr.dtype())));
    if (arr.ndim() != 1) throw py::value_error("tokens must be a 1-D array, got " + std::to_string(arr.ndim()) + " dimensions");
    auto a64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    const auto* p = a64.data();
    for (py::ssize_t i = 0; i < a64.size(); ++i) {
      if (p[i] < INT32_MIN || p[i] > INT32_MAX) throw dsv4::InvalidArgument("token id " + std::to_string(p[i]) + " is out of range");
      out.push_back(static_cast<int32_t>(p[i]));
    }
    return out;
  }
  if (py::isinstance<py::int_>(obj)) throw py::type_error("tokens must be a sequence of ints, not a single int (use [token])");
  for (auto item : py::iter(obj)) {
    if (!py::isinstance<py::int_>(item) || py::isinstance<py::bool_>(item))
      throw py::type_error("tokens must be ints, got " + std::string(py::str(py::type::of(item))));
    const auto v = item.cast<long long>();
    if (v < INT32_MIN || v > INT32_MAX) throw dsv4::InvalidArgument("token id " + std::to_string(v) + " is out of range");
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

// A user stage written in Python: fn(ids, logits) may edit logits in place and may return an
// index to select. The arrays are views valid only during the call.
class PyStage final : public dsv4::SamplerStage {
 public:
  explicit PyStage(py::function fn) : fn_(std::move(fn)) {}
  ~PyStage() override {
    py::gil_scoped_acquire gil;
    fn_ = py::function();
  }
  void apply(dsv4::Candidates& c, dsv4::SamplerContext&) override {
    py::gil_scoped_acquire gil;
    // The stage gets arrays of its own (they stay valid if it keeps them); its edits are copied back.
    const auto n = static_cast<py::ssize_t>(c.size());
    py::array_t<int32_t> ids(n);
    py::array_t<float> logits(n);
    std::copy(c.ids(), c.ids() + n, ids.mutable_data());
    std::copy(c.logits(), c.logits() + n, logits.mutable_data());
    py::object r = fn_(ids, logits);
    const py::ssize_t m = std::min(ids.size(), logits.size());
    if (m != n || ids.ndim() != 1 || logits.ndim() != 1) throw dsv4::InvalidArgument("custom stage resized its candidate arrays");
    const int32_t* pi = ids.data();
    for (py::ssize_t i = 0; i < n; ++i)
      if (pi[i] != c.ids()[i]) throw dsv4::InvalidArgument("custom stage changed candidate ids (edit logits, or return an index)");
    std::copy(logits.data(), logits.data() + n, c.logits());
    if (!r.is_none()) {
      const auto idx = r.cast<long long>();
      if (idx < 0 || idx >= n) throw dsv4::InvalidArgument("custom stage returned index " + std::to_string(idx) + " outside the candidates");
      c.select(static_cast<size_t>(idx));
    }
  }
  std::string name() const override { return "custom_python"; }

 private:
  py::function fn_;
};

using PyMessages = std::vector<std::map<std::string, std::string>>;

std::vector<dsv4::ChatMessage> to_chat(const PyMessages& msgs) {
  std::vector<dsv4::ChatMessage> v;
  for (const auto& m : msgs) {
    auto get = [&](const char* k) {
      auto it = m.find(k);
      return it == m.end() ? std::string() : it->second;
    };
    v.push_back({get("role"), get("content"), get("reasoning")});
  }
  return v;
}

std::vector<int32_t> encode_nogil(const dsv4::Tokenizer& t, const std::string& text, bool parse_special) {
  py::gil_scoped_release nogil;
  return t.encode(text, parse_special);
}

py::array_t<float> logits_array(std::span<const float> l, int64_t rows, int64_t vocab, bool copy, py::handle owner) {
  std::vector<py::ssize_t> shape = rows > 1 || rows == -1 ? std::vector<py::ssize_t>{static_cast<py::ssize_t>(l.size() / vocab), static_cast<py::ssize_t>(vocab)}
                                                          : std::vector<py::ssize_t>{static_cast<py::ssize_t>(vocab)};
  if (copy) {
    py::array_t<float> out(shape);
    std::copy(l.begin(), l.end(), out.mutable_data());
    return out;
  }
  py::array_t<float> view(shape, l.data(), owner);  // zero-copy, keeps the Session object alive
  py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return view;
}

dsv4::GenerationParams gen_params(int max_tokens, const std::vector<std::string>& stop, const std::vector<int32_t>& stop_tokens, int logprobs,
                                  uint64_t seed, float temperature, int top_k, float top_p, float min_p, float repetition_penalty) {
  dsv4::GenerationParams p;
  p.max_tokens = max_tokens;
  p.stop = stop;
  p.stop_tokens = stop_tokens;
  p.logprobs = logprobs;
  p.sampling.seed = seed;
  p.sampling.temperature = temperature;
  p.sampling.top_k = top_k;
  p.sampling.top_p = top_p;
  p.sampling.min_p = min_p;
  p.sampling.repetition_penalty = repetition_penalty;
  return p;
}

py::object logprob_obj(const std::optional<dsv4::TokenLogprob>& lp) {
  if (!lp) return py::none();
  py::list top;
  for (const auto& [id, v] : lp->top) top.append(py::make_tuple(id, v));
  return py::dict("token"_a = lp->token, "bytes"_a = py::bytes(lp->bytes), "logprob"_a = lp->logprob, "top"_a = top);
}

py::dict delta_obj(const dsv4::GenerationDelta& d) {
  return py::dict("content"_a = d.content, "reasoning"_a = d.reasoning, "logprob"_a = logprob_obj(d.logprob));
}

// Ctrl-C during a long generation: on the main thread (the only one Python delivers signals to)
// the loop checks for pending signals after every token and stops at once; the call then raises
// the KeyboardInterrupt (or whatever the handler raised) with the tokens so far attached as
// `partial`, so nothing generated is lost. Other threads are not interrupted by signals.
struct SignalWatch {
  bool main = false;
  bool hit = false;
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  SignalWatch() { main = PyThread_get_thread_ident() == main_thread_id(); }
  static unsigned long main_thread_id() {
    static const unsigned long id = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    return id;
  }
  // Called without the GIL; false: stop generating.
  bool ok() {
    if (!main || hit) return !hit;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return true;
    hit = true;
    PyErr_Fetch(&type, &value, &tb);
    return false;
  }
  // With the GIL, after the loop: re-raise with the partial result attached.
  void raise_if_hit(py::object partial) {
    if (!hit) return;
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != nullptr) PyObject_SetAttrString(value, "partial", partial.ptr());
    PyErr_Restore(type, value, tb);
    throw py::error_already_set();
  }
};

// For one call: the session's cancel check asks the callable of Session.set_cancel (with the
// GIL) and, on the main thread, whether a signal is pending (Ctrl-C). A Python exception from the
// callable stops the call and is re-raised.
struct CancelScope {
  dsv4::Session& s;
  SignalWatch& watch;
  py::object user;
  CancelScope(PySession& ps, SignalWatch& w) : s(*ps.s), watch(w), user(ps.cancel) {
    s.set_cancel_callback([this] {
      if (user && !user.is_none()) {
        py::gil_scoped_acquire gil;
        if (py::bool_(user())) return true;  // a raised exception propagates (as error_already_set)
      }
      return !watch.ok();
    });
  }
  ~CancelScope() {
    s.set_cancel_callback({});
    py::gil_scoped_acquire gil;
    user = py::object();
  }
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
};

void close_session(PySession& ps) {
  if (!ps.s) return;
  CallLock lk = lock_session(ps, "close");
  if (ps.views_last + ps.views_all > 0)
    throw py::value_error("close(): " + std::to_string(ps.views_last + ps.views_all) +
                          " arrays from forward(copy=False) still point into this session; delete them (or use copy=True) first");
  ps.s.reset();
}

py::dict result_obj(const dsv4::GenerationResult& r) {
  py::list lps;
  for (const auto& lp : r.logprobs) lps.append(logprob_obj(lp));
  return py::dict("content"_a = r.content, "reasoning"_a = r.reasoning, "tokens"_a = r.tokens, "logprobs"_a = lps,
                  "finish_reason"_a = dsv4::finish_reason_name(r.finish), "prompt_tokens"_a = r.prompt_tokens,
                  "completion_tokens"_a = r.completion_tokens);
}

// A TextStream with the objects it reads kept alive by Python (keep_alive on the constructor).
struct PyTextStream {
  std::optional<dsv4::ChatFormat> fmt;
  std::unique_ptr<dsv4::TextStream> ts;
};

// A text generation on the session (`run(cb)`, without the GIL): on_delta may return False to
// cancel; Ctrl-C and the Session.set_cancel callable stop it too (KeyboardInterrupt carries the
// result so far as `partial`). Returns the result dict.
using DeltaFn = std::function<bool(const dsv4::GenerationDelta&)>;
py::dict run_text(PySession& ps, const std::optional<py::function>& on_delta,
                  const std::function<dsv4::GenerationResult(const DeltaFn&)>& run) {
  SignalWatch watch;
  const DeltaFn cb = [&](const dsv4::GenerationDelta& d) {
    if (on_delta) {
      py::gil_scoped_acquire gil;
      py::object r = (*on_delta)(delta_obj(d));
      if (!(r.is_none() || r.cast<bool>())) return false;
    }
    return watch.ok();
  };
  dsv4::GenerationResult r;
  try {
    CancelScope scope(ps, watch);
    py::gil_scoped_release nogil;
    r = run(cb);
  } catch (const dsv4::CancelledError&) {
    watch.raise_if_hit(py::none());  // stopped inside the prompt
    throw;
  }
  watch.raise_if_hit(result_obj(r));
  return result_obj(r);
}

}  // namespace

PYBIND11_MODULE(_dsv4, m) {
  m.doc() = "dsv4: DeepSeek-V4 inference engine (Model, Session, Sampler)";
  m.attr("__version__") = "0.1.0";

  static py::exception<dsv4::Error> error(m, "Error", PyExc_RuntimeError);
  static py::exception<dsv4::IoError> io_error(m, "IoError", error.ptr());
  static py::exception<dsv4::FormatError> format_error(m, "FormatError", error.ptr());
  static py::exception<dsv4::ConfigError> config_error(m, "ConfigError", error.ptr());
  static py::exception<dsv4::ShapeError> shape_error(m, "ShapeError", error.ptr());
  static py::exception<dsv4::MissingTensorError> missing_error(m, "MissingTensorError", error.ptr());
  static py::exception<dsv4::InvalidArgument> invalid_error(m, "InvalidArgument", error.ptr());
  static py::exception<dsv4::CapacityError> capacity_error(m, "CapacityError", error.ptr());
  static py::exception<dsv4::UnsupportedError> unsupported_error(m, "UnsupportedError", error.ptr());
  static py::exception<dsv4::CancelledError> cancelled_error(m, "CancelledError", error.ptr());
  error.attr("__doc__") = "Base of every dsv4 error (a RuntimeError); the message says what, where and what to do.";
  io_error.attr("__doc__") = "A file could not be opened, read or mapped.";
  format_error.attr("__doc__") = "A file is malformed (safetensors header, JSON, offsets, dtype).";
  config_error.attr("__doc__") = "config.json lacks a key or holds an inconsistent or out-of-range value.";
  shape_error.attr("__doc__") = "A tensor's dtype or shape differs from what the config implies.";
  missing_error.attr("__doc__") = "A tensor the model needs is absent from the checkpoint.";
  invalid_error.attr("__doc__") = "An argument is out of range (token id, empty input, option).";
  capacity_error.attr("__doc__") = "A limit would be exceeded (max_context, memory); nothing was changed.";
  unsupported_error.attr("__doc__") = "A backend, device or feature this build or machine does not have.";
  cancelled_error.attr("__doc__") = "The session's cancel callback stopped a call; the tokens fed before that stay fed.";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dsv4::Error& e) {
      switch (e.kind()) {
        case dsv4::ErrorKind::Io: io_error(e.what()); return;
        case dsv4::ErrorKind::Format: format_error(e.what()); return;
        case dsv4::ErrorKind::Config: config_error(e.what()); return;
        case dsv4::ErrorKind::Shape: shape_error(e.what()); return;
        case dsv4::ErrorKind::MissingTensor: missing_error(e.what()); return;
        case dsv4::ErrorKind::InvalidArgument: invalid_error(e.what()); return;
        case dsv4::ErrorKind::Capacity: capacity_error(e.what()); return;
        case dsv4::ErrorKind::Unsupported: unsupported_error(e.what()); return;
        case dsv4::ErrorKind::Cancelled: cancelled_error(e.what()); return;
      }
      error(e.what());
    }
  });

  // Logging: the library's messages go to stderr (warnings and above) unless a callback is set.
  auto parse_level = [](const std::string& name) {
    for (int l = 0; l <= 4; ++l)
      if (name == dsv4::log_level_name(static_cast<dsv4::LogLevel>(l))) return static_cast<dsv4::LogLevel>(l);
    throw py::value_error("log level must be 'debug', 'info', 'warning', 'error' or 'off', got '" + name + "'");
  };
  m.def("set_log_callback", [](py::object fn) {
    if (fn.is_none()) {
      dsv4::set_log_callback({});
      return;
    }
    if (!PyCallable_Check(fn.ptr())) throw py::type_error("set_log_callback takes a callable or None");
    auto holder = std::shared_ptr<py::object>(new py::object(std::move(fn)), [](py::object* o) {
      if (Py_IsInitialized()) {
        py::gil_scoped_acquire gil;
        delete o;
      }
    });
    dsv4::set_log_callback([holder](dsv4::LogLevel level, std::string_view msg) {
      if (!Py_IsInitialized()) return;
      py::gil_scoped_acquire gil;
      try {
        (*holder)(dsv4::log_level_name(level), std::string(msg));
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable("dsv4 log callback");
      }
    });
  }, "fn"_a, R"doc(fn(level: str, message: str) receives the library's log messages at or above the log level
instead of stderr ('warning' and above by default); None restores stderr. May be called from any
thread that calls into dsv4; exceptions it raises are reported as unraisable, not propagated.)doc");
  m.def("set_log_level", [parse_level](const std::string& level) { dsv4::set_log_level(parse_level(level)); }, "level"_a,
        "Drop log messages below level: 'debug', 'info', 'warning' (default), 'error' or 'off'.");
  m.def("log_level", [] { return std::string(dsv4::log_level_name(dsv4::log_level())); }, "The current log level.");
  // The callback must not outlive the interpreter.
  py::module_::import("atexit").attr("register")(py::cpp_function([] { dsv4::set_log_callback({}); }));

  m.def("backends", &dsv4::compiled_backends, "Names of the backends compiled into this library (always includes 'cpu').");
  m.def("cpu_tiers", &dsv4::cpu_kernel_tiers, "CPU kernel tiers compiled into this library, lowest first.");
  m.def("best_cpu_tier", &dsv4::best_cpu_kernel_tier, "The best CPU kernel tier this machine runs.");
  m.def("devices", [] {
    py::list out;
    for (const auto& d : dsv4::available_devices())
      out.append(py::dict("backend"_a = d.backend, "device"_a = d.device, "name"_a = d.name, "memory_total"_a = d.memory_total,
                          "threads"_a = d.threads));
    return out;
  }, "The devices every compiled-in backend can use, as dicts (backend, device, name, memory_total, threads).");

  py::class_<PyModel>(m, "Model", R"doc(Immutable weights of a DeepSeek-V4 checkpoint, bound to one backend; share it across sessions.

Model(path, backend="cpu", device=0, threads=0, max_batch=512, progress=None, cpu_tier=""): path is a
checkpoint directory (str or os.PathLike). threads sizes the CPU backend's worker pool, shared
by every session of the model (0: one per hardware thread). max_batch bounds the rows of one
step (tokens of all sessions together). progress(fraction, stage) is called during loading.
cpu_tier forces a CPU kernel tier ("" = the best this CPU runs; see dsv4.cpu_tiers()).
host_experts / device_reserve_bytes: device backends keep routed experts that do not fit in
pinned host memory (False: such a model raises CapacityError), leaving device_reserve_bytes free
(0: 5% of the device, at least 2 GiB).
A backend not built into this library, or a missing device, raises UnsupportedError.)doc")
      .def(py::init([](py::object path, const std::string& backend, int device, int threads, int64_t max_batch, std::optional<py::function> progress,
                       const std::string& cpu_tier, uint64_t cache_pool_bytes, int64_t cache_block_tokens, bool host_experts,
                       uint64_t device_reserve_bytes) {
             const std::string dir = fspath(path);
             dsv4::LoadOptions o;
             o.host_experts = host_experts;
             o.device_reserve_bytes = device_reserve_bytes;
             o.cache_pool_bytes = cache_pool_bytes;
             o.cache_block_tokens = cache_block_tokens;
             o.backend = backend;
             o.device = device;
             o.threads = threads;
             o.max_batch = max_batch;
             o.cpu_tier = cpu_tier;
             if (progress) {
               o.progress = [fn = *progress](double f, std::string_view stage) {
                 py::gil_scoped_acquire gil;
                 fn(f, std::string(stage));
               };
             }
             py::gil_scoped_release nogil;
             return PyModel{dsv4::Model::load(dir, o)};
           }),
           "path"_a, "backend"_a = "cpu", "device"_a = 0, "threads"_a = 0, "max_batch"_a = 512, "progress"_a = py::none(), "cpu_tier"_a = "",
           "cache_pool_bytes"_a = 0, "cache_block_tokens"_a = 0, "host_experts"_a = true, "device_reserve_bytes"_a = 0)
      .def_property_readonly("backend", [](const PyModel& p) {
        const dsv4::BackendInfo b = p.m->backend_info();
        return py::dict("name"_a = b.name, "device"_a = b.device, "device_name"_a = b.device_name, "kernel_tier"_a = b.kernel_tier,
                        "threads"_a = b.threads, "memory_total"_a = b.memory_total, "memory_available"_a = b.memory_available,
                        "weight_bytes"_a = b.weight_bytes, "host_weight_bytes"_a = b.host_weight_bytes, "buffer_bytes"_a = b.buffer_bytes, "formats"_a = b.formats, "ops"_a = b.ops,
                        "graphs"_a = b.graphs);
      }, "What the model's backend is and holds (a dict).")
      .def_property_readonly("vocab_size", [](const PyModel& p) { return p.m->config().vocab_size; }, "Vocabulary size (rows of the embedding).")
      .def_property_readonly("num_layers", [](const PyModel& p) { return p.m->config().num_layers; }, "Number of transformer layers.")
      .def_property_readonly("bos_token_id", [](const PyModel& p) { return p.m->config().bos_token_id; }, "Beginning-of-sequence token id (config.json).")
      .def_property_readonly("eos_token_id", [](const PyModel& p) { return p.m->config().eos_token_id; }, "End-of-sequence token id (config.json).")
      .def("summary", [](const PyModel& p) { return p.m->config().summary(); })
      .def("stats", [](const PyModel& p) {
        const auto st = p.m->stats();
        return py::dict("parameters"_a = st.parameters, "mtp_parameters"_a = st.mtp_parameters,
                        "bytes_by_dtype"_a = st.bytes_by_dtype, "file_bytes"_a = st.file_bytes, "layout"_a = st.layout);
      })
      .def("session_state_bytes", [](const PyModel& p, int64_t ctx, const std::string& cache_type) {
             return p.m->session_state_bytes(ctx, dsv4::parse_cache_type(cache_type));
           }, "context"_a, "cache_type"_a = "f32", "Bytes a session's state holds at `context` tokens in `cache_type` ('f32', 'bf16', 'fp8').")
      .def("cache_pool", [](const PyModel& p) {
        const dsv4::CachePoolStats c = p.m->cache_pool();
        return py::dict("limit_bytes"_a = c.limit_bytes, "in_use_bytes"_a = c.in_use_bytes, "free_bytes"_a = c.free_bytes,
                        "peak_bytes"_a = c.peak_bytes, "block_tokens"_a = c.block_tokens);
      }, "The cache pool all sessions of this model grow from (a dict of bytes).")
      .def("trim_cache_pool", [](const PyModel& p) { p.m->trim_cache_pool(); }, "Return the pool's free blocks to the backend.");

  py::class_<dsv4::SessionSnapshot>(m, "Snapshot", "A deep copy of a session's state (see Session.snapshot).")
      .def_property_readonly("position", &dsv4::SessionSnapshot::position, "Tokens the snapshot holds (the session position it was taken at).")
      .def_property_readonly("nbytes", &dsv4::SessionSnapshot::bytes, "Bytes of state the snapshot holds.");

  py::class_<PySampler>(m, "Sampler", R"doc(A chain of sampling stages with a seeded RNG (xoshiro256**).

Sampler(seed, temperature=..., top_k=..., ...) builds the standard chain; Sampler.empty(seed)
starts an empty chain for add_* calls. Same seed, same tokens on every run and platform.)doc")
      .def(py::init([](uint64_t seed, float temperature, int top_k, float top_p, float min_p, float repetition_penalty,
                       float presence_penalty, float frequency_penalty, int penalty_window) {
             dsv4::SamplerParams p;
             p.seed = seed;
             p.temperature = temperature;
             p.top_k = top_k;
             p.top_p = top_p;
             p.min_p = min_p;
             p.repetition_penalty = repetition_penalty;
             p.presence_penalty = presence_penalty;
             p.frequency_penalty = frequency_penalty;
             p.penalty_window = penalty_window;
             return PySampler{dsv4::Sampler::from_params(p)};
           }),
           "seed"_a = 0, "temperature"_a = 1.0f, "top_k"_a = 0, "top_p"_a = 1.0f, "min_p"_a = 0.0f,
           "repetition_penalty"_a = 1.0f, "presence_penalty"_a = 0.0f, "frequency_penalty"_a = 0.0f, "penalty_window"_a = 64)
      .def_static("empty", [](uint64_t seed) { return PySampler{dsv4::Sampler(seed)}; }, "seed"_a = 0)
      .def_static("greedy", [] { return PySampler{dsv4::Sampler::make_greedy()}; })
      .def("add_temperature", [](PySampler& s, float t) -> PySampler& { CallLock lk = lock_sampler(s, "Sampler.add"); s.s.add(dsv4::stages::temperature(t)); return s; }, py::return_value_policy::reference_internal)
      .def("add_top_k", [](PySampler& s, int k) -> PySampler& { CallLock lk = lock_sampler(s, "Sampler.add"); s.s.add(dsv4::stages::top_k(k)); return s; }, py::return_value_policy::reference_internal)
      .def("add_top_p", [](PySampler& s, float p) -> PySampler& { CallLock lk = lock_sampler(s, "Sampler.add"); s.s.add(dsv4::stages::top_p(p)); return s; }, py::return_value_policy::reference_internal)
      .def("add_min_p", [](PySampler& s, float p) -> PySampler& { CallLock lk = lock_sampler(s, "Sampler.add"); s.s.add(dsv4::stages::min_p(p)); return s; }, py::return_value_policy::reference_internal)
      .def("add_penalties", [](PySampler& s, int window, float rep, float pres, float freq) -> PySampler& {
             CallLock lk = lock_sampler(s, "Sampler.add");
             s.s.add(dsv4::stages::penalties(window, rep, pres, freq));
             return s;
           }, "window"_a, "repetition"_a = 1.0f, "presence"_a = 0.0f, "frequency"_a = 0.0f, py::return_value_policy::reference_internal)
      .def("add_logit_bias", [](PySampler& s, const std::map<int32_t, float>& bias) -> PySampler& {
             CallLock lk = lock_sampler(s, "Sampler.add");
             s.s.add(dsv4::stages::logit_bias({bias.begin(), bias.end()}));
             return s;
           }, py::return_value_policy::reference_internal)
      .def("add_greedy", [](PySampler& s) -> PySampler& { CallLock lk = lock_sampler(s, "Sampler.add"); s.s.add(dsv4::stages::greedy()); return s; }, py::return_value_policy::reference_internal)
      .def("add_dist", [](PySampler& s) -> PySampler& { CallLock lk = lock_sampler(s, "Sampler.add"); s.s.add(dsv4::stages::dist()); return s; }, py::return_value_policy::reference_internal)
      .def("add_custom", [](PySampler& s, py::function fn) -> PySampler& { CallLock lk = lock_sampler(s, "Sampler.add"); s.s.add(std::make_unique<PyStage>(std::move(fn))); return s; },
           "fn"_a, "fn(ids: int32 array, logits: float32 array) edits logits in place; return None or an index to select.",
           py::return_value_policy::reference_internal)
      .def_property_readonly("stages", [](const PySampler& s) { return s.s.stage_names(); }, "Names of the chain's stages, in order.")
      .def("sample", [](PySampler& s, py::array_t<float, py::array::c_style | py::array::forcecast> logits) {
             if (logits.ndim() != 1) throw py::value_error("logits must be 1-D [vocab]");
             std::span<const float> l(logits.data(), static_cast<size_t>(logits.size()));
             CallLock lk = lock_sampler(s, "Sampler.sample");
             py::gil_scoped_release nogil;
             return s.s.sample(l);
           }, "logits"_a, "Choose a token from logits [vocab]; records it for the penalties.")
      .def("accept", [](PySampler& s, int32_t t) {
             CallLock lk = lock_sampler(s, "Sampler.accept");
             s.s.accept(t);
           }, "token"_a, "Record a token chosen elsewhere (a forced prompt token) for the penalties.")
      .def("reset", [](PySampler& s, uint64_t seed) {
             CallLock lk = lock_sampler(s, "Sampler.reset");
             s.s.reset(seed);
           }, "seed"_a, "Clear the history and reseed.");

  py::class_<dsv4::Tokenizer>(m, "Tokenizer", "Byte-level BPE from a Hugging Face tokenizer.json (thread-safe, immutable).")
      .def(py::init([](py::object path) { return dsv4::Tokenizer::load(fspath(path)); }), "path"_a,
           "Loads a tokenizer.json, or the one in a model directory (str or os.PathLike).")
      .def("encode", [](const dsv4::Tokenizer& t, const std::string& text, bool parse_special) { return encode_nogil(t, text, parse_special); },
           "text"_a, "parse_special"_a = true, "Token ids of text; special-token strings are recognised unless parse_special=False.")
      .def("encode", [](const dsv4::Tokenizer& t, const py::bytes& raw, bool parse_special) {
             return encode_nogil(t, raw, parse_special);  // raw bytes: validated as UTF-8 by the tokenizer
           }, "text"_a, "parse_special"_a = true)
      .def("decode", [](const dsv4::Tokenizer& t, const std::vector<int32_t>& ids, const std::string& errors) {
             const std::string b = t.decode(ids);
             // errors as for bytes.decode: 'strict' raises UnicodeDecodeError, an unknown handler LookupError.
             PyObject* u = PyUnicode_DecodeUTF8(b.data(), static_cast<py::ssize_t>(b.size()), errors.c_str());
             if (u == nullptr) throw py::error_already_set();
             return py::reinterpret_steal<py::str>(u);
           }, "ids"_a, "errors"_a = "replace")
      .def("decode_bytes", [](const dsv4::Tokenizer& t, const std::vector<int32_t>& ids) { return py::bytes(t.decode(ids)); }, "ids"_a)
      .def("token_to_id", [](const dsv4::Tokenizer& t, const std::string& s) { return t.token_to_id(s); }, "token"_a)
      .def("id_to_token", &dsv4::Tokenizer::id_to_token, "id"_a)
      .def_property_readonly("vocab_size", &dsv4::Tokenizer::vocab_size, "Number of token ids (base vocabulary and added tokens).");

  py::class_<dsv4::StreamDecoder>(m, "StreamDecoder", "Token ids in, complete UTF-8 text pieces out.")
      .def(py::init<const dsv4::Tokenizer&>(), "tokenizer"_a, py::keep_alive<1, 2>())
      .def("push", [](dsv4::StreamDecoder& d, int32_t id) { return py::str(d.push(id)); }, "id"_a)
      .def("flush", [](dsv4::StreamDecoder& d) { return py::str(d.flush()); });

  py::class_<dsv4::ChatFormat>(m, "ChatFormat", "DeepSeek-V4 chat encoding; think in {'none', 'high', 'max'}.")
      .def(py::init<const dsv4::Tokenizer&>(), "tokenizer"_a, py::keep_alive<1, 2>())
      .def("render", [](const dsv4::ChatFormat& f, const PyMessages& msgs, const std::string& think, bool gen) {
             return f.render(to_chat(msgs), dsv4::parse_think_mode(think), gen);
           }, "messages"_a, "think"_a = "none", "add_generation_prompt"_a = true)
      .def("encode", [](const dsv4::ChatFormat& f, const PyMessages& msgs, const std::string& think, bool gen) {
             return f.encode(to_chat(msgs), dsv4::parse_think_mode(think), gen);
           }, "messages"_a, "think"_a = "none", "add_generation_prompt"_a = true)
      .def_property_readonly("eos_token_id", &dsv4::ChatFormat::eos, "Id of the end-of-sentence token that ends an assistant turn.")
      .def_property_readonly("end_think_token_id", &dsv4::ChatFormat::end_think, "Id of the token that ends the reasoning part.");

  py::class_<PyTextStream>(m, "TextStream", R"doc(One generation's state: logits in, sampled token and text out.

TextStream(tokenizer, chat=True, think="none", max_tokens=256, stop=[], stop_tokens=[], logprobs=-1,
sampler=None, seed=0, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0).
step(logits) samples a token (then .token is the one to feed unless .done) and returns a dict
with the text it adds: content (answer) and reasoning, complete UTF-8 only, stop strings never
included; and logprob when logprobs >= 0. sampler: a Sampler to use instead of the sampling
arguments. chat=False: plain text (no reasoning split).)doc")
      .def(py::init([](const dsv4::Tokenizer& tok, bool chat, const std::string& think, int max_tokens, std::vector<std::string> stop,
                       std::vector<int32_t> stop_tokens, int logprobs, PySampler* sampler, uint64_t seed, float temperature, int top_k,
                       float top_p, float min_p, float repetition_penalty) {
             auto p = std::make_unique<PyTextStream>();
             if (chat) p->fmt.emplace(tok);
             const auto gp = gen_params(max_tokens, stop, stop_tokens, logprobs, seed, temperature, top_k, top_p, min_p, repetition_penalty);
             const auto mode = dsv4::parse_think_mode(think);
             const dsv4::ChatFormat* f = p->fmt ? &*p->fmt : nullptr;
             p->ts = sampler != nullptr ? std::make_unique<dsv4::TextStream>(tok, f, mode, gp, sampler->s)
                                        : std::make_unique<dsv4::TextStream>(tok, f, mode, gp);
             return p;
           }),
           "tokenizer"_a, "chat"_a = true, "think"_a = "none", "max_tokens"_a = 256, "stop"_a = std::vector<std::string>{},
           "stop_tokens"_a = std::vector<int32_t>{}, "logprobs"_a = -1, "sampler"_a = nullptr, "seed"_a = 0, "temperature"_a = 1.0f,
           "top_k"_a = 0, "top_p"_a = 1.0f, "min_p"_a = 0.0f, "repetition_penalty"_a = 1.0f, py::keep_alive<1, 2>(), py::keep_alive<1, 9>())
      .def("step", [](PyTextStream& p, py::array_t<float, py::array::c_style | py::array::forcecast> logits) {
             if (logits.ndim() != 1) throw py::value_error("logits must be 1-D [vocab]");
             std::span<const float> l(logits.data(), static_cast<size_t>(logits.size()));
             dsv4::GenerationDelta d;
             {
               py::gil_scoped_release nogil;
               d = p.ts->step(l);
             }
             return delta_obj(d);
           }, "logits"_a)
      .def("end", [](PyTextStream& p, const std::string& why) {
             const auto r = why == "cancelled" ? dsv4::FinishReason::Cancelled : why == "context_full" ? dsv4::FinishReason::ContextFull
                            : why == "length" ? dsv4::FinishReason::Length : dsv4::FinishReason::Stop;
             return delta_obj(p.ts->end(r));
           }, "reason"_a = "cancelled", "End early (reason: cancelled, context_full, length, stop); returns the text held back.")
      .def_property_readonly("done", [](const PyTextStream& p) { return p.ts->done(); }, "True once generation has finished.")
      .def_property_readonly("token", [](const PyTextStream& p) { return p.ts->token(); }, "The last sampled token id.")
      .def_property_readonly("finish_reason", [](const PyTextStream& p) {
        return p.ts->done() ? py::object(py::str(dsv4::finish_reason_name(p.ts->finish()))) : py::object(py::none());
      }, "Why generation finished (stop, length, cancelled, context_full), or None while it runs.")
      .def_property_readonly("result", [](const PyTextStream& p) { return result_obj(p.ts->result()); }, "The whole result so far (dict as Session.chat returns).");

  m.def("forward_batch", [](py::list items) {
    // (session, tokens) pairs; each session locked for the call, the GIL released for the steps.
    std::vector<PySession*> sessions;
    std::vector<std::vector<int32_t>> toks;
    std::vector<CallLock> locks;
    for (auto item : items) {
      auto t = item.cast<py::tuple>();
      if (t.size() != 2) throw py::type_error("forward_batch takes a list of (session, tokens) pairs");
      auto& ps = t[0].cast<PySession&>();
      ps.get();
      sessions.push_back(&ps);
      toks.push_back(to_tokens(t[1]));
    }
    for (size_t i = 0; i < sessions.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (sessions[i] == sessions[j]) throw py::value_error("forward_batch: the same session appears twice in one batch");
    for (PySession* ps : sessions) locks.push_back(lock_session(*ps, "forward_batch"));
    std::vector<dsv4::BatchItem> batch;
    for (size_t i = 0; i < sessions.size(); ++i) batch.push_back({sessions[i]->s.get(), toks[i]});
    {
      py::gil_scoped_release nogil;
      dsv4::forward_batch(batch);
    }
    py::list out;
    for (PySession* ps : sessions) {
      auto l = ps->s->last_logits();
      out.append(logits_array(l, 1, static_cast<int64_t>(l.size()), true, py::none()));
    }
    return out;
  }, "items"_a, R"doc(Feed several sessions at once: forward_batch([(session_a, tokens_a), (session_b, tokens_b), ...]).

Each session gets its tokens at its own position, in steps shared by all (a decode step of B
sessions reads each weight once). Returns a list with each session's last-token logits
(float32 [vocab], copies), equal to what feeding each alone gives (to rounding). Everything
is validated first; on error no session changes.)doc");

  py::class_<ViewGuard>(m, "_LogitsOwner", "Keeps a Session alive under arrays from forward(copy=False).");

  py::class_<PySession>(m, "Session", R"doc(One sequence's caches over a Model. Not shared between threads.

forward(tokens, all=False, copy=True) returns float32 logits: [vocab] for the last token, or
[n, vocab] with all=True. copy=False returns a read-only view into the session that is
overwritten by the next call (zero-copy).)doc")
      .def(py::init([](const PyModel& model, int threads, int64_t max_context, int64_t max_batch, const std::string& cache_type,
                       bool cache_window) {
             dsv4::SessionOptions o;
             o.cache_type = dsv4::parse_cache_type(cache_type);
             o.cache_window = cache_window;
             o.threads = threads;
             o.max_context = max_context;
             o.max_batch = max_batch;
             auto p = std::make_unique<PySession>();
             p->s = std::make_unique<dsv4::Session>(model.m, o);
             return p;
           }),
           "model"_a, "threads"_a = 0, "max_context"_a = 0, "max_batch"_a = 512, "cache_type"_a = "f32", "cache_window"_a = false,
           "threads: most of the model's worker threads this session's steps use (0: all; the pool is sized by Model(threads=)).\n"
           "max_context: most tokens the session may hold (0: the model's maximum); memory grows with the position.\n"
           "cache_type: 'f32' (exact), 'bf16' or 'fp8': how compressed entries and indexer keys are stored.\n"
           "cache_window: store the sliding-window rows in cache_type too (less memory, less accurate).")
      .def("forward", [](py::object self, py::object tokens, bool all, bool copy) {
             auto& ps = self.cast<PySession&>();
             std::vector<int32_t> toks = to_tokens(tokens);
             dsv4::Session& s = ps.get();
             CallLock lk = lock_session(ps, "forward");
             const int64_t need = all ? static_cast<int64_t>(toks.size()) * s.vocab_size() : 0;
             if (need > ps.all_capacity && ps.views_all > 0)
               throw py::value_error("forward(all=True) of " + std::to_string(toks.size()) + " tokens needs a larger logits buffer, but " +
                                     std::to_string(ps.views_all) + " arrays from forward(copy=False, all=True) still point into the "
                                     "current one; delete them or use copy=True");
             std::span<const float> out;
             const int64_t before = s.position();
             SignalWatch watch;
             try {
               CancelScope scope(ps, watch);
               py::gil_scoped_release nogil;
               out = s.forward(toks, all ? dsv4::Logits::All : dsv4::Logits::Last);
             } catch (const dsv4::CancelledError&) {
               watch.raise_if_hit(py::int_(s.position() - before));  // Ctrl-C: KeyboardInterrupt, .partial = tokens fed
               throw;
             }
             ps.all_capacity = std::max(ps.all_capacity, need);
             if (copy) return logits_array(out, all ? -1 : 1, s.vocab_size(), true, py::none());
             py::object owner = py::cast(new ViewGuard(self, &ps, all), py::return_value_policy::take_ownership);
             return logits_array(out, all ? -1 : 1, s.vocab_size(), false, owner);
           }, "tokens"_a, "all"_a = false, "copy"_a = true,
           R"doc(Feed tokens (a list of ints, or any 1-D integer array: numpy, array.array, torch CPU tensor) and return logits.

all=False: float32 [vocab] of the last token; all=True: [n, vocab]. copy=False returns a read-only
view into the session, overwritten by the next call; while such views live, close() and a larger
all=True forward (which would move the buffer) raise ValueError, so a view never dangles. Ctrl-C (main thread) or the callable of
set_cancel() stops between steps: KeyboardInterrupt (with .partial = tokens fed) or CancelledError;
the tokens fed before that stay fed and the session stays usable.)doc")
      .def("set_cancel", [](PySession& ps, py::object fn) {
             if (!fn.is_none() && !PyCallable_Check(fn.ptr())) throw py::type_error("set_cancel takes a callable or None");
             ps.cancel = std::move(fn);
           }, "fn"_a,
           "fn() -> bool is asked between the steps of forward() and before each generated token; True stops the call (None: never).")
      .def("last_logits", [](PySession& ps) {
             auto l = ps.get().last_logits();
             if (l.empty()) return py::object(py::none());
             return py::object(logits_array(l, 1, static_cast<int64_t>(l.size()), true, py::none()));
           })
      .def("generate", [](PySession& ps, py::object prompt, PySampler& sampler, int max_tokens, std::vector<int32_t> stop_tokens,
                          std::optional<py::function> on_token) {
             std::vector<int32_t> p = to_tokens(prompt);
             dsv4::Session& s = ps.get();
             CallLock lk = lock_session(ps, "generate");
             CallLock slk = lock_sampler(sampler, "generate (its Sampler)");
             dsv4::GenerateOptions o;
             o.max_tokens = max_tokens;
             o.stop_tokens = std::move(stop_tokens);
             SignalWatch watch;
             o.on_token = [&](int32_t t) {
               if (on_token) {
                 py::gil_scoped_acquire gil;
                 py::object r = (*on_token)(t);
                 if (!(r.is_none() || r.cast<bool>())) return false;
               }
               return watch.ok();
             };
             dsv4::GenerateResult r;
             try {
               CancelScope scope(ps, watch);
               py::gil_scoped_release nogil;
               r = s.generate(p, sampler.s, o);
             } catch (const dsv4::CancelledError&) {
               watch.raise_if_hit(py::list());  // stopped inside the prompt: nothing generated
               throw;
             }
             watch.raise_if_hit(py::cast(r.tokens));
             return r.tokens;
           }, "prompt"_a, "sampler"_a, "max_tokens"_a = 256, "stop_tokens"_a = std::vector<int32_t>{}, "on_token"_a = py::none(),
           "Feed prompt, then sample up to max_tokens tokens. on_token(token) -> False cancels. The last token is not fed yet.")
      .def("chat", [](PySession& ps, const dsv4::Tokenizer& tok, const PyMessages& msgs, const std::string& think, int max_tokens,
                       std::vector<std::string> stop, std::vector<int32_t> stop_tokens, int logprobs, uint64_t seed, float temperature, int top_k,
                       float top_p, float min_p, float repetition_penalty, std::optional<py::function> on_delta) {
             dsv4::Session& s = ps.get();
             CallLock lk = lock_session(ps, "Session call");
             const auto gp = gen_params(max_tokens, stop, stop_tokens, logprobs, seed, temperature, top_k, top_p, min_p, repetition_penalty);
             const auto chat = to_chat(msgs);
             const auto mode = dsv4::parse_think_mode(think);
             return run_text(ps, on_delta, [&](const DeltaFn& cb) { return dsv4::generate_chat(s, tok, chat, mode, gp, cb); });
           }, "tokenizer"_a, "messages"_a, "think"_a = "none", "max_tokens"_a = 256, "stop"_a = std::vector<std::string>{},
           "stop_tokens"_a = std::vector<int32_t>{}, "logprobs"_a = -1, "seed"_a = 0, "temperature"_a = 1.0f, "top_k"_a = 0, "top_p"_a = 1.0f,
           "min_p"_a = 0.0f, "repetition_penalty"_a = 1.0f, "on_delta"_a = py::none(),
           R"doc(Chat: the messages in the V4 chat format, then generation (one text layer with the CLI and the server).
Returns a dict: content, reasoning, tokens, logprobs, finish_reason, prompt_tokens, completion_tokens.
on_delta(dict) receives each piece (content, reasoning, logprob) and may return False to cancel.)doc")
      .def("complete", [](PySession& ps, const dsv4::Tokenizer& tok, const std::string& prompt, int max_tokens, std::vector<std::string> stop,
                           std::vector<int32_t> stop_tokens, int logprobs, uint64_t seed, float temperature, int top_k, float top_p, float min_p,
                           float repetition_penalty, std::optional<py::function> on_delta) {
             dsv4::Session& s = ps.get();
             CallLock lk = lock_session(ps, "Session call");
             const auto gp = gen_params(max_tokens, stop, stop_tokens, logprobs, seed, temperature, top_k, top_p, min_p, repetition_penalty);
             return run_text(ps, on_delta, [&](const DeltaFn& cb) { return dsv4::generate_text(s, tok, prompt, gp, cb); });
           }, "tokenizer"_a, "prompt"_a, "max_tokens"_a = 256, "stop"_a = std::vector<std::string>{}, "stop_tokens"_a = std::vector<int32_t>{},
           "logprobs"_a = -1, "seed"_a = 0, "temperature"_a = 1.0f, "top_k"_a = 0, "top_p"_a = 1.0f, "min_p"_a = 0.0f,
           "repetition_penalty"_a = 1.0f, "on_delta"_a = py::none(), "Plain-text completion (no chat format); returns what chat() returns.")
      .def("reset", [](PySession& ps) {
             CallLock lk = lock_session(ps, "reset");
             ps.s->reset();
           }, "Forget the sequence (position 0); keeps the memory.")
      .def("snapshot", [](PySession& ps) {
             CallLock lk = lock_session(ps, "snapshot");
             return ps.s->snapshot();
           }, "A deep copy of the session's state (restore() puts it back, into this or another session of the model).")
      .def("restore", [](PySession& ps, const dsv4::SessionSnapshot& snap) {
             CallLock lk = lock_session(ps, "restore");
             ps.s->restore(snap);
           }, "snapshot"_a, "Copy a snapshot's state into this session.")
      .def("save_state", [](PySession& ps, py::object path, py::bytes metadata) {
             const std::string p = fspath(path), md = metadata;
             dsv4::Session& s = ps.get();
             CallLock lk = lock_session(ps, "Session call");
             py::gil_scoped_release nogil;
             s.save_state(p, md);
           }, "path"_a, "metadata"_a = py::bytes(),
           "Write the session's state (position, caches, last logits) and optional metadata bytes to a file.")
      .def("load_state", [](PySession& ps, py::object path) {
             const std::string p = fspath(path);
             dsv4::Session& s = ps.get();
             CallLock lk = lock_session(ps, "Session call");
             std::string md;
             {
               py::gil_scoped_release nogil;
               md = s.load_state(p);
             }
             return py::bytes(md);
           }, "path"_a,
           "Read a state file written by save_state() for this model; returns its metadata bytes. A bad file raises and changes nothing.")
      .def("fork", [](PySession& ps) {
             CallLock lk = lock_session(ps, "fork");
             auto p = std::make_unique<PySession>();
             p->s = ps.s->fork();
             return p;
           }, "A new independent session holding a copy of this one's state.")
      .def_property_readonly("position", [](PySession& ps) { return ps.get().position(); }, "Tokens fed so far.")
      .def_property_readonly("max_context", [](PySession& ps) { return ps.get().max_context(); }, "Most tokens the session may hold.")
      .def_property_readonly("cache_type", [](PySession& ps) { return std::string(dsv4::cache_type_name(ps.get().options().cache_type)); },
                             "How compressed entries and indexer keys are stored: 'f32', 'bf16' or 'fp8'.")
      .def_property_readonly("vocab_size", [](PySession& ps) { return ps.get().vocab_size(); }, "Length of a logits row.")
      .def("memory", [](PySession& ps) {
        const auto mem = ps.get().memory();
        return py::dict("state_bytes"_a = mem.state_bytes, "state_max_bytes"_a = mem.state_max_bytes, "scratch_bytes"_a = mem.scratch_bytes,
                        "logits_bytes"_a = mem.logits_bytes, "total"_a = mem.total());
      })
      .def("close", [](PySession& ps) { close_session(ps); },
           "Release the session's memory; any later use raises ValueError. Refused (ValueError) while a call runs on it "
           "or arrays from forward(copy=False) are alive.")
      .def_property_readonly("closed", [](const PySession& ps) { return !ps.s; }, "True after close(): the caches are released.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PySession& ps, py::args) { close_session(ps); });
}
