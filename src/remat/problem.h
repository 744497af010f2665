// The rematerialization problem at node level, shared by every remat method
// (the Checkmate MILP, the fast heuristic, the checkpointing baselines).
//
// A node is a unit of computation whose result is kept or dropped as a
// whole: nodes are numbered in execution order, and node t is first
// computed at stage t. Memory is fixed_bytes (parameters, optimizer state,
// inputs: resident throughout) plus the bytes of every resident result,
// plus the workspace of the node being computed.
//
// A solution is a *sequence*: node ids in evaluation order, where the first
// occurrence of a node is its computation and every later occurrence a
// recomputation. A sequence implies its frees: an evaluated result stays
// resident until its last use before the node's next evaluation (or until
// the end, for keep_to_end nodes), and a result nobody reads is freed right
// after it is computed. So the memory of a sequence is a sum of intervals
// (Evaluate below), and every method only has to choose what to evaluate when.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace memfit::remat {

// Sentinels of the uint32_t node indices and stages. They are one value (the
// largest, so that a "never" sorts after every stage), named for what they
// mean where they stand:
// A bound that does not bind (Node::recompute_until, a reach horizon).
inline constexpr uint32_t kNoLimit = std::numeric_limits<uint32_t>::max();
// No node (instance, part or group): an index not set.
inline constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
// A stage that never comes: no next use, no read foreseen.
inline constexpr uint32_t kNever = std::numeric_limits<uint32_t>::max();

struct Node {
  std::string name;
  double cost_us = 0;          // time to (re)compute
  int64_t bytes = 0;           // device bytes of its result while resident
  int64_t workspace_bytes = 0; // extra bytes only while it is being computed
  std::vector<uint32_t> inputs;  // nodes it reads, each < this node's index, no duplicates
  // False: computed once (stage = its index) and never recomputed (random
  // ops without RNG replay, storages mutated in place, optimizer updates).
  bool recomputable = true;
  // A recomputation may only happen while computing stages <= this one
  // (an input is overwritten in place by the node at the next stage).
  uint32_t recompute_until = kNoLimit;
  // The result must be resident at the end (a graph output).
  bool keep_to_end = false;
  // Part of the backward pass or the optimizer update (informational; the
  // checkpointing baselines drop forward results only).
  bool backward = false;
  // The storages the result is made of (empty: one part of `bytes`). A
  // sequence keeps a node whole, but a part nothing can read any more may go
  // early: a convolution backward's input gradient is dead long before its
  // weight gradient. The heuristic and the lowering free parts; Evaluate and
  // the MILP count whole nodes (an upper bound).
  struct Part {
    int64_t bytes = 0;
    bool keep_to_end = false;  // a graph output
  };
  std::vector<Part> parts;
  // Parallel to `inputs` (or empty: every part of every input): bit k set
  // when part k of that input is read; 0 for an ordering-only edge. Parts
  // past the 64th count as read.
  std::vector<uint64_t> input_parts;
};

struct Problem {
  std::string name;
  std::vector<Node> nodes;  // in execution order
  int64_t fixed_bytes = 0;  // resident throughout

  size_t size() const { return nodes.size(); }
};

// Checks the problem's own consistency (inputs before their reader, no
// duplicates, non-negative sizes and costs); throws Error naming the node.
void Validate(const Problem& problem);

// The sequence that computes every node once, in index order.
std::vector<uint32_t> InOrderSequence(const Problem& problem);

struct Evaluation {
  bool valid = false;
  std::string problem;  // why not valid: names the position and node
  int64_t peak_bytes = 0;   // fixed_bytes + resident results + workspace, at the worst evaluation
  size_t peak_position = 0; // where it is first reached
  double compute_us = 0;    // every node once
  double recompute_us = 0;  // the repeated evaluations
  size_t recomputations = 0;
  double total_us() const { return compute_us + recompute_us; }
};

// Checks and measures a sequence: every node is evaluated; node t is first
// evaluated after nodes 0..t-1 were first evaluated (stage order); every
// input of an evaluation was evaluated before it; a non-recomputable node
// occurs once; a recomputation of node i happens before the first
// evaluation of stage recompute_until(i) + 1. Linear in the sequence length
// plus the edges.
Evaluation Evaluate(const Problem& problem, std::span<const uint32_t> sequence);

}  // namespace memfit::remat
