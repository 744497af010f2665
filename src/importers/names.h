// Internal to the importers: unique op and tensor names for graphs built
// from other tools' files, whose names may repeat (a DTR name rebound by a
// MUTATE) or be absent.
#pragma once

#include <fmt/format.h>

#include <string>
#include <unordered_map>

namespace memfit::importers_internal {

class UniqueNames {
 public:
  // `base` if it is free, else the first free "base_1", "base_2", ...
  std::string Take(const std::string& base) {
    auto [it, inserted] = next_suffix_.emplace(base, 1);
    if (inserted) return base;
    for (;;) {
      std::string candidate = fmt::format("{}_{}", base, it->second++);
      if (next_suffix_.emplace(candidate, 1).second) return candidate;
    }
  }

 private:
  std::unordered_map<std::string, int> next_suffix_;  // taken name -> next suffix to try
};

}  // namespace memfit::importers_internal
