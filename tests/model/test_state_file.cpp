// Session state files: save_state / load_state round trip and every kind of bad file.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dsv4/model.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {
std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("dsv4_state_" + std::to_string(::getpid()) + "_" + name);
}
std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void spit(const std::filesystem::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}
}  // namespace

TEST_CASE("a saved session state loads into a new session and continues exactly, and bad files change nothing") {
  const Golden g = load_golden("official_a");
  const auto model = Model::load(golden_dir("official_a"));
  const auto file = temp_file("a.dsv4s");
  Session a(model);
  a.forward({g.ids.data(), 70});
  a.save_state(file);
  CHECK(!std::filesystem::exists(file.string() + ".tmp"));
  a.forward({g.ids.data() + 70, 30});
  const std::vector<float> want(a.last_logits().begin(), a.last_logits().end());

  Session b(model);
  b.forward({g.ids.data(), 5});  // some other state, replaced by the load
  b.load_state(file);
  CHECK(b.position() == 70);
  b.forward({g.ids.data() + 70, 30});
  CHECK(rel_err(b.last_logits().data(), want.data(), want.size()) < 1e-6);
  CHECK(rel_err(b.last_logits().data(), g.logits.data() + 99 * g.V, want.size()) <= 1e-4);

  // A session with nothing fed saves and loads too.
  const auto empty = temp_file("empty.dsv4s");
  Session(model).save_state(empty);
  b.load_state(empty);
  CHECK(b.position() == 0);
  CHECK(b.last_logits().empty());

  // Every bad file is a typed error and leaves the session as it was.
  Session c(model);
  c.forward({g.ids.data(), 9});
  const std::vector<float> before(c.last_logits().begin(), c.last_logits().end());
  auto unchanged = [&] {
    CHECK(c.position() == 9);
    CHECK(rel_err(c.last_logits().data(), before.data(), before.size()) == 0.0);
  };
  const std::string good = slurp(file);
  const auto bad = temp_file("bad.dsv4s");
  CHECK_THROWS_AS(c.load_state(temp_file("missing.dsv4s")), IoError);
  unchanged();
  spit(bad, good.substr(0, good.size() - 100));
  CHECK_THROWS_AS(c.load_state(bad), FormatError);  // truncated
  unchanged();
  spit(bad, good + "x");
  CHECK_THROWS_AS(c.load_state(bad), FormatError);  // trailing bytes
  std::string flipped = good;
  flipped[flipped.size() - 1000] ^= 0x40;
  spit(bad, flipped);
  CHECK_THROWS_WITH_AS(c.load_state(bad), doctest::Contains("checksum"), FormatError);
  unchanged();
  std::string magic = good;
  magic[0] = 'X';
  spit(bad, magic);
  CHECK_THROWS_AS(c.load_state(bad), FormatError);
  std::string version = good;
  version[8] = 9;
  spit(bad, version);
  CHECK_THROWS_WITH_AS(c.load_state(bad), doctest::Contains("version"), FormatError);
  std::string header = good;
  header[16] = '[';  // not an object
  spit(bad, header);
  CHECK_THROWS_AS(c.load_state(bad), FormatError);
  std::string hlen = good;
  hlen[12] = '\xff', hlen[13] = '\xff', hlen[14] = '\xff', hlen[15] = '\x7f';
  spit(bad, hlen);
  CHECK_THROWS_AS(c.load_state(bad), FormatError);
  spit(bad, "");
  CHECK_THROWS_AS(c.load_state(bad), FormatError);
  unchanged();

  SessionOptions small;
  small.max_context = 32;
  Session d(model, small);
  CHECK_THROWS_AS(d.load_state(file), CapacityError);
  CHECK(d.position() == 0);

  const auto other = Model::load(golden_dir("tiny_a"));
  Session e(other);
  CHECK_THROWS_AS(e.load_state(file), InvalidArgument);

  CHECK_THROWS_AS(a.save_state(std::filesystem::path("/nonexistent-dir-dsv4/x.dsv4s")), IoError);
  for (const auto& p : {file, empty, bad}) std::filesystem::remove(p);
}

TEST_CASE("session state files carry the caller's metadata") {
  const auto model = Model::load(golden_dir("official_a"));
  const auto file = temp_file("meta.dsv4s");
  Session a(model);
  const std::vector<int32_t> ids = {1, 2, 3};
  a.forward(ids);
  const std::string meta("tokens 1 2 3\0binary ok", 22);
  a.save_state(file, meta);
  Session b(model);
  CHECK(b.load_state(file) == meta);
  CHECK(b.position() == 3);
  std::filesystem::remove(file);
}
