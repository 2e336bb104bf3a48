/* dsv4.h: the C ABI of the dsv4 DeepSeek-V4 inference engine. Pure C (C99/C11), no C++ headers.
 *
 * Text in, text out:
 *
 *   static int print(const char* c, size_t n, const char* r, size_t rn, void* u) {
 *     (void)r; (void)rn; (void)u; fwrite(c, 1, n, stdout); return 1;
 *   }
 *   dsv4_model* model; dsv4_tokenizer* tok; dsv4_session* sess; dsv4_text_result res;
 *   if (dsv4_model_load("DeepSeek-V4-Flash", &model) != DSV4_OK) { puts(dsv4_last_error()); return 1; }
 *   dsv4_tokenizer_load("DeepSeek-V4-Flash", &tok);
 *   dsv4_session_create(model, NULL, &sess);
 *   dsv4_chat_message msg = {"user", "Why is the sky blue?", NULL};
 *   dsv4_text_params tp = dsv4_text_default_params();  tp.max_tokens = 200;  tp.on_text = print;
 *   if (dsv4_generate_chat(sess, tok, &msg, 1, &tp, &res) == DSV4_OK) dsv4_text_result_free(&res);
 *
 * Your own decode -> sample loop over token ids:
 *
 *   dsv4_model* model; dsv4_session* sess; dsv4_sampler* smp;
 *   if (dsv4_model_load("DeepSeek-V4-Flash", &model) != DSV4_OK) { puts(dsv4_last_error()); return 1; }
 *   dsv4_session_params sp = dsv4_session_default_params();
 *   dsv4_session_create(model, &sp, &sess);
 *   dsv4_sampler_params pp = dsv4_sampler_default_params();  pp.temperature = 0.7f; pp.top_k = 50;
 *   dsv4_sampler_create(&pp, &smp);
 *   const float* logits; size_t n;
 *   int32_t tok[] = {0, 1234, 5678};
 *   dsv4_session_forward(sess, tok, 3, 0, &logits, &n);        // n == vocab
 *   for (int i = 0; i < 32; ++i) {
 *     int32_t next;
 *     dsv4_sampler_sample(smp, logits, n, &next);
 *     dsv4_session_forward(sess, &next, 1, 0, &logits, &n);
 *   }
 *   dsv4_sampler_free(smp); dsv4_session_free(sess); dsv4_model_free(model);
 *
 * Conventions
 * - Every function that can fail returns dsv4_status; on failure dsv4_last_error() returns a
 *   message for the calling thread (valid until that thread's next dsv4 call). Nothing is thrown
 *   across this boundary and nothing aborts the process.
 * - A failed call changes nothing: outputs are written only on DSV4_OK, and a session keeps the
 *   state it had before the call (DSV4_ERR_CANCELLED from generate is the one partial result,
 *   documented there).
 * - Handles are created by *_create / *_load and released by the matching *_free (NULL is a
 *   no-op). A model must outlive nothing: sessions keep it alive internally, so
 *   dsv4_model_free may be called while sessions still exist.
 * - Threads: a model may be shared by any number of threads; a session or sampler is used by
 *   one thread at a time.
 * - Parameter structs begin with struct_size: initialise them from *_default_params() so newer
 *   library versions can add fields without breaking existing callers.
 */
#ifndef DSV4_H
#define DSV4_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define DSV4_C_API __declspec(dllexport)
#else
#define DSV4_C_API __attribute__((visibility("default")))
#endif

#define DSV4_API_VERSION 2

/* The enums are int-sized in C. In C++ they get `int` as fixed underlying type, so any value a C
 * caller stores (valid or not) is a valid enum value there and the library can reject it. */
#ifdef __cplusplus
#define DSV4_ENUM_BASE : int
#else
#define DSV4_ENUM_BASE
#endif

