#include "alloc/csv.h"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "util/error.h"
#include "util/file.h"

namespace memfit::alloc {
namespace {

enum class Column { kId, kLower, kUpper, kSize, kOffset, kAlignment };
constexpr std::array<std::pair<std::string_view, Column>, 6> kColumns = {{
    {"id", Column::kId},
    {"lower", Column::kLower},
    {"upper", Column::kUpper},
    {"size", Column::kSize},
    {"offset", Column::kOffset},
    {"alignment", Column::kAlignment},
}};
constexpr std::array<Column, 4> kRequired = {Column::kId, Column::kLower, Column::kUpper,
                                             Column::kSize};

std::string_view NameOf(Column column) {
  for (const auto& [name, c] : kColumns) {
    if (c == column) return name;
  }
  return "?";
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    const size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(Trim(line.substr(start)));
      return fields;
    }
    fields.push_back(Trim(line.substr(start, comma - start)));
    start = comma + 1;
  }
}

int64_t ParseInteger(std::string_view field, const std::string& where, Column column) {
  int64_t value = 0;
  const char* first = field.data();
  const char* last = field.data() + field.size();
  if (!field.empty() && *first == '+') ++first;
  const auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec == std::errc::result_out_of_range) {
    Fail("{}: field '{}': value '{}' is out of range for a 64-bit integer", where, NameOf(column),
         field);
  }
  if (ec != std::errc() || ptr != last || field.empty()) {
    Fail("{}: field '{}': '{}' is not an integer", where, NameOf(column), field);
  }
  return value;
}

// The decompressed contents of a gzip file, through `gzip -dc` (no library
// dependency; gzip is on every system memfit runs on).
std::string ReadGzipFile(const std::string& path) {
  ReadFile(path);  // The usual error for a missing or unreadable file.
  int fds[2];
  if (pipe(fds) != 0) Fail("{}: cannot decompress: pipe failed", path);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  const char* argv[] = {"gzip", "-dc", "--", path.c_str(), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, "gzip", &actions, nullptr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  std::string text;
  if (spawned == 0) {
    char buffer[1 << 16];
    ssize_t n = 0;
    while ((n = read(fds[0], buffer, sizeof buffer)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) text.append(buffer, static_cast<size_t>(n));
    }
  }
  close(fds[0]);
  if (spawned != 0) Fail("{}: cannot decompress: gzip could not be run", path);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Fail("{}: not a valid gzip file (gzip -dc failed)", path);
  return text;
}

}  // namespace

