"""python/bench/gpu_check.py as the GPU machine will use it: plans prepared here
(native module), then run where there is no native module (Python 3.12, torch
2.x, none of Debian's C++ libraries). Here the run side gets the native module
hidden (sys.modules entries set to None: `import _memfit` raises ImportError)
and runs on the CPU, with tiny stand-ins for resnet-50 and the encoder so the
test stays fast; the plans are made for the h200 profile as the real ones, so
they recompute and swap (plain copies on the CPU). The run side also trains
each plan with memfit.fit(plan=...) against eager from the same seed: losses
torch.equal (the plans' recomputed dropout and BatchNorm need the op flags the
plan file carries; without them and without the native module it would fail), and the
interpreter (memfit.plan.execute) gives the generated code's results on every plan."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import memfit

ROOT = Path(__file__).resolve().parents[2]
needs_native = pytest.mark.skipif(not memfit.native_available(), reason="native module _memfit not built")

TINY = '''
import torch, torch.nn as nn
from memfit.examples import TinyBert


def make(name, device, small=False):
    """Tiny stand-ins with gpu_check.make's signature: activations dominate, as at full size."""
    torch.manual_seed(0)
    if name == "resnet50":
        blocks = [nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()]
        for _ in range(5):
            blocks += [nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()]
        model = nn.Sequential(*blocks, nn.MaxPool2d(4), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, opt, (torch.randn(8, 3, 32, 32, device=device), torch.randint(0, 10, (8,), device=device))
    model = TinyBert(vocab=50, hidden=32, heads=2, layers=2, seq=32, classes=2, dropout=0.1).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 50, (8, 32), device=device)
    return model, opt, (ids, torch.randint(0, 2, (8,), device=device))
'''

RUN = '''
import sys
sys.modules["_memfit"] = None  # the GPU machine has no native module
sys.modules["memfit._memfit"] = None
sys.path[:0] = [{bench!r}, {here!r}]
import json, os
import torch, torch.nn.functional as F
import memfit, gpu_check, tiny
assert not memfit.native_available()
gpu_check.make = tiny.make
out = {out!r}
gpu_check.run(out, repeats=1, device="cpu", costs=True)
manifest = json.load(open(os.path.join(out, "manifest.json")))
for name, plans in manifest["models"].items():
    for ratio, entry in plans.items():
        model, opt, inputs = tiny.make(name, "cpu")
        twin, twin_opt, _ = tiny.make(name, "cpu")  # the same seed: the same model
        step = memfit.fit(model, opt, F.cross_entropy, inputs, plan=os.path.join(out, entry["plan"]))
        kinds = {{s["kind"] for s in step.last.plan.steps}}
        for i in range(3):
            torch.manual_seed(i)
            loss = step(*inputs)
            torch.manual_seed(i)
            twin_opt.zero_grad(set_to_none=True)
            eager = F.cross_entropy(twin(inputs[0]), inputs[1])
            eager.backward()
            twin_opt.step()
            assert torch.equal(loss, eager.detach()), (name, ratio, i, loss, eager)
        print("equal", name, ratio, ",".join(sorted(kinds)))
from memfit.plan import execute, load_plan  # the interpreter too, on the same plans


def same(x, y):  # fit's plans hold placeholder optimizer numbers: NaN where fit fills in real ones
    return torch.equal(x, y) or (x.is_floating_point() and torch.equal(x.isnan(), y.isnan())
                                 and torch.equal(x.nan_to_num(), y.nan_to_num()))


for name, plans in manifest["models"].items():
    for ratio, entry in plans.items():
        plan = load_plan(os.path.join(out, entry["plan"]))
        sources = memfit.make_sources(plan.graph, seed=0)
        compiled = memfit.compile_plan(plan).run({{k: v.clone() for k, v in sources.items()}}, seed=0)
        interpreted = execute(plan, {{k: v.clone() for k, v in sources.items()}}, seed=0, track_memory=False).outputs
        assert all(same(interpreted[k], compiled[k]) for k in interpreted), (name, ratio)
