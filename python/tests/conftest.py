"""Shared fixtures: the memfit CLI and zoo graphs built with it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))


def find_cli():
    """$MEMFIT_CLI, a build*/bin/memfit of this checkout, or memfit on the PATH."""
    from memfit.report import find_cli as find_built_cli

    return find_built_cli() or shutil.which("memfit")


@pytest.fixture(scope="session")
def memfit_cli():
    cli = find_cli()
    if not cli:
        pytest.skip("memfit CLI not found (set MEMFIT_CLI)")
    return cli


@pytest.fixture(scope="session")
def zoo(memfit_cli, tmp_path_factory):
    """zoo("mlp", "--batch", "4", "--train") -> path of the graph JSON (cached)."""
    cache = {}
    out_dir = tmp_path_factory.mktemp("zoo")

    def build(name, *args):
        key = (name,) + tuple(args)
        if key not in cache:
            path = out_dir / f"{len(cache)}_{name}.json"
            subprocess.run([memfit_cli, "zoo", name, *args, "-o", str(path)], check=True, capture_output=True, text=True)
            cache[key] = path
        return cache[key]

    return build
