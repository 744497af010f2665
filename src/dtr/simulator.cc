// The DTR runtime. See simulator.h for the model; this file holds the state
// (Runtime) and the policies. Structure, mirroring simrd's RuntimeV2 family:
//
//   ModelCompute(op)   create the op's tensors, Materialize(first output)
//   Materialize(t)     touch parents, lock resident parents, recursively
//                      Materialize evicted parents and lock them, Free(room),
//                      Compute(t), unlock parents, check the overhead limit
//   Free(bytes)        evict Choose()n storages until the outputs fit
//   Compute(t)         advance the clock, allocate, mark t and its siblings
//                      defined, make new storages evictable, update regions
//                      / equivalence classes
//   Evict(s)           free s, undefine its tensors, update regions / classes
//
// Evicted neighbourhoods (h_DTR, h_MSPS) are cached per storage as two
// Regions (towards children and towards parents): the set of evicted storages
// reachable through evicted storages ("interior", with the sum of their
// costs) and the resident storages at its edge ("frontier"). Eviction of s
// lets every frontier storage absorb s's region; recomputation of s rebuilds
// the regions of s and of the storages on its frontier. This is simrd's
// incremental scheme, kept exactly (including its approximations) so that
// tie-breaks and scores match.
#include "dtr/simulator.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <random>

#include "util/enum_names.h"
#include "util/error.h"

