"""Fissioned graphs run through the PyTorch executor equal the unsplit graph.

For each model: the whole training step (forward, loss, backward, SGD
update), micro-batched by `memfit fission` along the batch into parts (an
uneven last part included), runs op by op in float64 from the same sources
and the same RNG seed; the loss and every updated parameter must equal the
unsplit run's within 1e-12 relative. Dropout (bert-tiny) draws its mask
whole before the parts, so the same numbers come out.
"""

import json
import math
import subprocess

import pytest
import torch

import memfit

RTOL = 1e-12

# name, zoo args, parts (along the batch unless a dimension is given)
CASES = [
    ("mlp", ["--batch", "5"], 2),
    ("mlp", ["--batch", "5"], 3),
    ("bert-tiny", ["--batch", "3", "--seq", "8"], 3),
    ("bert-tiny", ["--batch", "3", "--seq", "8", "--optimizer", "adam"], 2),
    ("resnet-18", ["--image", "32", "--batch", "3", "--momentum", "0.9"], 3),
    ("vgg16", ["--image", "32", "--batch", "3"], 2),
    ("unet", ["--image", "32", "--batch", "2"], 2),
    ("vit-tiny", ["--image", "32", "--batch", "2"], 2),
    # The sequence of the embeddings (their backward), and the query rows of
    # an attention (each query's softmax is its own).
    ("bert-tiny", ["--batch", "2", "--seq", "16"], 2, "sequence"),
    ("bert-tiny", ["--batch", "2", "--seq", "16"], 4, "bert.encoder.layer.0.attention.self.query.view_1[1]"),
    # The heads of an attention, carried through [B*heads, S, dh] in B
    # blocks: the backward of layer 0's attention with its projections'
    # weight rows (region 0), its forward up to the softmax (1), the dropout
    # and the context (2); ViT's first attention backward.
    ("bert-tiny", ["--batch", "3", "--seq", "8"], 2, "bert.encoder.layer.0.attention.self.view_5[1]", 0),
    ("bert-tiny", ["--batch", "3", "--seq", "8"], 2, "bert.encoder.layer.0.attention.self.view_5[1]", 1),
    ("bert-tiny", ["--batch", "3", "--seq", "8"], 2, "bert.encoder.layer.0.attention.self.view_5[1]", 2),
    ("vit-tiny", ["--image", "32", "--batch", "2"], 3, "vit.encoder.layer.0.attention.attention.view_5[1]", 0),
    # VGG-16's classifier weight gradients (sums over the batch larger than
    # the rows they read) left out of the region, computed once after the
    # parts from the joined rows (what optimize does).
    ("vgg16", ["--image", "32", "--batch", "3"], 3, "batch", 0, "--whole-heavy-sums"),
    # Peak bands (what optimize also tries): GPT-2's vocabulary head and loss,
    # forward and backward (13 ops of 1307); bert-tiny's band between its
    # embeddings' sums.
    ("gpt2-small", ["--batch", "3", "--seq", "4"], 3, "batch", 0, "--band", "--whole-heavy-sums"),
    ("bert-tiny", ["--batch", "3", "--seq", "8"], 2, "batch", 0, "--band"),
    # VGG-U-Net's encoder backward with its BatchNorm-free forward copied
    # right before it (--recompute): each part makes its rows of the saved
    # activations again from the images, then runs its backward.
    ("vgg-unet", ["--image", "32", "--batch", "3"], 3, "batch", 0, "--recompute"),
    # BatchNorm's backward in two passes (the sums over the batch, then
    # grad_input element-wise): the longest run of the batch, and every
    # heavy backward run at once, each starting with a grad_input pass.
    ("resnet-18", ["--image", "32", "--batch", "3", "--momentum", "0.9"], 3, "batch", 0, "--two-pass-batchnorm"),
    ("resnet-18", ["--image", "32", "--batch", "3", "--momentum", "0.9"], 3, "batch", 0, "--two-pass-batchnorm",
     "--heavy-runs"),
    ("unet", ["--image", "32", "--batch", "2"], 2, "batch", 0, "--two-pass-batchnorm", "--heavy-runs"),
    # Its decoder's convolutions of concatenations per piece first (the weight
    # slices are shared by the parts, each piece's gradient is joined).
    ("unet", ["--image", "32", "--batch", "2"], 2, "batch", 0, "--split-concats"),
    ("segnet", ["--image", "32", "--width", "48", "--batch", "5"], 3, "batch", 0, "--two-pass-batchnorm",
     "--heavy-runs"),
    # Its forward in two passes too (batch statistics, then the
    # normalization element-wise), and each heavy backward run with the
    # forward that makes what it reads copied before it, from the images and
    # the kept statistics, in parts (the running statistics are updated
    # once).
    ("segnet", ["--image", "32", "--width", "48", "--batch", "5"], 3, "batch", 0, "--two-pass-batchnorm",
     "--two-pass-batchnorm-forward", "--heavy-runs", "--recompute"),
    ("resnet-18", ["--image", "32", "--batch", "3", "--momentum", "0.9"], 2, "batch", 0, "--two-pass-batchnorm",
     "--two-pass-batchnorm-forward", "--heavy-runs", "--recompute"),
]


def fission(cli, graph, out, parts, dim="batch", region=0, *flags):
    done = subprocess.run([cli, "fission", str(graph), "--dim", dim, "--parts", str(parts), "--region", str(region),
                           *flags, "-o", str(out)], check=True, capture_output=True, text=True)
    return done.stdout


def assert_runs_equal(graph, split, inputs=lambda: None):
    """The step `split` runs equal to `graph` in f64 from the same sources (seed 3, `inputs()`), within RTOL."""
    whole = memfit.run(memfit.load(graph), inputs=inputs(), seed=3, dtype=torch.float64)
    parts = memfit.run(memfit.load(split), inputs=inputs(), seed=3, dtype=torch.float64)
    assert whole.keys() == parts.keys()
    for key, expected in whole.items():
        got = parts[key]
        assert got.shape == expected.shape, key
        scale = expected.abs().max().item() or 1.0
        err = (got - expected).abs().max().item() / scale
        assert err <= RTOL, f"{key}: relative error {err:.3g}"


def case_id(c):
    return "-".join([c[0], f"x{c[2]}"] + ([c[3][:12]] if len(c) > 3 else []) + ([f"r{c[4]}"] if len(c) > 4 else []) +
                    [f.lstrip("-") for f in c[5:]])


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_fissioned_step_equals_unsplit(memfit_cli, zoo, tmp_path, case):
    name, args, parts = case[:3]
    graph = zoo(name, *args, "--train")
    split = tmp_path / "split.json"
    report = fission(memfit_cli, graph, split, parts, *case[3:])
    assert f"x{parts}" in report
    if "--whole-heavy-sums" in case and name == "vgg16":
        assert "left whole: 3 op(s)" in report  # the three classifier weight gradients
    if "--band" in case:
        assert "band: " in report and " of the run's " in report
    if "--recompute" in case and "--heavy-runs" in case:
        assert "recompute: " in report and " forward ops again before " in report, report
        assert ".normalize" in split.read_text() and ".recompute" in split.read_text()
    elif "--recompute" in case:
        assert report.startswith("recompute: ") and " forward ops (" in report, report
    if "--two-pass-batchnorm" in case:
        assert report.startswith("batchnorm backward in two passes: "), report
    if "--heavy-runs" in case:
        assert "heavy backward runs: " in report and ".grad_input" in split.read_text(), report
    if "--recompute" in case and name == "vgg-unet":
        # The skip connections' gradients (channel slices of the decoder's
        # concatenations) are copied dense before the parts.
        assert '.compact"' in split.read_text()
    assert_runs_equal(graph, split)


