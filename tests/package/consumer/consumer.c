/* Plain C99 against the installed header and library: load, tokenize, one forward, greedy token. */
#include <dsv4.h>
#include <stdio.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  dsv4_model* model = NULL;
  dsv4_tokenizer* tok = NULL;
  dsv4_session* sess = NULL;
  if (dsv4_model_load(argv[1], &model) != DSV4_OK || dsv4_tokenizer_load(argv[1], &tok) != DSV4_OK ||
      dsv4_session_create(model, NULL, &sess) != DSV4_OK) {
    fprintf(stderr, "consumer_c: %s\n", dsv4_last_error());
    return 1;
  }
  int32_t ids[64];
  size_t n = 0;
  const char* text = "def add(a, b):";
  size_t len = 0;
  while (text[len] != '\0') ++len;
  if (dsv4_tokenize(tok, text, len, 0, ids, 64, &n) != DSV4_OK || n == 0) return 1;
  const float* logits = NULL;
  size_t nf = 0;
  if (dsv4_session_forward(sess, ids, n, 0, &logits, &nf) != DSV4_OK) return 1;
  size_t best = 0;
  for (size_t i = 1; i < nf; ++i)
    if (logits[i] > logits[best]) best = i;
  /* A bad call reports an error and leaves the session usable. */
  int32_t bad = -1;
  if (dsv4_session_forward(sess, &bad, 1, 0, &logits, &nf) != DSV4_ERR_INVALID_ARGUMENT) return 1;
  printf("consumer_c %s tokens=%zu vocab=%zu next=%zu position=%lld\n", dsv4_version(), n, nf, best,
         (long long)dsv4_session_position(sess));
  dsv4_session_free(sess);
  dsv4_tokenizer_free(tok);
  dsv4_model_free(model);
  return 0;
}
