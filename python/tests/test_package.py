"""The package's shape: no import cycle between memfit's modules, public names
importable from where they always were, one memfit.Error for Python and
native errors."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "memfit"


def module_name(path: Path) -> str:
    parts = ["memfit", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def memfit_imports(path: Path, modules: set) -> set:
    """The memfit modules `path` imports anywhere in it (functions included: a lazy
    import is still a dependency)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import plan` imports the module memfit.plan; the native
            # extension (memfit._memfit) is no Python file and imports nothing of memfit.
            for a in node.names:
                if f"{target}.{a.name}" in modules:
                    found.add(f"{target}.{a.name}")
                elif f"{target}.{a.name}" != "memfit._memfit":
                    found.add(target)
    return {m for m in found if m in modules and m != name}


def import_graph():
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): memfit_imports(p, modules) for p in paths}


def find_cycle(graph):
    state = {}  # 1: on the stack, 2: done
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                cycle = visit(n)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    graph = import_graph()
    # Submodules importing the package itself would be a cycle through __init__.
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # The layering the package docstring states.
    assert graph["memfit.graph"] == set()
    assert graph["memfit.runner"] <= {"memfit.graph", "memfit.native"}
    assert "memfit.executor" not in graph["memfit.plan"]


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_public_names_stay_importable():
    import memfit
    from memfit.dtr import HEURISTICS, DtrRun, analyze, dtr_run, unconstrained_peak_bytes  # noqa: F401
    from memfit.executor import DTYPE_NAMES, MEMORY_FORMAT_NAMES, bind, make_sources, run  # noqa: F401
    from memfit.plan import Plan, PlanRun, PlanRunner, execute, is_plan, load_plan, program_order_plan  # noqa: F401

    assert memfit.dtr_run is dtr_run and memfit.execute is execute and memfit.run is run


def test_python_m_memfit_dtr_still_runs():
    out = subprocess.run([sys.executable, "-m", "memfit.dtr", "--help"], capture_output=True, text=True,
                         cwd=PACKAGE.parent, env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "--budget-ratio" in out.stdout
    assert "RuntimeWarning" not in out.stderr


def test_native_errors_are_memfit_error():
    import memfit
    from memfit import native

    if not native.native_available():
        pytest.skip("native module not built")
    with pytest.raises(memfit.Error) as info:
        native._native().validate('{"format": "memfit.graph", "version": 2}')
    assert type(info.value) is memfit.Error
    assert native._native().Error is memfit.Error


def test_pip_installs_every_subpackage():
    """pyproject.toml lists its packages by name: a new subpackage left out of it is
    missing from `pip install .` (memfit.dtr once was)."""
    import re

    text = (PACKAGE.parents[1] / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(memfit(?:\.[a-z_]+)*)"', re.search(r"^packages = \[(.*)\]", text, re.M).group(1)))
    present = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert present <= listed, f"not in pyproject.toml's packages: {sorted(present - listed)}"
