// Subcommand registration for the `memfit` CLI.
//
// Each subcommand lives in its own src/cli/<name>_command.cc and registers
// itself with a file-scope registrar; most fill one arguments struct that
// their runner reads:
//
//   const Registrar kAlloc = Subcommand<AllocArgs>(
//       "alloc", "Plan offsets for a CSV", RunAlloc,  // int RunAlloc(const AllocArgs&)
//       [](CLI::App& cmd, AllocArgs& args) { cmd.add_option("file", args.path)->required(); });
//
// The runner returns the process exit status. User errors are thrown as
// memfit::Error; main() prints them as one line and exits with status 2.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
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

// Registers a subcommand whose options `add_options` binds to the fields of
// one `Args`; `run` reads them once the command line is parsed.
template <typename Args>
Registrar Subcommand(std::string name, std::string description, int (*run)(const Args&),
                     void (*add_options)(CLI::App&, Args&)) {
  return Registrar(std::move(name), std::move(description), [run, add_options](CLI::App& cmd) -> Runner {
    auto args = std::make_shared<Args>();
    add_options(cmd, *args);
    return [run, args] { return run(*args); };
  });
}

// Options several commands share, each with one help text: --costs (a
// measured cost table), -q,--quiet (no progress line), the positional
// graph file ("file", required) and --json (one JSON object).
void AddCostsOption(CLI::App& cmd, std::string& costs_path);
void AddQuietFlag(CLI::App& cmd, bool& quiet);
void AddGraphFile(CLI::App& cmd, std::string& path);
void AddJsonFlag(CLI::App& cmd, bool& json);

// The arguments of a command that reads one graph and prints a report of
// it, as text or with --json as one JSON object (dims, stats).
struct GraphReportArgs {
  std::string path;
  bool json = false;
};
void AddGraphReportOptions(CLI::App& cmd, GraphReportArgs& args);

// The files op latencies come from, for an error in them: "g.json", "g.json
// on dev.json with costs.json" (a built-in device is named by the error).
std::string LatencyInputs(const std::string& graph_path, const std::string& device, const std::string& costs_path);

}  // namespace memfit::cli
