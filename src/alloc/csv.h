// MiniMalloc's CSV format for allocation problems and solutions.
//
//   id,lower,upper,size[,offset][,alignment]
//   0,0,10,256
//   1,5,20,128,512
//
// Columns may come in any order; the header names them. A buffer lives in
// [lower, upper). In input an `offset` value pins the buffer there (an empty
// field leaves it free); `alignment` overrides the planner's alignment for
// that buffer. Blank lines are ignored; CRLF line ends are accepted.
#pragma once

#include <string>
#include <string_view>

#include "alloc/problem.h"

namespace memfit::alloc {

// Parses `text`; `source` names the file in error messages. Throws
// memfit::Error ("FILE:LINE: ...", naming the field) for a missing or
// duplicate header column, an unknown column, a wrong number of fields, a
// non-integer or out-of-range value, a negative size, lower >= upper, an
// alignment < 1, a negative offset, a duplicate id, sizes whose sum overflows,
// or an empty file.
Problem ParseProblemCsv(std::string_view text, const std::string& source);

// Reads and parses the file at `path`; a path ending in ".gz" is
// decompressed first (by `gzip -dc`).
Problem ReadProblemCsv(const std::string& path);

// The problem's buffers with an `offset` column (and `alignment` when any
// buffer has its own), in input order.
std::string FormatSolutionCsv(const Problem& problem, const Solution& solution);

}  // namespace memfit::alloc