# Spatial fission (memfit fission --spatial): tiles along H (or W) with
# halos, forward and backward, equal the whole step in float64. For a
# captured VGG-style CNN (stride, padding and dilation mixed, non-square
# images), run 0 is the features' forward and run 1 their backward (pooling
# indices shifted, input-gradient rows recomputed from the rows that reach
# them, weight gradients summed); along W max pooling's flat indices are
# renumbered between a tile's width and the image's. The features go 22 ->
# 11 -> 6 -> 3 rows: with 4 tiles some own no rows of the smallest maps.
# The last variant tiles the backward, then the forward of the result (two
# fissions in one step).
class SmallVgg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv2d
        self.features = torch.nn.Sequential(
            conv(3, 6, 3, padding=1), torch.nn.ReLU(), conv(6, 6, 3, padding=1), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2), conv(6, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
            conv(8, 8, 3, padding=2, dilation=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(8 * 3 * 2, 5)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def captured_small_vgg(tmp_path):
    torch.manual_seed(0)
    return captured(tmp_path, SmallVgg(), (torch.randn(2, 3, 22, 19), torch.randint(0, 5, (2,))), 1e-2)


# A decoder of the kinds U-Nets and FCNs end with: transposed convolutions
# (stride 2 with a bias; stride 2 with padding and output padding, no bias;
# stride 1), nearest and bilinear upsampling x2, average pooling (3x3 with
# padding, 2x2), zero padding along H and W, a constant padding of 0.5 that
# pads the top and crops the bottom, and a crop along H and W, on an
# odd-sized image (7x5). Run 0 is its
# forward, run 1 its backward. The optimizer's lr of 1 makes the updated
# weights differ as much as the gradients do.
class SmallDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        conv, up = torch.nn.Conv2d, torch.nn.ConvTranspose2d
        self.body = torch.nn.Sequential(
            conv(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.ZeroPad2d((1, 2, 2, 1)),
            torch.nn.ConstantPad2d((0, 0, 1, -2), 0.5), up(6, 6, 2, stride=2), torch.nn.ReLU(),
            torch.nn.AvgPool2d(3, stride=1, padding=1), conv(6, 6, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Upsample(scale_factor=2, mode="nearest"),
            up(6, 4, 3, stride=2, padding=1, output_padding=1, bias=False), torch.nn.ReLU(),
            torch.nn.AvgPool2d(2), torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            up(4, 4, 3, stride=1, padding=1), conv(4, 3, 1))

    def forward(self, x):
        return self.body(x)[:, :, 1:, :-2]


def captured(tmp_path, model, inputs, lr):
    from memfit.capture import capture
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    cap = capture(model, inputs, loss_fn=lambda out, x, y: torch.nn.functional.cross_entropy(out, y),
                  name=type(model).__name__, num_module_inputs=1, optimizer=opt)
    path = tmp_path / f"{type(model).__name__}.json"
    memfit.save(cap.graph, str(path))
    return path, cap.inputs


def captured_small_decoder(tmp_path):
    torch.manual_seed(0)
    return captured(tmp_path, SmallDecoder(), (torch.randn(2, 3, 7, 5), torch.randint(0, 3, (2, 71, 62))), 1.0)


# A BERT-style encoder's attention tiled along axis 2 of [B, heads, S, S]
# (its query rows): the softmax's backward along the keys gets its saved
# output as a dense tile (PyTorch 1.13 reads a strided one with the
# gradient's strides: 1.5e-2 off before the tile was made dense).
def captured_tiny_bert(tmp_path):
    from memfit.examples import TinyBert

    torch.manual_seed(0)
    model = TinyBert(vocab=100, hidden=64, heads=4, layers=2, seq=16, classes=10, dropout=0.1)
    return captured(tmp_path, model, (torch.randint(0, 100, (4, 16)), torch.randint(0, 10, (4,))), 1.0)


SPATIAL = [
    ("small-vgg", captured_small_vgg,
     [[("H", 3, 0)], [("H", 4, 1)], [("W", 3, 0)], [("W", 4, 1)], [("H", 3, 1), ("H", 2, 0)]]),
    ("small-decoder", captured_small_decoder,
     [[("H", 3, 0)], [("H", 4, 1)], [("W", 3, 0)], [("W", 7, 1)], [("H", 2, 1), ("W", 3, 0)]]),
    ("tiny-bert", captured_tiny_bert, [[("H", 3, 0)], [("H", 2, 1)]]),
    ("unet", ["--image", "32", "--batch", "1"], [[("H", 2, 0)]]),
    ("resnet-18", ["--image", "32", "--batch", "2"], [[("H", 2, 0)]]),
]


def tile(cli, graph, out, axis, parts, region):
    done = subprocess.run([cli, "fission", str(graph), "--spatial", axis, "--parts", str(parts),
                           "--region", str(region), "-o", str(out)], check=True, capture_output=True, text=True)
    assert f"{axis} (spatial) x{parts}" in done.stdout


@pytest.mark.parametrize("name,args,variants", SPATIAL, ids=[c[0] for c in SPATIAL])
def test_spatially_tiled_steps_equal_whole(memfit_cli, zoo, tmp_path, name, args, variants):
    if callable(args):
        graph, inputs = args(tmp_path)
    else:
        graph, inputs = zoo(name, *args, "--train"), None
    fresh = lambda: None if inputs is None else {k: v.clone() for k, v in inputs.items()}
    whole = memfit.run(memfit.load(graph), inputs=fresh(), seed=3, dtype=torch.float64)
    for v, fissions in enumerate(variants):
        current = graph
        for f, (axis, parts, region) in enumerate(fissions):
            out = tmp_path / f"tiled{v}_{f}.json"
            tile(memfit_cli, current, out, axis, parts, region)
            current = out
        tiles = memfit.run(memfit.load(current), inputs=fresh(), seed=3, dtype=torch.float64)
        assert whole.keys() == tiles.keys()
        for key, expected in whole.items():
            got = tiles[key]
            assert got.shape == expected.shape, key
            if not expected.is_floating_point():
                assert torch.equal(got, expected), f"{fissions}: {key}"
                continue
            scale = expected.abs().max().item() or 1.0
            err = (got - expected).abs().max().item() / scale
            assert err <= RTOL, f"{fissions}: {key}: relative error {err:.3g}"


# Nesting: a batch split (plain, or with the encoder's forward recomputed
# in parts), then inside each part the run along H that holds its first
# convolution's backward tiled (memfit fission --at: SpatialRegions keeps
# the parts' runs apart). The search's nested candidates do this at the
# program-order peak (optimize/fission_search.cc).
@pytest.mark.parametrize("split", [[], ["--recompute"]], ids=["run", "recompute"])
def test_tiles_inside_each_part_equal_whole(memfit_cli, zoo, tmp_path, split):
    graph = zoo("vgg-unet", "--image", "32", "--batch", "2", "--train")
    current = tmp_path / "split.json"
    fission(memfit_cli, graph, current, 2, "batch", 0, *split)
    for k in range(2):
        out = tmp_path / f"nested{k}.json"
        done = subprocess.run([memfit_cli, "fission", str(current), "--spatial", "H", "--parts", "2", "--at",
                               f"bwd.block1_conv1.convolution.part{k}", "-o", str(out)],
                              check=True, capture_output=True, text=True)
        assert f"convolution.part{k})" in done.stdout, done.stdout
        current = out
    whole = memfit.run(memfit.load(graph), seed=3, dtype=torch.float64)
    nested = memfit.run(memfit.load(current), seed=3, dtype=torch.float64)
    assert whole.keys() == nested.keys()
    for key, expected in whole.items():
        scale = expected.abs().max().item() or 1.0
        err = (nested[key] - expected).abs().max().item() / scale
        assert err <= RTOL, f"{key}: relative error {err:.3g}"


# A convolution of a concatenation written per piece (memfit fission
# --split-concats; optimize makes every candidate from it where it needs less
# memory): the zoo U-Net's four decoder blocks, and a captured decoder with a
# three-piece concatenation into a convolution with a bias (one piece, the
# images, needs no gradient) and a two-piece one into a transposed
# convolution. Each equals the whole step in f64: the partial convolutions
# add up in another order.
class CatDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.down = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.fuse = torch.nn.Conv2d(4 + 4 + 3, 5, 3, padding=1)
        self.head = torch.nn.ConvTranspose2d(5 + 4, 3, 3, padding=1, bias=False)

    def forward(self, x):
        e = torch.relu(self.enc(x))
        u = torch.relu(self.up(torch.relu(self.down(e))))
        f = torch.relu(self.fuse(torch.cat([e, u, x], 1)))
        return self.head(torch.cat([f, e], dim=1))


def captured_cat_decoder(tmp_path):
    torch.manual_seed(0)
    return captured(tmp_path, CatDecoder(), (torch.randn(2, 3, 8, 6), torch.randint(0, 3, (2, 8, 6))), 1.0)


@pytest.mark.parametrize("name,count", [("unet", 4), ("cat-decoder", 2)])
def test_split_concatenations_equal_whole(memfit_cli, zoo, tmp_path, name, count):
    if name == "unet":
        graph, inputs = zoo("unet", "--image", "32", "--batch", "2", "--train"), None
    else:
        graph, inputs = captured_cat_decoder(tmp_path)
    fresh = lambda: None if inputs is None else {k: v.clone() for k, v in inputs.items()}
    split = tmp_path / "split.json"
    done = subprocess.run([memfit_cli, "fission", str(graph), "--split-concats", "-o", str(split)], check=True,
                          capture_output=True, text=True)
    assert f"convolutions of concatenations split: {count}" in done.stdout, done.stdout
    assert_runs_equal(graph, split, fresh)


# In-place reuse (memfit inplace): the rewritten step equals the original,
# bit for bit (the same kernels, writing into the dead input's memory).
INPLACE = [
    ("mlp", ["--batch", "4"]),
    ("resnet-18", ["--image", "32", "--batch", "2"]),
    ("bert-tiny", ["--batch", "2", "--seq", "8"]),
]


@pytest.mark.parametrize("name,args", INPLACE, ids=[c[0] for c in INPLACE])
def test_inplace_step_equals_original(memfit_cli, zoo, tmp_path, name, args):
    graph = zoo(name, *args, "--train")
    rewritten = tmp_path / "inplace.json"
    done = subprocess.run([memfit_cli, "inplace", str(graph), "-o", str(rewritten)], check=True,
                          capture_output=True, text=True)
    assert "in place:" in done.stdout and not done.stdout.startswith("in place:   0 ops")
    whole = memfit.run(memfit.load(graph), seed=5)
    reused = memfit.run(memfit.load(rewritten), seed=5)
    assert whole.keys() == reused.keys()
    for key, expected in whole.items():
        assert torch.equal(reused[key], expected), key


def optimized_plan_equals_eager(cli, graph, tmp_path, *flags):
    """memfit optimize GRAPH FLAGS -o PLAN; the plan executor runs it, with and without
    the arena, equal to the unsplit eager step within 1e-5 relative in f32 (the
    parts' sums add in another order). Returns what optimize printed."""
    import json

    from memfit.plan import execute

    path = tmp_path / "plan.json"
    done = subprocess.run([cli, "optimize", str(graph), *flags, "-o", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    plan = json.loads(path.read_text())
    assert any(k.startswith("fission.") for k in plan["graph"]["metadata"])
    ref = memfit.run(str(graph), seed=0)
    for arena in (False, True):
        run = execute(plan, arena=arena)
        for key, expected in ref.items():
            got = run.outputs[key]
            scale = expected.abs().max().item() or 1.0
            assert (got - expected).abs().max().item() / scale <= 1e-5, (arena, key)
    return done.stdout


# memfit optimize keeps a fissioned plan where no plan of the graph as given
# fits (an MLP at batch 2048 under half its peak).
def test_optimized_fission_plan_runs_equal_to_eager(memfit_cli, zoo, tmp_path):
    graph = zoo("mlp", "--batch", "2048", "--train")
    out = optimized_plan_equals_eager(memfit_cli, graph, tmp_path, "--mem-limit-ratio", "0.5", "--deterministic")
    assert "fission:" in out


# U-Net's plan at +30% on rtx3090 is made from the step with its decoder's
# convolutions of concatenations per piece: the plan runs equal to eager.
def test_optimized_plan_with_concatenations_split_runs_equal_to_eager(memfit_cli, zoo, tmp_path):
    graph = zoo("unet", "--image", "128", "--batch", "2", "--train")
    out = optimized_plan_equals_eager(memfit_cli, graph, tmp_path, "--lat-limit-ratio", "1.3", "--device",
                                      "rtx3090", "--deterministic", "--work-budget", "200")
    assert "fission:    convolutions of concatenations split: 4" in out, out


# A step micro-batched in 4 parts (vit-tiny, dropout on), planned under 0.6
# of its own peak on rtx3090: each part's forward results go to the host in
# its own forward and come back in its own backward (swap_plan.h), and the
# masks drawn before the parts keep their order (sched/dependencies.h: the
# schedule drew them in another order, and every value differed). The plan
# runs equal to the split step in program order.
def test_micro_batched_plan_swaps_in_every_part_and_runs_equal(memfit_cli, zoo, tmp_path):
    import json
    import re

    graph = zoo("vit-tiny", "--batch", "8", "--image", "32", "--train")
    split = tmp_path / "split.json"
    fission(memfit_cli, graph, split, 4, "batch", 0, "--whole-heavy-sums")
    optimized_plan_equals_eager(memfit_cli, split, tmp_path, "--mem-limit-ratio", "0.6", "--device", "rtx3090",
                                "--deterministic", "--no-fission")
    plan = json.loads((tmp_path / "plan.json").read_text())
    names = {t["id"]: t["name"] for t in plan["graph"]["tensors"]}
    parts = {m.group(1) for s in plan["steps"] if s["kind"] == "swap_out"
             for m in [re.search(r"\.part(\d+)", names[s["storage"]])] if m}
    assert parts == {"0", "1", "2", "3"}, parts


# segnet at batch 8, 128x192, at 0.4 of its peak: no plan of the graph as
# given fits (the floor is a ReLU's gradient beside its saved output and
# BatchNorm's gradient at full resolution); the plan writes BatchNorm's
# backward in two passes and splits the heavy backward runs.
def test_optimized_two_pass_batchnorm_plan_runs_equal_to_eager(memfit_cli, zoo, tmp_path):
    graph = zoo("segnet", "--batch", "8", "--image", "128", "--width", "192", "--train")
    out = optimized_plan_equals_eager(memfit_cli, graph, tmp_path, "--mem-limit-ratio", "0.4", "--device", "rtx3090",
                                      "--deterministic")
    assert "fission:    batchnorm backward in two passes: 8 ops" in out, out


# Tighter, at 0.38: only the floor candidate with the forwards in two passes
# and copied in parts before each heavy backward run fits.
def test_optimized_plan_with_forwards_again_runs_equal_to_eager(memfit_cli, zoo, tmp_path):
    graph = zoo("segnet", "--batch", "8", "--image", "128", "--width", "192", "--train")
    out = optimized_plan_equals_eager(memfit_cli, graph, tmp_path, "--mem-limit-ratio", "0.38", "--device", "rtx3090",
                                      "--deterministic")
    assert "fission:    batchnorm forward in two passes: 8 ops" in out, out
    assert "heavy backward runs with their forwards again" in out, out


# VGG-U-Net at batch 8, 96x96, under half its peak: the plan copies the
# encoder's forward before its backward and splits both (and swaps the
# labels out before anything reads them: the executor makes a generated
# source it swaps out first).
def test_optimized_recompute_plan_runs_equal_to_eager(memfit_cli, zoo, tmp_path):
    graph = zoo("vgg-unet", "--batch", "8", "--image", "96", "--train")
    out = optimized_plan_equals_eager(memfit_cli, graph, tmp_path, "--mem-limit-ratio", "0.5", "--work-budget",
                                      "1500", "--device", "a100")
    assert "fission:    recompute: 27 forward ops" in out, out


# PyTorch's own attention (nn.TransformerEncoderLayer, batch_first, dropout
# on): nn.MultiheadAttention works in [S, B, E], views it as [S, B*heads, dh]
# and back as [S*B, E], so the batch is carried as a factor of other axes;
# the region runs through the whole attention forward and backward. Its
# gradient leaves as a transposed view read by _reshape_alias, which the
# split rewrites to a reshape of the joined tensor. Equal to the unsplit step
# in f64.
def test_pytorch_attention_splits_along_the_batch(memfit_cli, tmp_path):
    from memfit.capture import capture
    from memfit.examples import TorchEncoder
    torch.manual_seed(0)
    model = TorchEncoder(d_model=16, heads=4, ff=32, classes=3)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    inputs = (torch.randn(6, 5, 16), torch.randint(0, 3, (6,)))
    cap = capture(model, inputs, loss_fn=lambda out, x, y: torch.nn.functional.cross_entropy(out, y),
                  name="encoder", num_module_inputs=1, optimizer=opt)
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    ops = int(done.split(" over ")[1].split()[0])
    assert ops > 80, done  # the attention's forward and backward, not only the feed-forward


class AttentionUNet(torch.nn.Module):
    """A diffusion model's core: GroupNorm, self-attention over the pixels of a
    feature map (tokens = H x W, viewed back as an image), a skip concatenation."""

    def __init__(self, c=16):
        super().__init__()
        nn = torch.nn
        self.inp = nn.Conv2d(3, c, 3, padding=1)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(2, 2 * c)
        self.attn = nn.MultiheadAttention(2 * c, 2, batch_first=True)
        self.up = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.gn2 = nn.GroupNorm(2, 2 * c)
        self.out = nn.Conv2d(2 * c, 3, 3, padding=1)

    def forward(self, x):
        silu = torch.nn.functional.silu
        h0 = silu(self.inp(x))
        h = silu(self.gn(self.down(h0)))
        n, c, height, width = h.shape
        seq = h.flatten(2).transpose(1, 2)
        seq = seq + self.attn(seq, seq, seq, need_weights=False)[0]
        h = seq.transpose(1, 2).reshape(n, c, height, width)
        return self.out(silu(self.gn2(torch.cat([self.up(h), h0], 1))))


# The band of the step's heaviest ops ends inside the attention's backward: the
# gradient of the pixels-as-tokens transpose leaves it as a transposed view. A plain
# cat of its parts was contiguous, the ops after the band passed that layout on,
# and torch 1.13's native_group_norm_backward read the transposed gradient as if it
# were contiguous: the GroupNorm's gradients were 2% off (the updated parameters
# 0.9 off) while every op of the band was right. The parts are joined in the
# layout the view had; equal to the unsplit step in f64.
def test_a_transposed_gradient_leaves_the_band_in_its_own_layout(memfit_cli, tmp_path):
    from memfit.capture import capture
    torch.manual_seed(0)
    model = AttentionUNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    cap = capture(model, (x, y), loss_fn=lambda out, x, y: torch.nn.functional.mse_loss(out, y),
                  num_module_inputs=1, optimizer=opt)
    whole_path, split_path = tmp_path / "whole.json", tmp_path / "split.json"
    memfit.save(cap.graph, str(whole_path))
    done = subprocess.run([memfit_cli, "fission", str(whole_path), "--dim", "batch", "--parts", "2", "--band",
                           "--at", "convolution_backward", "-o", str(split_path)],
                          check=True, capture_output=True, text=True).stdout
    assert "bmm" in done.split(" over ")[1], done  # the band ends inside the attention's backward
    split_graph = memfit.load(split_path)
    assert any(op.name.endswith(".layout") and op.type == "aten.permute" for op in split_graph.ops)
    fresh = lambda: {k: v.double() if v.is_floating_point() else v.clone() for k, v in cap.inputs.items()}
    whole = memfit.run(memfit.load(whole_path), inputs=fresh(), dtype=torch.float64)
    split = memfit.run(split_graph, inputs=fresh(), dtype=torch.float64)
    for key, expected in whole.items():
        if expected.is_floating_point():
            scale = expected.abs().max().item() or 1.0
            assert (split[key] - expected).abs().max().item() / scale <= 1e-12, key


def split_equals_whole(cap, memfit_cli, tmp_path, *flags):
    """Splits a captured step with memfit fission FLAGS (by default along the batch in 3); asserts
    that it runs equal to the unsplit step in f64 (dropout on, the same seed); returns what memfit
    fission printed."""
    whole_path, split_path = tmp_path / "whole.json", tmp_path / "split.json"
    memfit.save(cap.graph, str(whole_path))
    done = subprocess.run([memfit_cli, "fission", str(whole_path), *(flags or ("--dim", "batch", "--parts", "3")),
                           "-o", str(split_path)], check=True, capture_output=True, text=True)
    fresh = lambda: {k: v.clone() for k, v in cap.inputs.items()}
    whole = memfit.run(memfit.load(whole_path), inputs=fresh(), seed=3, dtype=torch.float64)
    split = memfit.run(memfit.load(split_path), inputs=fresh(), seed=3, dtype=torch.float64)
    for key, expected in whole.items():
        if not expected.is_floating_point():
            continue
        scale = expected.abs().max().item() or 1.0
        assert (split[key] - expected).abs().max().item() / scale <= 1e-12, key
    return done.stdout


# A sequence classifier on each sequence's last token, as GPT-2's and CLIP's
# text towers pool: `h[torch.arange(B), last]`. The index by the arange pairs
# row i with row i, so the whole step, from the embedding to its gradient,
# splits along the batch (each part indexes its rows by an arange of its
# own); it ended the batch's run at the gather before. Equal to the unsplit
# step in f64.
def test_a_last_token_classifier_splits_along_the_batch_over_the_whole_step(memfit_cli, tmp_path):
    from memfit.capture import capture
    nn = torch.nn

    class LastToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 16)
            self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 1)
            self.head = nn.Linear(16, 3)

        def forward(self, t, lengths):
            h = self.enc(self.emb(t))
            return self.head(h[torch.arange(t.shape[0]), lengths - 1])

    torch.manual_seed(0)
    model = LastToken()
    g = torch.Generator().manual_seed(2)
    inputs = (torch.randint(0, 20, (6, 5), generator=g), torch.randint(1, 6, (6,), generator=g),
              torch.randint(0, 3, (6,), generator=g))
    cap = capture(model, inputs, loss_fn=lambda out, t, lengths, y: torch.nn.functional.cross_entropy(out, y),
                  name="last_token", num_module_inputs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    first, last = done.split(" over ")[1].split("(")[1].split(")")[0].split(" .. ")
    assert first == "embedding" and last.startswith("embedding_dense_backward"), done


# A BERT-style model as memfit.fit captures it (torch 1.13's decompositions):
# reshapes traced as _reshape_alias of a strided chunk of the fused QKV
# projection, the classifier on x[:, 0] (a slice of the whole batch, then a
# select), dropout drawn by bernoulli_ into an empty tensor. The capture
# records those reshapes as the reshapes they are and the slice keeps the whole batch, so
# the whole step, from the embedding to its gradient, splits along the
# batch. Equal to the unsplit step in f64, dropout on.
def test_captured_bert_splits_along_the_batch_over_the_whole_step(memfit_cli, tmp_path):
    from memfit.capture import capture
    from memfit.examples import TinyBert
    torch.manual_seed(0)
    model = TinyBert(vocab=50, hidden=16, heads=2, layers=2, seq=6, classes=3, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = (torch.randint(0, 50, (6, 6)), torch.randint(0, 3, (6,)))
    cap = capture(model, inputs, loss_fn=lambda out, x, y: torch.nn.functional.cross_entropy(out, y),
                  name="bert", num_module_inputs=1, optimizer=opt)
    types = {op.type for op in cap.graph.ops}
    assert "aten._reshape_alias" not in types and "aten.reshape" in types and "aten.bernoulli_" in types
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    first, last = done.split(" over ")[1].split("(")[1].split(")")[0].split(" .. ")
    assert first == "embedding" and last.startswith("embedding_dense_backward"), done


class SkipNet(torch.nn.Module):
    """A U-Net in small: a BatchNorm-free encoder (in-place ReLUs, pooling) and a
    decoder that normalizes (upsampling, the skip joined, BatchNorm)."""

    def __init__(self):
        super().__init__()
        relu = lambda: torch.nn.ReLU(inplace=True)  # noqa: E731
        self.enc1 = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), relu(),
                                        torch.nn.Conv2d(4, 4, 3, padding=1), relu())
        self.enc2 = torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 8, 3, padding=1), relu())
        self.dec = torch.nn.Sequential(torch.nn.Conv2d(12, 4, 3, padding=1), torch.nn.BatchNorm2d(4), relu(),
                                       torch.nn.Conv2d(4, 2, 1))

    def forward(self, x):
        a = self.enc1(x)
        b = torch.nn.functional.interpolate(self.enc2(a), scale_factor=2.0, mode="nearest")
        return self.dec(torch.cat([a, b], 1))


# A captured step (torch's own decompositions: in-place ReLUs, Adam) with
# the encoder's forward recomputed in parts next to its backward: equal to
# the unsplit step in f64, and the encoder's saved activations no longer
# live from the forward to the backward.
def test_captured_encoder_forward_recomputed_in_parts(memfit_cli, tmp_path):
    from memfit.capture import capture
    torch.manual_seed(0)
    model = SkipNet()
    inputs = (torch.randn(5, 3, 8, 8), torch.randint(0, 2, (5, 8, 8)))
    cap = capture(model, inputs, loss_fn=lambda out, x, y: torch.nn.functional.cross_entropy(out, y), name="skip",
                  num_module_inputs=1, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))
    assert "aten.relu_" in {op.type for op in cap.graph.ops}
    whole_path = tmp_path / "whole.json"
    memfit.save(cap.graph, str(whole_path))
    reports = []
    for region in range(4):
        split_path = tmp_path / f"split{region}.json"
        done = subprocess.run([memfit_cli, "fission", str(whole_path), "--dim", "batch", "--parts", "3", "--region",
                               str(region), "--recompute", "-o", str(split_path)], capture_output=True, text=True)
        if done.returncode:
            assert "reads nothing that forward ops can make again" in done.stderr or "--region" in done.stderr, \
                done.stderr
            continue
        reports.append(done.stdout)
        fresh = lambda: {k: v.clone() for k, v in cap.inputs.items()}  # noqa: E731
        whole = memfit.run(memfit.load(whole_path), inputs=fresh(), seed=3, dtype=torch.float64)
        split = memfit.run(memfit.load(split_path), inputs=fresh(), seed=3, dtype=torch.float64)
        for key, expected in whole.items():
            if expected.is_floating_point():
                scale = expected.abs().max().item() or 1.0
                assert (split[key] - expected).abs().max().item() / scale <= RTOL, (region, key)
        g = memfit.load(split_path)
        copies = [op for op in g.ops if ".recompute" in op.name]
        assert copies and all(op.phase == "backward" for op in copies)
    assert reports, "no run of the captured step recomputed its forward"


# Every dimension, not only the batch: a captured step split into 2 along
# each dimension memfit dims finds (its two longest runs) runs equal to the
# whole in f64. The modules hold the ops whose links were wrong or missing
# (a sweep of every dimension of captured steps found them): a classifier's
# class axis (its loss's targets index it), a scatter's and a gather's
# indexed axis, grouped and depthwise convolutions, GroupNorm (per-sample
# statistics), PReLU, ELU and GLU gradients, reflection and replication
# padding, weight norm.
class EveryOp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.ReflectionPad2d(1), nn.utils.weight_norm(nn.Conv2d(3, 8, 3)), nn.GroupNorm(4, 8),
                                  nn.ELU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.PReLU(8),
                                  nn.ReplicationPad2d((1, 0, 0, 1)), nn.Conv2d(8, 8, 3, padding=(0, 1), groups=2))
        self.fc = nn.Linear(8, 12)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        f = self.stem(x).mean((2, 3))
        h = torch.nn.functional.glu(self.fc(f), dim=1)
        index = torch.argsort(h, dim=1)[:, :3]
        h = h.scatter_add(1, index, torch.gather(h, 1, index) * 0.5)
        return self.head(torch.where(h > 0, h, 0.3 * h))


