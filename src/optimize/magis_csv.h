// One optimization result as a row of MAGIS's results CSV, so that memfit's
// figures sit in the same spreadsheet as MAGIS's (its experiment scripts
// write these columns). Latencies are milliseconds, memory bytes. memfit
// judges plans by simulation: "opt-latency"/"ori-latency" equal the
// simulated ones, and "*-is-prof-result" is true only when a measured cost
// table gave every op's latency. An unused limit is written "inf".
#pragma once

#include <string>

#include "optimize/optimizer.h"

namespace memfit {

struct CsvContext {
  std::string name;              // graph name
  int64_t device_memory_bytes = 0;
  bool profiled = false;         // every op latency was measured
};

// The header line (no newline).
std::string MagisCsvHeader();
// One row (no newline).
std::string MagisCsvRow(const OptimizeResult& result, const OptimizeOptions& options, const CsvContext& context);
// Appends `rows` to the CSV at `path`, writing the header first when the
// file is new or empty; the file is rewritten atomically. Throws Error when
// the file exists with a different header.
void AppendMagisCsv(const std::string& path, const std::vector<std::string>& rows);

}  // namespace memfit
