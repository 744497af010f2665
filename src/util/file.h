// Whole-file reading and crash-safe writing.
#pragma once

#include <fstream>
#include <string>

namespace memfit {

// Returns the contents of `path`; throws Error naming the path if it cannot
// be read.
std::string ReadFile(const std::string& path);

// `path` opened for reading (binary); throws Error naming the path if it
// cannot be opened or is a directory (an ifstream opens a directory and
// reads nothing: an empty file to every parser).
std::ifstream OpenInput(const std::string& path);

// Writes `contents` to `path` through a temporary file in the same directory
// and an atomic rename, so a failed or interrupted write never leaves a
// half-written output. "-" writes to standard output. Throws Error on failure.
void WriteFileAtomically(const std::string& path, const std::string& contents);

// Throws the Error WriteFileAtomically would (naming the path) when `path`
// cannot be written: a directory, a folder that does not exist, or one this
// process may not write into. Commands that search for seconds or minutes
// check their outputs first, so a typo does not cost the search.
void CheckWritable(const std::string& path);

}  // namespace memfit