typedef enum dsv4_status DSV4_ENUM_BASE {
  DSV4_OK = 0,
  DSV4_ERR_INVALID_ARGUMENT = 1, /* bad parameter, NULL pointer, token id out of range, empty input */
  DSV4_ERR_IO = 2,               /* file missing or unreadable */
  DSV4_ERR_FORMAT = 3,           /* malformed safetensors / JSON */
  DSV4_ERR_CONFIG = 4,           /* config.json key missing or inconsistent */
  DSV4_ERR_SHAPE = 5,            /* tensor dtype/shape differs from the config */
  DSV4_ERR_MISSING_TENSOR = 6,   /* required tensor absent */
  DSV4_ERR_CAPACITY = 7,         /* session max_context or the model's cache pool would be exceeded */
  DSV4_ERR_CANCELLED = 8,        /* a callback asked to stop (on_token, on_text, or the session's cancel callback) */
  DSV4_ERR_OUT_OF_MEMORY = 9,
  DSV4_ERR_INTERNAL = 10,
  DSV4_ERR_UNSUPPORTED = 11      /* backend or device not built into this library / not present */
} dsv4_status;

typedef struct dsv4_model dsv4_model;
typedef struct dsv4_tokenizer dsv4_tokenizer;
typedef struct dsv4_session dsv4_session;
typedef struct dsv4_sampler dsv4_sampler;
typedef struct dsv4_snapshot dsv4_snapshot;

/* Library version string ("0.1.0") and the API version it implements (DSV4_API_VERSION). */
DSV4_C_API const char* dsv4_version(void);
DSV4_C_API int dsv4_api_version(void);
/* Message of the last failure on this thread ("" if none). Owned by the library. */
DSV4_C_API const char* dsv4_last_error(void);
DSV4_C_API const char* dsv4_status_name(dsv4_status s);

/* Log messages (level: 0 debug, 1 info, 2 warning, 3 error). By default those at warning and
 * above go to stderr ("dsv4: warning: ..."). With a callback installed they go to `cb` instead
 * and nothing is written to stderr; NULL restores the default. The callback is called from the
 * thread whose dsv4 call logs, one message at a time; it must not call these two functions. */
typedef void (*dsv4_log_fn)(int level, const char* message, void* user_data);
DSV4_C_API void dsv4_set_log_callback(dsv4_log_fn cb, void* user_data);
/* Drops messages below `level` (0..3; 4: nothing at all). Default 2 (warning). */
DSV4_C_API dsv4_status dsv4_set_log_level(int level);

/* ---- model ---- */
/* Loads a checkpoint directory onto the CPU backend with default options (dsv4_model_load_ex with
 * dsv4_load_default_params()). On DSV4_OK *out owns a new model; on failure *out is untouched. */
DSV4_C_API dsv4_status dsv4_model_load(const char* dir, dsv4_model** out);

/* Called during loading with the fraction done (0..1) and a short description of the stage. */
typedef void (*dsv4_progress_fn)(double fraction, const char* stage, void* user_data);
typedef struct dsv4_load_params {
  size_t struct_size;         /* sizeof(dsv4_load_params) */
  const char* backend;        /* "cpu" (default when NULL), "cuda" where built */
  int32_t device;             /* device index of that backend, default 0 */
  int32_t threads;            /* CPU worker threads shared by all sessions of the model; 0: one per hardware thread */
  int64_t max_batch;          /* most rows (tokens of all sessions) one step carries, default 512 */
  dsv4_progress_fn progress;  /* may be NULL */
  void* user_data;            /* passed to progress */
  const char* cpu_tier;       /* CPU kernel tier; NULL or "auto": the best this CPU runs, or force a lower one
                                 ("portable", "avx2", "avx512", "avx512vnni"; "neon", "neondot") */
  uint64_t cache_pool_bytes;  /* budget of the cache blocks all sessions of the model hold together; 0: automatic
                                 (90% of the backend's memory less the weights, at least a quarter of it) */
  int64_t cache_block_tokens; /* positions per cache block; 0: 1024 */
} dsv4_load_params;
DSV4_C_API dsv4_load_params dsv4_load_default_params(void);
/* Loads a checkpoint onto the backend/device of params (NULL: defaults). An unknown backend, one
 * not built into this library, or a missing device gives DSV4_ERR_UNSUPPORTED. */
