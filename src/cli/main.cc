// memfit: the command-line entry point. Subcommands register themselves
// (see command.h); this file only parses and dispatches.
#include <algorithm>
#include <iostream>
#include <map>
#include <string>

#include "cli/command.h"
#include "util/error.h"

namespace memfit::cli {

std::vector<Command>& Commands() {
  static std::vector<Command> commands;
  return commands;
}

Registrar::Registrar(std::string name, std::string description, Setup setup) {
  Commands().push_back({std::move(name), std::move(description), std::move(setup)});
}

std::string LatencyInputs(const std::string& graph_path, const std::string& device, const std::string& costs_path) {
  std::string inputs = graph_path;
  if (device.ends_with(".json")) inputs += " on " + device;
  if (!costs_path.empty()) inputs += " with " + costs_path;
  return inputs;
}

void AddCostsOption(CLI::App& cmd, std::string& costs_path) {
  cmd.add_option("--costs", costs_path, "measured cost table JSON (docs/sim.md)");
}

void AddQuietFlag(CLI::App& cmd, bool& quiet) {
  cmd.add_flag("-q,--quiet", quiet, "no progress line on stderr (shown only when it is a terminal)");
}

void AddGraphFile(CLI::App& cmd, std::string& path) { cmd.add_option("file", path, "graph JSON")->required(); }

void AddJsonFlag(CLI::App& cmd, bool& json) { cmd.add_flag("--json", json, "print one JSON object"); }

void AddGraphReportOptions(CLI::App& cmd, GraphReportArgs& args) {
  AddGraphFile(cmd, args.path);
  AddJsonFlag(cmd, args.json);
}

}  // namespace memfit::cli

int main(int argc, char** argv) {
  using namespace memfit::cli;
  CLI::App app{"memfit: fit deep-learning training into less accelerator memory"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "memfit 0.1.0");

  auto& commands = Commands();
  std::sort(commands.begin(), commands.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  std::map<CLI::App*, Runner> runners;
  for (const Command& command : commands) {
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    runners[sub] = command.setup(*sub);
  }

  if (argc > 1 && argv[1][0] != '-' &&
      std::none_of(commands.begin(), commands.end(), [&](const Command& c) { return c.name == argv[1]; })) {
    std::string known;
    for (const Command& c : commands) known += (known.empty() ? "" : ", ") + c.name;
    std::cerr << "memfit: error: unknown command '" << argv[1] << "' (commands: " << known << ")\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "memfit: error: " << e.what() << "\n";
    return 2;
  }

  for (CLI::App* sub : app.get_subcommands()) {
    try {
      return runners.at(sub)();
    } catch (const memfit::Error& e) {
      std::cerr << "memfit: error: " << e.what() << "\n";
      return 2;
    } catch (const std::bad_alloc&) {
      std::cerr << "memfit: error: out of memory\n";
      return 2;
    }
  }
  return 2;
}