print("executed")
'''


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "python" / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_native
def test_prepared_plans_run_without_the_native_module(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY)
    sys.path.insert(0, str(tmp_path))
    try:
        import tiny
        gpu_check = load_gpu_check()
        gpu_check.make = tiny.make
        out = tmp_path / "plans"
        gpu_check.prepare(str(out), "h200", [1.0, 0.6], 50)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tiny", None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["models"]) == {"resnet50", "bert-base"}
    for plans in manifest["models"].values():
        assert set(plans) == {"1.0", "0.6"} and all("plan" in e for e in plans.values()), plans
        assert plans["0.6"]["optimized"]["peak_bytes"] <= 0.6 * plans["0.6"]["original"]["peak_bytes"]
    script = tmp_path / "run.py"
    script.write_text(RUN.format(bench=str(ROOT / "python" / "bench"), here=str(tmp_path), out=str(out)))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "native module: False" in r.stdout
    for name in ("resnet50", "bert-base"):  # --costs: the device's table, workspace measured
        table = json.loads((out / f"{name}.costs.json").read_text())
        assert table["entries"] and all("workspace_bytes" in e for e in table["entries"])
    rows = [line.split() for line in r.stdout.splitlines()]
    for name in ("resnet50", "bert-base"):
        assert [row[1] for row in rows if row[:1] == [name] and "eager" in row] == ["eager"]
        assert sorted(row[1] for row in rows if row[:1] == [name] and "memfit" in row) == ["0.60", "1.00"]
    assert rows[-1] == ["executed"]
    equal = [row for row in rows if row[:1] == ["equal"]]
    assert len(equal) == 4, r.stdout
    # At 0.6 each plan recomputes or swaps: the op flags came from the plan file.
    assert all({"recompute", "swap_out"} & set(row[3].split(",")) for row in equal if row[2] == "0.6"), equal


def test_prepare_records_a_ratio_no_plan_reaches(tmp_path, monkeypatch):
    """A cell no plan reaches is recorded and printed; run prints it as "no plan" and goes on."""
    gpu_check = load_gpu_check()

    def fail(*args, **kwargs):
        raise memfit.Error("memory limit 1 B cannot be met for 'X' on h200: the parameters alone take 2 B")

    monkeypatch.setattr(gpu_check.memfit, "fit", fail)
    monkeypatch.setattr(gpu_check, "MODELS", ("resnet50",))
    monkeypatch.setattr(gpu_check, "make", lambda name, device, small=False: (None, None, None))
    gpu_check.prepare(str(tmp_path), "h200", [0.5], 10)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["models"] == {"resnet50": {"0.5": {"error": "memory limit 1 B cannot be met for 'X' on h200: "
                                                                "the parameters alone take 2 B"}}}
    assert gpu_check.SMALL_RATIOS == (1.0, 0.8) and gpu_check.FULL_RATIOS == (1.0, 0.5)


@needs_native
def test_prepare_adds_fissioned_plans_that_fit_binds(tmp_path, memfit_cli, monkeypatch):
    """--fission-parts: the captured step split along the batch by the CLI, planned in
    program order; fit(plan=...) binds it to a fresh model and trains equal to the
    unsplit plan (dropout on: the split draws the same masks)."""
    import torch
    import torch.nn.functional as F

    monkeypatch.setenv("MEMFIT_CLI", memfit_cli)
    gpu_check = load_gpu_check()
    out = tmp_path / "plans"
    gpu_check.prepare(str(out), "h200", [1.0], 50, small=True, models=["bert-s512"], fission_parts=[2])
    plans = json.loads((out / "manifest.json").read_text())["models"]["bert-s512"]
    assert set(plans) == {"1.0", "x2"} and "plan" in plans["x2"], plans
    assert any(k.startswith("fission.") for k in memfit.load(str(out / "bert-s512-x2.graph.json")).metadata)
    trained = []
    for key in ("1.0", "x2"):
        model, opt, inputs = gpu_check.make("bert-s512", "cpu", small=True)
        step = memfit.fit(model, opt, F.cross_entropy, inputs, plan=str(out / plans[key]["plan"]))
        torch.manual_seed(1)
        losses = [step(*inputs).item() for _ in range(2)]
        trained.append((losses, [p.detach().clone() for p in model.parameters()]))
    (whole_losses, whole_params), (split_losses, split_params) = trained
    assert whole_losses == pytest.approx(split_losses, rel=1e-5)
    # Adam moves a weight by about lr * sign(gradient) per step: where a
    # gradient is rounding noise (the split sums it in another order) the
    # two may step apart by up to 2 lr (f64 equality: test_fission.py).
    lr = 1e-4
    for w, s in zip(whole_params, split_params):
        assert (w - s).abs().max().item() <= 2 * lr * len(whole_losses)
    assert gpu_check.label("x2") == "x2" and gpu_check.label("0.5") == "0.50"