DSV4_C_API dsv4_status dsv4_model_load_ex(const char* dir, const dsv4_load_params* params, dsv4_model** out);
/* The backend the model is bound to ("cpu", "cuda"); owned by the model. */
DSV4_C_API const char* dsv4_model_backend(const dsv4_model* model);
/* Backends compiled into this library, comma-separated ("cpu" or "cpu,cuda"); static storage. */
DSV4_C_API const char* dsv4_compiled_backends(void);
DSV4_C_API void dsv4_model_free(dsv4_model* model);
DSV4_C_API int64_t dsv4_model_vocab_size(const dsv4_model* model);
DSV4_C_API int64_t dsv4_model_num_layers(const dsv4_model* model);
DSV4_C_API int64_t dsv4_model_bos_token(const dsv4_model* model);
DSV4_C_API int64_t dsv4_model_eos_token(const dsv4_model* model);

/* ---- session ---- */
typedef struct dsv4_session_params {
  size_t struct_size;   /* sizeof(dsv4_session_params) */
  int32_t threads;      /* most of the model's worker threads this session's steps use; 0: all */
  int64_t max_context;  /* most tokens the session may hold; 0: the model's max_position_embeddings. Memory grows
                           with the position, a cache block at a time (DSV4_ERR_CAPACITY when the model's pool is spent) */
  int64_t max_batch;    /* tokens per internal step, default 512 */
  int32_t cache_type;   /* DSV4_CACHE_F32 (default, exact), DSV4_CACHE_BF16 or DSV4_CACHE_FP8 */
  int32_t cache_window; /* non-zero: store the sliding-window rows in cache_type too (less memory, less accurate) */
} dsv4_session_params;
typedef enum dsv4_cache_type DSV4_ENUM_BASE { DSV4_CACHE_F32 = 0, DSV4_CACHE_BF16 = 1, DSV4_CACHE_FP8 = 2 } dsv4_cache_type;
DSV4_C_API dsv4_session_params dsv4_session_default_params(void);
DSV4_C_API dsv4_status dsv4_session_create(const dsv4_model* model, const dsv4_session_params* params, dsv4_session** out);
DSV4_C_API void dsv4_session_free(dsv4_session* session);

/* Feeds n tokens. all_logits != 0: *logits points to [n, vocab] floats, else to [vocab] of the
 * last token; *n_floats receives the count. The pointer is owned by the session and valid until
 * its next forward/generate/reset/restore/free (no copy is made). On failure the session is
 * unchanged and outputs are untouched. */
DSV4_C_API dsv4_status dsv4_session_forward(dsv4_session* session, const int32_t* tokens, size_t n, int all_logits,
                                            const float** logits, size_t* n_floats);
DSV4_C_API dsv4_status dsv4_session_reset(dsv4_session* session);
DSV4_C_API int64_t dsv4_session_position(const dsv4_session* session);
DSV4_C_API int64_t dsv4_session_max_context(const dsv4_session* session);
/* Logits of the last token fed ([vocab]); *logits = NULL and *n_floats = 0 before any forward. */
DSV4_C_API dsv4_status dsv4_session_last_logits(const dsv4_session* session, const float** logits, size_t* n_floats);
/* Cancellation: `cancel(user_data)` is called between the steps of a forward (each carries at
 * most max_batch of its tokens) and before each generated token; when it returns non-zero the
 * call stops with DSV4_ERR_CANCELLED. The tokens fed before that stay fed (the one exception to
 * "a failed call changes nothing"): dsv4_session_position says how many, and
 * dsv4_session_last_logits holds the logits of the last one, so the session stays usable. NULL
 * removes the check. Called on the thread that made the call. */
