"""A live DTR runtime: runs a memfit graph with real torch tensors under a byte budget.

    import memfit
    r = memfit.dtr_run("bert.json", budget_ratio=0.5, heuristic="dtr")
    r.outputs["loss"], r.evictions, r.recomputations, r.overhead

    python3 -m memfit.dtr GRAPH.json (--budget-ratio R | --budget BYTES) [--heuristic H] [--verify] [--json]

Dynamic Tensor Rematerialization (Kirisame et al., ICLR 2021) executes a
program op by op and, whenever an op's outputs do not fit in the budget,
evicts resident tensors chosen by a heuristic; an evicted tensor needed
again is recomputed by rerunning its producer, recursively. This module does
that for real, on the ops of a memfit graph (through memfit.runner, as
memfit.run executes them), and mirrors the trace simulator of src/dtr
(docs/dtr.md):

  - Memory is counted per storage (a view shares its base's storage), from
    the graph's declared shapes and dtypes; every resident storage counts,
    sources (parameters, buffers, inputs, optimizer states) included.
  - Running an op: touch its inputs (last access = now), lock the resident
    ones, make the evicted ones resident (recursively) and lock them, evict
    unlocked evictable storages lowest score first until the op's new
    storages fit, run the op, unlock. Nothing evictable: memfit.Error "out of
    memory". Ties go to the storage that became evictable last; a score of
    exactly 0 is taken at once.
  - Eager eviction: a storage is freed right after its last use in program
    order, but stays in the graph, so a later recomputation may rebuild it.
  - A view is redefined by rerunning its view op on its (rematerialized) base;
    evicting a storage undefines all its views.
  - Sources and storages holding graph outputs are pinned (never evicted).

Correctness rules (so that the outputs equal eager memfit.run bit for bit):

  - An op that writes in place (a schema argument marked ``(a!)``: optimizer
    updates, ``add_``, ``copy_``) is never recomputed, and a storage it writes
    is never evicted (only freed after its last use).
  - An op that writes inputs as a side effect (the graph's op flags say it
    ``mutates`` them: BatchNorm's running statistics, which its outputs do
    not read in training) may be recomputed, and those writes are undone (the
    inputs are saved before and restored after the recomputation, by the op
    runner, as a plan's recompute does), so they are updated once.
  - A storage is evictable (recomputable) only while rerunning its producer
    reads the values the first run read. One pass in program order gives each
    storage a deadline: the last op before which no input storage of its
    producer (following views to their base) has been written since the
    producer ran, and every input storage is pinned, itself recomputable
    (its deadline applies), or still resident (not past its last use). A
    storage is evictable when its last use is within its deadline; storages
    computed from it then have earlier deadlines, so it is never needed for a
    recomputation past its own. (On training graphs this keeps the weight
    gradients resident: the optimizer reads them after its first update.)
  - Random ops (op flag ``random``: dropout) save torch's RNG state at their
    first run and replay it on recomputation (restoring the state after), so
    torch's RNG stream in program order is the eager one and recomputed masks
    are bit-identical.

The op flags come from the graph (written by memfit's C++ side) or, for a
graph without them, from the native module (memfit.graph's docstring).

The package: analysis (what may be evicted, deadlines), costs, runtime (the
state and the heuristics), api (dtr_run, DtrRun), cli (``python3 -m
memfit.dtr``).

Heuristics (lower score is evicted first; c(s) = cost of the ops that
produced s's tensors, |s| its bytes, staleness = clock - last access; the
clock advances by each op's cost, recomputations included):

  dtr        (c(s) + c(evicted neighbourhood of s)) / (|s| x staleness); the
             neighbourhood is the evicted storages reachable from s through
             evicted storages towards its parents and towards its children
             (computed exactly; simrd caches an approximation of it)
  dtr-eq     like dtr, the neighbourhood approximated by union-find classes of
             evicted storages (a class's cost is decremented on recomputation)
  dtr-local  c(s) / (|s| x staleness)
  msps       (c(s) + c(evicted ancestors of s)) / |s|
  lru        last access
  largest    1 / |s|
  random     uniform, from `seed`

Costs: by default a deterministic estimate from the graph (bytes read and
written plus 2 x multiply-adds of matmuls and convolutions), so runs are
reproducible; costs="measured" times each op's first execution (as the DTR
prototype does); a dict op name -> seconds, or a memfit cost table
(python -m memfit.profile) are also accepted.
"""

from .analysis import analyze, unconstrained_peak_bytes
from .api import DtrRun, dtr_run
from .cli import main
from .costs import estimate_cost
from .runtime import HEURISTICS

__all__ = ["HEURISTICS", "DtrRun", "analyze", "dtr_run", "estimate_cost", "main", "unconstrained_peak_bytes"]