namespace memfit::dtr {

constexpr EnumName<Heuristic> kHeuristicNames[] = {
    {Heuristic::kDtr, "dtr"}, {Heuristic::kDtrEqClass, "dtr-eq"}, {Heuristic::kDtrLocal, "dtr-local"},
    {Heuristic::kMsps, "msps"}, {Heuristic::kLru, "lru"}, {Heuristic::kLargest, "largest"},
    {Heuristic::kRandom, "random"}};

std::string_view ToString(Heuristic heuristic) { return NameOf(kHeuristicNames, heuristic); }

const std::vector<Heuristic>& AllHeuristics() {
  static const std::vector<Heuristic> all = {Heuristic::kDtr, Heuristic::kDtrEqClass,
                                             Heuristic::kDtrLocal, Heuristic::kMsps,
                                             Heuristic::kLru, Heuristic::kLargest,
                                             Heuristic::kRandom};
  return all;
}

std::optional<Heuristic> ParseHeuristic(std::string_view name) {
  return ValueNamed(kHeuristicNames, name);
}

constexpr EnumName<SimStatus> kSimStatusNames[] = {
    {SimStatus::kOk, "ok"}, {SimStatus::kOom, "oom"}, {SimStatus::kOverheadExceeded, "exceeded"}};

std::string_view ToString(SimStatus status) { return NameOf(kSimStatusNames, status); }

std::vector<double> PaperRatios() {
  return {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
}

namespace {

constexpr int64_t kNeverAccessed = std::numeric_limits<int64_t>::min();
constexpr uint32_t kNotInPool = std::numeric_limits<uint32_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Thrown inside the runtime to stop the replay (caught in Simulate).
struct Stop {
  SimStatus status;
};

// A set of storage ids kept as a sorted vector.
using IdSet = std::vector<uint32_t>;

void Insert(IdSet& set, uint32_t id) {
  auto it = std::lower_bound(set.begin(), set.end(), id);
  if (it == set.end() || *it != id) set.insert(it, id);
}

void Erase(IdSet& set, uint32_t id) {
  auto it = std::lower_bound(set.begin(), set.end(), id);
  if (it != set.end() && *it == id) set.erase(it);
}

struct Region {
  IdSet interior;   // evicted storages reachable through evicted storages
  IdSet frontier;   // resident storages at the edge
  int64_t compute_ns = 0;  // sum of the interior's costs (as accumulated)

  void Clear() {
    interior.clear();
    frontier.clear();
    compute_ns = 0;
  }
};

struct TensorState {
  StorageId storage;
  bool created = false;
  bool defined = false;
  int32_t refs = 0;                // external references
  std::vector<uint32_t> parents;   // TensorIds (the op's arguments; banishing detaches)
  std::vector<uint32_t> children;  // TensorIds computed from this one so far
};

struct StorageState {
  int64_t size_bytes = 0;
  int64_t compute_ns = 0;          // sum over the distinct ops of its tensors
  bool material = false;
  bool pinned = false;
  bool banished = false;
  bool kept = false;               // Program::storage_kept, until its last release
  int32_t locks = 0;               // simrd ref_int
  int32_t refs = 0;                // simrd ref_ext: references to any of its tensors
  std::vector<uint32_t> tensors;   // TensorIds; tensors[0] is the root
  int64_t last_access = kNeverAccessed;
  uint32_t pool_index = kNotInPool;
  Region region;                   // towards children
  Region region_rev;               // towards parents
  std::optional<uint32_t> eq_node; // union-find node while evicted (dtr-eq)
  IdSet evicted_dependents;        // banishing: evicted tensors computed from this storage
};

struct EqNode {
  uint32_t parent;
  int64_t compute_ns;
};

class Runtime {
 public:
  Runtime(const Program& program, const SimOptions& options, int64_t budget_bytes,
          double remat_limit_ns)
      : program_(program),
        options_(options),
        budget_(budget_bytes),
        remat_limit_ns_(remat_limit_ns),
        tensors_(program.tensors.size()),
        storages_(program.storage_bytes.size()),
        rng_(options.seed) {
    banishing_ = options.banishing;
    eager_ = options.eager_eviction || options.banishing;
    use_regions_ = !banishing_ &&
                   (options.heuristic == Heuristic::kDtr || options.heuristic == Heuristic::kMsps);
    use_eq_ = !banishing_ && options.heuristic == Heuristic::kDtrEqClass;
    visit_stamp_.assign(storages_.size(), 0);
    frontier_stamp_.assign(storages_.size(), 0);
    for (size_t i = 0; i < storages_.size(); ++i) {
      storages_[i].size_bytes = program.storage_bytes[i];
      storages_[i].kept = i < program.storage_kept.size() && program.storage_kept[i];
    }
  }

  void Run() {
    for (const Step& step : program_.steps) {
      switch (step.kind) {
        case StepKind::kCompute: ModelCompute(OpId(step.id)); break;
        case StepKind::kGet: Get(step.id); break;
        case StepKind::kPin: {
          if (!tensors_[step.id].defined) Materialize(step.id, /*remat=*/true);
          Pin(step.id);
          break;
        }
        case StepKind::kRelease: Release(step.id); break;
      }
    }
  }

  SimResult& result() { return result_; }
  int64_t memory() const { return memory_; }

 private:
  StorageState& S(uint32_t tensor) { return storages_[tensors_[tensor].storage.index()]; }
  uint32_t Sid(uint32_t tensor) const { return tensors_[tensor].storage.value; }

  // ---- The pool of evictable storages, in order of insertion. ----
  void PoolAdd(uint32_t s) {
    StorageState& st = storages_[s];
    if (st.pool_index != kNotInPool || st.kept) return;
    st.pool_index = static_cast<uint32_t>(pool_.size());
    pool_.push_back(s);
    ++pool_live_;
  }

  void PoolRemove(uint32_t s) {
    StorageState& st = storages_[s];
    if (st.pool_index == kNotInPool) return;
    pool_[st.pool_index] = kNotInPool;
    st.pool_index = kNotInPool;
    --pool_live_;
    if (pool_.size() > 64 && pool_.size() > 2 * pool_live_) PoolCompact();
  }

  void PoolCompact() {
    size_t out = 0;
    for (uint32_t s : pool_) {
      if (s == kNotInPool) continue;
      storages_[s].pool_index = static_cast<uint32_t>(out);
      pool_[out++] = s;
    }
    pool_.resize(out);
  }

  void Lock(uint32_t s) {
    StorageState& st = storages_[s];
    assert(st.material);
    if (st.locks == 0) PoolRemove(s);
    ++st.locks;
  }

  void Unlock(uint32_t s) {
    StorageState& st = storages_[s];
    assert(st.locks > 0);
    if (--st.locks == 0 && st.material) PoolAdd(s);
  }

  // ---- Reference counting. ----
  void Get(uint32_t t) {
    ++tensors_[t].refs;
    ++S(t).refs;
  }

  void Release(uint32_t t) {
    --tensors_[t].refs;
    StorageState& s = S(t);
    --s.refs;
    if (s.refs != 0) return;
    if (s.kept) {
      // Nothing reads its value any more: evictable from now on.
      s.kept = false;
      if (s.material && s.locks == 0 && !s.pinned) PoolAdd(Sid(t));
    }
    if (banishing_) {
      TryBanish(Sid(t));
    } else if (eager_ && s.material && !s.pinned) {
      assert(s.locks == 0);
      Evict(Sid(t));
      ++result_.eager_evictions;
      Event("release", s.tensors[0]);
    }
  }

  void Event(std::string_view what, uint32_t tensor) {
    if (options_.record_events) {
      result_.events.push_back(fmt::format("{} {}", what, program_.Name(TensorId(tensor))));
    }
  }

  void Pin(uint32_t t) {
    StorageState& s = S(t);
    if (s.pinned) return;
    Lock(Sid(t));
    s.pinned = true;
  }

  // ---- Creating and computing. ----
  void CreateTensors(const ProgramOp& op) {
    const uint32_t* args = program_.List(op.args);
    const uint32_t* outs = program_.List(op.outputs);
    for (uint32_t i = 0; i < op.outputs.size; ++i) {
      uint32_t t = outs[i];
      const ProgramTensor& pt = program_.tensors[t];
      TensorState& ts = tensors_[t];
      ts.created = true;
      ts.storage = pt.storage;
      ts.parents.assign(args, args + op.args.size);
      ts.refs = 1;
      StorageState& s = storages_[pt.storage.index()];
      // The storage's cost counts each op once (several views of one op).
      bool op_seen = false;
      for (uint32_t u : s.tensors) op_seen |= program_.tensors[u].op == pt.op;
      if (!op_seen) s.compute_ns += op.compute_ns;
      s.tensors.push_back(t);
      ++s.refs;
      if (banishing_) {
        for (uint32_t k = 0; k < op.args.size; ++k) {
          if (Sid(args[k]) != pt.storage.value) Insert(S(args[k]).evicted_dependents, t);
        }
      }
    }
    for (uint32_t k = 0; k < op.args.size; ++k) {
      std::vector<uint32_t>& children = tensors_[args[k]].children;
      children.insert(children.end(), outs, outs + op.outputs.size);
    }
  }

  void ModelCompute(OpId id) {
    const ProgramOp& op = program_.op(id);
    if (op.outputs.size == 0) {
      // An op without results (simrd cannot replay it): it runs once, on
      // resident arguments, and is never recomputed.
      const uint32_t* args = program_.List(op.args);
      for (uint32_t k = 0; k < op.args.size; ++k) {
        if (!tensors_[args[k]].defined) Materialize(args[k], /*remat=*/true);
      }
      clock_ += op.compute_ns;
      result_.compute_ns += op.compute_ns;
      ++result_.ops_replayed;
      return;
    }
    CreateTensors(op);
    const uint32_t* outs = program_.List(op.outputs);
    Materialize(outs[0], /*remat=*/false);
    for (uint32_t i = 0; i < op.outputs.size; ++i) S(outs[i]).last_access = clock_;
  }

  void Materialize(uint32_t t, bool remat) {
    assert(!tensors_[t].defined);
    // Copy: banishing may detach parents of t while we recurse.
    std::vector<uint32_t> parents = tensors_[t].parents;
    for (uint32_t p : parents) {
      StorageState& ps = S(p);
      if (!banishing_ || ps.refs > 0) ps.last_access = clock_;
    }
    std::vector<uint32_t> undefined;
    for (uint32_t p : parents) {
      if (tensors_[p].defined) {
        Lock(Sid(p));
      } else {
        undefined.push_back(p);
      }
    }
    for (uint32_t p : undefined) {
      if (!tensors_[p].defined) Materialize(p, /*remat=*/true);
      Lock(Sid(p));
    }
    const ProgramOp& op = program_.op(program_.tensors[t].op);
    if (memory_ + op.total_bytes > budget_) Free(op.total_bytes);
    std::vector<uint32_t> new_tensors = Compute(t, remat);
    for (uint32_t p : parents) {
      Unlock(Sid(p));
      if (banishing_) {
        StorageState& ps = S(p);
        for (uint32_t u : new_tensors) {
          if (Sid(u) != Sid(p)) Erase(ps.evicted_dependents, u);
        }
        TryBanish(Sid(p));
      }
    }
    if (static_cast<double>(result_.recompute_ns) > remat_limit_ns_) {
      throw Stop{SimStatus::kOverheadExceeded};
    }
  }

  // Runs t's op; returns t and the siblings it defined.
  std::vector<uint32_t> Compute(uint32_t t, bool remat) {
    const ProgramTensor& pt = program_.tensors[t];
    const ProgramOp& op = program_.op(pt.op);
    const uint32_t* outs = program_.List(op.outputs);
    std::vector<uint32_t> newly_defined;
    std::vector<uint32_t> dup_siblings;
    std::vector<uint32_t> new_storages;
    for (uint32_t i = 0; i < op.outputs.size; ++i) {
      uint32_t u = outs[i];
      if (u != t) (tensors_[u].defined ? dup_siblings : newly_defined).push_back(u);
    }
    for (uint32_t i = 0; i < op.outputs.size; ++i) {
      uint32_t u = outs[i];
      if (u != t && !S(u).material) new_storages.push_back(Sid(u));
    }
    if (!S(t).material) new_storages.push_back(Sid(t));

    clock_ += op.compute_ns;
    memory_ += op.total_bytes;
    result_.peak_bytes = std::max(result_.peak_bytes, memory_);
    ++result_.ops_replayed;
    if (remat) {
      result_.recompute_ns += op.compute_ns;
      ++result_.recomputations;
      Event("recompute", t);
    } else {
      result_.compute_ns += op.compute_ns;
    }

    S(t).material = true;
    tensors_[t].defined = true;
    for (uint32_t u : newly_defined) {
      S(u).material = true;
      tensors_[u].defined = true;
    }
    for (uint32_t u : dup_siblings) memory_ -= program_.tensors[u].size_bytes;
    for (uint32_t s : new_storages) {
      assert(storages_[s].locks == 0);
      PoolAdd(s);
    }
    if (use_regions_) RebuildRegionsAround(new_storages);
    if (use_eq_) {
      for (uint32_t s : new_storages) {
        StorageState& st = storages_[s];
        if (!st.eq_node) continue;  // first computation
        uint32_t root = Find(*st.eq_node);
        eq_[root].compute_ns -= st.compute_ns;
        st.eq_node.reset();
      }
    }
    newly_defined.push_back(t);
    return newly_defined;
  }

  // ---- Eviction. ----
  void Free(int64_t bytes) {
    while (memory_ + bytes > budget_) {
      if (pool_live_ == 0) throw Stop{SimStatus::kOom};
      uint32_t s = Choose();
      Evict(s);
      ++result_.evictions;
      Event("evict", storages_[s].tensors[0]);
    }
  }

  void Evict(uint32_t s) {
    StorageState& st = storages_[s];
    assert(st.locks == 0);
    st.material = false;
    memory_ -= st.size_bytes;
    PoolRemove(s);
    for (uint32_t t : st.tensors) tensors_[t].defined = false;
    if (banishing_) {
      for (uint32_t t : st.tensors) {
        for (uint32_t p : tensors_[t].parents) {
          if (Sid(p) != s) Insert(S(p).evicted_dependents, t);
        }
      }
    }
    if (use_regions_) {
      // Every resident storage at the edge of s's regions absorbs them.
      for (uint32_t ps : st.region_rev.frontier) {
        if (ps != s) Absorb(storages_[ps].region, s, /*reverse=*/false);
      }
      for (uint32_t cs : st.region.frontier) {
        if (cs != s) Absorb(storages_[cs].region_rev, s, /*reverse=*/true);
      }
      st.region.Clear();
      st.region_rev.Clear();
    }
    if (use_eq_) {
      uint32_t node = static_cast<uint32_t>(eq_.size());
      eq_.push_back({node, st.compute_ns});
      st.eq_node = node;
      ForEachEvictedNeighbour(s, [&](uint32_t n) {
        uint32_t l = Find(*storages_[n].eq_node);
        uint32_t r = Find(node);
        if (l == r) return;
        eq_[l].parent = r;
        eq_[r].compute_ns += eq_[l].compute_ns;
      });
    }
  }

  // simrd V1: a storage nobody refers to and no evicted tensor depends on is
  // freed for good; its tensors leave the graph and their children are
  // pinned (they can no longer be recomputed).
  void TryBanish(uint32_t s) {
    StorageState& st = storages_[s];
    if (st.banished || st.refs > 0 || !st.evicted_dependents.empty()) return;
    if (st.material) {
      st.locks = 0;
      Evict(s);
      ++result_.eager_evictions;
      Event("release", st.tensors[0]);
    }
    for (uint32_t t : st.tensors) {
      for (uint32_t p : tensors_[t].parents) {
        if (Sid(p) == s) continue;
        Erase(S(p).evicted_dependents, t);
        std::vector<uint32_t>& ch = tensors_[p].children;
        auto it = std::find(ch.begin(), ch.end(), t);
        if (it != ch.end()) ch.erase(it);
      }
      for (uint32_t c : tensors_[t].children) {
        if (Sid(c) == s) continue;
        std::vector<uint32_t>& pa = tensors_[c].parents;
        auto it = std::find(pa.begin(), pa.end(), t);
        if (it != pa.end()) pa.erase(it);
        if (S(c).material) Pin(c);
      }
    }
    st.banished = true;
  }

  template <typename F>
  void ForEachEvictedNeighbour(uint32_t s, F&& f) {
    // Distinct evicted storages adjacent to s (parents or children).
    ++stamp_;
    for (uint32_t t : storages_[s].tensors) {
      for (const std::vector<uint32_t>* list : {&tensors_[t].parents, &tensors_[t].children}) {
        for (uint32_t u : *list) {
          uint32_t us = Sid(u);
          if (us == s || storages_[us].material || visit_stamp_[us] == stamp_) continue;
          visit_stamp_[us] = stamp_;
          f(us);
        }
      }
    }
  }

  uint32_t Find(uint32_t node) {
    uint32_t root = node;
    while (eq_[root].parent != root) root = eq_[root].parent;
    while (eq_[node].parent != root) {
      uint32_t next = eq_[node].parent;
      eq_[node].parent = root;
      node = next;
    }
    return root;
  }

  // ---- Regions. ----
  void Rebuild(uint32_t base, bool reverse, Region& region) {
    assert(storages_[base].material);
    region.Clear();
    ++stamp_;
    std::vector<uint32_t> stack = {base};
    while (!stack.empty()) {
      uint32_t s = stack.back();
      stack.pop_back();
      for (uint32_t t : storages_[s].tensors) {
        const std::vector<uint32_t>& next = reverse ? tensors_[t].parents : tensors_[t].children;
        for (uint32_t u : next) {
          uint32_t us = Sid(u);
          StorageState& ust = storages_[us];
          if (ust.material) {
            if (us != base && frontier_stamp_[us] != stamp_) {
              frontier_stamp_[us] = stamp_;
              region.frontier.push_back(us);
            }
            continue;
          }
          if (visit_stamp_[us] != stamp_) {
            visit_stamp_[us] = stamp_;
            region.compute_ns += ust.compute_ns;
            region.interior.push_back(us);
            stack.push_back(us);
          }
        }
      }
    }
    std::sort(region.interior.begin(), region.interior.end());
    std::sort(region.frontier.begin(), region.frontier.end());
  }

  // `region` (of a resident storage, direction `reverse`) had the just-evicted
  // storage s on its frontier: take in s and s's region of the same direction.
  void Absorb(Region& region, uint32_t s, bool reverse) {
    const Region& other = reverse ? storages_[s].region_rev : storages_[s].region;
    Erase(region.frontier, s);
    IdSet merged;
    std::set_union(region.frontier.begin(), region.frontier.end(), other.frontier.begin(),
                   other.frontier.end(), std::back_inserter(merged));
    region.frontier.swap(merged);
    IdSet diff;
    std::set_difference(other.interior.begin(), other.interior.end(), region.interior.begin(),
                        region.interior.end(), std::back_inserter(diff));
    Insert(diff, s);
    for (uint32_t u : diff) region.compute_ns += storages_[u].compute_ns;
    merged.clear();
    std::set_union(region.interior.begin(), region.interior.end(), diff.begin(), diff.end(),
                   std::back_inserter(merged));
    region.interior.swap(merged);
  }

  void RebuildRegionsAround(const std::vector<uint32_t>& new_storages) {
    if (new_storages.empty()) return;
    IdSet affected, affected_rev;
    for (uint32_t s : new_storages) {
      StorageState& st = storages_[s];
      Rebuild(s, /*reverse=*/false, st.region);
      Rebuild(s, /*reverse=*/true, st.region_rev);
      affected.insert(affected.end(), st.region_rev.frontier.begin(), st.region_rev.frontier.end());
      affected_rev.insert(affected_rev.end(), st.region.frontier.begin(), st.region.frontier.end());
    }
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    std::sort(affected_rev.begin(), affected_rev.end());
    affected_rev.erase(std::unique(affected_rev.begin(), affected_rev.end()), affected_rev.end());
    for (uint32_t s : affected) Rebuild(s, /*reverse=*/false, storages_[s].region);
    for (uint32_t s : affected_rev) Rebuild(s, /*reverse=*/true, storages_[s].region_rev);
  }

  // ---- Heuristics. ----
  static double Ratio(int64_t numerator, __int128 denominator) {
    if (denominator <= 0) return kInf;
    return static_cast<double>(static_cast<long double>(numerator) /
                               static_cast<long double>(denominator));
  }

  double StalenessScore(const StorageState& st, int64_t cost_ns) const {
    __int128 staleness = static_cast<__int128>(clock_) - st.last_access;
    return Ratio(cost_ns, static_cast<__int128>(st.size_bytes) * staleness);
  }

  double Score(uint32_t s) {
    const StorageState& st = storages_[s];
    switch (options_.heuristic) {
      case Heuristic::kDtr: {
        if (banishing_) return UnoptimizedDtrScore(s);
        return StalenessScore(st, st.compute_ns + st.region.compute_ns + st.region_rev.compute_ns);
      }
      case Heuristic::kDtrEqClass: {
        if (banishing_) return UnoptimizedDtrScore(s);
        int64_t cost = st.compute_ns;
        // Each distinct class once.
        std::vector<uint32_t>& roots = scratch_;
        roots.clear();
        ForEachEvictedNeighbour(s, [&](uint32_t n) { roots.push_back(Find(*storages_[n].eq_node)); });
        std::sort(roots.begin(), roots.end());
        roots.erase(std::unique(roots.begin(), roots.end()), roots.end());
        for (uint32_t r : roots) cost += eq_[r].compute_ns;
        return StalenessScore(st, cost);
      }
      case Heuristic::kDtrLocal:
        return StalenessScore(st, st.compute_ns);
      case Heuristic::kMsps: {
        int64_t cost = st.compute_ns;
        if (banishing_) {
          Region r;
          Rebuild(s, /*reverse=*/true, r);
          cost += r.compute_ns;
        } else {
          cost += st.region_rev.compute_ns;
        }
        return Ratio(cost, st.size_bytes);
      }
      case Heuristic::kLru:
        return static_cast<double>(st.last_access);
      case Heuristic::kLargest:
        return st.size_bytes > 0 ? 1.0 / static_cast<double>(st.size_bytes) : kInf;
      case Heuristic::kRandom:
        return 0;  // not used: Choose draws directly
    }
    return kInf;
  }

  // simrd's DTRUnopt (used with banishing): cost of s and its whole evicted
  // neighbourhood, staleness from the most recent access among them.
  double UnoptimizedDtrScore(uint32_t s) {
    const StorageState& st = storages_[s];
    Region fwd, rev;
    Rebuild(s, false, fwd);
    Rebuild(s, true, rev);
    IdSet all;
    std::set_union(fwd.interior.begin(), fwd.interior.end(), rev.interior.begin(),
                   rev.interior.end(), std::back_inserter(all));
    int64_t cost = st.compute_ns;
    int64_t last = st.last_access;
    for (uint32_t u : all) {
      cost += storages_[u].compute_ns;
      last = std::max(last, storages_[u].last_access);
    }
    __int128 staleness = static_cast<__int128>(clock_) - last;
    return Ratio(cost, static_cast<__int128>(st.size_bytes) * staleness);
  }

  uint32_t Choose() {
    if (options_.heuristic == Heuristic::kRandom) {
      PoolCompact();
      std::uniform_int_distribution<size_t> pick(0, pool_.size() - 1);
      return pool_[pick(rng_)];
    }
    double best = kInf;
    uint32_t chosen = kNotInPool;
    for (size_t i = 0; i < pool_.size(); ++i) {
      uint32_t s = pool_[i];
      if (s == kNotInPool) continue;
      double score = Score(s);
      if (score <= best) {
        best = score;
        chosen = s;
      }
      if (score == 0) break;
    }
    assert(chosen != kNotInPool);
    return chosen;
  }

  const Program& program_;
  const SimOptions& options_;
  int64_t budget_;
  double remat_limit_ns_;
  bool banishing_ = false;
  bool eager_ = true;
  bool use_regions_ = false;
  bool use_eq_ = false;
  std::vector<TensorState> tensors_;
  std::vector<StorageState> storages_;
  std::vector<uint32_t> pool_;
  size_t pool_live_ = 0;
  std::vector<EqNode> eq_;
  std::vector<uint32_t> visit_stamp_;     // Rebuild / neighbour scans: seen this pass
  std::vector<uint32_t> frontier_stamp_;  // Rebuild: already on the frontier this pass
  uint32_t stamp_ = 0;
  std::vector<uint32_t> scratch_;
  int64_t clock_ = 1;  // simrd's clock starts at 1
  int64_t memory_ = 0;
  std::mt19937_64 rng_;
  SimResult result_;
};

}  // namespace

Baseline MeasureBaseline(const Program& program) {
  // Every storage is freed when its last reference goes (pinned ones too);
  // the peak is taken right after each op allocates its outputs.
  std::vector<int32_t> refs(program.storage_bytes.size(), 0);
  std::vector<bool> freed(program.storage_bytes.size(), false);
  int64_t memory = 0;
  Baseline baseline;
  for (const Step& step : program.steps) {
    switch (step.kind) {
      case StepKind::kCompute: {
        const ProgramOp& op = program.op(OpId(step.id));
        const uint32_t* outs = program.List(op.outputs);
        for (uint32_t i = 0; i < op.outputs.size; ++i) ++refs[program.tensors[outs[i]].storage.index()];
        memory += op.total_bytes;
        baseline.peak_bytes = std::max(baseline.peak_bytes, memory);
        baseline.compute_ns += op.compute_ns;
        break;
      }
      case StepKind::kGet:
        ++refs[program.tensors[step.id].storage.index()];
        break;
      case StepKind::kRelease: {
        StorageId s = program.tensors[step.id].storage;
        if (--refs[s.index()] == 0 && !freed[s.index()]) {
          freed[s.index()] = true;
          memory -= program.storage_bytes[s.index()];
        }
        break;
      }
      case StepKind::kPin:
        break;
    }
  }
  return baseline;
}

SimResult Simulate(const Program& program, const SimOptions& options,
                   const std::optional<Baseline>& baseline) {
  Baseline base = baseline ? *baseline : MeasureBaseline(program);
  // A ratio's budget saturates at the largest int64 (a ratio of 1e300 means
  // no limit); casting a double beyond int64 would be undefined.
  const double ratio_bytes = static_cast<double>(base.peak_bytes) * options.budget_ratio;
  int64_t budget = options.budget_bytes ? *options.budget_bytes
                   : ratio_bytes >= 0x1p63                ? std::numeric_limits<int64_t>::max()
                   : ratio_bytes > 0                      ? static_cast<int64_t>(ratio_bytes)
                                                          : 0;
  if (budget < 0) Fail("memory budget must not be negative (got {} bytes)", budget);
  if (options.overhead_limit && *options.overhead_limit < 1.0) {
    Fail("overhead limit must be at least 1 (got {})", *options.overhead_limit);
  }
  double remat_limit = options.overhead_limit
                           ? static_cast<double>(base.compute_ns) * (*options.overhead_limit - 1.0)
                           : std::numeric_limits<double>::infinity();
  Runtime runtime(program, options, budget, remat_limit);
  SimStatus status = SimStatus::kOk;
  try {
    runtime.Run();
  } catch (const Stop& stop) {
    status = stop.status;
  }
  SimResult result = std::move(runtime.result());
  if (options.record_events && status != SimStatus::kOk) {
    result.events.push_back(status == SimStatus::kOom ? "oom" : "exceeded");
  }
  result.status = status;
  result.budget_bytes = budget;
  result.baseline = base;
  result.overhead = base.compute_ns > 0
                        ? static_cast<double>(result.compute_ns + result.recompute_ns) /
                              static_cast<double>(base.compute_ns)
                        : 1.0;
  return result;
}

std::vector<SimResult> Sweep(const Program& program, SimOptions options,
                             const std::vector<double>& ratios) {
  Baseline base = MeasureBaseline(program);
  std::vector<SimResult> results;
  options.budget_bytes.reset();
  for (double ratio : ratios) {
    options.budget_ratio = ratio;
    results.push_back(Simulate(program, options, base));
  }
  return results;
}

}  // namespace memfit::dtr
