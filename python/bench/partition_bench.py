"""memfit's partitioner against functorch's, on the same joint graphs.

    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/partition_bench.py [--batch 2] [--image 32] [--seq 16]

For each model, functorch.compile.aot_function traces the joint forward +
backward of `loss(model(x))` (parameters as inputs; models from
partitioners.py, plus a small ViT) and each partitioner splits it:
default_partition (saves what eager autograd would), min_cut_rematerialization_partition
(recomputes cheap pointwise ops; compiler="nvfuser", its default, and "inductor",
which also recomputes views and a few more ops), and memfit.partition_fn at the
inductor min-cut's saved bytes (the same memory: compare the recompute) and at
0.5 / 0.25 of the default's (device profile --device, default cpu). Per partition:

- saved KiB: activation bytes the forward hands to the backward, per storage
  (a view of a saved tensor is not counted again) and without the primal
  inputs (parameters and the batch: alive anyway);
- recomputed: how many forward ops the backward module runs again;
- recompute MFLOP: their FLOPs by a simple per-op count (matmuls 2*M*K*N,
  convolutions 2 * output elements * input channels per group * kernel
  elements, every other non-view op one FLOP per output element);
- grad err: the largest difference of a parameter gradient from eager's
  (f32, so ~1e-6 is rounding).
"""

import argparse
import functools
import math
import sys
import time

import torch

import memfit
from memfit.partition import backward_saved_bytes, _aten_name
from memfit.fx_convert import VIEW_OPS
from partitioners import add_model_args, aot_backward, loss_step, models as base_models, parse_with_partitioners


def models(batch, image, seq):
    yield from base_models(batch, image, seq)
    try:
        from torchvision.models.vision_transformer import VisionTransformer
    except ImportError:
        return
    vit = VisionTransformer(image_size=image, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128,
                            num_classes=10, dropout=0.0, attention_dropout=0.0)
    yield ("vit (small)", vit.eval(), torch.randn(batch, 3, image, image), torch.randint(0, 10, (batch,)))


def _shape(node):
    meta = node.meta.get("tensor_meta")
    return list(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def node_flops(node):
    """FLOPs of one FX node by the simple count in the module's doc (0 for views and non-tensors)."""
    name = _aten_name(node)
    out = _shape(node)
    if not name or out is None or name in VIEW_OPS:
        return 0
    args = [a for a in node.args if isinstance(a, torch.fx.Node)]
    if name in ("aten.mm", "aten.addmm", "aten.bmm"):
        a = _shape(args[-2])
        return 2 * math.prod(out) * (a[-1] if a else 1)
    if name == "aten.convolution":
        w = _shape(args[1])  # [out channels, in channels / groups, *kernel]
        return 2 * math.prod(out) * math.prod(w[1:])
    return math.prod(out)


def measure(module, x, y, partition):
    """(saved bytes, recomputed ops, recompute FLOPs, max gradient error, seconds)."""
    record = {}

    def partition_fn(joint, joint_inputs, **kwargs):
        fw, bw = partition(joint, joint_inputs, **kwargs)
        fw_names = {n.name for n in fw.graph.nodes if n.op == "call_function"}
        recomputed = [n for n in bw.graph.nodes if n.op == "call_function" and n.name in fw_names]
        record["bytes"] = backward_saved_bytes(joint, bw)
        record["ops"] = sum(1 for n in recomputed if node_flops(n) > 0)
        record["flops"] = sum(node_flops(n) for n in recomputed)
        return fw, bw

    start = time.perf_counter()
    ps = aot_backward(module, x, y, partition_fn)
    seconds = time.perf_counter() - start
    ref = [p.detach().requires_grad_(True) for p in module.parameters()]
    loss_step(module, x, y)(*ref, x).backward()
    err = max(float((a.grad - b.grad).abs().max()) for a, b in zip(ps, ref))
    return record["bytes"], record["ops"], record["flops"], err, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--device", default="cpu", help="memfit's device profile for the recompute costs")
    args, default_partition, min_cut_rematerialization_partition = parse_with_partitioners(parser, argv)
    print(f"{'model':<18} {'partitioner':<18} {'saved KiB':>10} {'recomputed':>10} {'recompute MFLOP':>16} "
          f"{'grad err':>9} {'time s':>7}")
    for name, module, x, y in models(args.batch, args.image, args.seq):
        rows = [("default", default_partition), ("min-cut", min_cut_rematerialization_partition),
                ("min-cut inductor", functools.partial(min_cut_rematerialization_partition, compiler="inductor"))]
        results = {}
        for label, fn in rows:
            results[label] = measure(module, x, y, fn)
        for label, budget, ratio in (("memfit @inductor", results["min-cut inductor"][0], None),
                                     ("memfit @0.5", None, 0.5), ("memfit @0.25", None, 0.25)):
            try:
                results[label] = measure(module, x, y, memfit.partition_fn(budget, ratio=ratio, device=args.device))
            except memfit.Error as e:
                results[label] = e
        for label, r in results.items():
            if isinstance(r, Exception):
                print(f"{name:<18} {label:<18} {'error: ' + str(r)[:90]}")
                continue
            saved, ops, flops, err, seconds = r
            print(f"{name:<18} {label:<18} {saved / 1024:>10.1f} {ops:>10} {flops / 1e6:>16.3f} {err:>9.1e} "
                  f"{seconds:>7.2f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
