"""Data-dependent control flow: capture specializes on the values the step's
Python reads from tensors and records guards (memfit.guards).

Each program reads a value (.item(), int(), bool() in an if, .tolist(), a
range() bound, a boolean mask), is captured, runs with memfit.run equal to
eager, and its guards hold on the same inputs, fail with a message naming
what changed on different ones, and hold on different inputs that keep the
values.
"""

import subprocess

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.verify import relative_error
from fc_module import FcModule


def run_equal(cap, memfit_cli=None, tmp_path=None):
    g = cap.graph
    if memfit_cli:
        path = tmp_path / f"{g.name}.json"
        memfit.save(g, path)
        v = subprocess.run([memfit_cli, "validate", str(path)], capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr
    out = memfit.run(g, {k: v.clone() for k, v in cap.inputs.items()})
    assert relative_error(out[g.tensors[g.outputs[0]].name], cap.loss) <= 1e-5
    for k, want in cap.grads.items():
        assert relative_error(out[k], want) <= 1e-5, k


def capture_equal(model_class, make_inputs, name, memfit_cli, tmp_path):
    """Seeds torch, builds `model_class()` and `make_inputs()`, captures them (run_equal checks the graph
    with the CLI and against eager); returns the capture and the inputs."""
    torch.manual_seed(0)
    model = model_class()
    inputs = make_inputs()
    cap = memfit.capture(model, inputs, name=name)
    run_equal(cap, memfit_cli, tmp_path)
    return cap, inputs


class LengthMask(FcModule):
    """A padding mask built from lengths.max() (speech / sequence models)."""

    def forward(self, x, lengths):
        steps = int(lengths.max())
        mask = torch.arange(steps)[None, :] < lengths[:, None]
        y = self.fc(x[:, :steps])
        return (y * mask[..., None]).sum() / lengths.sum()


def test_length_mask_guards_the_max(memfit_cli, tmp_path):
    cap, (x, lengths) = capture_equal(LengthMask, lambda: (torch.randn(3, 6, 4), torch.tensor([2, 5, 3])),
                                      "length_mask", memfit_cli, tmp_path)
    [guard] = cap.value_guards
    assert guard.kind == "value" and guard.expected == 5 and "test_capture_guards.py" in guard.what
    assert [g.kind for g in cap.guards[:2]] == ["input", "input"]
    assert cap.guards_hold((x, lengths))
    # Other data, same max: the same graph.
    assert cap.guards_hold((torch.randn(3, 6, 4), torch.tensor([5, 1, 1])))
    check = cap.check_guards((x, torch.tensor([2, 4, 3])))
    assert not check.ok and "read 5, now 4" in check.reason and "test_capture_guards.py" in check.reason
    check = cap.check_guards((torch.randn(2, 6, 4), torch.tensor([1, 5])))
    assert not check.ok and check.reason == "input 'input0' was torch.float32 [3, 6, 4], now torch.float32 [2, 6, 4]"
    # Checking mutates nothing.
    assert torch.equal(lengths, torch.tensor([2, 5, 3]))


class Branchy(FcModule):
    """An if on a tensor and a loop bound read from one."""

    def __init__(self):
        super().__init__()
        self.register_buffer("steps", torch.tensor(2))

    def forward(self, x):
        y = self.fc(x)
        if y.abs().max() > 3.0:  # bool(tensor)
            y = y / y.abs().max()
        for _ in range(self.steps):  # a range() bound from a tensor
            y = torch.tanh(self.fc(y))
        return y.pow(2).sum() + sum(x[0].tolist())  # .tolist()


def test_branch_and_loop_bound(memfit_cli, tmp_path):
    cap, (x,) = capture_equal(Branchy, lambda: (torch.randn(5, 4),), "branchy", memfit_cli, tmp_path)
    reads = [g.read for g in cap.value_guards]
    assert reads.count("tolist") == 1 and len(reads) == 3
    assert cap.guards_hold((x,))
    assert not cap.guards_hold((x * 100,))  # the branch flips
    assert "read False, now True" in cap.check_guards((x * 100,)).reason or \
        "read True, now False" in cap.check_guards((x * 100,)).reason
    # The loop bound is a buffer: a new module state changes it.
    check = cap.check_guards((x,), state={"steps": torch.tensor(3)})
    assert not check.ok and "read 2, now 3" in check.reason


class MaskedSelect(FcModule):
    def forward(self, x):
        y = self.fc(x)
        return y[x > 0].pow(2).sum()


def test_boolean_mask_guards_the_selected_count(memfit_cli, tmp_path):
    cap, (x,) = capture_equal(MaskedSelect, lambda: (torch.randn(3, 4),), "masked", memfit_cli, tmp_path)
    [guard] = cap.value_guards
    assert guard.kind == "shape" and guard.expected == [int((x > 0).sum())]
    assert cap.guards_hold((x,))
    assert cap.guards_hold((x[torch.randperm(3)],))  # a different mask, same count
    check = cap.check_guards((torch.ones(3, 4),))
    assert not check.ok and "now [12]" in check.reason


def test_models_without_value_reads_have_only_input_guards():
    model = nn.Sequential(nn.Linear(4, 3))
    x, y = torch.randn(2, 4), torch.randint(0, 3, (2,))
    cap = memfit.capture(model, (x, y), loss_fn=lambda out, x, y: F.cross_entropy(out, y), num_module_inputs=1)
    assert [g.kind for g in cap.guards] == ["input", "input"] and not cap.value_guards
    assert cap.guards_hold((torch.randn(2, 4), torch.randint(0, 3, (2,))))
    assert "input 'input1' was torch.int64 [2], now torch.int32 [2]" == \
        cap.check_guards((x, y.int())).reason


def test_fake_capture_says_a_value_is_read():
    with pytest.raises(memfit.Error, match=r"reads a tensor's value .* at test_capture_guards.py:\d+.*fake=False"):
        memfit.capture(LengthMask(), (torch.randn(3, 6, 4), torch.tensor([2, 5, 3])), fake=True)


def test_capture_cache_reuses_and_recaptures():
    from memfit.guards import CaptureCache

    torch.manual_seed(0)
    model = LengthMask()
    cache = CaptureCache(lambda args: memfit.capture(model, args), max_entries=2, warn_after=3)
    x = torch.randn(3, 6, 4)
    a = cache.get((x, torch.tensor([2, 5, 3])))
    assert cache.get((torch.randn(3, 6, 4), torch.tensor([5, 1, 1]))) is a  # same max: a hit
    b = cache.get((x, torch.tensor([2, 4, 3])))  # max 4: a miss, captured anew
    assert b is not a and (cache.hits, cache.misses) == (1, 2)
    assert "read 5, now 4" in cache.reasons[-1]
    assert cache.get((x, torch.tensor([5, 5, 5]))) is a and cache.thrashing is None
    for m in (1, 2, 3):
        cache.get((x, torch.tensor([m, m, m])))
    assert len(cache.entries) == 2 and cache.misses == 5
    assert "re-captured on each of the last 3 steps" in cache.thrashing


class NumpyScale(FcModule):
    def forward(self, x):
        h = self.fc(x)
        return h.sum() * float(h.detach().abs().numpy().mean())


def test_numpy_read_is_a_guard_not_a_silent_constant():
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    cap = memfit.capture(NumpyScale(), (x,))
    [guard] = cap.value_guards
    assert guard.read == "numpy" and "`.numpy()` at test_capture_guards.py" in guard.what
    assert cap.guards_hold((x.clone(),))
    assert "now" in cap.check_guards((x * 2,)).reason
    with pytest.raises(memfit.Error, match=r"\.numpy\(\).*fake=False"):
        memfit.capture(NumpyScale(), (x,), fake=True)


class PackedGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        return h.sum()


def test_packed_sequence_lengths_read_on_the_host_are_guarded():
    # _pack_padded_sequence's C++ reads the lengths without dispatching, and the GRU
    # kernel its batch sizes: the trace is for these lengths, so they are a guard
    # (was: the guards held on other lengths of the same max and the graph differed).
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4)
    cap = memfit.capture(PackedGRU(), (x, torch.tensor([5, 2, 3])))
    run_equal(cap)
    host = [g for g in cap.value_guards if "read on the host" in g.what]
    assert host and host[0].expected == [5, 3, 2]
    assert cap.guards_hold((torch.randn(3, 5, 4), torch.tensor([3, 5, 2])))  # the same sorted lengths
    check = cap.check_guards((x, torch.tensor([5, 4, 1])))
    assert not check.ok and "read [5, 3, 2], now [5, 4, 1]" in check.reason


