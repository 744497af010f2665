"""memfit's Python package: run memfit graphs with PyTorch, check them against
torch.autograd, and capture PyTorch programs as memfit graphs.

    import memfit
    out = memfit.run("bert.json")              # generated inputs, all phases
    loss = out["loss"]
    g = memfit.capture(model, (x,), loss_fn=lambda out: out.sum())

See docs/python.md.
"""

from .graph import Error, Graph, Op, Tensor, load, save, to_dict, from_dict
from .executor import run, make_sources, bind, DTYPES
from .capture import capture, Captured
from . import plan
from .plan import execute, load_plan
from .dtr import dtr_run

__all__ = ["Error", "Graph", "Op", "Tensor", "load", "save", "to_dict", "from_dict", "run", "make_sources",
           "bind", "DTYPES", "capture", "Captured", "plan", "execute", "load_plan", "dtr_run"]