def split_every_dimension(memfit_cli, tmp_path, model, example):
    """Splits the captured step of `model` along each of its dimensions in two parts (two regions each)
    and checks every output against the whole in f64; returns the count of splits and the barrier ops."""
    import json

    torch.manual_seed(0)
    path, inputs = captured(tmp_path, model, example, 1.0)
    whole = memfit.run(memfit.load(path), inputs={k: v.clone() for k, v in inputs.items()}, seed=1,
                       dtype=torch.float64)
    found = json.loads(subprocess.run([memfit_cli, "dims", str(path), "--json"], check=True, capture_output=True,
                                      text=True).stdout)
    splits = 0
    for i, dim in enumerate(found["dims"]):
        for region in (0, 1):
            out = tmp_path / f"d{i}r{region}.json"
            done = subprocess.run([memfit_cli, "fission", str(path), "--dim", str(i), "--parts", "2", "--region",
                                   str(region), "-o", str(out)], capture_output=True, text=True)
            if done.returncode:
                assert done.returncode == 2 and done.stderr.startswith("memfit: error:"), done.stderr
                break
            split = memfit.run(memfit.load(out), inputs={k: v.clone() for k, v in inputs.items()}, seed=1,
                               dtype=torch.float64)
            for key, expected in whole.items():
                if not expected.is_floating_point():
                    assert torch.equal(split[key], expected), (dim["name"], region, key)
                    continue
                scale = expected.abs().max().item()
                error = (split[key] - expected).abs().max().item()
                assert error <= RTOL * scale if scale > 1e-12 else error <= 1e-12, (dim["name"], region, key, error)
            splits += 1
    return splits, {b["type"] for b in found["barriers"]}


