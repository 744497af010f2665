// Helpers shared by memfit's tests: temporary directories and running the
// built CLI binary.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "ir/graph.h"
#include "util/error.h"

namespace memfit::testing {

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "memfit_test_XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  std::string Write(const std::string& name, const std::string& contents) const {
    std::ofstream(File(name), std::ios::binary) << contents;
    return File(name);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Path of a file under the shared benchmark data (../shared/data next to the
// repository, or $MEMFIT_SHARED_DATA), or an empty string when that data is
// not present on this machine; tests that need it skip themselves then.
inline std::string SharedDataPath(const std::string& relative) {
  const char* env = std::getenv("MEMFIT_SHARED_DATA");
  const std::filesystem::path root = env ? std::filesystem::path(env)
                                         : std::filesystem::path(MEMFIT_SOURCE_DIR) / ".." / "shared" / "data";
  const std::filesystem::path path = root / relative;
  return std::filesystem::exists(path) ? path.string() : std::string();
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `memfit <args>` (args are passed to the shell as written).
inline CliResult RunCli(const std::string& args) {
  TempDir dir;
  const std::string out = dir.File("out"), err = dir.File("err");
  const std::string command = std::string(MEMFIT_CLI_PATH) + " " + args + " >" + out + " 2>" + err + " </dev/null";
  const int status = std::system(command.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadAll(out);
  r.err = ReadAll(err);
  return r;
}

// A user error: exit status 2 and one line on stderr, "memfit: error: ..."
// holding `fragment`.
// `memfit zoo ZOO_ARGS -o DIR/FILE` for a CLI test: the graph's path.
inline std::string ZooGraph(const TempDir& dir, const std::string& file, const std::string& zoo_args) {
  const std::string path = dir.File(file);
  const CliResult r = RunCli("zoo " + zoo_args + " -o " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return path;
}

inline void ExpectUserError(const CliResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_THAT(r.err, ::testing::HasSubstr("memfit: error: "));
  EXPECT_THAT(r.err, ::testing::HasSubstr(fragment));
}

// The message of the memfit::Error that `call` throws, or "(no error)".
template <typename Call>
std::string ErrorOf(Call&& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The op of `g` named `name` (std::runtime_error when there is none), and
// the name of the op that makes tensor `t`.
inline const Op& OpNamed(const Graph& g, std::string_view name) {
  for (const Op& op : g.ops()) {
    if (op.name == name) return op;
  }
  throw std::runtime_error("no op " + std::string(name));
}
inline std::string ProducerName(const Graph& g, TensorId t) { return g.op(g.tensor(t).producer.value()).name; }

// `name` as a GoogleTest parameter name: every character that is not a
// letter or digit becomes '_' ("bert-tiny" -> "bert_tiny").
inline std::string TestName(std::string name) {
  for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

}  // namespace memfit::testing
