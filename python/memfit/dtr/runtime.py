"""The live DTR runtime: one graph's state while it runs under a budget (resident
storages, locks, the evictable pool, costs, the heuristics' scores); ops run
through the shared op runner (memfit.runner), so a rematerialization replays
random ops' RNG and undoes side effects as a plan's recompute does.
"""

from __future__ import annotations

import math
import random
import time
from typing import Dict, List, Optional, Set

import torch

from ..graph import Error, Graph, Op
from ..runner import OpRunner, call_overload, check_results, results_of, storage_key
from .analysis import _Analysis

HEURISTICS = ("dtr", "dtr-eq", "dtr-local", "msps", "lru", "largest", "random")


class _Runtime:
    """DTR state over one graph; _materialize / _compute / _free / _evict mirror src/dtr/simulator.cc."""

    def __init__(self, g: Graph, a: _Analysis, ops: OpRunner, env: Dict[int, torch.Tensor], budget: int,
                 heuristic: str, seed: int, costs: Optional[Dict[int, float]], result, record_events: bool):
        self.g, self.a, self.ops, self.env = g, a, ops, env
        self.budget = budget
        self.heuristic = heuristic
        self.costs = costs if costs is not None else {}
        self.measure = costs is None
        self.sync = torch.cuda.synchronize if ops.cuda else (lambda: None)
        self.r = result
        self.record = record_events
        self.rng = random.Random(seed)
        self.step = -1
        self.clock = 1.0  # simrd's clock starts at 1
        self.memory = sum(a.size_bytes[r] for r in a.tensors_of if g.tensors[r].producer is None)
        self.material: Set[int] = {r for r in a.tensors_of if g.tensors[r].producer is None}
        self.computed: Set[int] = set(self.material)  # storages computed at least once
        self.locks: Dict[int, int] = {}
        self.last_access: Dict[int, float] = {}
        self.cost: Dict[int, float] = {}  # c(s): the ops that produced s's tensors, each once
        self.cost_ops: Dict[int, Set[int]] = {}
        self.parents: Dict[int, Set[int]] = {}  # storage adjacency, as ops have run
        self.children: Dict[int, Set[int]] = {}
        self.pool: List[Optional[int]] = []  # evictable storages in the order they became evictable
        self.pool_index: Dict[int, int] = {}
        self.eq_parent: List[int] = []  # dtr-eq union-find
        self.eq_cost: List[float] = []
        self.eq_of: Dict[int, int] = {}
        # Torch storages referenced by env, by data pointer: [tensors referencing it, bytes].
        self.torch_storages: Dict[int, List[int]] = {}
        self.torch_bytes = 0
        for tid, value in env.items():
            self.track(value, +1)
        self.account()

    # ---- the evictable pool ----
    def eligible(self, s: int) -> bool:
        a = self.a
        return (s in self.material and not self.locks.get(s) and s not in a.pinned
                and (s in a.recomputable or self.step > a.last_use[s]))

    def pool_add(self, s: int) -> None:
        if s in self.pool_index or not self.eligible(s):
            return
        self.pool_index[s] = len(self.pool)
        self.pool.append(s)

    def pool_remove(self, s: int) -> None:
        i = self.pool_index.pop(s, None)
        if i is None:
            return
        self.pool[i] = None
        if len(self.pool) > 64 and len(self.pool) > 2 * len(self.pool_index):
            self.pool = [x for x in self.pool if x is not None]
            self.pool_index = {x: i for i, x in enumerate(self.pool)}

    def lock(self, s: int) -> None:
        self.locks[s] = self.locks.get(s, 0) + 1
        self.pool_remove(s)

    def unlock(self, s: int) -> None:
        self.locks[s] -= 1
        if self.locks[s] == 0:
            self.pool_add(s)

    def event(self, what: str, tid: int) -> None:
        if self.record:
            self.r.events.append(f"{what} {self.g.tensors[tid].name}")

    def track(self, value: torch.Tensor, delta: int) -> None:
        ptr, nbytes = storage_key(value)
        entry = self.torch_storages.setdefault(ptr, [0, 0])
        if entry[0] == 0:
            entry[1] = nbytes
            self.torch_bytes += nbytes
        entry[0] += delta
        if entry[0] == 0:
            self.torch_bytes -= entry[1]
            del self.torch_storages[ptr]

    def put(self, tid: int, value: torch.Tensor) -> None:
        self.env[tid] = value
        self.track(value, +1)

    def drop(self, tid: int) -> None:
        value = self.env.pop(tid, None)
        if value is not None:
            self.track(value, -1)

    def account(self) -> None:
        self.r.peak_bytes = max(self.r.peak_bytes, self.memory)
        self.r.tracked_peak_bytes = max(self.r.tracked_peak_bytes, self.torch_bytes)

    # ---- running ops ----
    def run_program_op(self, op: Op) -> None:
        a = self.a
        self.step = op.id
        self.materialize(op, remat=False)
        for t in op.outputs:
            self.last_access[a.root[t]] = self.clock
        for r in sorted({a.root[t] for t in list(op.inputs) + list(op.outputs)}):
            if a.last_use[r] == op.id and r not in a.pinned and r in self.material:
                self.evict(r)
                self.r.eager_evictions += 1
                self.event("release", r)

    def materialize(self, op: Op, remat: bool, target: Optional[int] = None) -> None:
        a, env = self.a, self.env
        parents = list(dict.fromkeys(op.inputs))
        for p in parents:
            self.last_access[a.root[p]] = self.clock
        undefined = []
        for p in parents:
            if p in env:
                self.lock(a.root[p])
            else:
                undefined.append(p)
        for p in undefined:
            if p not in env:
                producer = self.g.tensors[p].producer
                s = a.root[p]
                if producer is None or (s not in self.material and not self.step <= a.deadline.get(s, -1)):
                    raise Error(f"internal error: op '{self.g.ops[self.step].name}' needs "
                                f"'{self.g.tensors[p].name}', which is freed and may not be recomputed now")
                self.materialize(self.g.ops[producer], remat=True, target=p)
            self.lock(a.root[p])
        new = [a.root[t] for t in dict.fromkeys(op.outputs) if a.root[t] == t and t not in self.material]
        need = sum(a.size_bytes[s] for s in new)
        if self.memory + need > self.budget:
            self.free(need, op, remat)
        self.compute(op, remat, target, new)
        for p in parents:
            self.unlock(a.root[p])

    def compute(self, op: Op, remat: bool, target: Optional[int], new: List[int]) -> None:
        g, a, env = self.g, self.a, self.env
        fetch = env.__getitem__
        b, kwargs = self.ops.kwargs(op, fetch)
        with self.ops.running(op, fetch, rerun=remat):
            first = not remat and op.id not in self.costs
            if first:
                self.sync()
                start = time.perf_counter()
            results = results_of(op, call_overload(op, b.overload, kwargs))
            if first:
                self.sync()
                self.costs[op.id] = time.perf_counter() - start
        check_results(g, op, results, self.ops.dtype)
        del kwargs

        cost = self.costs[op.id]
        self.clock += cost
        self.memory += sum(a.size_bytes[s] for s in new)
        if remat:
            self.r.recompute_cost += cost
            self.r.recomputations += 1
            self.event("recompute", target if target is not None else op.outputs[0])
        else:
            self.r.compute_cost += cost
        for tid, value in zip(op.outputs, results):
            if tid not in env:
                self.put(tid, value)
        del results
        for s in new:
            self.material.add(s)
        if not remat:
            ins = {a.root[t] for t in op.inputs}
            for s in dict.fromkeys(a.root[t] for t in op.outputs):
                if op.id not in self.cost_ops.setdefault(s, set()):
                    self.cost_ops[s].add(op.id)
                    self.cost[s] = self.cost.get(s, 0.0) + cost
                for p in ins - {s}:
                    self.parents.setdefault(s, set()).add(p)
                    self.children.setdefault(p, set()).add(s)
                self.computed.add(s)
        for s in new:
            if s in self.eq_of:
                root = self.eq_find(self.eq_of.pop(s))
                self.eq_cost[root] -= self.cost[s]
            self.pool_add(s)
        self.account()

    def free(self, need: int, op: Op, remat: bool) -> None:
        while self.memory + need > self.budget:
            if not self.pool_index:
                where = f"op '{op.name}'"
                if remat:
                    where = f"op '{self.g.ops[self.step].name}' (recomputing '{op.name}')"
                raise Error(f"out of memory at {where}: need {need} bytes, budget {self.budget}, "
                            f"{self.memory} resident bytes all pinned/locked")
            s = self.choose()
            self.evict(s)
            self.r.evictions += 1
            self.event("evict", s)

    def evict(self, s: int) -> None:
        self.material.discard(s)
        self.memory -= self.a.size_bytes[s]
        self.pool_remove(s)
        for t in self.a.tensors_of[s]:
            self.drop(t)
        if self.heuristic == "dtr-eq":
            node = len(self.eq_parent)
            self.eq_parent.append(node)
            self.eq_cost.append(self.cost.get(s, 0.0))
            self.eq_of[s] = node
            for n in sorted(self.evicted_neighbours(s)):
                left, right = self.eq_find(self.eq_of[n]), self.eq_find(node)
                if left != right:
                    self.eq_parent[left] = right
                    self.eq_cost[right] += self.eq_cost[left]

    # ---- heuristics ----
    def evicted_neighbours(self, s: int) -> Set[int]:
        near = self.parents.get(s, set()) | self.children.get(s, set())
        return {n for n in near if n in self.computed and n not in self.material}

    def eq_find(self, node: int) -> int:
        root = node
        while self.eq_parent[root] != root:
            root = self.eq_parent[root]
        while self.eq_parent[node] != root:
            self.eq_parent[node], node = root, self.eq_parent[node]
        return root

    def evicted_closure_cost(self, s: int, edges: Dict[int, Set[int]]) -> float:
        """Sum of c over evicted storages reachable from s through evicted storages along `edges`."""
        seen: Set[int] = set()
        stack = [s]
        total = 0.0
        while stack:
            u = stack.pop()
            for v in edges.get(u, ()):
                if v in seen or v in self.material or v not in self.computed:
                    continue
                seen.add(v)
                total += self.cost.get(v, 0.0)
                stack.append(v)
        return total

    def staleness_score(self, s: int, cost: float) -> float:
        denominator = self.a.size_bytes[s] * (self.clock - self.last_access.get(s, self.clock))
        return cost / denominator if denominator > 0 else math.inf

    def score(self, s: int) -> float:
        h = self.heuristic
        c = self.cost.get(s, 0.0)
        if h == "dtr":
            return self.staleness_score(s, c + self.evicted_closure_cost(s, self.parents)
                                        + self.evicted_closure_cost(s, self.children))
        if h == "dtr-eq":
            roots = {self.eq_find(self.eq_of[n]) for n in self.evicted_neighbours(s)}
            return self.staleness_score(s, c + sum(self.eq_cost[r] for r in roots))
        if h == "dtr-local":
            return self.staleness_score(s, c)
        if h == "msps":
            size = self.a.size_bytes[s]
            return (c + self.evicted_closure_cost(s, self.parents)) / size if size > 0 else math.inf
        if h == "lru":
            return self.last_access.get(s, 0.0)
        if h == "largest":
            size = self.a.size_bytes[s]
            return 1.0 / size if size > 0 else math.inf
        raise AssertionError(h)

    def choose(self) -> int:
        live = [s for s in self.pool if s is not None]
        if self.heuristic == "random":
            return live[self.rng.randrange(len(live))]
        best, chosen = math.inf, live[-1]
        for s in live:
            score = self.score(s)
            if score <= best:
                best, chosen = score, s
            if score == 0:
                break
        return chosen
