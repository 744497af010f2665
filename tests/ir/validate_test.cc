// Graph-level limits of Validate that keep every later sum in range.
#include "ir/validate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ir/builder.h"
#include "util/error.h"

namespace memfit {
namespace {

// 64 storages of 2^56 bytes are 2^62 bytes: the most a graph may hold; one
// byte more is an error (sums of live bytes would be near int64's end).
TEST(Validate, StoragesAddUpToAtMost2To62Bytes) {
  GraphBuilder b("big");
  for (int i = 0; i < 64; ++i) b.Input("x" + std::to_string(i), {kMaxTensorBytes}, DType::kU8);
  const Graph fits = b.Finish();
  EXPECT_NO_THROW(Validate(fits));
  GraphBuilder c("bigger");
  for (int i = 0; i < 64; ++i) c.Input("x" + std::to_string(i), {kMaxTensorBytes}, DType::kU8);
  c.Input("one_more", {1}, DType::kU8);
  EXPECT_THAT([&] { ValidateFrom(c.Finish(), "big.json"); },
              ::testing::ThrowsMessage<Error>(::testing::StartsWith(
                  "big.json: the tensors' storages add up to more than 4611686018427387904 bytes (at tensor 'one_more'")));
}

}  // namespace
}  // namespace memfit