def _smoothed(out, x, y):
    """Label smoothing by hand over a class count (timm's, mixup's one-hot targets)."""
    target = F.one_hot(y, 10).to(out.dtype) * 0.9 + 0.01
    return -(target * out.log_softmax(1)).sum(1).mean()


# F.one_hot(y, C)'s C++ reads the labels' min and max only to check them. Guarded
# as two values, a batch with another largest label captured again: over 10
# classes and batches of 6, every step (memfit.fit: "re-captured on each of the
# last 3 steps", 20x eager's time). The guard is now the range [0, C).
@pytest.mark.parametrize("fake", [False, True], ids=["real", "fake"])
def test_one_hot_with_a_class_count_guards_the_range_not_the_values(fake):
    torch.manual_seed(0)
    model = nn.Linear(4, 10)
    x = torch.randn(6, 4)
    cap = memfit.capture(model, (x, torch.tensor([0, 1, 2, 3, 4, 5])), loss_fn=_smoothed, num_module_inputs=1,
                         fake=fake)
    assert [g.read for g in cap.value_guards] == ["in_range"]
    assert cap.guards_hold((torch.randn(6, 4), torch.tensor([9, 9, 1, 1, 2, 3])))  # another max: the same graph
    reason = cap.check_guards((x, torch.tensor([0, 1, 2, 3, 4, 10]))).reason  # out of range: eager raises
    assert "one_hot(..., 10)` at test_capture_guards.py" in reason and "in [0, 10)" in reason
    assert not cap.guards_hold((x, torch.tensor([-1, 1, 2, 3, 4, 5])))
    inputs = memfit.capture(model, (x, torch.tensor([0, 1, 2, 3, 4, 5])), loss_fn=_smoothed,
                            num_module_inputs=1).inputs  # a fake capture has no values
    out = memfit.run(cap.graph, {**inputs, "input1": torch.tensor([9, 9, 1, 1, 2, 3])})
    with torch.no_grad():
        want = _smoothed(model(x), x, torch.tensor([9, 9, 1, 1, 2, 3]))
    assert relative_error(out[cap.graph.tensors[cap.graph.outputs[0]].name], want) <= 1e-6


def test_fit_with_one_hot_targets_captures_once():
    torch.manual_seed(0)
    model = nn.Linear(4, 10)
    step = memfit.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda out, y: _smoothed(out, None, y),
                      (torch.randn(6, 4), torch.randint(0, 10, (6,))))
    for _ in range(8):
        step(torch.randn(6, 4), torch.randint(0, 10, (6,)))
    assert step.captures == 1
    with pytest.raises(RuntimeError):
        step(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 10]))  # as eager: a label out of range is an error
