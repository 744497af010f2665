"""PyTorch's own answer: bytes saved for backward by functorch's partitioners.

    PYTHONPATH=python /usr/bin/python3 python/bench/partitioners.py [--batch 2] [--image 32] [--seq 16]

For each model, functorch.compile.aot_function traces the joint forward +
backward of `loss(model(x))` and a partitioner splits it. The backward graph's
inputs other than the incoming gradients (tangents_*) are exactly what the
forward saves for the backward; their bytes (from the FX nodes' tensor
metadata) are the number to compare with memfit's plans: default_partition
saves what eager autograd would, min_cut_rematerialization_partition recomputes
cheap ops to save fewer bytes. Needs networkx (min-cut). Parameters are
passed as inputs, so saved parameters (and views of them, such as a weight's
transpose) count too: a column shows how many saved bytes are parameters, and
"activations" is the rest.
"""

import argparse
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import stateless
from memfit.examples import TinyBert


def models(batch, image, seq):
    """(name, module, input, target)"""
    import torchvision.models as tvm
    yield ("mlp", nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)),
           torch.randn(batch, 784), torch.randint(0, 10, (batch,)))
    # eval(): BatchNorm's running-stat updates would be input mutations, which 1.13's aot_function refuses.
    yield ("resnet18", tvm.resnet18(num_classes=10).eval(), torch.randn(batch, 3, image, image),
           torch.randint(0, 10, (batch,)))
    yield ("bert-style", TinyBert(seq=seq, heads=2, dropout=0.0), torch.randint(0, 50, (batch, seq)), torch.randint(0, 3, (batch,)))
    # eval(): no dropout (random ops differ between partitions); still a full backward.
    yield ("transformer-layer", nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0),
           torch.randn(batch, seq, 64), None)


VIEW_OPS = {"t", "view", "_unsafe_view", "transpose", "permute", "expand", "reshape", "alias", "detach",
            "unsqueeze", "squeeze", "slice", "select", "_reshape_alias"}


def node_bytes(node):
    meta = node.meta.get("tensor_meta")
    val = node.meta.get("val")
    if meta is not None and hasattr(meta, "shape"):
        shape, dtype = meta.shape, meta.dtype
    elif isinstance(val, torch.Tensor):
        shape, dtype = val.shape, val.dtype
    else:
        return 0
    n = torch.empty((), dtype=dtype).element_size()
    for d in shape:
        n *= int(d)
    return n


def saved_bytes(module, x, y, partition):
    """(saved bytes, of which parameters, saved tensor count) for one partitioner."""
    names = [n for n, _ in module.named_parameters()]
    record = {}

    def partition_fn(joint, joint_inputs, **kwargs):
        fw, bw = partition(joint, joint_inputs, **kwargs)
        saved = [n for n in bw.graph.nodes if n.op == "placeholder" and not n.name.startswith("tangents")]
        # The forward's placeholders are primals_1.. in the order of the inputs: parameters first.
        fw_inputs = [n.name for n in fw.graph.nodes if n.op == "placeholder"]
        primals = set(fw_inputs[:len(names)])
        fw_nodes = {n.name: n for n in fw.graph.nodes}

        def of_param(name):
            # A primal, or a view of one (aten.t of a weight): parameter memory, not a saved activation.
            node = fw_nodes.get(name)
            while node is not None and node.op == "call_function" and getattr(node.target, "__name__", "").split(".")[0] in VIEW_OPS:
                node = node.args[0]
            return node is not None and node.name in primals

        param_names = {n.name for n in saved if of_param(n.name)}
        record["bytes"] = sum(node_bytes(n) for n in saved)
        record["param_bytes"] = sum(node_bytes(n) for n in saved if n.name in param_names)
        record["count"] = len(saved)
        return fw, bw

    aot_backward(module, x, y, partition_fn)
    return record["bytes"], record["param_bytes"], record["count"]


def loss_step(module, x, y):
    """step(*parameters, x): the loss of module(x) with the given parameters (the
    module's buffers); cross-entropy against y, or mean of squares when y is None."""
    names = [n for n, _ in module.named_parameters()]
    buffers = dict(module.named_buffers())

    def step(*flat):
        p = dict(zip(names, flat[:len(names)]))
        out = stateless.functional_call(module, {**p, **buffers}, (flat[len(names)],))
        if y is None:
            return out.float().pow(2).mean()
        return F.cross_entropy(out, y)

    return step


def aot_backward(module, x, y, partition_fn):
    """Runs loss_step's loss and its backward once through aot_function with
    partition_fn; returns the parameter copies it ran on (their .grad set)."""
    from functorch.compile import aot_function

    compiled = aot_function(loss_step(module, x, y), fw_compiler=lambda gm, _: gm, bw_compiler=lambda gm, _: gm,
                            partition_fn=partition_fn)
    params = [p.detach().requires_grad_(True) for p in module.parameters()]
    compiled(*params, x).backward()
    return params


def add_model_args(parser):
    """--batch, --image, --seq: the sizes models() takes."""
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--seq", type=int, default=16)


def parse_with_partitioners(parser, argv):
    """(args, default_partition, min_cut_rematerialization_partition), torch seeded
    with 0; exits with status 1 when functorch or networkx is missing."""
    args = parser.parse_args(argv)
    try:
        import networkx  # noqa: F401
        from functorch.compile import default_partition, min_cut_rematerialization_partition
    except ImportError as e:
        print(f"needs functorch and networkx: {e}", file=sys.stderr)
        raise SystemExit(1)
    torch.manual_seed(0)
    return args, default_partition, min_cut_rematerialization_partition


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    args, default_partition, min_cut_rematerialization_partition = parse_with_partitioners(parser, argv)
    kib = 1024
    print(f"{'model':<18} {'partitioner':<11} {'saved':>6} {'saved KiB':>10} {'params KiB':>11} {'activations KiB':>16}")
    for name, module, x, y in models(args.batch, args.image, args.seq):
        for label, fn in (("default", default_partition), ("min-cut", min_cut_rematerialization_partition)):
            total, param, count = saved_bytes(module, x, y, fn)
            print(f"{name:<18} {label:<11} {count:>6} {total / kib:>10.1f} {param / kib:>11.1f} "
                  f"{(total - param) / kib:>16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