def test_every_dimension_splits_equal_to_whole(memfit_cli, tmp_path):
    splits, _ = split_every_dimension(memfit_cli, tmp_path, EveryOp(),
                                      (torch.randn(4, 3, 9, 8), torch.randint(0, 5, (4,))))
    assert splits >= 20, splits  # the batch through the whole step, channels, features, pixels


# Ops that keep some axes and remake others: pixel_shuffle / pixel_unshuffle
# (the batch runs through; channels and pixels are interleaved), stack (every
# axis runs through past the new one), an LSTM cell's gates cut by
# unsafe_split (the batch runs through each gate), repeat (an axis repeated
# once runs through).
class ShuffleStackCell(torch.nn.Module):
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.up = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2), nn.Tanh(),
                                nn.Conv2d(3, 4, 3, padding=1), nn.PixelUnshuffle(2))
        self.cell = nn.LSTMCell(16, 8)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        f = self.up(x).mean((2, 3))  # [N, 16]
        h, c = self.cell(f)
        h2, _ = self.cell(f.flip(1), (h, c))
        both = torch.stack([h, h2], dim=1)  # [N, 2, 8]
        return self.head(both.sum(1).repeat(1, 2))


def test_shuffles_stacks_gates_and_repeats_split_along_the_batch(memfit_cli, tmp_path):
    splits, barriers = split_every_dimension(memfit_cli, tmp_path, ShuffleStackCell(),
                                             (torch.randn(4, 3, 6, 6), torch.randint(0, 5, (4,))))
    assert not barriers & {"aten.pixel_shuffle", "aten.pixel_unshuffle", "aten.stack", "aten.unsafe_split",
                           "aten.repeat"}, barriers
    assert splits >= 10, splits


