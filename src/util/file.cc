#include "util/file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "util/error.h"

namespace memfit {

std::ifstream OpenInput(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) Fail("cannot read '{}': it is a directory", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot open '{}': {}", path, std::strerror(errno));
  return in;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in = OpenInput(path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) Fail("cannot read '{}'", path);
  return buffer.str();
}

void WriteFileAtomically(const std::string& path, const std::string& contents) {
  if (path == "-") {
    std::cout << contents;
    std::cout.flush();
    return;
  }
  const std::string temp = fmt::format("{}.tmp.{}", path, ::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) Fail("cannot write '{}': {}", path, std::strerror(errno));
    out << contents;
    out.flush();
    if (!out) {
      std::remove(temp.c_str());
      Fail("cannot write '{}': write failed", path);
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    std::remove(temp.c_str());
    Fail("cannot write '{}': {}", path, std::strerror(saved));
  }
}

void CheckWritable(const std::string& path) {
  if (path == "-") return;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) Fail("cannot write '{}': {}", path, std::strerror(EISDIR));
  std::filesystem::path folder = std::filesystem::path(path).parent_path();
  if (folder.empty()) folder = ".";
  if (!std::filesystem::is_directory(folder, ec)) Fail("cannot write '{}': {}", path, std::strerror(ENOENT));
  if (::access(folder.c_str(), W_OK) != 0) Fail("cannot write '{}': {}", path, std::strerror(errno));
}

}  // namespace memfit
