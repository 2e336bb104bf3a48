#include "args.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace dsv4::cli {

Args::Args(int argc, char** argv, int first, const std::set<std::string>& valued, const std::set<std::string>& switches,
           const std::map<std::string, std::string>& aliases) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    auto al = aliases.find(a);
    if (al != aliases.end()) a = al->second;
    if (switches.count(a)) {
      values_.insert_or_assign(a, std::string(1, '1'));
    } else if (valued.count(a)) {
      if (i + 1 >= argc) throw UsageError("option " + a + " needs a value");
      values_[a] = argv[++i];
    } else {
      throw UsageError("unknown option '" + a + "'");
    }
  }
}

std::optional<std::string> Args::get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

int64_t Args::get_int(const std::string& flag, int64_t dflt) const {
  auto v = get(flag);
  if (!v) return dflt;
  auto xs = parse_int_list(*v, flag);
  if (xs.size() != 1) throw UsageError("option " + flag + " takes one integer, got '" + *v + "'");
  return xs[0];
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i < text.size()) {
    const char ch = text[i];
    if (ch == ',' || std::isspace(static_cast<unsigned char>(ch))) {
      ++i;
      continue;
    }
    const char* start = text.c_str() + i;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(start, &end, 10);
    if (end == start || errno == ERANGE || (*end != '\0' && *end != ',' && !std::isspace(static_cast<unsigned char>(*end))))
      throw UsageError(what + ": '" + text.substr(i, 20) + "' is not an integer");
    out.push_back(v);
    i += static_cast<size_t>(end - start);
  }
  return out;
}

}  // namespace dsv4::cli