# Ops the registry learned from held-out programs (opaque before: barriers to
# every split): SegNet's max_unpool2d, an adaptive max pool, patches by
# Tensor.unfold, a diagonal beside an eye, var_mean, running extrema,
# logcumsumexp, element-wise math, cdist between rows (a metric-learning or
# point-cloud net's) and logsigmoid. The batch runs through all of them.
class UnpoolPatchesStatistics(torch.nn.Module):
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        self.head = nn.Linear(6 * 4 + 6 * 4 + 6 + 9, 5)

    def forward(self, x):
        nnf = torch.nn.functional
        h = nnf.celu(self.conv(x))
        p, idx = self.pool(h)
        h = nnf.hardshrink(self.unpool(p, idx, output_size=h.shape), 0.1) + nnf.softshrink(h, 0.2)
        a = nnf.adaptive_max_pool2d(h, 2).flatten(1)  # [N, 24]
        var, mean = torch.var_mean(h.unfold(2, 4, 4).unfold(3, 4, 4).flatten(4), -1)  # [N, 6, 2, 2]
        square = a[:, :16].reshape(-1, 4, 4)
        d = torch.diagonal(square, dim1=1, dim2=2) + (square * torch.eye(4)).sum(2)  # [N, 4]
        runs = torch.cummax(a, 1)[0] + torch.logcumsumexp(a, 1) + torch.logaddexp(a, -a) + torch.lerp(a, a * a, 0.3)
        dist = torch.cdist(a[:, :12].reshape(-1, 3, 4), nnf.logsigmoid(a[:, 12:]).reshape(-1, 3, 4))  # [N, 3, 3]
        feats = torch.cat([runs, var.flatten(1) + mean.flatten(1), d.repeat(1, 2)[:, :6], dist.flatten(1)], 1)
        return self.head(feats)


def test_unpooling_patches_and_statistics_split_along_the_batch(memfit_cli, tmp_path):
    splits, barriers = split_every_dimension(memfit_cli, tmp_path, UnpoolPatchesStatistics(),
                                             (torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))))
    known = {"aten.max_unpool2d", "aten.adaptive_max_pool2d", "aten.adaptive_max_pool2d_backward", "aten.unfold",
             "aten.unfold_backward", "aten.diagonal", "aten.diagonal_backward", "aten.var_mean", "aten.cummax",
             "aten.logcumsumexp", "aten.celu", "aten.hardshrink", "aten.softshrink", "aten.logaddexp", "aten.lerp",
             "aten._cdist_forward", "aten._cdist_backward", "aten.log_sigmoid_forward", "aten.log_sigmoid_backward"}
    assert not barriers & known, barriers
    assert splits >= 8, splits


