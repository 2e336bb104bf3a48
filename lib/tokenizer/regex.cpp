// PCRE2 wrapper: Unicode-aware regexes with lookahead, as the V4 pre-tokenizer needs.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "dsv4/error.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace dsv4 {

struct Regex::Code {
  pcre2_code* code = nullptr;
};

Regex::Regex(const std::string& pattern, bool literal, const std::string& where) : code_(new Code) {
  int err = 0;
  PCRE2_SIZE off = 0;
  const uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : 0u);
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err, &off, nullptr);
  if (code_->code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    delete code_;
    throw FormatError(where + ": cannot compile regex at offset " + std::to_string(off) + ": " + reinterpret_cast<char*>(msg));
  }
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
}

Regex::~Regex() {
  pcre2_code_free(code_->code);
  delete code_;
}

void* Regex::new_match_data() const { return pcre2_match_data_create_from_pattern(code_->code, nullptr); }
void Regex::free_match_data(void* md) { pcre2_match_data_free(static_cast<pcre2_match_data*>(md)); }

bool Regex::next(std::string_view s, size_t from, size_t& b, size_t& e, void* md) const {
  auto* m = static_cast<pcre2_match_data*>(md);
  // Input was validated as UTF-8 once, up front.
  const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), from, PCRE2_NO_UTF_CHECK, m, nullptr);
  if (rc < 0) return false;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m);
  b = ov[0];
  e = ov[1];
  return true;
}

}  // namespace dsv4