Problem ParseProblemCsv(std::string_view text, const std::string& source) {
  std::vector<std::string_view> lines;
  {
    size_t start = 0;
    while (start <= text.size()) {
      const size_t end = text.find('\n', start);
      if (end == std::string_view::npos) {
        lines.push_back(text.substr(start));
        break;
      }
      lines.push_back(text.substr(start, end - start));
      start = end + 1;
    }
  }
  size_t header_line = 0;
  while (header_line < lines.size() && Trim(lines[header_line]).empty()) ++header_line;
  if (header_line == lines.size()) {
    Fail("{}:1: empty file; expected a header 'id,lower,upper,size'", source);
  }
  const std::string header_where = fmt::format("{}:{}", source, header_line + 1);
  std::vector<Column> columns;
  for (std::string_view name : SplitFields(lines[header_line])) {
    std::optional<Column> column;
    for (const auto& [known, c] : kColumns) {
      if (name == known) column = c;
    }
    if (!column) {
      Fail("{}: unknown column '{}' in header (expected id,lower,upper,size[,offset][,alignment])",
           header_where, name);
    }
    if (std::find(columns.begin(), columns.end(), *column) != columns.end()) {
      Fail("{}: duplicate column '{}' in header", header_where, name);
    }
    columns.push_back(*column);
  }
  for (Column required : kRequired) {
    if (std::find(columns.begin(), columns.end(), required) == columns.end()) {
      Fail("{}: missing column '{}' in header (expected id,lower,upper,size)", header_where,
           NameOf(required));
    }
  }

  Problem problem;
  std::map<std::string, size_t, std::less<>> line_of_id;
  int64_t total_size = 0;
  for (size_t l = header_line + 1; l < lines.size(); ++l) {
    if (Trim(lines[l]).empty()) continue;
    const std::string where = fmt::format("{}:{}", source, l + 1);
    const std::vector<std::string_view> fields = SplitFields(lines[l]);
    if (fields.size() != columns.size()) {
      Fail("{}: expected {} fields (as in the header), got {}", where, columns.size(),
           fields.size());
    }
    Buffer b;
    for (size_t f = 0; f < fields.size(); ++f) {
      const Column column = columns[f];
      switch (column) {
        case Column::kId:
          if (fields[f].empty()) Fail("{}: field 'id': empty id", where);
          b.id.name = std::string(fields[f]);
          break;
        case Column::kLower: b.lifetime.lower = ParseInteger(fields[f], where, column); break;
        case Column::kUpper: b.lifetime.upper = ParseInteger(fields[f], where, column); break;
        case Column::kSize:
          b.size_bytes = ParseInteger(fields[f], where, column);
          if (b.size_bytes < 0) Fail("{}: field 'size': negative size {}", where, b.size_bytes);
          break;
        case Column::kOffset:
          if (fields[f].empty()) break;  // Free to place.
          b.fixed_offset_bytes = ParseInteger(fields[f], where, column);
          if (*b.fixed_offset_bytes < 0) {
            Fail("{}: field 'offset': negative offset {}", where, *b.fixed_offset_bytes);
          }
          break;
        case Column::kAlignment:
          if (fields[f].empty()) break;  // The planner's alignment.
          b.alignment_bytes = ParseInteger(fields[f], where, column);
          if (*b.alignment_bytes < 1) {
            Fail("{}: field 'alignment': alignment must be >= 1, got {}", where,
                 *b.alignment_bytes);
          }
          break;
      }
    }
    if (b.lifetime.lower >= b.lifetime.upper) {
      Fail("{}: field 'upper': lower ({}) must be < upper ({})", where, b.lifetime.lower,
           b.lifetime.upper);
    }
    if (__builtin_add_overflow(total_size, b.size_bytes, &total_size) ||
        (b.fixed_offset_bytes && *b.fixed_offset_bytes > INT64_MAX - b.size_bytes)) {
      Fail("{}: field 'size': sizes overflow a 64-bit byte count", where);
    }
    int64_t length = 0;
    if (__builtin_sub_overflow(b.lifetime.upper, b.lifetime.lower, &length)) {
      Fail("{}: field 'upper': lifetime length overflows a 64-bit integer", where);
    }
    const auto [it, inserted] = line_of_id.emplace(b.id.name, l + 1);
    if (!inserted) {
      Fail("{}: field 'id': duplicate id '{}' (first on line {})", where, b.id.name, it->second);
    }
    problem.buffers.push_back(std::move(b));
  }
  return problem;
}

Problem ReadProblemCsv(const std::string& path) {
  const bool gzipped = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  return ParseProblemCsv(gzipped ? ReadGzipFile(path) : ReadFile(path), path);
}

std::string FormatSolutionCsv(const Problem& problem, const Solution& solution) {
  bool alignment = false;
  for (const Buffer& b : problem.buffers) alignment = alignment || b.alignment_bytes.has_value();
  std::string out = alignment ? "id,lower,upper,size,offset,alignment\n" : "id,lower,upper,size,offset\n";
  for (size_t i = 0; i < problem.buffers.size(); ++i) {
    const Buffer& b = problem.buffers[i];
    out += fmt::format("{},{},{},{},{}", b.id.name, b.lifetime.lower, b.lifetime.upper, b.size_bytes,
                       solution.offsets_bytes.at(i));
    if (alignment) out += b.alignment_bytes ? fmt::format(",{}", *b.alignment_bytes) : ",";
    out += "\n";
  }
  return out;
}

}  // namespace memfit::alloc
