"""memfit.fit on a CUDA machine: measured peak and step time against eager and the simulator.

    # here (the native module, any CPU): capture and plan for the GPU's profile
    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/gpu_check.py prepare gpu_plans --profile h200
    # on the CUDA machine (torch 1.13 or 2.x, no native module, nothing fetched)
    PYTHONPATH=python python3 python/bench/gpu_check.py run gpu_plans

prepare: for resnet-50 (batch 64, 224x224, SGD with momentum) and a
BERT-base-size encoder (hidden 768, 12 layers, 12 heads, vocab 30522, seq 128,
batch 32, Adam), memfit.fit captures the step (fake tensors: nothing runs) and
memfit.optimize plans it at each --ratios of the simulated peak for the
device profile; the plans go to OUT/<model>-<ratio>.plan.json with
OUT/manifest.json (the simulator's figures of program order and of each plan).
A ratio no plan reaches is recorded in the manifest with memfit's reason and
printed; the other cells go on (run prints it as "no plan").

--small: CPU-sized models to check the script here (resnet-50 at batch 2,
64x64; the encoder 2 layers of width 64). Their ratios default to 1.0 and
0.8, not 0.5: at that size resnet-50's parameters and momentum (195 MiB) are
most of its step (300 MiB), and the least memfit reaches is 0.73 of the peak
(0.5 would leave 150 MiB, under the parameters and momentum alone). The
activations only dominate at sizes a CPU check cannot afford: at batch 16,
112x112 the floor is still 0.71.

run: per model, eager training (warm-up, then --repeats timed steps,
torch.cuda.synchronize around each) and memfit.fit(..., plan=<the plan>) at
each ratio (the generated step: direct ATen calls, swaps on a side stream
into pinned host buffers) on a fresh model each, printing
torch.cuda.max_memory_allocated during the timed steps and the median step
time, against the simulator's prediction. Only the pure-Python side runs
there. With --costs it also profiles each model's step on the device
(memfit.profile, ops timed inside the generated step, workspace measured) into
OUT/<model>.costs.json: carried back, `memfit simulate OUT/<model>-<ratio>.plan.json
--device h200 --costs OUT/<model>.costs.json` is the simulator with the GPU's
own measured costs.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import memfit
from memfit.examples import TinyBert

MODELS = ("resnet50", "bert-base")


def Encoder(vocab=30522, hidden=768, heads=12, layers=12, seq=128, classes=2, dropout=0.1):
    """A BERT-base-size encoder (torch.nn only; memfit.examples.TinyBert at BERT-base's sizes)."""
    return TinyBert(vocab=vocab, hidden=hidden, heads=heads, layers=layers, seq=seq, classes=classes, dropout=dropout)


def make(name, device, small=False):
    """(model, optimizer, inputs) on `device`, the same every time (seeded); small: a
    CPU-sized version for checking this script (batch 2, 64x64; 2 layers of width 64)."""
    torch.manual_seed(0)
    if name == "resnet50":
        import torchvision

        batch, image = (2, 64) if small else (64, 224)
        model = torchvision.models.resnet50().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(batch, 3, image, image, device=device)
        y = torch.randint(0, 1000, (batch,), device=device)
        return model, opt, (x, y)
    # bert-s512: MAGIS's BERT-base workload (batch 32, seq 512), where
    # activations dominate and fission splits the step along the batch.
    seq = (8 if small else 512) if name == "bert-s512" else 128
    model = (Encoder(vocab=100, hidden=64, heads=4, layers=2, seq=seq) if small else Encoder(seq=seq)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = 2 if small else 32
    ids = torch.randint(0, 100 if small else 30522, (batch, seq), device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    return model, opt, (ids, y)


FULL_RATIOS = (1.0, 0.5)
SMALL_RATIOS = (1.0, 0.8)  # --small: see the module docstring


def prepare(out, profile, ratios, work_budget, small=False, models=None, fission_parts=(), lat_ratios=()):
    os.makedirs(out, exist_ok=True)
    manifest = {"profile": profile, "torch": torch.__version__, "small": small, "models": {}}
    for name in models or MODELS:
        for ratio in ratios:
            model, opt, inputs = make(name, "cpu", small)
            t0 = time.perf_counter()
            try:
                step = memfit.fit(model, opt, F.cross_entropy, inputs, mem_limit_ratio=ratio, device=profile,
                                  work_budget=work_budget)
            except memfit.Error as e:
                reason = str(e).splitlines()[0]
                manifest["models"].setdefault(name, {})[str(ratio)] = {"error": reason}
                print(f"{name} at {ratio}: no plan: {reason}", flush=True)
                continue
            path = os.path.join(out, f"{name}-{ratio}.plan.json")
            step.save_plan(path)
            fig = step.last.figures
            manifest["models"].setdefault(name, {})[str(ratio)] = {
                "plan": os.path.basename(path), "original": fig["original"], "optimized": fig["optimized"],
                "method": fig["method"], "ops": len(step.last.graph.ops)}
            print(f"{name} at {ratio}: {len(step.last.graph.ops)} ops, simulated peak "
                  f"{fig['original']['peak_bytes'] / 2**30:.2f} -> {fig['optimized']['peak_bytes'] / 2**30:.2f} GiB, "
                  f"latency {fig['original']['latency_ms']:.1f} -> {fig['optimized']['latency_ms']:.1f} ms "
                  f"({fig['method']}; {time.perf_counter() - t0:.0f} s)", flush=True)
        if fission_parts or lat_ratios:
            plans = manifest["models"].setdefault(name, {})
            base = next((e["plan"] for e in plans.values() if "plan" in e), None)
            if base is None:
                print(f"{name}: no plan to split (fission and latency-limit plans start from one)", flush=True)
                continue
            plans.update(prepare_cli_plans(out, name, os.path.join(out, base), profile, fission_parts, lat_ratios))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def prepare_cli_plans(out, name, base_plan, profile, fission_parts, lat_ratios):
    """Plans of the captured step in `base_plan` made with the CLI (MEMFIT_CLI, default
    build/bin/memfit): split along the batch into each of `fission_parts` (memfit
    fission) and run in the split graph's program order, keyed "xN"; and memfit
    optimize's plan at each of `lat_ratios` (fission on), keyed "latR". Each gets the
    base plan's traced constants, so that fit(plan=...) binds it like the others."""
    import shutil
    import subprocess

    from memfit.plan import load_plan

    cli = os.environ.get("MEMFIT_CLI", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin", "memfit"))
    graph = os.path.join(out, f"{name}.graph.json")
    memfit.save(load_plan(base_plan).graph, graph)
    jobs = [(f"x{n}", ["fission", graph, "--dim", "batch", "--parts", str(n)], ["--mem-limit-ratio", "1.0"])
            for n in fission_parts]
    jobs += [(f"lat{r}", None, ["--lat-limit-ratio", str(r), "--deterministic"]) for r in lat_ratios]
    entries = {}
    for key, split, limit in jobs:
        source = graph
        if split:
            source = os.path.join(out, f"{name}-{key}.graph.json")
            subprocess.run([cli, *split, "-o", source], check=True, capture_output=True, text=True)
        path = os.path.join(out, f"{name}-{key}.plan.json")
        done = subprocess.run([cli, "optimize", source, "--device", profile, *limit, "--json", "-q", "-o", path],
                              capture_output=True, text=True)
        if done.returncode != 0:
            entries[key] = {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
            print(f"{name} {key}: no plan: {entries[key]['error']}", flush=True)
            continue
        fig = json.loads(done.stdout)
        if os.path.exists(base_plan + ".constants.pt"):
            shutil.copyfile(base_plan + ".constants.pt", path + ".constants.pt")
        entries[key] = {"plan": os.path.basename(path), "original": fig["original"], "optimized": fig["optimized"],
                        "method": fig["method"], "ops": None}
        print(f"{name} {key}: simulated peak {fig['optimized']['peak_bytes'] / 2**30:.2f} GiB, "
              f"latency {fig['optimized']['latency_ms']:.1f} ms ({fig['method']})", flush=True)
    return entries


def measure(step_fn, repeats, cuda=True):
    """(peak bytes allocated during the timed steps (0 off CUDA), median seconds)."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step_fn()  # warm-up (creates optimizer state, allocator caches)
    step_fn()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step_fn()
        sync()
        times.append(time.perf_counter() - t0)
    return (torch.cuda.max_memory_allocated() if cuda else 0), statistics.median(times)


def eager_step(model, opt, inputs):
    def run():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs[0]), inputs[1])
        loss.backward()
        opt.step()
    return run


def profile_costs(out, name, plans, device):
    """The device's cost table of the model's step (memfit.profile: every op timed inside
    the generated step, with its measured workspace) to OUT/<name>.costs.json, for
    `memfit simulate PLAN --device PROFILE --costs` back where the native module is."""
    from memfit.plan import load_plan
    from memfit.profile import profile

    entry = next((e for e in plans.values() if "plan" in e), None)
    if entry is None:
        return None
    t0 = time.perf_counter()
    graph = load_plan(os.path.join(out, entry["plan"])).graph
    table = profile(graph, device=device, warmup=1, repeats=3)
    path = os.path.join(out, f"{name}.costs.json")
    with open(path, "w") as f:
        json.dump(table, f)
    print(f"{name}: cost table of {len(table['entries'])} entries in {path} ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    return path


def label(key):
    """A plan's column: its memory limit ratio ("0.50"), or "x4" / "lat1.1" (prepare_cli_plans)."""
    try:
        return f"{float(key):.2f}"
    except ValueError:
        return key


def run(out, repeats, device="cuda", costs=False):
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("run needs CUDA (--device cpu checks the script on plans made with prepare --small)")
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    small = manifest.get("small", False)
    empty_cache = torch.cuda.empty_cache if cuda else (lambda: None)
    print(f"{torch.cuda.get_device_name() if cuda else 'cpu'}, torch {torch.__version__}, plans for profile {manifest['profile']} "
          f"(made with torch {manifest['torch']}); native module: {memfit.native_available()}")
    print(f"{'model':<10} {'ratio':>5} {'what':<7} {'peak GiB':>9} {'sim GiB':>8} {'step ms':>8} {'sim ms':>7}")
    for name, plans in manifest["models"].items():
        model, opt, inputs = make(name, device, small)
        peak, t = measure(eager_step(model, opt, inputs), repeats, cuda)
        first = next((p for p in plans.values() if "error" not in p), None)
        sim_peak = f"{first['original']['peak_bytes'] / 2**30:>8.2f}" if first else f"{'-':>8}"
        sim_ms = f"{first['original']['latency_ms']:>7.1f}" if first else f"{'-':>7}"
        print(f"{name:<10} {'':>5} {'eager':<7} {peak / 2**30:>9.2f} {sim_peak} {t * 1e3:>8.1f} {sim_ms}", flush=True)
        del model, opt, inputs
        empty_cache()
        for ratio, entry in plans.items():
            if "error" in entry:
                print(f"{name:<10} {label(ratio):>5} {'memfit':<7} no plan: {entry['error']}", flush=True)
                continue
            model, opt, inputs = make(name, device, small)
            step = memfit.fit(model, opt, F.cross_entropy, inputs, plan=os.path.join(out, entry["plan"]))
            peak, t = measure(lambda: step(*inputs), repeats, cuda)
            print(f"{name:<10} {label(ratio):>5} {'memfit':<7} {peak / 2**30:>9.2f} "
                  f"{entry['optimized']['peak_bytes'] / 2**30:>8.2f} {t * 1e3:>8.1f} "
                  f"{entry['optimized']['latency_ms']:>7.1f}", flush=True)
            del model, opt, inputs, step
            empty_cache()
        if costs:
            try:
                profile_costs(out, name, plans, device)
            except Exception as e:  # the measurements above stand; say why the table is missing
                print(f"{name}: no cost table: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                      flush=True)
            empty_cache()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["prepare", "run"])
    ap.add_argument("out", help="the plans' directory")
    ap.add_argument("--profile", default="h200", help="prepare: memfit device profile of the GPU (default h200)")
    ap.add_argument("--ratios", nargs="+", type=float,
                    help=f"prepare: of the simulated peak (default {' '.join(map(str, FULL_RATIOS))}; "
                         f"--small: {' '.join(map(str, SMALL_RATIOS))})")
    ap.add_argument("--models", nargs="+", choices=list(MODELS) + ["bert-s512"],
                    help=f"prepare: the models (default {' '.join(MODELS)}; bert-s512: the encoder at batch 32, "
                         "seq 512, MAGIS's BERT-base)")
    ap.add_argument("--fission-parts", nargs="+", type=int, default=[],
                    help="prepare: also the step split along the batch into these many parts, in program order "
                         "(memfit fission and optimize through MEMFIT_CLI)")
    ap.add_argument("--lat-ratios", nargs="+", type=float, default=[],
                    help="prepare: also memfit optimize's plan at these latency limits (fission on)")
    ap.add_argument("--work-budget", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="prepare: CPU-sized models (to check this script)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="run: cpu checks the script")
    ap.add_argument("--costs", action="store_true",
                    help="run: also write the device's cost table of each model to OUT/<model>.costs.json "
                         "(memfit.profile in the step; simulate with it where the native module is)")
    args = ap.parse_args(argv)
    if args.mode == "prepare":
        ratios = args.ratios or (SMALL_RATIOS if args.small else FULL_RATIOS)
        prepare(args.out, args.profile, ratios, args.work_budget, args.small, args.models, args.fission_parts,
                args.lat_ratios)
    else:
        run(args.out, args.repeats, args.device, args.costs)


if __name__ == "__main__":
    sys.exit(main())
