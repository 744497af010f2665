#include "optimize/magis_csv.h"

#include <filesystem>

#include <fmt/format.h>

#include "util/error.h"
#include "util/file.h"

namespace memfit {

std::string MagisCsvHeader() {
  return "name,device memory limit,latency limit,memory limit,latency limit ratio,memory limit ratio,weight memory,"
         "opt-is-prof-result,opt-latency,opt-memory,opt-simul-latency,opt-simul-memory,ori-is-prof-result,"
         "ori-latency,ori-memory,ori-simul-latency,ori-simul-memory";
}

std::string MagisCsvRow(const OptimizeResult& r, const OptimizeOptions& options, const CsvContext& context) {
  auto ms = [](double us) { return fmt::format("{:.4f}", us * 1e-3); };
  const std::string prof = context.profiled ? "True" : "False";
  const double mem_ratio = r.original.peak_bytes > 0 ? double(r.limit_bytes) / r.original.peak_bytes : 0;
  std::string name = context.name;
  for (char& c : name) {
    if (c == ',' || c == '"' || c == '\n') c = '_';
  }
  return fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}", name, context.device_memory_bytes,
                     options.lat_limit_ratio ? ms(r.latency_limit_us) : "inf",
                     options.lat_limit_ratio ? "inf" : std::to_string(r.limit_bytes),
                     options.lat_limit_ratio ? fmt::format("{:.3f}", *options.lat_limit_ratio) : "inf",
                     options.lat_limit_ratio ? "inf" : fmt::format("{:.3f}", mem_ratio), r.weight_bytes, prof,
                     ms(r.optimized.latency_us), r.optimized.peak_bytes, ms(r.optimized.latency_us),
                     r.optimized.peak_bytes, prof, ms(r.original.latency_us), r.original.peak_bytes,
                     ms(r.original.latency_us), r.original.peak_bytes);
}

void AppendMagisCsv(const std::string& path, const std::vector<std::string>& rows) {
  std::string contents;
  if (std::filesystem::exists(path)) contents = ReadFile(path);
  if (contents.empty()) {
    contents = MagisCsvHeader() + "\n";
  } else {
    const std::string first = contents.substr(0, contents.find('\n'));
    if (first != MagisCsvHeader()) Fail("{}: not a MAGIS results CSV (its first line is not memfit's header)", path);
    if (contents.back() != '\n') contents += '\n';
  }
  for (const std::string& row : rows) contents += row + "\n";
  WriteFileAtomically(path, contents);
}

}  // namespace memfit
