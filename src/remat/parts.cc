#include "remat/parts.h"

namespace memfit::remat {

Parts::Parts(const Problem& p, const Reach& reach, bool free_parts) : p_(p), reach_(reach), free_parts_(free_parts) {
  const size_t n = p.size();
  begin_.assign(n + 1, 0);
  for (size_t v = 0; v < n; ++v) begin_[v + 1] = begin_[v] + std::max<size_t>(1, p.nodes[v].parts.size());
  need_.resize(begin_[n]);
  last_read_.resize(begin_[n]);
  bytes_.resize(begin_[n]);
  keep_.resize(begin_[n]);
  for (uint32_t v = 0; v < n; ++v) {
    const Node& node = p.nodes[v];
    for (uint32_t k = begin_[v]; k < begin_[v + 1]; ++k) {
      const bool whole = node.parts.empty();
      bytes_[k] = whole ? node.bytes : node.parts[k - begin_[v]].bytes;
      keep_[k] = whole ? node.keep_to_end : node.parts[k - begin_[v]].keep_to_end;
      need_[k] = keep_[k] ? static_cast<uint32_t>(n) : v;
      last_read_[k] = v;
    }
  }
  for (uint32_t w = 0; w < n; ++w) {
    const Node& node = p.nodes[w];
    const uint32_t reach_w = node.recomputable ? std::max(w, std::min(reach.need[w], reach.horizon[w])) : w;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const uint32_t x = node.inputs[i];
      const uint64_t mask = node.input_parts.empty() ? ~uint64_t{0} : node.input_parts[i];
      for (uint32_t k = begin_[x]; k < begin_[x + 1]; ++k) {
        if (mask & Bit(x, k)) {
          need_[k] = std::max(need_[k], reach_w);
          last_read_[k] = std::max(last_read_[k], w);
        }
      }
    }
  }
}

bool Parts::Live(uint32_t v, uint32_t k, uint32_t from) const {
  return !free_parts_ || keep_[k] || k - begin_[v] >= 63 ||  // past the masks: kept whole
         (reach_.RecomputableToTheEnd(p_, v) ? last_read_[k] : need_[k]) >= from;
}

uint64_t Parts::GoneAt(uint32_t v, uint32_t from) const {
  uint64_t gone = 0;
  for (uint32_t k = begin_[v]; k < begin_[v + 1]; ++k) {
    if (!Live(v, k, from)) gone |= Bit(v, k);
  }
  return gone;
}

int64_t Parts::LiveBytes(uint32_t v, uint32_t from) const {
  int64_t bytes = 0;
  for (uint32_t k = begin_[v]; k < begin_[v + 1]; ++k) {
    if (Live(v, k, from)) bytes += bytes_[k];
  }
  return bytes;
}

}  // namespace memfit::remat
