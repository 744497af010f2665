#include "remat/reach.h"

#include <algorithm>

namespace memfit::remat {
namespace {

// horizon and need from the readers and holds_inputs.
void Propagate(const Problem& p, Reach& r) {
  const size_t n = p.size();
  r.horizon.assign(n, kNoLimit);
  r.holds_inputs.resize(n, 0);
  for (size_t v = 0; v < n; ++v) {
    const Node& node = p.nodes[v];
    if (!node.recomputable) continue;
    uint32_t h = node.recompute_until;
    if (!r.holds_inputs[v]) {
      for (uint32_t x : node.inputs) h = std::min(h, r.horizon[x]);
    }
    r.horizon[v] = h;
  }
  r.need.assign(n, 0);
  r.held_for_reader.assign(n, 0);
  for (size_t v = n; v-- > 0;) {
    const Node& node = p.nodes[v];
    uint32_t need = node.keep_to_end ? static_cast<uint32_t>(n) : static_cast<uint32_t>(v);
    for (size_t k = r.reader_begin[v]; k < r.reader_begin[v + 1]; ++k) {
      const uint32_t c = r.readers[k];
      need = std::max(need, c);
      if (p.nodes[c].recomputable) {
        const uint32_t reach = std::min(r.need[c], r.horizon[c]);
        need = std::max(need, reach);
        if (reach > r.horizon[v]) r.held_for_reader[v] = 1;
      }
    }
    r.need[v] = need;
  }
}

}  // namespace

Reach ComputeReach(const Problem& p, bool hold_inputs) {
  const size_t n = p.size();
  Reach r;
  r.reader_begin.assign(n + 1, 0);
  for (const Node& node : p.nodes) {
    for (uint32_t u : node.inputs) ++r.reader_begin[u + 1];
  }
  for (size_t v = 0; v < n; ++v) r.reader_begin[v + 1] += r.reader_begin[v];
  r.readers.resize(r.reader_begin[n]);
  std::vector<uint32_t> fill(r.reader_begin.begin(), r.reader_begin.end() - 1);
  for (uint32_t w = 0; w < n; ++w) {
    for (uint32_t u : p.nodes[w].inputs) r.readers[fill[u]++] = w;
  }
  r.time_us.assign(n + 1, 0);
  for (size_t t = 0; t < n; ++t) r.time_us[t + 1] = r.time_us[t] + p.nodes[t].cost_us;
  Propagate(p, r);
  if (hold_inputs) {
    bool any = false;
    for (uint32_t v = 0; v < n; ++v) {
      const Node& node = p.nodes[v];
      if (!node.recomputable || r.horizon[v] >= std::min(node.recompute_until, r.need[v])) continue;
      int64_t held = 0;
      for (uint32_t x : node.inputs) {
        if (p.nodes[x].recomputable && r.horizon[x] < r.need[v]) held += p.nodes[x].bytes;
      }
      if (2 * held <= node.bytes) r.holds_inputs[v] = 1, any = true;
    }
    if (any) Propagate(p, r);
  }
  return r;
}

}  // namespace memfit::remat
