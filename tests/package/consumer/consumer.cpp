// C++ against the installed headers and library: typed exceptions cross the library boundary.
#include <dsv4/model.hpp>
#include <dsv4/tokenizer.hpp>

#include <algorithm>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    (void)dsv4::Model::load("/nonexistent-dsv4-model");
    return 1;
  } catch (const dsv4::IoError&) {
  }
  auto model = dsv4::Model::load(argv[1]);
  auto tok = dsv4::Tokenizer::load(argv[1]);
  dsv4::Session session(model);
  const auto ids = tok.encode("def add(a, b):");
  auto logits = session.forward(ids);
  const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
  std::printf("consumer_cpp tokens=%zu vocab=%zu next=%ld position=%ld\n", ids.size(), logits.size(), static_cast<long>(best),
              static_cast<long>(session.position()));
  return 0;
}
