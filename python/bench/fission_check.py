"""Fission on captured PyTorch programs: capture -> split along the batch -> run.

For each model (torchvision constructors and a few modules; batch 4, 32x32
images, SGD with momentum; torchvision's segmentation models, named, are
trained on their "out" with 3 classes per pixel), captures one training step with memfit.capture,
splits the longest run of ops that can run on parts of the batch into 3 parts
(`memfit fission --dim batch --parts 3`), runs both graphs op by op in float64
from the same sources and RNG seed, and prints the largest difference of any
result (loss, updated parameters, buffers), relative to the result's scale.
A result whose values are all below 1e-12 is compared absolutely: BatchNorm
biases ahead of another normalization get mathematically-zero gradients, and
their rounding noise is not a relative error.

With --spatial H (or W), each of the two longest runs that tile along that
axis is tiled in 3 instead (`memfit fission --spatial H --parts 3 --region R`),
each checked the same way. With --recompute, the first of the four longest
runs whose forward can be copied before it is split with the copies
(`memfit fission --dim batch --recompute --parts 3 --region R`). With
--two-pass-batchnorm, BatchNorm's backward is written as its two passes and
every heavy backward run is split at once (`memfit fission --dim batch
--two-pass-batchnorm --heavy-runs --parts 3`).

    MEMFIT_CLI=build/bin/memfit PYTHONPATH=python python3 python/bench/fission_check.py [--spatial H|W | --recompute | --two-pass-batchnorm] [MODEL ...]
"""

import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.capture import capture

CLI = os.environ.get("MEMFIT_CLI", "build/bin/memfit")
DEFAULT = ["mlp", "transformer", "bert", "vit_b_16", "resnet18", "mobilenet_v2", "vgg11", "squeezenet1_0",
           "shufflenet_v2_x0_5", "densenet121", "efficientnet_b0", "resnext50_32x4d", "mnasnet0_5", "regnet_x_400mf", "convnext_tiny",
           "swin_t"]


def example(name):
    if name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32 * 3, 256), nn.ReLU(), nn.Dropout(0.1),
                              nn.Linear(256, 10))
    elif name == "transformer":
        from memfit.examples import TorchEncoder

        model = TorchEncoder(d_model=64, heads=4, ff=128, classes=10)
        return model, (torch.randn(4, 16, 64), torch.randint(0, 10, (4,)))
    elif name == "bert":  # BERT-style (fused QKV chunks, first-token classifier, dropout 0.1)
        from memfit.examples import TinyBert

        model = TinyBert(vocab=100, hidden=64, heads=4, layers=2, seq=16, classes=10, dropout=0.1)
        return model, (torch.randint(0, 100, (4, 16)), torch.randint(0, 10, (4,)))
    elif name == "vit_b_16":  # torchvision's ViT at 32x32 (patch 16, 2 layers of width 64)
        from torchvision.models.vision_transformer import VisionTransformer

        model = VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=4, hidden_dim=64,
                                  mlp_dim=128, num_classes=10, dropout=0.1)
    else:
        import torchvision.models as tvm
        import torchvision.models.segmentation as seg

        if hasattr(seg, name):  # a segmentation model: 3 classes per pixel, its "out"
            kw = {} if name.startswith("lraspp") else {"aux_loss": False}
            model = Out(getattr(seg, name)(num_classes=3, weights_backbone=None, **kw))
            return model, (torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4, 32, 32)))
        model = getattr(tvm, name)(num_classes=10)
    return model, (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))


class Out(nn.Module):
    """A torchvision segmentation model's out["out"]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def check(name, workdir, spatial=None):
    torch.manual_seed(0)
    model, inputs = example(name)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    cap = capture(model, inputs, loss_fn=lambda out, x, y: F.cross_entropy(out, y), name=name, num_module_inputs=1,
                  optimizer=opt)
    whole_path = os.path.join(workdir, f"{name}.json")
    memfit.save(cap.graph, whole_path)
    fresh = lambda: {k: v.clone() for k, v in cap.inputs.items()}
    whole = memfit.run(memfit.load(whole_path), inputs=fresh(), seed=1, dtype=torch.float64)
    if spatial == "recompute":
        splits = [["--dim", "batch", "--recompute", "--region", str(r)] for r in range(4)]
    elif spatial == "two-pass":
        splits = [["--dim", "batch", "--two-pass-batchnorm", "--heavy-runs"]]
    elif spatial is None:
        splits = [["--dim", "batch"]]
    else:
        splits = [["--spatial", spatial, "--region", str(r)] for r in (0, 1)]
    lines = []
    for i, how in enumerate(splits):
        split_path = os.path.join(workdir, f"{name}.split{i}.json")
        done = subprocess.run([CLI, "fission", whole_path, *how, "--parts", "3", "-o", split_path],
                              capture_output=True, text=True)
        if done.returncode:
            if spatial != "recompute" or i == len(splits) - 1:
                lines.append(f"not split: {done.stderr.strip()}")
            continue
        what = done.stdout.splitlines()[0].split(":", 1)[1].strip()
        if spatial == "two-pass":  # "... two passes: N ops", "heavy backward runs: K of R", "fission: ..."
            lines_out = done.stdout.splitlines()
            what = f"BatchNorm backward x{what}; heavy runs {lines_out[1].split(':', 1)[1].strip()}; " + \
                lines_out[2].split(":", 1)[1].strip().split(" (")[0]
        if spatial == "recompute":
            what = done.stdout.splitlines()[0].split(" again ")[0].replace("recompute: ", "") + "; " + \
                done.stdout.splitlines()[1].split(":", 1)[1].strip()
        split = memfit.run(memfit.load(split_path), inputs=fresh(), seed=1, dtype=torch.float64)
        worst = 0.0
        for key, v in whole.items():
            if not v.is_floating_point():
                worst = max(worst, 0.0 if torch.equal(v, split[key]) else float("inf"))
                continue
            scale = v.abs().max().item()
            diff = (split[key] - v).abs().max().item()
            worst = max(worst, diff / scale if scale > 1e-12 else diff)
        lines.append(f"{what:<72} max difference {worst:.1e}")
        if spatial == "recompute":
            break
    return ("\n" + " " * 21).join(lines)


def main(argv):
    spatial = None
    if argv[:1] == ["--spatial"]:
        spatial, argv = argv[1], argv[2:]
    elif argv[:1] == ["--recompute"]:
        spatial, argv = "recompute", argv[1:]
    elif argv[:1] == ["--two-pass-batchnorm"]:
        spatial, argv = "two-pass", argv[1:]
    names = argv or DEFAULT
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            try:
                print(f"{name:<20} {check(name, workdir, spatial)}", flush=True)
            except Exception as e:  # a model this torch cannot build or capture: say so, go on
                print(f"{name:<20} error: {type(e).__name__}: {str(e)[:160]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