typedef int (*dsv4_cancel_fn)(void* user_data);
DSV4_C_API dsv4_status dsv4_session_set_cancel(dsv4_session* session, dsv4_cancel_fn cancel, void* user_data);
/* Bytes of caches / scratch currently held. */
DSV4_C_API uint64_t dsv4_session_memory_bytes(const dsv4_session* session);
/* This session's state: *committed = bytes held now (fixed part and cache blocks), *max_bytes = what it
 * would hold at max_context (an upper bound, not allocated). Either pointer may be NULL. */
DSV4_C_API dsv4_status dsv4_session_state_bytes(const dsv4_session* session, uint64_t* committed, uint64_t* max_bytes);
/* The model's cache pool: bytes held by sessions, bytes free for reuse, and the budget. Any pointer may be NULL. */
DSV4_C_API dsv4_status dsv4_model_cache_pool(const dsv4_model* model, uint64_t* in_use, uint64_t* free_bytes, uint64_t* limit);

/* One session's tokens in a batched call; logits and n_floats are outputs ([vocab] of its last token,
 * owned by the session as for dsv4_session_forward). */
typedef struct dsv4_batch_item {
  dsv4_session* session;
  const int32_t* tokens;
  size_t n;
  const float* logits;  /* out */
  size_t n_floats;      /* out */
} dsv4_batch_item;
/* Feeds each item's tokens to its session in steps shared by all items (decode of B sessions reads
 * each weight once). The sessions must be distinct and of one model, each n >= 1. Everything is
 * validated first: on failure no session has changed and no output is written. Each session's
 * results equal feeding it alone (to rounding; see the README). */
DSV4_C_API dsv4_status dsv4_forward_batch(dsv4_batch_item* items, size_t n_items);

/* Snapshots are deep copies: *out owns a new snapshot (free with dsv4_snapshot_free). Restore
 * copies it into the session; fork creates a new session (*out) holding a copy of the state. */
DSV4_C_API dsv4_status dsv4_session_snapshot(const dsv4_session* session, dsv4_snapshot** out);
DSV4_C_API dsv4_status dsv4_session_restore(dsv4_session* session, const dsv4_snapshot* snap);
DSV4_C_API dsv4_status dsv4_session_fork(const dsv4_session* session, dsv4_session** out);
DSV4_C_API int64_t dsv4_snapshot_position(const dsv4_snapshot* snap);
/* The session's state in a file (versioned, checked against the model on load; see
 * Session::save_state in dsv4/model.hpp). metadata[metadata_len] is stored with it (may be NULL/0).
 * load: a missing, corrupted or foreign file fails (IO / FORMAT / INVALID_ARGUMENT / CAPACITY)
 * and the session is unchanged. */
DSV4_C_API dsv4_status dsv4_session_save_state(const dsv4_session* session, const char* path, const void* metadata,
                                               size_t metadata_len);
DSV4_C_API dsv4_status dsv4_session_load_state(dsv4_session* session, const char* path);
DSV4_C_API void dsv4_snapshot_free(dsv4_snapshot* snap);

/* ---- sampler ---- */
typedef struct dsv4_sampler_params {
  size_t struct_size; /* sizeof(dsv4_sampler_params) */
  uint64_t seed;
  float temperature;  /* <= 0: greedy */
  int32_t top_k;      /* 0: off */
  float top_p;        /* 1: off */
  float min_p;        /* 0: off */
  float repetition_penalty, presence_penalty, frequency_penalty;
  int32_t penalty_window;
} dsv4_sampler_params;
DSV4_C_API dsv4_sampler_params dsv4_sampler_default_params(void);
/* The standard chain of the params: penalties, temperature, top-k, top-p, min-p, draw. */
DSV4_C_API dsv4_status dsv4_sampler_create(const dsv4_sampler_params* params, dsv4_sampler** out);
/* An empty chain (add stages yourself); draws from softmax if no stage selects. */
DSV4_C_API dsv4_status dsv4_sampler_create_empty(uint64_t seed, dsv4_sampler** out);
DSV4_C_API void dsv4_sampler_free(dsv4_sampler* sampler);

