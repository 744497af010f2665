// Subcommand registration for the `memfit` CLI.
//
// Each subcommand lives in its own src/cli/<name>_command.cc and registers
// itself with a file-scope registrar:
//
//   const memfit::cli::Registrar kAlloc("alloc", "Plan offsets for a CSV",
//       [](CLI::App& cmd) {
//         auto opts = std::make_shared<AllocArgs>();
//         cmd.add_option("file", opts->path)->required();
//         return [opts] { return RunAlloc(*opts); };   // returns exit code
//       });
//
// The runner returns the process exit status. User errors are thrown as
// memfit::Error; main() prints them as one line and exits with status 2.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace memfit::cli {

using Runner = std::function<int()>;
using Setup = std::function<Runner(CLI::App&)>;

struct Command {
  std::string name;
  std::string description;
  Setup setup;
};

// All registered commands, sorted by name.
std::vector<Command>& Commands();

struct Registrar {
  Registrar(std::string name, std::string description, Setup setup);
};

// The files op latencies come from, for an error in them: "g.json", "g.json
// on dev.json with costs.json" (a built-in device is named by the error).
std::string LatencyInputs(const std::string& graph_path, const std::string& device, const std::string& costs_path);

}  // namespace memfit::cli
