// Benchmark subjects shared by the bench programs: zoo training graphs at
// given sizes, the Checkmate graphs and the DTR traces under ../shared/data.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <vector>

#include "autodiff/training_graph.h"
#include "importers/checkmate_import.h"
#include "importers/dtr_import.h"
#include "models/zoo.h"
#include "util/error.h"

namespace memfit::bench {

inline const std::string kShared = std::string(MEMFIT_SOURCE_DIR) + "/../shared/data";

struct Subject {
  std::string label;
  Graph graph;
};

// "bert-base:32:512" (model:batch:seq:image; the image "HxW" for a
// non-square one: "fcn8:32::416x608"), "checkmate:VGG16_...json", "dtr:unet-6.log".
inline Subject Load(const std::string& spec) {
  if (spec.rfind("checkmate:", 0) == 0) {
    const std::string file = spec.substr(10);
    return {file.substr(0, file.find("_train")), ImportCheckmateFile(kShared + "/remat/checkmate/" + file)};
  }
  if (spec.rfind("dtr:", 0) == 0) {
    const std::string file = spec.substr(4);
    return {"dtr " + file, ImportDtrLog(kShared + "/dtr/" + file)};
  }
  std::vector<std::string> parts;
  size_t begin = 0;
  while (true) {
    const size_t end = spec.find(':', begin);
    parts.push_back(spec.substr(begin, end - begin));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  ZooOptions zoo;
  auto number = [&](size_t i) { return i < parts.size() && !parts[i].empty() ? std::stoll(parts[i]) : 0; };
  zoo.batch = number(1), zoo.seq = number(2), zoo.image = number(3);
  if (parts.size() > 3 && parts[3].find('x') != std::string::npos) {
    zoo.width = std::stoll(parts[3].substr(parts[3].find('x') + 1));
  }
  std::string label = parts[0];
  if (zoo.batch) label += fmt::format(" bs{}", zoo.batch);
  if (zoo.seq) label += fmt::format(" s{}", zoo.seq);
  if (zoo.width) label += fmt::format(" {}x{}", zoo.image, zoo.width);
  return {label, BuildTrainingGraph(BuildZooModel(parts[0], zoo))};
}

// Load, or a table row `skipped: why` (the label column `width` wide) and nothing.
inline std::optional<Subject> LoadOrSkip(const std::string& spec, int width) {
  try {
    return Load(spec);
  } catch (const Error& e) {
    fmt::print("{:<{}}  skipped: {}\n", spec, width, e.what());
    return std::nullopt;
  }
}

}  // namespace memfit::bench
