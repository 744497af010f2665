// Byte counts as users write them on the command line: "8000000000",
// "8GiB", "8 GiB", "512MB", "1.5G", "2TiB". Binary units (K, KiB, M, MiB,
// G, GiB, T, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) of
// 1000; case does not matter. python/memfit/native.py's parse_bytes
// follows the same rule.
#pragma once

#include <cstdint>
#include <string_view>

namespace memfit {

// The bytes `text` names; throws Error naming `flag` ("--mem-limit") when
// it is not a byte count, has an unknown unit, or is below 1 byte or above
// 9e18.
int64_t ParseByteCount(std::string_view text, std::string_view flag);

}  // namespace memfit
