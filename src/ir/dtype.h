// Element types of tensors.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string_view>

namespace memfit {

enum class DType : uint8_t { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

// Bytes per element.
int64_t DTypeBytes(DType dtype);
// Short name used in JSON and on the command line: f32, f16, bf16, f64, i64,
// i32, i16, i8, u8, bool.
std::string_view ToString(DType dtype);
std::optional<DType> ParseDType(std::string_view name);
bool IsFloatingPoint(DType dtype);

inline std::ostream& operator<<(std::ostream& os, DType d) { return os << ToString(d); }

}  // namespace memfit
