/* A custom sampling loop in C: a user stage that bans every token id divisible by 7, then
 * temperature 0.8, top-k 20 and a seeded draw. Prints the tokens and an FNV-1a hash of the
 * final logits. Usage: custom_sampling_c MODEL_DIR */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "dsv4.h"

static dsv4_status ban_multiples_of_7(void* user_data, dsv4_candidates* c) {
  size_t i;
  (void)user_data;
  for (i = 0; i < c->size; ++i)
    if (c->ids[i] % 7 == 0) c->logits[i] = -INFINITY;
  return DSV4_OK;
}

static uint64_t fnv1a(const float* x, size_t n) {
  const unsigned char* p = (const unsigned char*)x;
  uint64_t h = 1469598103934665603ull;
  size_t i;
  for (i = 0; i < n * sizeof(float); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

int main(int argc, char** argv) {
  const int32_t prompt[] = {0, 5, 7, 9, 11, 300, 42, 17};
  dsv4_model* model = NULL;
  dsv4_session* sess = NULL;
  dsv4_sampler* smp = NULL;
  dsv4_session_params sp = dsv4_session_default_params();
  dsv4_sampler_stage_vtable vt = {sizeof(dsv4_sampler_stage_vtable), ban_multiples_of_7, NULL};
  const float* logits;
  size_t n;
  int i, rc = 1;
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  if (dsv4_model_load(argv[1], &model) != DSV4_OK) goto done;
  sp.threads = 2;
  if (dsv4_session_create(model, &sp, &sess) != DSV4_OK) goto done;
  if (dsv4_sampler_create_empty(1234, &smp) != DSV4_OK) goto done;
  if (dsv4_sampler_add_custom_stage(smp, &vt, NULL) != DSV4_OK || dsv4_sampler_add_stage(smp, DSV4_STAGE_TEMPERATURE, 0.8f) != DSV4_OK ||
      dsv4_sampler_add_stage(smp, DSV4_STAGE_TOP_K, 20) != DSV4_OK || dsv4_sampler_add_stage(smp, DSV4_STAGE_DIST, 0) != DSV4_OK)
    goto done;
  if (dsv4_session_forward(sess, prompt, sizeof prompt / sizeof prompt[0], 0, &logits, &n) != DSV4_OK) goto done;
  printf("tokens:");
  for (i = 0; i < 16; ++i) {
    int32_t tok;
    if (dsv4_sampler_sample(smp, logits, n, &tok) != DSV4_OK) goto done;
    printf(" %d", (int)tok);
    if (dsv4_session_forward(sess, &tok, 1, 0, &logits, &n) != DSV4_OK) goto done;
  }
  printf("\nlogits_hash: %016llx\n", (unsigned long long)fnv1a(logits, n));
  rc = 0;
done:
  if (rc != 0) fprintf(stderr, "error: %s\n", dsv4_last_error());
  dsv4_sampler_free(smp);
  dsv4_session_free(sess);
  dsv4_model_free(model);
  return rc;
}