# `x[mask] = v` with one boolean mask and one value (masked assignment; what
# make_fx writes for masked_fill_, as in F.cross_entropy's label smoothing) is
# element-wise: the mask's dims run through it. It was a barrier along every
# dim it masked.
class MaskedAssignment(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(6, 8)
        self.b = torch.nn.Linear(8, 5)

    def forward(self, x):
        h = self.a(x)
        h[h < -0.2] = 0.0
        scores = self.b(torch.tanh(h))
        scores = scores.masked_fill(scores > 1.0, 1.0)
        scores[:, 1:][scores[:, 1:] < -1.0] = -1.0
        return scores


def test_masked_assignment_splits_along_the_masked_dims(memfit_cli, tmp_path):
    splits, barriers = split_every_dimension(memfit_cli, tmp_path, MaskedAssignment(),
                                             (torch.randn(6, 6), torch.randint(0, 5, (6,))))
    assert not barriers & {"aten.index_put", "aten.index_put_", "aten._index_put_impl_"}, barriers
    assert splits >= 6, splits


# A T5 relative-position bias: an embedding of bucketed key - query offsets,
# both from one arange. Its table's gradient (embedding_dense_backward) sums
# grad_output and the bucket indices over the same (query, key) index, and no
# output axis links the two; split along the key positions, grad_output
# carried them on axis 0 but the indices on axis 1 (the two axes of j - i
# cannot be one dimension), and the parts summed the wrong rows into the table
# (3.7e-3 off in f64). A sum over several inputs now needs each to carry the
# dimension on its paired axis (ReducedDim::pair).
class RelativePositionBias(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rel = torch.nn.Embedding(8, 2)
        self.qkv = torch.nn.Linear(16, 48)
        self.out = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, 5)
        self.gain = torch.nn.Parameter(torch.ones(16))

    @staticmethod
    def bucket(relative, buckets=8):  # T5's: half per direction, exact near 0, logarithmic beyond
        half = buckets // 2
        n = -relative
        direction = (n < 0).long() * half
        n = n.abs()
        far = half // 2 + (torch.log(n.float().clamp(min=1) / (half // 2)) / math.log(16 / (half // 2)) *
                           (half - half // 2)).long()
        return direction + torch.where(n < half // 2, n, torch.minimum(far, torch.full_like(far, half - 1)))

    def forward(self, x):
        b, s, _ = x.shape
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.gain  # RMSNorm
        q, k, v = self.qkv(x).view(b, s, 3, 2, 8).permute(2, 0, 3, 1, 4)
        pos = torch.arange(s)
        bias = self.rel(self.bucket(pos[None, :] - pos[:, None])).permute(2, 0, 1)  # [heads, s, s]
        att = (q @ k.transpose(-1, -2) + bias).softmax(-1)
        return self.head(self.out((att @ v).transpose(1, 2).reshape(b, s, 16)).mean(1))


def test_a_relative_position_bias_splits_only_along_paired_axes(memfit_cli, tmp_path):
    splits, _ = split_every_dimension(memfit_cli, tmp_path, RelativePositionBias(),
                                      (torch.randn(3, 10, 16), torch.randint(0, 5, (3,))))
    assert splits >= 10, splits


class SpeechHead(torch.nn.Module):
    """Token embeddings scaled by their frequency (scale_grad_by_freq), averaged
    over the sequence; a feature scaled in place through a view; a CTC loss
    per item that scales the logits."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(7, 8, scale_grad_by_freq=True)
        self.lin = torch.nn.Linear(8, 8)
        self.proj = torch.nn.Linear(8, 5)
        self.pos = torch.nn.Parameter(torch.randn(6, 1, 5))
        self.head = torch.nn.Linear(8, 3)
        self.register_buffer("targets", torch.tensor([[1, 2, 2], [3, 1, 4], [2, 4, 1], [4, 4, 3]]))

    def forward(self, tokens):
        h = self.lin(self.emb(tokens).mean(1)) + 0
        h[:, :2] *= 2
        lp = torch.log_softmax(self.proj(h)[None] + self.pos, -1)  # [T, N, C]
        n = tokens.shape[0]
        ctc = torch.nn.functional.ctc_loss(lp, self.targets[:n], [6] * n, [3, 2, 3, 1][:n], reduction="none")
        return self.head(h) * (1 + 0.1 * ctc[:, None])


# Split along the classes of the CTC's log-probabilities, its backward (whose
# links said every axis) made each part's gradient from its classes alone;
# an embedding's backward along a sequence that came from the mean's
# broadcast (not from the token ids) failed to run in parts; with
# scale_grad_by_freq the parts' counts were not the whole's; and a write
# through a view of a tensor the split ops read was moved after them.
def test_ctc_frequency_scaled_embeddings_and_view_writes_split_equal_to_whole(memfit_cli, tmp_path):
    tokens = torch.tensor([[1, 1, 2, 3], [4, 4, 4, 0], [5, 6, 1, 1], [2, 2, 0, 3]])
    splits, barriers = split_every_dimension(memfit_cli, tmp_path, SpeechHead(), (tokens, torch.tensor([0, 2, 1, 2])))
    assert splits >= 8, splits


# BatchNorm's forward in two passes updates the running statistics once,
# as the fused op does (batch_norm_update_stats, the unbiased variance), also
# when what reads its output is made again in parts in the backward.
def test_two_pass_batchnorm_forward_updates_running_statistics(memfit_cli, zoo, tmp_path):
    graph = zoo("segnet", "--image", "32", "--width", "48", "--batch", "5", "--train")
    split = tmp_path / "split.json"
    fission(memfit_cli, graph, split, 3, "batch", 0, "--two-pass-batchnorm", "--two-pass-batchnorm-forward",
            "--heavy-runs", "--recompute")
    whole_sources = memfit.make_sources(graph, seed=3, dtype=torch.float64)
    split_sources = {n: v.clone() for n, v in whole_sources.items()}
    before = {n: v.clone() for n, v in whole_sources.items() if "running_" in n}
    assert len(before) == 16  # 8 BatchNorms
    memfit.run(memfit.load(graph), whole_sources, dtype=torch.float64)
    memfit.run(memfit.load(split), split_sources, dtype=torch.float64)
    for name, old in before.items():
        assert not torch.equal(whole_sources[name], old), name
        err = (split_sources[name] - whole_sources[name]).abs().max().item() / whole_sources[name].abs().max().item()
        assert err <= RTOL, f"{name}: relative error {err:.3g}"


# A captured model whose BatchNorms keep no running statistics (and one has
# no affine weight): both passes written out, the heavy runs split with their
# forwards again, equal to the unsplit step. The convolutions' biases before
# a BatchNorm get gradients that are rounding noise (the batch mean cancels
# them: 1e-15 against weight gradients of 38), so the step's outputs are
# compared against the largest of them.
def test_two_pass_batchnorm_without_running_statistics(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8, track_running_stats=False), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8, affine=False), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 3, padding=1)).double()
    graph = tmp_path / "bn.json"
    memfit.graph.save(capture(model, [torch.randn(6, 3, 16, 16, dtype=torch.float64)]).graph, graph)
    split = tmp_path / "split.json"
    report = fission(memfit_cli, graph, split, 3, "batch", 0, "--two-pass-batchnorm", "--two-pass-batchnorm-forward",
                     "--heavy-runs", "--recompute")
    assert "batchnorm forward in two passes: 2 ops" in report and "again before 2 of the runs" in report, report
    whole = memfit.run(str(graph), seed=1, dtype=torch.float64)
    pieces = memfit.run(str(split), seed=1, dtype=torch.float64)
    scale = max(v.abs().max().item() for v in whole.values())
    for key, expected in whole.items():
        assert (pieces[key] - expected).abs().max().item() <= RTOL * scale, key


class _Denoiser(torch.nn.Module):
    """Predicts the noise added to an image (a diffusion model's objective): F.mse_loss."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        return self.b(torch.nn.functional.silu(self.a(x)))


# F.mse_loss's mean (and its backward, which divides by the element count
# inside the kernel; the same for smooth L1, Huber and BCE with logits) stopped
# every run along the batch: the step split only
# on one side of its loss (a small diffusion model: 32.24 MiB -> 23.33 MiB in
# program order; 4.32 MiB once the whole step splits). Split, the parts sum
# with reduction "sum" and divide by the whole's count; left with "mean" they
# would each divide by their own.
ELEMENTWISE_LOSSES = {
    "mse_loss": lambda out, y: torch.nn.functional.mse_loss(out, y),
    "smooth_l1_loss": lambda out, y: torch.nn.functional.smooth_l1_loss(out, y, beta=0.5),
    "huber_loss": lambda out, y: torch.nn.functional.huber_loss(out, y, delta=0.7),
    "binary_cross_entropy_with_logits": lambda out, y: torch.nn.functional.binary_cross_entropy_with_logits(
        out, y.sigmoid(), pos_weight=torch.tensor([1.0, 2.0, 0.5], dtype=out.dtype)[:, None, None]),
    "binary_cross_entropy": lambda out, y: torch.nn.functional.binary_cross_entropy(out.sigmoid(), y.sigmoid()),
}


@pytest.mark.parametrize("loss", list(ELEMENTWISE_LOSSES))
@pytest.mark.parametrize("parts", [2, 3])
def test_an_element_wise_mean_loss_splits_along_the_batch_exactly(memfit_cli, tmp_path, loss, parts):
    """F.smooth_l1_loss, F.huber_loss, F.binary_cross_entropy (nn.BCELoss after a sigmoid) and
    F.binary_cross_entropy_with_logits (a pos_weight per channel, shared by the parts) average
    element by element too."""
    from memfit.capture import capture

    torch.manual_seed(0)
    model = _Denoiser().double()
    x, noise = torch.randn(5, 3, 8, 8, dtype=torch.float64), torch.randn(5, 3, 8, 8, dtype=torch.float64)
    graph, split = tmp_path / "loss.json", tmp_path / "split.json"
    memfit.graph.save(capture(model, [x, noise], lambda out, x, noise: ELEMENTWISE_LOSSES[loss](out, noise),
                               num_module_inputs=1).graph, graph)
    report = fission(memfit_cli, graph, split, parts)
    assert "convolution" in report and "sum" in report, report  # the forward and the backward in one run
    ops = memfit.load(str(split)).ops
    assert sum(op.type == f"aten.{loss}" for op in ops) == parts
    assert all(op.attrs.get("reduction") == 2 for op in ops if op.type.startswith(f"aten.{loss}"))
    assert_runs_equal(str(graph), str(split))


# A loss averaged by hand (aten.mean over every dim, or over the batch alone):
# each part sums, and the parts' sums are divided by the whole's count; the
# mean's backward (an expand, then a division by that count) was element-wise
# already. Before, the mean needed the whole batch and cut the step there.
@pytest.mark.parametrize("loss", ["pow_mean", "mean_over_the_batch"])
def test_a_mean_over_the_batch_splits_exactly(memfit_cli, tmp_path, loss):
    from memfit.capture import capture

    of = {"pow_mean": lambda out, y: (out - y).pow(2).mean(),
          "mean_over_the_batch": lambda out, y: (out - y).abs().mean(0).sum()}[loss]
    torch.manual_seed(0)
    model = _Denoiser().double()
    x, noise = torch.randn(5, 3, 8, 8, dtype=torch.float64), torch.randn(5, 3, 8, 8, dtype=torch.float64)
    graph, split = tmp_path / "loss.json", tmp_path / "split.json"
    captured = capture(model, [x, noise], lambda out, x, noise: of(out, noise), num_module_inputs=1)
    memfit.graph.save(captured.graph, graph)
    report = fission(memfit_cli, graph, split, 3)
    assert "convolution" in report, report
    ops = memfit.load(str(split)).ops
    assert not any(op.type == "aten.mean" for op in ops) and sum(op.type == "aten.sum" for op in ops) >= 3
    assert_runs_equal(str(graph), str(split))


# A segmentation net's F.cross_entropy over [N, C, H, W] scores (nll_loss2d_forward,
# mean) needed the whole batch: its forward never split with its backward. Split,
# each part sums and the loss is over the targets counted before the parts, as
# for nll_loss_forward.
def test_a_segmentation_cross_entropy_splits_along_the_batch_exactly(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = _Denoiser().double()
    x, labels = torch.randn(5, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (5, 8, 8))
    labels[0, :2] = -100  # ignored pixels are not counted
    graph, split = tmp_path / "seg.json", tmp_path / "split.json"
    memfit.graph.save(capture(model, [x, labels], lambda out, x, y: torch.nn.functional.cross_entropy(out, y),
                              num_module_inputs=1).graph, graph)
    report = fission(memfit_cli, graph, split, 3)
    assert "convolution .. convolution_backward" in report, report  # the forward and the backward in one run
    ops = memfit.load(str(split)).ops
    assert sum(op.type == "aten.nll_loss2d_forward" and op.attrs.get("reduction") == 2 for op in ops) == 3
    assert_runs_equal(str(graph), str(split), lambda: {"input1": labels})


# Cross entropy with class weights (an imbalanced data set's
# F.cross_entropy(out, y, weight=w); a segmentation net's with ignore_index 255,
# above the class count) and with the other reductions: "mean" divides by the
# sum of weight[target] over the targets not ignored, counted from the targets
# and the weights before the parts; "sum" adds the parts up; "none" (a focal
# loss, per-sample weights) keeps one loss per row or pixel. Before, a weight
# made the mean a barrier, "none" was one too and "sum" did not split.
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pixels", [False, True], ids=["classes", "pixels"])
def test_a_class_weighted_cross_entropy_splits_along_the_batch_exactly(memfit_cli, tmp_path, pixels, reduction):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = (_Denoiser() if pixels else torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(),
                                                            torch.nn.Linear(8, 3))).double()
    x = torch.randn(*((5, 3, 8, 8) if pixels else (7, 6)), dtype=torch.float64)
    labels = torch.randint(0, 3, (5, 8, 8) if pixels else (7,))
    ignore = 255 if pixels else -100
    labels[1] = ignore  # ignored targets weigh nothing, though 255 is no class
    weight = torch.tensor([0.2, 1.5, 3.0], dtype=torch.float64)

    def loss(out, x, y):
        each = torch.nn.functional.cross_entropy(out, y, weight=weight, ignore_index=ignore, reduction=reduction)
        if reduction != "none":
            return each
        return ((1 - torch.exp(-each)) ** 2 * each).mean()  # a focal loss, gamma 2

    graph, split = tmp_path / "weighted.json", tmp_path / "split.json"
    memfit.graph.save(capture(model, [x, labels], loss, num_module_inputs=1).graph, graph)
    fission(memfit_cli, graph, split, 3)
    ops = memfit.load(str(split)).ops  # the loss in parts, within the run: the forward split with its backward
    forward = "aten.nll_loss2d_forward" if pixels else "aten.nll_loss_forward"
    reduced = {"mean": 2, "sum": 2, "none": 0}[reduction]  # a mean's parts are sums
    assert sum(op.type == forward and op.attrs.get("reduction") == reduced for op in ops) == 3
    assert sum(op.type.endswith("_backward") and "nll_loss" in op.type for op in ops) == 3
    assert_runs_equal(str(graph), str(split), lambda: {"input1": labels})


# A value centred over the batch (x - x.mean(0): VICReg's and Barlow Twins'
# losses, a hand-written normalization) reads a mean the run makes, whole only
# once every part is in: the run now ends before the op that reads it. With
# the mean a barrier this never came up; split, the run failed ("op 'sub'
# reads a partial sum over the parts").
def test_a_value_centred_over_the_batch_ends_the_run_at_its_mean(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8)).double()

    def loss(z, x):
        centred = z - z.mean(0)
        cov = centred.t() @ centred / (z.shape[0] - 1)
        return (z - x).pow(2).mean() + cov.pow(2).sum() * 0.01 + torch.relu(1 - centred.pow(2).mean(0).sqrt()).mean()

    graph = tmp_path / "vic.json"
    memfit.graph.save(capture(model, [torch.randn(12, 8, dtype=torch.float64)], loss).graph, graph)
    found = json.loads(subprocess.run([memfit_cli, "dims", str(graph), "--json"], check=True, capture_output=True,
                                      text=True).stdout)
    runs = 0
    for region in range(8):
        split = tmp_path / f"split{region}.json"
        done = subprocess.run([memfit_cli, "fission", str(graph), "--dim", "batch", "--parts", "3", "--region",
                               str(region), "-o", str(split)], capture_output=True, text=True)
        if "run(s) of two or more ops" in done.stderr:
            break
        assert done.returncode == 0, done.stderr
        assert_runs_equal(str(graph), str(split))
        runs += 1
    assert runs >= 3 and any(d["kind"] == "batch" for d in found["dims"])


# A language model's loss over the next tokens, `x[:, 1:].reshape(-1)`: the
# shifted targets are not contiguous, so the reshape copies them (clone, then
# _unsafe_view) inside the run. The mean's count of targets is made before the
# parts from the targets as they are before the run; it looked through views
# only, met the copy, and the split failed ("tensor 'clone' is used before the
# parts that make it"): memfit.fit found no fission for a GPT-style model.
def test_a_next_token_loss_counts_its_copied_targets_before_the_parts(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    vocab = 11
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, 8), torch.nn.Linear(8, 16), torch.nn.GELU(),
                                torch.nn.Linear(16, vocab)).double()
    tokens = torch.randint(0, vocab, (6, 7))

    def loss(out, x):
        return torch.nn.functional.cross_entropy(out[:, :-1].reshape(-1, vocab), x[:, 1:].reshape(-1))

    cap = capture(model, [tokens], loss, num_module_inputs=1)
    producer = {t: op for op in cap.graph.ops for t in op.outputs}
    target = producer[next(op for op in cap.graph.ops if op.type == "aten.nll_loss_forward").inputs[1]]
    assert target.type == "aten._unsafe_view" and producer[target.inputs[0]].type == "aten.clone"
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    first, last = done.split(" over ")[1].split("(")[1].split(")")[0].split(" .. ")
    assert first == "embedding" and last.startswith("embedding_dense_backward"), done


class TemporalShift(torch.nn.Module):
    """TSM's shift: a quarter of the channels one frame back, a quarter one frame on,
    written by slice assignment into a zeros buffer between two convolutions."""

    def __init__(self, frames=3):
        super().__init__()
        self.frames = frames
        self.c1, self.c2 = torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):  # [B, T, C, H, W]
        b = x.shape[0]
        y = torch.relu(self.c1(x.flatten(0, 1)))
        y = y.view(b, self.frames, *y.shape[1:])
        out, c = torch.zeros_like(y), y.shape[2] // 4
        out[:, :-1, :c] = y[:, 1:, :c]
        out[:, 1:, c:2 * c] = y[:, :-1, c:2 * c]
        out[:, :, 2 * c:] = y[:, :, 2 * c:]
        return torch.relu(self.c2(out.flatten(0, 1))).mean((1, 2, 3)).view(b, self.frames).mean(1)


# An assignment into a slice of a buffer (TSM's temporal shift, a padded copy)
# has autograd's backward write its gradient into a fresh buffer and read it
# back through as_strided. The capture records such an as_strided, a block of
# its contiguous input, as the slices it is (linked like any slice; it was a
# barrier). And the buffer the forward assigns into, zeros_like(y), was made
# whole before the parts: its first write ended the run. Each part now makes
# its own part of it. The whole step, forward and backward, splits along the
# batch, equal to the unsplit step in f64.
def test_assignments_into_a_buffer_split_along_the_batch(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = TemporalShift().double()
    cap = capture(model, [torch.randn(4, 3, 2, 6, 6, dtype=torch.float64)], lambda out, x: out.square().mean(),
                  num_module_inputs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    types = [op.type for op in cap.graph.ops]
    assert "aten.as_strided" not in types and types.count("aten.copy_") >= 6, sorted(set(types))
    # The input's batch axis is merged with T at once: a dimension of its own (analysis/dims.cc).
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    first, last = done.split(" over ")[1].split("(")[1].split(")")[0].split(" .. ")
    assert first == "_reshape_alias" and last.startswith("convolution_backward"), done


class CrossNetwork(torch.nn.Module):
    """Deep & Cross: each cross layer is x0 * (x @ w) + b + x, with w a vector (aten.mv)."""

    def __init__(self, d=6, layers=2):
        super().__init__()
        self.w = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(d) * 0.3) for _ in range(layers)])
        self.b = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(d)) for _ in range(layers)])
        self.head = torch.nn.Linear(d, 1)

    def forward(self, x0):
        x = x0
        for w, b in zip(self.w, self.b):
            x = x0 * (x @ w).unsqueeze(1) + b + x
        return self.head(x).squeeze(1)


