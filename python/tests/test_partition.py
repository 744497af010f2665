"""memfit.partition_fn as functorch's partitioner: gradients equal to eager's, saved bytes within the budget."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.partition import backward_saved_bytes, node_bytes, saved_activation_bytes, storage_root

pytest.importorskip("functorch.compile")
if not memfit.native_available():
    pytest.skip("memfit's native module is not built", allow_module_level=True)


def mlp():
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.GELU(),
                         nn.Linear(64, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.Sigmoid(), nn.Flatten(), nn.Linear(16 * 4 * 4, 5))


MODELS = {"mlp": (mlp, (16, 32)), "cnn": (cnn, (4, 3, 8, 8))}


def run(name, partition):
    """(loss, gradients) of one step through aot_function with `partition`, and eager's."""
    from functorch.compile import aot_function
    from torch.nn.utils import stateless

    torch.manual_seed(0)
    make, shape = MODELS[name]
    model = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    y = torch.randint(0, 5, (shape[0],))
    names = [n for n, _ in model.named_parameters()]

    def step(*flat):
        params = dict(zip(names, flat[:len(names)]))
        return F.cross_entropy(stateless.functional_call(model, params, (flat[-1],)), y)

    compiled = aot_function(step, fw_compiler=lambda gm, _: gm, bw_compiler=lambda gm, _: gm, partition_fn=partition)
    ps = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    loss = compiled(*ps, x)
    loss.backward()
    ref = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    ref_loss = step(*ref, x)
    ref_loss.backward()
    return loss, [p.grad for p in ps], ref_loss, [p.grad for p in ref]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("ratio", [None, 0.5, 0.25])
def test_gradients_equal_eager_and_saved_bytes_fit(name, ratio):
    part = memfit.partition_fn(ratio=ratio)
    loss, grads, ref_loss, ref_grads = run(name, part)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    report = part.last
    assert report.default_saved_bytes > 0
    if ratio is None:
        assert report.saved_bytes == report.default_saved_bytes and not report.recomputed and report.rounds == 0
    else:
        assert report.budget_bytes == int(ratio * report.default_saved_bytes)
        assert report.saved_bytes <= report.budget_bytes
        assert report.recomputed and report.rounds >= 1


def test_budget_in_bytes_and_the_saved_tensors_are_the_backward_inputs():
    from functorch.compile import default_partition

    seen = {}

    def default(joint, inputs):
        fw, bw = default_partition(joint, inputs)
        seen["bytes"] = backward_saved_bytes(joint, bw)
        return fw, bw

    run("mlp", default)
    default_bytes = seen["bytes"]
    part = memfit.partition_fn(budget_bytes=default_bytes // 3)
    loss, grads, ref_loss, ref_grads = run("mlp", part)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    # memfit's default figure is functorch's default_partition's.
    assert part.last.default_saved_bytes == default_bytes
    assert part.last.saved_bytes <= default_bytes // 3


def test_storage_bytes_count_views_once():
    g = torch.fx.Graph()
    x = g.placeholder("primals_1")
    y = g.call_function(torch.ops.aten.relu.default, (x,))
    v = g.call_function(torch.ops.aten.t.default, (y,))
    from torch.fx.passes.shape_prop import TensorMetadata
    for n, shape in ((x, (4, 8)), (y, (4, 8)), (v, (8, 4))):
        n.meta["tensor_meta"] = TensorMetadata(torch.Size(shape), torch.float32, False, (1, 1), None, False, {})
    assert storage_root(v) is y and node_bytes(v) == 128
    assert saved_activation_bytes([x, y, v]) == 128  # the primal is not counted, the view shares y's bytes


def test_impossible_budget_and_bad_arguments_are_memfit_errors():
    with pytest.raises(memfit.Error, match="budget_bytes or ratio"):
        memfit.partition_fn(1000, ratio=0.5)
    with pytest.raises(memfit.Error, match="ratio"):
        memfit.partition_fn(ratio=-1)
    with pytest.raises(memfit.Error, match="mem_limit"):
        memfit.partition_fn("12 parsecs")
    # A dropout mask is never recomputed (a second draw differs): a budget below it is out of reach.
    from functorch.compile import aot_function

    def step(x):
        return F.dropout(torch.tanh(x), 0.5).sum()

    x = torch.randn(8, 8, requires_grad=True)
    compiled = aot_function(step, fw_compiler=lambda gm, _: gm, bw_compiler=lambda gm, _: gm,
                            partition_fn=memfit.partition_fn(budget_bytes=1))
    with pytest.raises(memfit.Error, match="memfit.partition_fn"):
        compiled(x)


@pytest.mark.skipif(hasattr(torch, "compile"), reason="torch.compile exists: the backend is usable")
def test_backend_is_a_clear_error_without_torch_compile():
    with pytest.raises(memfit.Error, match="torch.compile.*PyTorch 2"):
        memfit.backend(ratio=0.5)


def test_aot_module_with_a_non_scalar_output():
    from functorch.compile import aot_module

    torch.manual_seed(0)
    model = cnn().double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    reference = cnn().double()
    reference.load_state_dict(model.state_dict())
    part = memfit.partition_fn(ratio=0.3)
    compiled = aot_module(model, fw_compiler=lambda gm, _: gm, bw_compiler=lambda gm, _: gm, partition_fn=part)
    F.cross_entropy(compiled(x), y).backward()
    F.cross_entropy(reference(x), y).backward()
    for p, r in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, r.grad, rtol=1e-10, atol=1e-12)
    assert part.last.saved_bytes <= part.last.budget_bytes and part.last.recomputed


def test_random_ops_are_saved_not_recomputed():
    """With dropout, memfit's partition under a budget gives the gradients default_partition
    gives from the same seed: the masks are saved, never drawn again in the backward."""
    from functorch.compile import aot_function, default_partition

    torch.manual_seed(0)
    w1, w2 = torch.randn(16, 32, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
    x = torch.randn(4, 32, dtype=torch.float64)

    def step(a, b, x):
        h = F.dropout(torch.tanh(x @ a.t()), 0.5)
        return (F.dropout(torch.sigmoid(h @ b.t()), 0.3) ** 2).sum()

    grads = []
    part = memfit.partition_fn(ratio=0.5)
    for partition in (default_partition, part):
        compiled = aot_function(step, fw_compiler=lambda gm, _: gm, bw_compiler=lambda gm, _: gm,
                                partition_fn=partition)
        a, b = w1.clone().requires_grad_(True), w2.clone().requires_grad_(True)
        torch.manual_seed(1)
        compiled(a, b, x).backward()
        grads.append((a.grad, b.grad))
    for g, r in zip(grads[1], grads[0]):
        torch.testing.assert_close(g, r, rtol=0, atol=0)
    assert part.last.recomputed and part.last.saved_bytes <= part.last.budget_bytes
    assert not any("bernoulli" in n or "dropout" in n for n in part.last.recomputed)
