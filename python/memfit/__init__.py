"""memfit's Python package: train PyTorch models under a memory limit, run memfit
graphs and plans with PyTorch, check them against torch.autograd, and capture
PyTorch programs as memfit graphs.

    import memfit
    step = memfit.fit(model, optimizer, F.cross_entropy, (x, y), mem_limit_ratio=0.6)
    loss = step(x, y)                          # one training step under the limit
    g = memfit.capture(model, (x,), loss_fn=lambda out: out.sum()).graph
    res = memfit.optimize(g, mem_limit_ratio=0.5, device="a100")   # the C++ optimizer, in-process
    out = memfit.run("bert.json")              # generated inputs, all phases

See docs/python.md. capture, fit, the generated code and the executors are
pure Python (torch only); optimize, simulate and plan_offsets need the native
module (memfit.native_available()). memfit.Error is the one error class of
both sides: the native module raises it too.

Modules, each importing only those above it (python/tests/test_package.py
checks there is no import cycle): graph (the format, Error, OpFlags);
plan_file; native; runner (runs one op: binding, reruns); sources; plan
(PlanRunner) and executor (memfit.run); dtr/ (live DTR); codegen, capture,
fit and the tools.
"""

from .graph import Error, Graph, NoPlanFits, Op, OpFlags, Tensor, load, save, to_dict, from_dict
from .runner import bind, DTYPES
from .sources import make_sources
from .executor import run
from .capture import capture, Captured
from . import plan
from .plan import execute, load_plan
from .dtr import dtr_run
from .codegen import compile_plan, CompiledPlan
from .fit import fit, FitStep, retain_cpu_memory
from .native import optimize, simulate, plan_offsets, native_available, OptimizeResult
from .partition import partition_fn, partitioner, backend

__all__ = ["Error", "Graph", "NoPlanFits", "Op", "OpFlags", "Tensor", "load", "save", "to_dict", "from_dict", "run",
           "make_sources", "bind", "DTYPES", "capture", "Captured", "plan", "execute", "load_plan", "dtr_run", "compile_plan",
           "CompiledPlan", "fit", "FitStep", "retain_cpu_memory", "optimize", "simulate", "plan_offsets", "native_available",
           "OptimizeResult", "partition_fn", "partitioner", "backend"]
