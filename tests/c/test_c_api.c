/* The C ABI from C11: official_a logits against the golden, error paths, snapshots, generation.
 * Usage: test_c_api GOLDEN_DIR (official_a). Prints "N passed, M failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"

static int g_pass = 0, g_fail = 0;
#define EXPECT(cond)                                                   \
  do {                                                                 \
    if (cond) {                                                        \
      ++g_pass;                                                        \
    } else {                                                           \
      ++g_fail;                                                        \
      fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                  \
  } while (0)

/* Minimal safetensors reading for the golden: finds a tensor's byte range by name. */
static unsigned char* g_file;
static size_t g_size;
static const void* tensor(const char* name, size_t* bytes) {
  unsigned long long hlen = 0, b = 0, e = 0;
  char key[64];
  const char* h;
  const char* at;
  memcpy(&hlen, g_file, 8);
  h = (const char*)g_file + 8;
  snprintf(key, sizeof key, "\"%s\"", name);
  at = strstr(h, key);
  if (at == NULL || at > h + hlen) return NULL;
  at = strstr(at, "\"data_offsets\"");
  if (at == NULL || sscanf(at, "\"data_offsets\" : [ %llu , %llu ]", &b, &e) != 2) return NULL;
  *bytes = (size_t)(e - b);
  return g_file + 8 + hlen + b;
}

static double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  size_t i;
  for (i = 0; i < n; ++i) {
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
  }
  return sqrt(num / den);
}

static int cancel_after_3(int32_t token, void* user_data) {
  int* n = (int*)user_data;
  (void)token;
  return ++*n < 3;
}

static int cancel_second_ask(void* user_data) {
  int* n = (int*)user_data;
  return ++*n == 2;
}

static dsv4_status stage_bad_status(void* user_data, dsv4_candidates* c) {
  (void)user_data;
  (void)c;
  return (dsv4_status)1234;
}
static dsv4_status stage_bad_id(void* user_data, dsv4_candidates* c) {
  (void)user_data;
  c->ids[0] = -7;
  c->selected = 0;
  return DSV4_OK;
}

static int g_log_lines = 0, g_log_info = 0;
static void count_log(int level, const char* message, void* user_data) {
  (void)user_data;
  ++g_log_lines;
  if (level == 1 && strstr(message, "loaded") != NULL) ++g_log_info;
}

static void count_progress(double fraction, const char* stage, void* user_data) {
  int* n = (int*)user_data;
  if (fraction >= 0.0 && fraction <= 1.0 && stage != NULL && stage[0] != 0) ++*n;
}

