/* The C ABI's text layer from C11 on the demo model: tokenizer, chat encoding, generation with
 * streaming, stop strings, cancellation and bad parameters. Usage: test_c_text DEMO_MODEL_DIR. */
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

typedef struct {
  char buf[8192];
  size_t n;
  int calls, cancel_after;
} Collect;

static int collect(const char* c, size_t n, const char* r, size_t rn, void* user) {
  Collect* k = (Collect*)user;
  (void)r;
  (void)rn;
  if (k->n + n < sizeof k->buf) {
    memcpy(k->buf + k->n, c, n);
    k->n += n;
    k->buf[k->n] = 0;
  }
  ++k->calls;
  return k->cancel_after == 0 || k->calls < k->cancel_after;
}

int main(int argc, char** argv) {
  dsv4_model* model = NULL;
  dsv4_tokenizer* tok = NULL;
  dsv4_session* sess = NULL;
  const char* prompt = "import os\nimport sys\n\n\ndef read_config(path):\n";
  int32_t ids[256];
  char text[512];
  size_t n = 0, m = 0;
  dsv4_text_params tp;
  dsv4_text_result res, cut;
  Collect k;
  if (argc < 2) return 2;
  EXPECT(dsv4_model_load(argv[1], &model) == DSV4_OK);
  EXPECT(dsv4_tokenizer_load(argv[1], &tok) == DSV4_OK); /* a model directory works */
  EXPECT(dsv4_tokenizer_load("/nonexistent/tokenizer.json", &tok) == DSV4_ERR_IO);
  EXPECT(dsv4_session_create(model, NULL, &sess) == DSV4_OK);

  /* tokenize / detokenize round trip; too small a buffer says how much is needed */
  EXPECT(dsv4_tokenize(tok, prompt, strlen(prompt), 0, ids, 256, &n) == DSV4_OK);
  EXPECT(n > 5);
  EXPECT(dsv4_tokenize(tok, prompt, strlen(prompt), 0, ids, 2, &m) == DSV4_ERR_CAPACITY);
  EXPECT(m == n);
  EXPECT(dsv4_detokenize(tok, ids, n, text, sizeof text, &m) == DSV4_OK);
  EXPECT(m == strlen(prompt) && memcmp(text, prompt, m) == 0);
  EXPECT(dsv4_tokenize(tok, "\xc3(", 2, 0, ids, 256, &m) == DSV4_ERR_INVALID_ARGUMENT); /* invalid UTF-8 */
  {
    dsv4_chat_message msg = {"user", "def add(a, b):", NULL};
    EXPECT(dsv4_chat_encode(tok, &msg, 1, DSV4_THINK_HIGH, ids, 256, &m) == DSV4_OK);
    EXPECT(m > 3);
    EXPECT(dsv4_chat_encode(tok, &msg, 1, (dsv4_think)7, ids, 256, &m) == DSV4_ERR_INVALID_ARGUMENT);
  }

  /* greedy completion, streamed: the pieces add up to the result */
  tp = dsv4_text_default_params();
  tp.sampling.temperature = 0;
  tp.max_tokens = 24;
  memset(&k, 0, sizeof k);
  tp.on_text = collect;
  tp.user_data = &k;
  EXPECT(dsv4_generate_text(sess, tok, prompt, &tp, &res) == DSV4_OK);
  EXPECT(res.finish == DSV4_FINISH_LENGTH && res.completion_tokens == 24 && res.prompt_tokens == (int64_t)n);
  EXPECT(strcmp(res.content, k.buf) == 0);
  printf("C text API: %s|\n", res.content);

  /* a stop string from that text: the result ends right before it */
  if (strlen(res.content) > 14) {
    char stop[5];
    const char* stops[1];
    memcpy(stop, res.content + 10, 4);
    stop[4] = 0;
    stops[0] = stop;
    tp.stop = stops;
    tp.n_stop = 1;
    tp.on_text = NULL;
    dsv4_session_reset(sess);
    EXPECT(dsv4_generate_text(sess, tok, prompt, &tp, &cut) == DSV4_OK);
    EXPECT(cut.finish == DSV4_FINISH_STOP);
    EXPECT(strncmp(cut.content, res.content, strlen(cut.content)) == 0 && strstr(res.content, stop) == res.content + strlen(cut.content));
    dsv4_text_result_free(&cut);
    tp.stop = NULL;
    tp.n_stop = 0;
  }
  /* cancellation after three pieces; then a chat turn on the same session */
  memset(&k, 0, sizeof k);
  k.cancel_after = 3;
  tp.on_text = collect;
  dsv4_session_reset(sess);
  EXPECT(dsv4_generate_text(sess, tok, prompt, &tp, &cut) == DSV4_OK);
  EXPECT(cut.finish == DSV4_FINISH_CANCELLED && cut.completion_tokens == 3);
  dsv4_text_result_free(&cut);
  {
    dsv4_chat_message msg = {"user", "def add(a, b):", NULL};
    tp.on_text = NULL;
    tp.max_tokens = 6;
    dsv4_session_reset(sess);
    EXPECT(dsv4_generate_chat(sess, tok, &msg, 1, &tp, &cut) == DSV4_OK);
    EXPECT(cut.completion_tokens >= 1 && cut.reasoning != NULL);
    dsv4_text_result_free(&cut);
  }
  /* bad parameters are errors, nothing is written */
  tp.sampling.temperature = NAN;
  memset(&cut, 0, sizeof cut);
  EXPECT(dsv4_generate_text(sess, tok, prompt, &tp, &cut) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(cut.content == NULL);
  tp.sampling.temperature = 0;
  tp.max_tokens = -1;
  EXPECT(dsv4_generate_text(sess, tok, prompt, &tp, &cut) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_generate_text(sess, tok, NULL, &tp, &cut) == DSV4_ERR_INVALID_ARGUMENT);

  dsv4_text_result_free(&res);
  dsv4_session_free(sess);
  dsv4_tokenizer_free(tok);
  dsv4_model_free(model);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