typedef enum dsv4_stage_kind DSV4_ENUM_BASE {
  DSV4_STAGE_TEMPERATURE = 0, /* value: t */
  DSV4_STAGE_TOP_K = 1,       /* value: k */
  DSV4_STAGE_TOP_P = 2,       /* value: p */
  DSV4_STAGE_MIN_P = 3,       /* value: p */
  DSV4_STAGE_GREEDY = 4,
  DSV4_STAGE_DIST = 5
} dsv4_stage_kind;
DSV4_C_API dsv4_status dsv4_sampler_add_stage(dsv4_sampler* sampler, dsv4_stage_kind kind, float value);

/* A custom stage sees the candidates: it may change logits, reorder ids/logits together, lower
 * *size (keep a prefix), or set *selected to an index to end the chain (-1: no selection). */
typedef struct dsv4_candidates {
  int32_t* ids;
  float* logits;
  size_t size;
  int64_t selected;
} dsv4_candidates;
typedef struct dsv4_sampler_stage_vtable {
  size_t struct_size; /* sizeof(dsv4_sampler_stage_vtable) */
  /* Return DSV4_OK, or any other status to fail the sample call with it. */
  dsv4_status (*apply)(void* user_data, dsv4_candidates* candidates);
  /* Called once when the sampler is freed (may be NULL). */
  void (*destroy)(void* user_data);
} dsv4_sampler_stage_vtable;
/* The vtable is copied; user_data is passed back unchanged and owned by the caller until destroy. */
DSV4_C_API dsv4_status dsv4_sampler_add_custom_stage(dsv4_sampler* sampler, const dsv4_sampler_stage_vtable* vtable,
                                                     void* user_data);

/* Runs the chain on logits[n_vocab]; on DSV4_OK *token is the choice (also recorded for penalties). */
DSV4_C_API dsv4_status dsv4_sampler_sample(dsv4_sampler* sampler, const float* logits, size_t n_vocab, int32_t* token);
DSV4_C_API dsv4_status dsv4_sampler_accept(dsv4_sampler* sampler, int32_t token);
DSV4_C_API dsv4_status dsv4_sampler_reset(dsv4_sampler* sampler, uint64_t seed);

/* ---- generation ---- */
/* Return non-zero to continue, 0 to cancel. */
typedef int (*dsv4_token_fn)(int32_t token, void* user_data);
typedef struct dsv4_generate_params {
  size_t struct_size;        /* sizeof(dsv4_generate_params) */
  int32_t max_tokens;        /* default 256 */
  const int32_t* stop_tokens;
  size_t n_stop_tokens;
  dsv4_token_fn on_token;    /* may be NULL */
  void* user_data;
} dsv4_generate_params;
DSV4_C_API dsv4_generate_params dsv4_generate_default_params(void);
/* Feeds the prompt (n may be 0 to continue), samples up to max_tokens tokens into out[capacity]
 * and sets *n_out. The last token written is not yet fed to the session (see model.hpp).
 * DSV4_ERR_CANCELLED: on_token returned 0; out and n_out hold the tokens so far and the session is
 * consistent with them. */
DSV4_C_API dsv4_status dsv4_session_generate(dsv4_session* session, dsv4_sampler* sampler, const int32_t* prompt, size_t n,
                                             const dsv4_generate_params* params, int32_t* out, size_t capacity,
                                             size_t* n_out);

/* ---- text: tokenizer, chat format, generation (text in, text out) ---- */
/* Loads tokenizer.json (a file, or a model directory holding one). Free with dsv4_tokenizer_free. */
DSV4_C_API dsv4_status dsv4_tokenizer_load(const char* path, dsv4_tokenizer** out);
DSV4_C_API void dsv4_tokenizer_free(dsv4_tokenizer* tok);
/* Encodes len bytes of UTF-8 text into out[capacity]; *n_out receives the count. parse_special != 0
 * recognises special-token strings in the text. DSV4_ERR_CAPACITY when capacity is too small
 * (*n_out then holds the count needed; out is untouched). */