int main(int argc, char** argv) {
  char path[4096];
  FILE* f;
  dsv4_model* model = NULL;
  dsv4_session* sess = NULL;
  dsv4_session* fork = NULL;
  dsv4_sampler* smp = NULL;
  dsv4_snapshot* snap = NULL;
  const float* logits = NULL;
  const float* golden;
  const long long* ids64;
  int32_t* ids;
  size_t n = 0, bytes = 0, n_tok, V, i;
  dsv4_session_params sp;
  dsv4_status st;
  if (argc < 2) return 2;
  snprintf(path, sizeof path, "%s/golden.safetensors", argv[1]);
  f = fopen(path, "rb");
  if (f == NULL) return 2;
  fseek(f, 0, SEEK_END);
  g_size = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  g_file = malloc(g_size);
  if (fread(g_file, 1, g_size, f) != g_size) return 2;
  fclose(f);
  ids64 = tensor("input_ids", &bytes);
  n_tok = bytes / 8;
  golden = tensor("logits_full", &bytes);
  EXPECT(ids64 != NULL && golden != NULL);
  ids = malloc(n_tok * sizeof *ids);
  for (i = 0; i < n_tok; ++i) ids[i] = (int32_t)ids64[i];

  EXPECT(dsv4_api_version() == DSV4_API_VERSION);
  EXPECT(strlen(dsv4_version()) > 0);

  /* errors: bad path, NULL arguments */
  st = dsv4_model_load("/nonexistent/dsv4", &model);
  EXPECT(st == DSV4_ERR_IO);
  EXPECT(model == NULL);
  EXPECT(strstr(dsv4_last_error(), "does not exist") != NULL);
  EXPECT(dsv4_model_load(NULL, &model) == DSV4_ERR_INVALID_ARGUMENT);

  EXPECT(dsv4_model_load(argv[1], &model) == DSV4_OK);
  EXPECT(strlen(dsv4_last_error()) == 0);
  V = (size_t)dsv4_model_vocab_size(model);
  EXPECT(V * n_tok * sizeof(float) == bytes);
  sp = dsv4_session_default_params();
  EXPECT(sp.struct_size == sizeof sp);
  sp.threads = 2;
  EXPECT(dsv4_session_create(model, &sp, &sess) == DSV4_OK);

  /* the golden, all logits, in two chunks */
  EXPECT(dsv4_session_forward(sess, ids, 97, 1, &logits, &n) == DSV4_OK);
  EXPECT(n == 97 * V);
  EXPECT(rel_err(logits, golden, n) < 1e-4);
  EXPECT(dsv4_session_snapshot(sess, &snap) == DSV4_OK);
  EXPECT(dsv4_session_forward(sess, ids + 97, n_tok - 97, 1, &logits, &n) == DSV4_OK);
  EXPECT(rel_err(logits, golden + 97 * V, n) < 1e-4);
  printf("C ABI official_a rel err (last chunk): %.3g\n", rel_err(logits, golden + 97 * V, n));

  /* cache state: committed grows with the position, the maximum is not allocated; cache types */
  {
    uint64_t committed = 0, max_bytes = 0, in_use = 0, free_b = 0, limit = 0;
    dsv4_session_params cp = dsv4_session_default_params();
    dsv4_session* s8 = NULL;
    EXPECT(dsv4_session_state_bytes(sess, &committed, &max_bytes) == DSV4_OK);
    EXPECT(committed > 0 && committed < max_bytes);
    EXPECT(dsv4_model_cache_pool(model, &in_use, &free_b, &limit) == DSV4_OK);
    EXPECT(in_use > 0 && limit >= in_use);
    cp.cache_type = 7;
    EXPECT(dsv4_session_create(model, &cp, &s8) == DSV4_ERR_INVALID_ARGUMENT);
    EXPECT(s8 == NULL);
    cp.cache_type = DSV4_CACHE_FP8;
    EXPECT(dsv4_session_create(model, &cp, &s8) == DSV4_OK);
    EXPECT(dsv4_session_forward(s8, ids, 97, 1, &logits, &n) == DSV4_OK);
    EXPECT(rel_err(logits, golden, n) < 0.3);
    dsv4_session_free(s8);
  }

  /* bad token id: status, message, session unchanged and still usable */
  {
    int32_t bad = (int32_t)V;
    const float* untouched = NULL;
    EXPECT(dsv4_session_forward(sess, &bad, 1, 0, &untouched, &n) == DSV4_ERR_INVALID_ARGUMENT);
    EXPECT(untouched == NULL);
    EXPECT(strstr(dsv4_last_error(), "outside the vocabulary") != NULL);
    EXPECT(dsv4_session_position(sess) == (int64_t)n_tok);
    EXPECT(dsv4_session_forward(sess, NULL, 0, 0, &logits, &n) == DSV4_ERR_INVALID_ARGUMENT);
  }

  /* restore and fork reproduce the continuation */
  EXPECT(dsv4_session_restore(sess, snap) == DSV4_OK);
  EXPECT(dsv4_session_position(sess) == 97);
  EXPECT(dsv4_session_fork(sess, &fork) == DSV4_OK);
  EXPECT(dsv4_session_forward(fork, ids + 97, 50, 1, &logits, &n) == DSV4_OK);
  EXPECT(rel_err(logits, golden + 97 * V, n) < 1e-4);
  EXPECT(dsv4_session_position(sess) == 97);

  /* greedy generation with cancellation */
  {
    int32_t out[16];
    size_t n_out = 0;
    int calls = 0;
    dsv4_generate_params gp = dsv4_generate_default_params();
    dsv4_sampler_params pp = dsv4_sampler_default_params();
    pp.temperature = 0;
    EXPECT(dsv4_sampler_create(&pp, &smp) == DSV4_OK);
    gp.max_tokens = 16;
    gp.on_token = cancel_after_3;
    gp.user_data = &calls;
    EXPECT(dsv4_session_generate(sess, smp, NULL, 0, &gp, out, 16, &n_out) == DSV4_ERR_CANCELLED);
    EXPECT(n_out == 3);
    gp.on_token = NULL;
    EXPECT(dsv4_session_generate(sess, smp, out, 1, &gp, out, 8, &n_out) == DSV4_ERR_INVALID_ARGUMENT); /* capacity < max */
    gp.max_tokens = 4;
    EXPECT(dsv4_session_generate(sess, smp, out + 2, 1, &gp, out, 8, &n_out) == DSV4_OK);
    EXPECT(n_out == 4);
  }
  {
    dsv4_sampler_params bad = dsv4_sampler_default_params();
    dsv4_sampler* s2 = NULL;
    bad.top_p = 0;
    bad.temperature = 1;
    bad.top_k = 0;
    EXPECT(dsv4_sampler_create(&bad, &s2) == DSV4_ERR_INVALID_ARGUMENT);
    EXPECT(s2 == NULL);
  }

  /* load_ex: backend selection, progress; batched steps over sessions at different positions */
  {
    dsv4_load_params lp = dsv4_load_default_params();
    dsv4_model* m2 = NULL;
    dsv4_session* a = NULL;
    dsv4_session* b = NULL;
    dsv4_batch_item items[2];
    int progress_calls = 0;
    EXPECT(lp.struct_size == sizeof lp);
    EXPECT(strcmp(dsv4_compiled_backends(), "cpu") == 0 || strstr(dsv4_compiled_backends(), "cpu") != NULL);
    lp.backend = "cuda";
    lp.device = 99; /* never present: not built, no device, or too few devices */
    EXPECT(dsv4_model_load_ex(argv[1], &lp, &m2) == DSV4_ERR_UNSUPPORTED);
    EXPECT(strstr(dsv4_last_error(), "cuda") != NULL);
    if (m2 != NULL) dsv4_model_free(m2);
    m2 = NULL;
    lp.backend = "cpu";
    lp.device = 7;
    EXPECT(dsv4_model_load_ex(argv[1], &lp, &m2) == DSV4_ERR_UNSUPPORTED);
    EXPECT(strstr(dsv4_last_error(), "device 7") != NULL);
    lp.device = 0;
    lp.threads = 1;
    lp.progress = count_progress;
    lp.user_data = &progress_calls;
    EXPECT(dsv4_model_load_ex(argv[1], &lp, &m2) == DSV4_OK);
    EXPECT(progress_calls >= 3);
    EXPECT(strcmp(dsv4_model_backend(m2), "cpu") == 0);
    EXPECT(dsv4_session_create(m2, NULL, &a) == DSV4_OK);
    EXPECT(dsv4_session_create(m2, NULL, &b) == DSV4_OK);
    EXPECT(dsv4_session_forward(a, ids, 30, 0, &logits, &n) == DSV4_OK);
    items[0].session = a;
    items[0].tokens = ids + 30;
    items[0].n = 1;
    items[1].session = b;
    items[1].tokens = ids;
    items[1].n = 12;
    EXPECT(dsv4_forward_batch(items, 2) == DSV4_OK);
    EXPECT(items[0].n_floats == V && items[1].n_floats == V);
    EXPECT(rel_err(items[0].logits, golden + 30 * V, V) < 1e-4);
    EXPECT(rel_err(items[1].logits, golden + 11 * V, V) < 1e-4);
    items[1].session = a; /* the same session twice: refused, nothing changes */
    EXPECT(dsv4_forward_batch(items, 2) == DSV4_ERR_INVALID_ARGUMENT);
    EXPECT(dsv4_session_position(a) == 31 && dsv4_session_position(b) == 12);
    EXPECT(dsv4_forward_batch(NULL, 0) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_session_free(a);
    dsv4_session_free(b);
    dsv4_model_free(m2);
  }

  /* Cancelling a long forward: it stops between steps with DSV4_ERR_CANCELLED, keeps the tokens it
   * fed, and the session goes on from there. */
  {
    dsv4_session_params sp = dsv4_session_default_params();
    dsv4_session* c = NULL;
    int asked = 0;
    sp.max_batch = 8;
    EXPECT(dsv4_session_create(model, &sp, &c) == DSV4_OK);
    EXPECT(dsv4_session_set_cancel(c, cancel_second_ask, &asked) == DSV4_OK);
    EXPECT(dsv4_session_forward(c, ids, 40, 0, &logits, &n) == DSV4_ERR_CANCELLED);
    EXPECT(dsv4_session_position(c) == 16);
    EXPECT(dsv4_session_last_logits(c, &logits, &n) == DSV4_OK && n == V);
    EXPECT(rel_err(logits, golden + 15 * V, V) < 1e-4);
    EXPECT(dsv4_session_set_cancel(c, NULL, NULL) == DSV4_OK);
    EXPECT(dsv4_session_forward(c, ids + 16, 24, 0, &logits, &n) == DSV4_OK);
    EXPECT(rel_err(logits, golden + 39 * V, V) < 1e-4);
    EXPECT(dsv4_session_set_cancel(NULL, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_session_free(c);
  }

  /* Session state to a file and back. */
  {
    dsv4_session* c = NULL;
    char file[4200];
    snprintf(file, sizeof file, "%s/dsv4_c_state_%ld.dsv4s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)V);
    EXPECT(dsv4_session_create(model, NULL, &c) == DSV4_OK);
    EXPECT(dsv4_session_forward(c, ids, 20, 0, &logits, &n) == DSV4_OK);
    EXPECT(dsv4_session_save_state(c, file, "ids", 3) == DSV4_OK);
    EXPECT(dsv4_session_reset(c) == DSV4_OK);
    EXPECT(dsv4_session_load_state(c, file) == DSV4_OK);
    EXPECT(dsv4_session_position(c) == 20);
    EXPECT(dsv4_session_forward(c, ids + 20, 20, 0, &logits, &n) == DSV4_OK);
    EXPECT(rel_err(logits, golden + 39 * V, V) < 1e-4);
    EXPECT(dsv4_session_load_state(c, "/nonexistent/dsv4.state") == DSV4_ERR_IO);
    EXPECT(dsv4_session_position(c) == 40);
    EXPECT(dsv4_session_save_state(c, NULL, NULL, 0) == DSV4_ERR_INVALID_ARGUMENT);
    remove(file);
    dsv4_session_free(c);
  }

  /* Values a C caller can store that are not valid: refused, never undefined behaviour. */
  {
    dsv4_sampler* bad = NULL;
    dsv4_sampler_stage_vtable vt;
    int32_t tok = 0;
    memset(&vt, 0, sizeof vt);
    vt.struct_size = sizeof vt;
    EXPECT(dsv4_sampler_create_empty(1, &bad) == DSV4_OK);
    EXPECT(dsv4_sampler_add_stage(bad, (dsv4_stage_kind)99, 0.0f) == DSV4_ERR_INVALID_ARGUMENT);
    EXPECT(dsv4_sampler_add_stage(bad, (dsv4_stage_kind)-1, 0.0f) == DSV4_ERR_INVALID_ARGUMENT);
    vt.apply = stage_bad_status;
    EXPECT(dsv4_sampler_add_custom_stage(bad, &vt, NULL) == DSV4_OK);
    EXPECT(dsv4_sampler_sample(bad, golden, V, &tok) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_sampler_free(bad);
    EXPECT(dsv4_sampler_create_empty(1, &bad) == DSV4_OK);
    vt.apply = stage_bad_id;
    EXPECT(dsv4_sampler_add_custom_stage(bad, &vt, NULL) == DSV4_OK);
    EXPECT(dsv4_sampler_sample(bad, golden, V, &tok) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_sampler_free(bad);
  }

  /* Logging: a callback receives messages at or above the level; NULL restores stderr. */
  {
    dsv4_model* m3 = NULL;
    EXPECT(dsv4_set_log_level(7) == DSV4_ERR_INVALID_ARGUMENT);
    EXPECT(dsv4_set_log_level(1) == DSV4_OK);
    dsv4_set_log_callback(count_log, NULL);
    EXPECT(dsv4_model_load(argv[1], &m3) == DSV4_OK);
    EXPECT(g_log_info >= 1);
    EXPECT(dsv4_set_log_level(4) == DSV4_OK);
    g_log_lines = 0;
    dsv4_model_free(m3);
    m3 = NULL;
    EXPECT(dsv4_model_load(argv[1], &m3) == DSV4_OK);
    EXPECT(g_log_lines == 0);
    dsv4_set_log_callback(NULL, NULL);
    EXPECT(dsv4_set_log_level(2) == DSV4_OK);
    dsv4_model_free(m3);
  }

  dsv4_snapshot_free(snap);
  dsv4_sampler_free(smp);
  dsv4_session_free(fork);
  dsv4_model_free(model); /* sessions keep the model alive */
  EXPECT(dsv4_session_forward(sess, ids, 1, 0, &logits, &n) == DSV4_OK);
  dsv4_session_free(sess);
  free(ids);
  free(g_file);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
