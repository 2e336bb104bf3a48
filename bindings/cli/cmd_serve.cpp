// dsv4 serve: an OpenAI-compatible HTTP server (cpp-httplib) over the continuous-batching
// scheduler. Loopback only unless --host says otherwise.
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <httplib.h>

#include "common.hpp"
#include "dsv4/chat.hpp"
#include "dsv4/model.hpp"
#include "dsv4/tokenizer.hpp"
#include "backend/backend.hpp"
#include "model/synthetic.hpp"
#include "serve/openai.hpp"
#include "serve/scheduler.hpp"

namespace dsv4::cli {

namespace {

using json = nlohmann::json;
using serve::ApiError;

httplib::Server* g_server = nullptr;
void on_signal(int) {
  if (g_server != nullptr) g_server->stop();
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(serve::error_body(e).dump(), "application/json");
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  Args a("serve", "OpenAI-compatible HTTP server (POST /v1/chat/completions, /v1/completions; GET /v1/models, /health) "
         "with continuous batching.", argc, argv,
         {model_opts(), cache_opts(), backend_opts(),
          {{"--host", "address to listen on (loopback unless changed)", "127.0.0.1", false, "ADDR"},
           {"--port", "TCP port (0: any free port, printed)", "8080", false, "N"},
           {"--parallel", "sequences decoded together", "4", false, "N"},
           {"--context", "context per sequence in tokens", "4096", false, "N"},
           {"--queue", "requests that may wait for a slot (more: 503)", "64", false, "N"},
           {"--api-key", "require 'Authorization: Bearer KEY'", "", false, "KEY"},
           {"--max-tokens", "default max_tokens of a request", "512", false, "N"},
           {"--prefill-chunk", "prompt tokens per sequence per step", "128", false, "N"},
           {"--max-body", "largest request body in bytes", "1048576", false, "BYTES"},
           {"--alias", "model id reported by /v1/models", "the model directory's name", false, "NAME"},
           {"--synthetic", "serve random weights at V4 size (flash or pro) for load tests; needs --tokenizer", "", false, "NAME"},
           {"--layers", "layers of the synthetic model", "4", false, "N"},
           {"--seed", "seed of the synthetic weights", "1", false, "S"}}});
  const std::string host = a.get("--host").value_or("127.0.0.1");
  const int64_t port = a.get_int("--port", 8080);
  if (port < 0 || port > 65535) throw UsageError("--port must be in [0, 65535] (0: any free port)");
  serve::SchedulerOptions so;
  so.slots = static_cast<int>(a.get_int("--parallel", 4));
  so.context = a.get_int("--context", 4096);
  so.queue = static_cast<int>(a.get_int("--queue", 64));
  so.prefill_chunk = a.get_int("--prefill-chunk", 128);
  so.cache_type = cache_type(a);
  so.cache_window = a.has("--cache-window");
  if (so.slots <= 0 || so.slots > 256) throw UsageError("--parallel must be in [1, 256]");
  if (so.context < 2) throw UsageError("--context must be at least 2");
  if (so.queue < 0) throw UsageError("--queue must be >= 0");
  if (so.prefill_chunk <= 0) throw UsageError("--prefill-chunk must be positive");
  const int64_t max_body = a.get_int("--max-body", 1 << 20);
  if (max_body <= 0) throw UsageError("--max-body must be positive");
  const std::string api_key = a.get("--api-key").value_or("");

  std::shared_ptr<const Model> model;
  std::string tok_path, id;
  if (auto preset = a.get("--synthetic")) {
    // Random weights at real V4 dimensions (as `dsv4 bench` builds them), for load tests of the
    // server at the cost of the real model; the text is meaningless, and ids past the
    // tokenizer's vocabulary carry none (ask for logprobs to see every token).
    if (a.has("--model")) throw UsageError("give --model or --synthetic, not both");
    if (!a.has("--tokenizer")) throw UsageError("--synthetic needs --tokenizer FILE (tokenizer.json)");
    const int64_t layers = a.get_int("--layers", 4);
    if (layers <= 0) throw UsageError("--layers must be positive");
    const ModelConfig cfg = ModelConfig::parse(preset_config_json(*preset, layers), *preset);
    LoadOptions lo = load_options(a);
    check_backend(lo);
    std::cerr << "building a " << layers << "-layer synthetic " << *preset << " model...\n";
    model = make_synthetic_model(cfg, static_cast<uint64_t>(a.get_int("--seed", 1)), lo);
    id = "synthetic-" + *preset + "-" + std::to_string(layers) + "L";
  } else {
    const std::string dir = model_dir(a);
    model = Model::load(dir, load_options(a));
    tok_path = (std::filesystem::path(dir) / "tokenizer.json").string();
    id = std::filesystem::path(dir).filename().string();
    if (id.empty()) id = std::filesystem::path(dir).parent_path().filename().string();
  }
  const Tokenizer tok = Tokenizer::load(a.get("--tokenizer").value_or(tok_path));
  const ChatFormat fmt(tok);
  if (auto alias = a.get("--alias")) id = *alias;
  serve::ApiContext ctx{tok, fmt, id, so.context, static_cast<int>(a.get_int("--max-tokens", 512))};
  serve::Scheduler sched(model, tok, so);

  httplib::Server svr;
  const int handler_threads = so.slots + so.queue + 4;  // each request holds a handler thread while it runs or waits
  svr.new_task_queue = [handler_threads] { return new httplib::ThreadPool(static_cast<size_t>(handler_threads)); };
  svr.set_payload_max_length(static_cast<size_t>(max_body));
  svr.set_keep_alive_max_count(100);
  // Errors httplib answers itself (payload too large, unknown path, ...) in the OpenAI shape too.
  svr.set_error_handler([&](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string msg = res.status == 413 ? "the request body is larger than " + std::to_string(max_body) + " bytes"
                            : res.status == 404 ? "no such endpoint"
                                                : std::string("HTTP ") + std::to_string(res.status);
    send_error(res, ApiError(res.status, msg, "", res.status == 413 ? "request_too_large" : ""));
  });
  svr.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + api_key) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "invalid or missing API key (Authorization: Bearer <key>)", "", "invalid_api_key", "authentication_error"));
    return httplib::Server::HandlerResponse::Handled;
  });

  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    const auto st = sched.stats();
    res.set_content(json{{"status", "ok"}, {"slots", st.slots}, {"active", st.active}, {"waiting", st.waiting}, {"steps", st.steps},
                         {"tokens_generated", st.tokens_generated}, {"prompt_tokens_prefilled", st.prompt_tokens_prefilled},
                         {"prompt_tokens_reused", st.prompt_tokens_reused}}
                        .dump(),
                    "application/json");
  });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"object", "list"}, {"data", json::array({{{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "dsv4"}}})}}.dump(),
                    "application/json");
  });

  auto handle = [&](serve::Endpoint ep, const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<serve::ApiRequest> r;
    try {
      r = std::make_shared<serve::ApiRequest>(serve::parse_request(ep, req.body, ctx));
      sched.submit(r->job);
    } catch (const ApiError& e) {
      send_error(res, e);
      return;
    } catch (const serve::QueueFull& e) {
      res.set_header("Retry-After", "1");
      send_error(res, ApiError(503, e.what(), "", "server_overloaded", "server_error"));
      return;
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what()));
      return;
    }
    auto job = r->job;
    // Both kinds of response are written as the job runs: a write that fails means the client has
    // gone, and its slot is freed at once. While nothing else is due, a stream gets an SSE comment
    // and a plain response a space (JSON allows leading white space) every half second.
    auto first = std::make_shared<bool>(true);
    auto closed = std::make_shared<bool>(false);
    auto provider = [r, job, first, closed, &ctx](size_t, httplib::DataSink& sink) {
      if (*closed) return false;
      GenerationDelta d;
      if (job->next(d, std::chrono::milliseconds(500))) {
        if (r->stream) {
          const std::string chunk = serve::stream_chunk(*r, ctx, d, *first);
          *first = false;
          if (!sink.write(chunk.data(), chunk.size())) {
            job->cancel();
            return false;
          }
        }
        return true;
      }
      if (!job->finished()) {
        const char* ping = r->stream ? ": keep-alive\n\n" : " ";
        if (!sink.write(ping, std::strlen(ping))) {
          job->cancel();
          return false;
        }
        return true;
      }
      const std::string err = job->error();
      std::string tail;
      if (!err.empty()) {
        const json e = serve::error_body(ApiError(500, err, "", "internal_error", "server_error"));
        tail = r->stream ? "data: " + e.dump() + "\n\ndata: [DONE]\n\n" : e.dump();
      } else {
        const GenerationResult res_ = job->result();
        tail = r->stream ? serve::stream_end(*r, ctx, res_, job->cached_tokens()) : serve::response_body(*r, ctx, res_, job->cached_tokens()).dump();
      }
      sink.write(tail.data(), tail.size());
      sink.done();
      *closed = true;
      return true;
    };
    res.set_chunked_content_provider(r->stream ? "text/event-stream" : "application/json", provider, [job](bool success) {
      if (!success) job->cancel();  // the connection went away before the end
    });
    if (r->stream) res.set_header("Cache-Control", "no-cache");
  };
  svr.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) { handle(serve::Endpoint::Chat, req, res); });
  svr.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) { handle(serve::Endpoint::Completion, req, res); });

  int bound = static_cast<int>(port);
  if (port == 0) {
    bound = svr.bind_to_any_port(host);
    if (bound < 0) throw IoError("cannot bind to " + host);
  } else if (!svr.bind_to_port(host, static_cast<int>(port))) {
    throw IoError("cannot bind to " + host + ":" + std::to_string(port) + " (in use, or not an address of this machine)");
  }
  g_server = &svr;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::fprintf(stderr, "dsv4 serve: listening on http://%s:%d (model '%s', %d slots, context %lld, kernel tier %s)\n", host.c_str(), bound,
               id.c_str(), so.slots, static_cast<long long>(so.context), model->backend_info().kernel_tier.c_str());
  std::fflush(stderr);
  svr.listen_after_bind();
  g_server = nullptr;
  std::fprintf(stderr, "dsv4 serve: stopped\n");
  return 0;
}

}  // namespace dsv4::cli