# mv (x @ w with w a vector) and dot were barriers: a deep & cross network's
# run along the batch ended at its first cross layer. The rows of mv are its
# result's; its weight gradient (x.t() @ g, an mv too) sums over the batch.
def test_a_cross_network_splits_along_the_batch(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = CrossNetwork().double()
    x, y = torch.randn(7, 6, dtype=torch.float64), torch.randint(0, 2, (7,)).double()
    cap = capture(model, [x, y], lambda out, x, y: torch.nn.functional.binary_cross_entropy_with_logits(out, y),
                  num_module_inputs=1, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))
    assert sum(op.type == "aten.mv" for op in cap.graph.ops) >= 4  # forward and weight gradients
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    first, last = done.split(" over ")[1].split("(")[1].split(")")[0].split(" .. ")
    assert first == "mv" and last.startswith("mv"), done


class SpatialTransformer(torch.nn.Module):
    """A spatial transformer: a localization net predicts an affine grid that grid_sample reads
    a feature map through."""

    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.loc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 6))
        self.head = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        x = self.pre(x)
        theta = self.loc(x).view(-1, 2, 3) + torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=x.dtype)
        grid = torch.nn.functional.affine_grid(theta, [x.shape[0], 3, 6, 7], align_corners=False)
        return self.head(torch.nn.functional.grid_sample(x, grid, align_corners=False)).square().mean()


