// The parts of the heuristic's nodes (Node::parts: the storages a result is
// made of) and until when each may still be read.
//
// Parts are numbered globally: node v's are [begin(v), begin(v + 1)); a node
// without parts has one of its whole bytes. A part's need is the last stage
// at which something may read it (a reader directly, or a reader's
// recomputation, up to that reader's reach); its last read the last reader
// that reads it directly. With free_parts (HeuristicOptions), a part of a
// node that can be recomputed to the end goes after its last direct read (a
// later recomputation of a reader that needs it recomputes the node, as for
// a whole node); a part of any other node only once nothing can read it.
// Without free_parts every part lives as long as its node. Masks of parts
// (uint64_t) give part k of a node bit k; parts past the 63rd share bit 63
// and are kept whole.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "remat/problem.h"
#include "remat/reach.h"

namespace memfit::remat {

class Parts {
 public:
  Parts(const Problem& problem, const Reach& reach, bool free_parts);

  uint32_t begin(uint32_t v) const { return begin_[v]; }
  uint32_t end(uint32_t v) const { return begin_[v + 1]; }
  int64_t bytes(uint32_t k) const { return bytes_[k]; }
  // The bit of part k (a global part index) of v in masks.
  uint64_t Bit(uint32_t v, uint32_t k) const { return uint64_t{1} << std::min<uint32_t>(k - begin_[v], 63); }
  // Whether part k of v may still be read at stage `from` or later.
  bool Live(uint32_t v, uint32_t k, uint32_t from) const;
  // The mask of v's parts nothing reads from `from` on.
  uint64_t GoneAt(uint32_t v, uint32_t from) const;
  // The bytes of v's parts that may still be read from `from` on.
  int64_t LiveBytes(uint32_t v, uint32_t from) const;
  bool free_parts() const { return free_parts_; }

 private:
  const Problem& p_;
  const Reach& reach_;
  bool free_parts_;
  std::vector<uint32_t> begin_, need_, last_read_;
  std::vector<int64_t> bytes_;
  std::vector<uint8_t> keep_;
};

}  // namespace memfit::remat