DSV4_C_API dsv4_status dsv4_tokenize(const dsv4_tokenizer* tok, const char* text, size_t len, int parse_special, int32_t* out,
                                     size_t capacity, size_t* n_out);
/* Decodes ids into out[capacity] bytes (not terminated); *n_out receives the byte count, or the
 * count needed with DSV4_ERR_CAPACITY. */
DSV4_C_API dsv4_status dsv4_detokenize(const dsv4_tokenizer* tok, const int32_t* ids, size_t n, char* out, size_t capacity,
                                       size_t* n_out);

typedef enum dsv4_think DSV4_ENUM_BASE { DSV4_THINK_NONE = 0, DSV4_THINK_HIGH = 1, DSV4_THINK_MAX = 2 } dsv4_think;
typedef struct dsv4_chat_message {
  const char* role;      /* "system", "user", "assistant" or "tool" */
  const char* content;   /* UTF-8, NUL-terminated */
  const char* reasoning; /* assistant turns: their thinking (may be NULL) */
} dsv4_chat_message;
/* The conversation in the V4 chat format with the generation prompt of `think`, as token ids
 * (same capacity rules as dsv4_tokenize). */
DSV4_C_API dsv4_status dsv4_chat_encode(const dsv4_tokenizer* tok, const dsv4_chat_message* msgs, size_t n, dsv4_think think,
                                        int32_t* out, size_t capacity, size_t* n_out);

/* Receives each piece of generated text: answer content and reasoning (either may be empty;
 * complete UTF-8, not NUL-terminated). Return non-zero to continue, 0 to cancel. */
typedef int (*dsv4_text_fn)(const char* content, size_t content_len, const char* reasoning, size_t reasoning_len, void* user_data);
typedef struct dsv4_text_params {
  size_t struct_size;            /* sizeof(dsv4_text_params) */
  dsv4_sampler_params sampling;  /* from dsv4_sampler_default_params(); temperature <= 0: greedy */
  int32_t max_tokens;            /* default 256 */
  const char* const* stop;       /* stop strings (not emitted), n_stop of them; may be NULL */
  size_t n_stop;
  dsv4_think think;              /* chat generation: the reasoning mode */
  dsv4_text_fn on_text;          /* may be NULL */
  void* user_data;
} dsv4_text_params;
DSV4_C_API dsv4_text_params dsv4_text_default_params(void);

typedef enum dsv4_finish DSV4_ENUM_BASE { DSV4_FINISH_STOP = 0, DSV4_FINISH_LENGTH = 1, DSV4_FINISH_CANCELLED = 2, DSV4_FINISH_CONTEXT_FULL = 3 } dsv4_finish;
typedef struct dsv4_text_result {
  char* content;      /* NUL-terminated UTF-8, owned by the result */
  char* reasoning;
  int64_t prompt_tokens, completion_tokens;
  dsv4_finish finish;
} dsv4_text_result;
/* Releases the strings of a result (the struct itself is the caller's). */
DSV4_C_API void dsv4_text_result_free(dsv4_text_result* r);

/* Chat: the messages in the V4 chat format, then generation on the session (from its current
 * position; reset it first for a new conversation). On DSV4_OK *out holds the text. */
DSV4_C_API dsv4_status dsv4_generate_chat(dsv4_session* session, const dsv4_tokenizer* tok, const dsv4_chat_message* msgs, size_t n,
                                          const dsv4_text_params* params, dsv4_text_result* out);
/* Plain-text completion of a NUL-terminated prompt (no chat format). */
DSV4_C_API dsv4_status dsv4_generate_text(dsv4_session* session, const dsv4_tokenizer* tok, const char* prompt,
                                          const dsv4_text_params* params, dsv4_text_result* out);

#ifdef __cplusplus
}
#endif
#endif /* DSV4_H */