# grid_sampler_2d_backward was a barrier: a spatial transformer's run along the
# batch ended at it. Its input gradient keeps the batch and channels and sums
# over the output positions; its grid gradient follows them and sums over the
# channels. The whole step splits along the batch, equal in f64.
def test_a_spatial_transformer_splits_along_the_batch(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = SpatialTransformer().double()
    cap = capture(model, [torch.randn(5, 1, 8, 8, dtype=torch.float64)], None,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert any(op.type == "aten.grid_sampler_2d_backward" for op in cap.graph.ops)
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    first, last = done.split(" over ")[1].split("(")[1].split(")")[0].split(" .. ")
    assert first == "convolution" and last.startswith("convolution_backward"), done


# Cross entropy with label smoothing (torch 1.13) averages its smoothing term
# over the targets not ignored with masked_select(...).mean(), and its
# backward puts the gradient back with masked_scatter: shapes the data
# decides, so the run along the batch ended at the loss and no part's
# backward could follow its forward. Fission writes them densely first
# (masked_fill, a sum over the recorded count: transform/masked_reductions.h)
# and the run covers the step, equal in f64 with an ignored target.
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class_weights"])
@pytest.mark.parametrize("ignored", [False, True])
def test_a_label_smoothed_cross_entropy_splits_along_the_batch(memfit_cli, tmp_path, ignored, weighted):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    labels = torch.randint(0, 4, (9,))
    if ignored:
        labels[2] = -100
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64) if weighted else None
    cap = capture(model, [torch.randn(9, 6, dtype=torch.float64), labels],
                  lambda out, x, y: torch.nn.functional.cross_entropy(out, y, weight=weight, label_smoothing=0.1),
                  num_module_inputs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    types = {op.type for op in cap.graph.ops}
    # Weighted, the smoothing term is over the selected targets' weights (no masked_scatter).
    assert {"aten.masked_select", "aten.gather" if weighted else "aten.masked_scatter"} <= types
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    assert "masked reductions written densely" in done, done
    first = done.split(" over ")[1].split("(")[1].split(" .. ")[0]
    ops = memfit.load(str(tmp_path / "split.json")).ops  # the loss's backward in every part, in the run
    assert first == "addmm" and sum(op.type == "aten.nll_loss_backward" for op in ops) == 3, done


class _Depth(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.f = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 1, 1))

    def forward(self, x):
        return self.f(x).squeeze(1)


# A loss over the valid pixels, `err[valid].mean()` (depth, flow, keypoints),
# and a loss normalized by a count of the targets (CenterNet's focal loss over
# `gt.eq(1).float().sum()` positives). x[valid] has the data's shape (written
# densely first, as label smoothing's masked_select); the count depends on
# the targets alone and is made whole before the parts. Either ended the run
# along the batch at the loss; now it covers the step, equal in f64.
@pytest.mark.parametrize("loss", ["valid_pixels", "positives"])
def test_a_loss_over_valid_pixels_or_positives_splits_along_the_batch(memfit_cli, tmp_path, loss):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = _Depth().double()
    x, target = torch.randn(5, 3, 6, 6, dtype=torch.float64), torch.rand(5, 6, 6, dtype=torch.float64)
    target[:, 2, 3] = 1.0  # a positive in every sample
    target[1, 0] = -1.0  # invalid pixels (no depth)

    def objective(out, x, y):
        if loss == "valid_pixels":
            return (out - y).abs()[y >= 0].mean()
        positives = y.eq(1).double()
        return ((out - y) ** 2 * positives).sum() / positives.sum().clamp(min=1)

    cap = capture(model, [x, target], objective, num_module_inputs=1,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    done = split_equals_whole(cap, memfit_cli, tmp_path)
    first, last = done.split(" over ")[1].split("(")[1].split(")")[0].split(" .. ")
    assert first == "convolution" and last.startswith("convolution_backward"), done
    ops = memfit.load(str(tmp_path / "split.json")).ops  # the first layer's backward in every part
    assert sum(op.type == "aten.convolution_backward" for op in ops) == 6, done


class MaskedPatches(torch.nn.Module):
    """MAE's mask: ones, the first patches set to 0 through a slice, then put in a patch order."""

    def __init__(self):
        super().__init__()
        self.e, self.h = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)
        self.register_buffer("order", torch.tensor([4, 0, 5, 2, 7, 1, 6, 3]))

    def forward(self, x):  # [B, 8 patches, 6]
        mask = torch.ones(x.shape[0], x.shape[1], dtype=x.dtype)
        mask[:, :3] = 0
        mask = torch.gather(mask, 1, self.order.expand(x.shape[0], -1))
        return self.h((torch.tanh(self.e(x)) * mask[..., None]).mean(1))


# A buffer written through a view that does not carry the split dimension
# (`mask[:, :3] = 0` along the patches) stays whole before the parts: made per
# part, its views were joined one by one and the write, after the run, landed
# in one join and not in the one the gather read (this model split along its
# patches was 0.036 off in f64, MAE's step 0.12). Along the batch the write
# splits and so does the buffer.
def test_a_buffer_written_across_the_split_dimension_stays_whole(memfit_cli, tmp_path):
    splits, _ = split_every_dimension(memfit_cli, tmp_path, MaskedPatches(),
                                      [torch.randn(4, 8, 6), torch.randint(0, 3, (4,))])
    assert splits >= 4


class TwoViews(torch.nn.Module):
    """One encoder run once per view (SimCLR without the concatenation), InfoNCE between the views:
    each input's batch is a dimension of its own, and they meet only in a @ b.t()."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 4))

    def forward(self, x1, x2):
        a = torch.nn.functional.normalize(self.enc(x1), dim=1)
        b = torch.nn.functional.normalize(self.enc(x2), dim=1)
        return torch.nn.functional.cross_entropy(a @ b.t() / 0.2, torch.arange(a.shape[0]))


# Each view's batch in turn (memfit fission --each-batch): the first view's
# run is the whole step (its rows of a @ b.t(), their loss and backward, the
# second view's embeddings read whole); the second view's backward is split
# with its forward copied before it, and its forward too. The first view's
# embedding is never copied for the second's backward (it carries the other
# batch). Equal to the whole step in f64.
def test_each_batch_of_a_two_view_contrastive_loss_splits(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = TwoViews().double()
    views = [torch.randn(6, 3, 5, 5, dtype=torch.float64) for _ in range(2)]
    cap = capture(model, views, None, num_module_inputs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    done = split_equals_whole(cap, memfit_cli, tmp_path, "--each-batch", "--parts", "3")
    assert "batches:    input0[0], input1[0]" in done, done
    lines = [line.strip() for line in done.splitlines()]
    recompute = [line for line in lines if line.startswith("recompute:")]
    assert len(recompute) == 1 and "(convolution_1 .." in recompute[0], done
    splits = [line for line in lines if line.startswith("input1[0] (batch) x3 over")]
    assert len(splits) == 2 and ".recompute .." in splits[0], done
    # --and-forward by hand on the second view: its forward split too.
    again = split_equals_whole(cap, memfit_cli, tmp_path, "--dim", "input1[0]", "--region", "0", "--recompute",
                                   "--and-forward", "--parts", "2")
    assert "and the forward:" in again, again


class VICReg(torch.nn.Module):
    """Two views through one encoder; invariance (mse), variance and covariance over the batch."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 4))

    def forward(self, x1, x2):
        z1, z2 = self.enc(x1), self.enc(x2)
        std = lambda z: torch.sqrt(z.var(dim=0) + 1e-4)
        cov = lambda z: ((z - z.mean(0)).t() @ (z - z.mean(0)) / (z.shape[0] - 1)).pow(2).sum()
        return (25 * torch.nn.functional.mse_loss(z1, z2) + torch.relu(1 - std(z1)).mean() +
                torch.relu(1 - std(z2)).mean() + cov(z1) + cov(z2))


# VICReg's backward run begins where the run before it closes: its first op
# reads that run's sum over the batch (the variance's backward), and that run
# took the copies of the forward placed before it. The copies join the run
# all the same (transform/recompute_forward.cc, RunWithCopies); nothing is
# copied through the variance itself (it reduces the batch). Equal to the
# whole step in f64.
def test_copies_join_a_backward_run_that_begins_at_a_sum(memfit_cli, tmp_path):
    from memfit.capture import capture

    torch.manual_seed(0)
    model = VICReg().double()
    views = [torch.randn(6, 3, 5, 5, dtype=torch.float64) for _ in range(2)]
    cap = capture(model, views, None, num_module_inputs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    done = split_equals_whole(cap, memfit_cli, tmp_path, "--dim", "batch", "--region", "0", "--recompute",
                                  "--parts", "3")
    assert "recompute: " in done and ".recompute .. convolution_backward" in done, done
