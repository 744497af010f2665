"""memfit.fit on steps that read tensor values (issue 20): value guards checked
every step (a changed value re-plans, an unchanged one does not), a clear
warning when every step re-plans and the fall back to graph breaks, and
segmented steps (specialize=False, or a step that does not capture whole)
training torch.equal to eager in float64 -- forward, backward through the
segments' planned joint graphs, dropout redrawn in the backward's recompute,
and the optimizer update."""

import copy
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from capture_corpus import NumpyFeedsPython  # noqa: E402  .numpy() and nonzero feeding Python
from fc_module import FcModule

needs_native = pytest.mark.skipif(not memfit.native_available(), reason="native module _memfit not built")


class LengthMask(FcModule):
    """A padding mask from lengths.max(): the value sets the shapes after it."""

    def __init__(self):
        super().__init__(8, 16)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x, lengths):
        steps = int(lengths.max())
        mask = torch.arange(steps)[None, :] < lengths[:, None]
        y = self.drop(self.fc(x[:, :steps]))
        y = (y * mask[..., None]).sum(1) / lengths[:, None]
        return self.head(y)


def data_lengths(maxes, batch=4, seq=9):
    g = torch.Generator().manual_seed(1)
    out = []
    for m in maxes:
        lengths = torch.randint(1, m + 1, (batch,), generator=g)
        lengths[0] = m
        out.append((torch.randn(batch, seq, 8, generator=g, dtype=torch.float64), lengths,
                    torch.randint(0, 3, (batch,), generator=g)))
    return out


def train_both(make_model, make_opt, data, **fit_options):
    torch.manual_seed(0)
    m1 = make_model().double()
    torch.manual_seed(0)
    m2 = make_model().double()  # not a deepcopy: weight_norm's computed weight is not a leaf
    o1, o2 = make_opt(m1.parameters()), make_opt(m2.parameters())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step = memfit.fit(m2, o2, F.cross_entropy, data[0], **fit_options)
        torch.manual_seed(7)
        ours = [step(*d) for d in data]
    torch.manual_seed(7)
    eager = []
    for *xs, y in data:
        o1.zero_grad()
        loss = F.cross_entropy(m1(*xs), y)
        loss.backward()
        o1.step()
        eager.append(loss.detach())
    for i, (a, b) in enumerate(zip(eager, ours)):
        assert torch.equal(a, b), f"loss of step {i}: {a} vs {b}"
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        for k, v in o1.state[p1].items():
            assert torch.equal(v, o2.state[p2][k]), k
    return step, [str(w.message) for w in caught if "memfit.fit" in str(w.message)]


def step_beside_eager(step, m1, o1, eager_loss, data):
    """Each batch (inputs..., label) through `step` and through eager training of m1 from the
    same seed: the losses equal, then every parameter and buffer. eager_loss(m1, batch) -> loss."""
    for i, batch in enumerate(data):
        torch.manual_seed(i)
        o1.zero_grad()
        want = eager_loss(m1, batch)
        want.backward()
        o1.step()
        torch.manual_seed(i)
        assert torch.equal(step(*batch), want.detach()), i
    for a, b in zip(m1.state_dict().values(), step.model.state_dict().values()):
        assert torch.equal(a, b)


def adam(params):
    return torch.optim.Adam(params, lr=0.05)


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def test_unchanged_value_does_not_replan_changed_value_does():
    step, said = train_both(LengthMask, sgd, data_lengths([5, 5, 5, 7, 7, 5]), num_model_inputs=2)
    # max 5 captured by fit(), max 7 once; the third 5 and second 7 hit their cached plans.
    assert step.captures == 2 and step.misses == 1 and not step.segmented and not said
    cache = next(iter(step.plans.values()))
    assert "read 5, now 7" in cache.reasons[-1]


def test_value_changing_every_step_warns_once_and_falls_back_to_breaks():
    step, said = train_both(LengthMask, adam, data_lengths([2, 3, 4, 5, 6, 7, 8]), num_model_inputs=2)
    assert len(said) == 1, said
    assert "re-captured on each of the last 3 steps" in said[0] and "read 3, now 4" in said[0]
    assert "graph breaks" in said[0]
    assert step.segmented and step.captures == 5  # 4 plans, then the segmented step once


def test_specialize_false_runs_segments_equal_to_eager():
    step, said = train_both(LengthMask, adam, data_lengths([3, 9, 6, 6, 2]), num_model_inputs=2, specialize=False)
    assert step.segmented and step.captures == 1 and not said
    seg = step.last.step
    # The top module reads the value: its children are the segments; the glue is its own forward.
    assert seg.describe() == "segments: fc, drop, head; eager: none"
    assert "reads a value" in seg.reasons["LengthMask"]
    # Each segment sees what crosses it as fixed bytes: at least the other segments' parameters.
    fc_bytes = sum(p.numel() * 8 for p in step.model.fc.parameters())
    head_bytes = sum(p.numel() * 8 for p in step.model.head.parameters())
    assert seg.fixed_bytes[id(step.model.fc)] >= head_bytes
    assert seg.fixed_bytes[id(step.model.head)] >= fc_bytes


def test_numpy_and_nonzero_feeding_python_break_the_graph():
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g))
            for _ in range(4)]
    loss = lambda out, y: F.cross_entropy(out, y[:out.shape[0]])  # noqa: E731
    torch.manual_seed(0)
    m1 = NumpyFeedsPython().double()
    m2 = copy.deepcopy(m1)
    o1, o2 = sgd(m1.parameters()), sgd(m2.parameters())
    step = memfit.fit(m2, o2, loss, data[0], specialize=False)
    assert step.segmented and step.last.step.describe() == "segments: a, b; eager: none"
    step_beside_eager(step, m1, o1, lambda m, b: loss(m(b[0]), b[1]), data)


@needs_native
def test_segments_planned_under_a_byte_limit_train_like_eager():
    class Wide(LengthMask):
        def __init__(self):
            super().__init__()
            layers = [nn.Linear(8, 128), nn.Tanh()]
            for _ in range(6):
                layers += [nn.Linear(128, 128), nn.Tanh()]
            self.fc = nn.Sequential(*layers, nn.Linear(128, 16))

    data = data_lengths([9, 7, 8], batch=32)
    torch.manual_seed(0)
    model = Wide().double()
    probe = memfit.fit(model, adam(model.parameters()), F.cross_entropy, data[0], num_model_inputs=2, specialize=False)
    seg = probe.last.step
    fc = seg.plans[next(k for k in seg.plans if k[0] == id(probe.model.fc))]
    peak = memfit.simulate(fc.compiled.graph, device="cpu")["peak_bytes"]
    limit = fc.fixed_bytes + int(0.8 * peak)
    step, _ = train_both(Wide, adam, data, num_model_inputs=2, specialize=False, mem_limit=limit, work_budget=50)
    plans = step.last.step.plans
    planned = plans[next(k for k in plans if k[0] == id(step.model.fc))]
    kinds = {s["kind"] for s in planned.plan.steps}
    assert "recompute" in kinds, kinds
    assert planned.figures["optimized"]["peak_bytes"] <= limit - planned.fixed_bytes


class SharedHooked(nn.Module):
    """A value read at the top; a child called twice (its gradients summed across two
    segment calls); a forward hook on a child that changes its output (runs in the glue)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(8, 8)
        self.mid = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.2), nn.Tanh())
        self.out = nn.Linear(8, 3)
        self.mid.register_forward_hook(lambda mod, args, out: out * 2.0)

    def forward(self, x):
        h = self.mid(self.enc(x))
        if h.mean() > 0:
            h = h + 1.0
        return self.out(self.mid(h))


def test_shared_module_and_hooks_across_breaks():
    g = torch.Generator().manual_seed(5)
    data = [(torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g))
            for _ in range(4)]
    step, _ = train_both(SharedHooked, sgd, data, specialize=False)
    assert step.last.step.describe() == "segments: enc, mid, out; eager: none"


class NormedLengths(LengthMask):
    """BatchNorm inside a segment: running statistics written once (by the segment's
    forward), not again by its backward's recompute."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(9), nn.ReLU())


def test_batchnorm_in_a_segment_updates_running_statistics_once():
    step, _ = train_both(NormedLengths, sgd, data_lengths([9, 9, 9]), num_model_inputs=2, specialize=False)
    assert int(step.model.fc[1].num_batches_tracked) == 3


def test_check_and_save_plan_say_the_step_has_breaks(tmp_path):
    data = data_lengths([4])
    model = LengthMask().double()
    step = memfit.fit(model, sgd(model.parameters()), F.cross_entropy, data[0], num_model_inputs=2,
                      specialize=False)
    with pytest.raises(memfit.Error, match="graph breaks"):
        step.check(*data[0])
    with pytest.raises(memfit.Error, match="graph breaks"):
        step.save_plan(str(tmp_path / "plan.json"))


class HeldWeight(nn.Module):
    """A parameter read through a list the module keeps: the whole capture sees a
    constant and refuses (no silent loss); with breaks it runs in the eager glue."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        self.held = [self.enc.weight]

    def forward(self, x):
        return self.head(torch.tanh(F.linear(x, self.held[0], self.enc.bias)))


def test_a_step_that_does_not_capture_whole_warns_and_runs_with_breaks():
    # Module-level breaks left enc.weight's gradient to the eager glue ("segments: head");
    # the op-level step records the list-held weight as the parameter it is: one segment.
    g = torch.Generator().manual_seed(6)
    data = [(torch.randn(5, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (5,), generator=g))
            for _ in range(3)]
    torch.manual_seed(0)
    m1 = HeldWeight().double()
    m2 = copy.deepcopy(m1)  # its list holds its own enc.weight (deepcopy's memo)
    assert m2.held[0] is m2.enc.weight
    o1, o2 = sgd(m1.parameters()), sgd(m2.parameters())
    with pytest.warns(UserWarning, match=r"does not capture as one graph .*'enc.weight'.*graph breaks "
                                         r"\(op-level breaks: 1 segment, no value read\)"):
        step = memfit.fit(m2, o2, F.cross_entropy, data[0])
    step_beside_eager(step, m1, o1, lambda m, b: F.cross_entropy(m(b[0]), b[1]), data)


class TopLevelRead(nn.Module):
    """Parameters used directly in the top-level forward around `x.abs().max().item()`:
    module-level breaks have no submodule to plan (all of it was eager glue)."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, 8) * 0.3)
        self.b1 = nn.Parameter(torch.zeros(16))
        self.w2 = nn.Parameter(torch.randn(3, 16) * 0.3)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        h = self.drop(torch.tanh(F.linear(x, self.w1, self.b1)))
        peak = h.abs().max().item()  # the break: h's segment before, the rest after
        if peak > 0.6:
            h = h * 0.5
        with torch.no_grad():
            scale = h.detach().std() + 1.0  # a no_grad region inside a segment
        return F.linear(h / scale, self.w2)


def data_rows(n, rows=5, seed=1, cols=8):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(rows, cols, generator=g, dtype=torch.float64), torch.randint(0, 3, (rows,), generator=g))
            for _ in range(n)]


def test_a_value_read_in_the_top_level_forward_breaks_at_the_op():
    step, said = train_both(TopLevelRead, adam, data_rows(5), specialize=False)
    seg = step.last.step
    assert step.segmented and not said
    assert seg.describe().startswith("op-level breaks: 2 segments, at a value read (.item()")
    assert "test_fit_breaks.py" in seg.describe()
    # The segment before the read keeps one plan; the one after has one per branch taken.
    keys = [k for k in seg.plans if k[0] == "op-segment"]
    assert 2 <= len(keys) <= 3
    # What crosses the break is counted: each segment's fixed bytes hold every parameter.
    param_bytes = sum(p.numel() * 8 for p in step.model.parameters())
    assert all(b >= param_bytes for b in seg.fixed_bytes.values())


class LeafRead(nn.Module):
    """A leaf module whose forward reads a value (module-level breaks ran it eagerly)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 8) * 0.3)

    def forward(self, x):
        y = x @ self.weight
        n = int((y > 0).sum())  # a count read in Python
        return y[:, :max(n % 8, 1)].sum(1, keepdim=True) + y


def test_a_value_read_in_a_leaf_module_breaks_at_the_op():
    make = lambda: nn.Sequential(nn.Linear(8, 8), LeafRead(), nn.Tanh(), nn.Linear(8, 3))  # noqa: E731
    step, _ = train_both(make, sgd, data_rows(3, seed=2), specialize=False)
    assert step.last.step.describe().startswith("op-level breaks: 2 segments")


class RoiHead(nn.Module):
    """Two feature levels pooled per box by torchvision's MultiScaleRoIAlign (its
    scale inference reads values: op-level breaks), then classified per box."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.pool = torchvision.ops.MultiScaleRoIAlign(["0", "1"], 2, 2)
        self.cls = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x, boxes):
        f0 = torch.relu(self.c1(x))
        f1 = torch.relu(self.c2(f0))
        pooled = self.pool({"0": f0, "1": f1}, list(boxes), [tuple(x.shape[-2:])] * x.shape[0])
        return self.cls(pooled.flatten(1))


# torchvision's roi_align runs inside its C++ autograd Function, which turns grad mode
# off before the op reaches the recording: replayed under no_grad, the gradient to the
# features stopped there (c1's gradient was 0, eager's 0.6; a detector's backbone and
# FPN gradients were wrong). The grad mode recorded is the user code's.
def test_a_custom_op_from_a_cpp_autograd_function_keeps_its_gradient_across_breaks():
    g = torch.Generator().manual_seed(3)
    boxes = torch.tensor([[[1., 1., 8., 8.], [2., 3., 15., 14.]], [[2., 3., 12., 10.], [0., 0., 13., 13.]]],
                         dtype=torch.float64)
    data = [(torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64), boxes,
             torch.randint(0, 3, (4,), generator=g)) for _ in range(3)]
    step, _ = train_both(RoiHead, sgd, data)  # equal to eager, step by step
    assert step.last.step.describe().startswith("op-level breaks")


class Proposals(nn.Module):
    """Integer results of parameters, with no gradient (a detector's proposal indices)."""

    def __init__(self):
        super().__init__()
        self.score = nn.Linear(8, 1)

    def forward(self, x):
        return self.score(x).squeeze(1).argsort(descending=True)[:4]


class ProposalsThenRead(nn.Module):
    def __init__(self):
        super().__init__()
        self.proposals = Proposals()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        keep = self.proposals(x)
        scale = float(x.abs().mean()) + 1.0  # a value read: breaks
        return self.fc(x[keep]) * scale


# A submodule whose outputs carry no gradient gave its segment a joint loss of the
# integer 0, and capture raised a TypeError (torch.ones_like(0)) out of fit: the
# submodule now runs in the glue.
def test_a_submodule_whose_results_carry_no_gradient_runs_in_the_glue():
    g = torch.Generator().manual_seed(5)
    data = [(torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (4,), generator=g))
            for _ in range(3)]
    step, _ = train_both(ProposalsThenRead, sgd, data, specialize=False)
    assert step.segmented


class CustomAfterRead(nn.Module):
    """A custom autograd.Function and a value read: the op-level step refuses (the
    Function's backward is not its forward ops' backward); module-level breaks run it."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 8) * 0.3)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        from capture_corpus import ClampGrad

        h = ClampGrad.apply(x @ self.w)
        if h.mean() > 0:
            h = h + 1.0
        return self.out(h)


def test_op_level_breaks_refuse_custom_functions_and_fall_back_to_module_breaks():
    step, _ = train_both(CustomAfterRead, sgd, data_rows(3, seed=3), specialize=False)
    seg = step.last.step
    assert seg.describe() == "segments: out; eager: none"
    assert "custom autograd.Function 'ClampGrad'" in seg.reasons["op-level breaks"]


def test_an_in_place_write_across_a_break_is_refused():
    from memfit.op_breaks import OpSegmentedStep

    class WriteAcross(FcModule):
        def __init__(self):
            super().__init__(8, 8)

        def forward(self, x):
            y = self.fc(x)
            if y.sum() > -1e9:
                y.mul_(2.0)  # y was made before the break
            return y

    model = WriteAcross().double()
    x, y = data_rows(1)[0]
    with pytest.raises(memfit.Error, match="writes in place a tensor made before the break"):
        OpSegmentedStep(model, lambda out, xs: out.sum(), (x,), 1,
                        planner=lambda g, limit: (memfit.plan.program_order_plan(g), {}))


@pytest.mark.parametrize("specialize", [True, False])
def test_a_queue_buffer_written_on_a_slice_at_a_read_pointer_trains_like_eager(specialize):
    """MoCo's queue (python/bench/capture_corpus.py): `int(self.ptr)` picks the slice the
    step writes; whole graphs per pointer value (guarded), or breaks; the queue and the
    pointer equal eager's after every step."""
    from capture_corpus import MocoQueue

    g = torch.Generator().manual_seed(8)
    data = [(torch.randn(3, 8, generator=g, dtype=torch.float64), torch.zeros(3, dtype=torch.long))
            for _ in range(4)]
    step, _ = train_both(MocoQueue, sgd, data, specialize=specialize)
    assert step.segmented == (not specialize)
    assert int(step.model.ptr) == (4 * 3) % 6


class NormLoopRead(nn.Module):
    """BatchNorm (its running statistics written by native_batch_norm, whose schema does
    not say so) and an LSTM over a length read from the data, around own parameters."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 8) * 0.3)
        self.bn = nn.BatchNorm1d(8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.bn(x @ self.w)
        n = int((h > 0).sum()) % 3 + 1
        out, _ = self.lstm(h.unsqueeze(1).repeat(1, n, 1))
        return self.head(out[:, -1])


def test_batchnorm_and_an_lstm_around_a_read_break_at_the_op_and_update_statistics_once():
    step, _ = train_both(NormLoopRead, adam, data_rows(4, seed=9), specialize=False)
    assert step.last.step.describe().startswith("op-level breaks: 2 segments")
    assert int(step.model.bn.num_batches_tracked) == 4  # and running_mean equals eager's (train_both)


class ScaledByRead(TopLevelRead):
    """The read value is a Python constant of the ops after it: a new segment per value."""

    def forward(self, x):
        h = self.drop(torch.tanh(F.linear(x, self.w1, self.b1)))
        peak = h.abs().max().item()
        return F.linear(h / (peak + 1.0), self.w2)


class ScaledThenNormed(ScaledByRead):
    """... and a BatchNorm and a dropout in the segment after the read."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(3)
        self.drop2 = nn.Dropout(0.3)

    def forward(self, x):
        return self.drop2(self.norm(super().forward(x)))


# A new segment per step is a capture and a plan per step (a detector: 3.4 s a step
# where eager takes 0.4 s). After the warning such segments run their recorded ops
# again in the backward, unplanned (0.5 s), still equal to eager: the BatchNorm's
# statistics updated once per step, the dropout's mask drawn once.
@pytest.mark.parametrize("make", [ScaledByRead, ScaledThenNormed])
def test_a_segment_captured_anew_every_step_warns_once_then_runs_unplanned(make):
    step, said = train_both(make, sgd, data_rows(8, seed=11), specialize=False)
    seg = step.last.step
    assert seg.warned and len(said) == 1 and "captured a segment anew on each of the last 3 steps" in said[0]
    assert "takes the value as a Python constant" in said[0] and "runs its ops eagerly, unplanned" in said[0]
    assert seg.recaptures == 3 and seg.eager_segments == 4  # the last 4 steps' new segments


class SpectrumHead(nn.Module):
    """A complex spectrum (no memfit dtype) beside two linear layers."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(64, 32)
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.body(x) + torch.fft.rfft(x, dim=-1).abs()[..., :32])


@needs_native
def test_a_step_that_neither_captures_nor_breaks_says_both_why():
    # Not one graph (complex64), and each linear layer's segment is its own
    # floor: the error says both, not only the dtype.
    model = SpectrumHead()
    x, y = torch.randn(256, 64), torch.randint(0, 3, (256,))
    with pytest.raises(memfit.Error) as e:
        memfit.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, (x, y), mem_limit_ratio=0.8)
    message = str(e.value)
    assert "unsupported dtype torch.complex64" in message
    assert "with graph breaks: module-level breaks: memory limit" in message and "cannot be met" in message
    assert "op-level breaks: unsupported dtype torch.complex64" in message
    # Without a limit the module-level breaks run it, equal to eager.
    step, said = train_both(SpectrumHead, sgd, data_rows(2, rows=256, cols=64))
    assert step.segmented
    assert said and "does not capture as one graph" in said[0]


class NestedInputs(nn.Module):
    """A batch as a dict, extra features as a list, and a Python float: the
    float is a constant of the captured graph."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(4, 16)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(16, 3)

    def forward(self, batch, extras, scale):
        y = self.a(batch["x"]).relu() + self.b(batch["features"][0]).relu()
        for e in extras:
            y = y + e
        return self.head(self.drop(y)) * scale


class NestedLengths(NestedInputs):
    """... and the lengths in the dict read in Python (int(max()))."""

    def forward(self, batch, extras, scale):
        steps = int(batch["lengths"].max())
        return super().forward({"x": batch["x"][:, :steps].mean(1), "features": batch["features"]}, extras, scale)


def data_nested(scales, batch=4, seq=6):
    g = torch.Generator().manual_seed(3)
    out = []
    for s in scales:
        lengths = torch.randint(1, seq + 1, (batch,), generator=g)
        out.append(({"x": torch.randn(batch, seq, 8, generator=g, dtype=torch.float64), "lengths": lengths,
                     "features": [torch.randn(batch, 4, generator=g, dtype=torch.float64)]},
                    [torch.randn(batch, 16, generator=g, dtype=torch.float64) for _ in range(2)], s,
                    torch.randint(0, 3, (batch,), generator=g)))
    return out


class FirstStep(NestedInputs):
    def forward(self, batch, extras, scale):
        return super().forward({"x": batch["x"][:, 0], "features": batch["features"]}, extras, scale)


def test_nested_inputs_and_a_constant_train_like_eager():
    step, said = train_both(FirstStep, adam, data_nested([0.5, 0.5, 0.25, 0.25, 0.5]), num_model_inputs=3)
    # 0.5 captured by fit(), 0.25 once; the second 0.25 and the last 0.5 hit their cached plans.
    assert step.captures == 2 and step.misses == 1 and not step.segmented and not said
    cache = next(iter(step.plans.values()))
    assert cache.reasons[-1] == "an input that is not a tensor was 0.5, now 0.25"
    differences = step.check(*data_nested([0.5])[0])  # generated code vs the interpreter
    assert "a.weight" in differences and max(differences.values()) == 0.0


def test_another_nesting_is_another_signature():
    data = data_nested([1.0, 1.0])
    step, _ = train_both(FirstStep, sgd, data, num_model_inputs=3)
    batch, extras, scale, y = data[0]
    step({**batch, "more": batch["lengths"]}, extras, scale, y)  # a new key
    step(batch, extras[:1], scale, y)  # a shorter list
    assert step.captures == 3 and len(step.plans) == 3


def test_a_constant_input_changing_every_step_warns_and_runs_with_breaks():
    step, said = train_both(FirstStep, adam, data_nested([1.0, 0.5, 0.25, 2.0, 4.0, 3.0]), num_model_inputs=3)
    assert len(said) == 1 and "was 0.5, now 0.25" in said[0] and "graph breaks" in said[0], said
    assert step.segmented


def test_nested_inputs_with_a_value_read_run_segmented_like_eager():
    step, said = train_both(NestedLengths, adam, data_nested([1.0] * 4), num_model_inputs=3, specialize=False)
    assert step.segmented and step.captures == 1 and not said


def test_a_saved_plan_holds_its_constant_inputs(tmp_path):
    data = data_nested([0.5, 0.5, 0.25])
    model = FirstStep().double()
    step = memfit.fit(model, sgd(model.parameters()), F.cross_entropy, data[0], num_model_inputs=3)
    path = str(tmp_path / "plan.json")
    step.save_plan(path)
    torch.manual_seed(0)
    ma = FirstStep().double()
    mb = copy.deepcopy(ma)
    sa = memfit.fit(ma, sgd(ma.parameters()), F.cross_entropy, data[0], num_model_inputs=3)
    sb = memfit.fit(mb, sgd(mb.parameters()), F.cross_entropy, data[0], num_model_inputs=3, plan=path)
    for d in data[:2]:
        torch.manual_seed(3)
        la = sa(*d)
        torch.manual_seed(3)
        assert torch.equal(la, sb(*d))
    with pytest.raises(memfit.Error, match=r"holds the inputs that are not tensors as constants \[0.5\]; "
                                           r"this step passes \[0.25\]"):
        sb(*data[2])


class LossInOutput(LengthMask):
    """Returns a Hugging Face-style dict: the loss and the logits."""

    def forward(self, x, lengths, y):
        logits = super().forward(x, lengths)
        return {"logits": logits, "loss": F.cross_entropy(logits, y)}


@pytest.mark.parametrize("specialize", [True, False])
def test_without_loss_fn_a_loss_entry_is_the_loss_with_or_without_breaks(specialize):
    torch.manual_seed(0)
    m1 = LossInOutput().double()
    m2 = copy.deepcopy(m1)
    o1, o2 = adam(m1.parameters()), adam(m2.parameters())
    data = data_lengths([5, 5, 5, 5])
    step = memfit.fit(m2, o2, None, data[0], specialize=specialize)
    step_beside_eager(step, m1, o1, lambda m, b: m(*b)["loss"], data)  # the logits are not part of the loss
    assert step.segmented == (not specialize)


class HardNegatives(nn.Module):
    """SSD's hard negative mining in small: how many scores pass a threshold,
    read in Python, where the scores come out of a BatchNorm in training."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4, momentum=0.03)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        k = int((h.mean((1, 2, 3)) > 0.3).sum()) + 1  # a value read: a guard of the plan
        scores = self.head(h.mean((2, 3)))
        return scores[:k].sum(0, keepdim=True).expand(x.shape[0], 3) / k + scores


# torch 1.13's native_batch_norm writes its running statistics without saying
# so in its schema: the guard evaluation ran it on the model's own buffers and
# every step updated them twice (torchvision's SSDlite: running_var 0.81 where
# eager has 0.92 after 3 steps), while losses and parameters stayed equal.
def test_a_guard_that_runs_a_batchnorm_leaves_its_running_statistics_to_the_step():
    g = torch.Generator().manual_seed(8)
    data = [(torch.randn(4, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (4,), generator=g))
            for _ in range(4)]
    step, _ = train_both(HardNegatives, sgd, data)  # buffers compared with eager's
    assert not step.segmented and step.captures >= 1
    assert int(step.model.bn.num_batches_tracked) == 4


class UniqueTokens(nn.Module):
    """Embeds each distinct token once (torch.unique with return_inverse): how many
    there are is the data's."""

    def __init__(self):
        super().__init__()
        self.e, self.h = nn.Embedding(30, 8), nn.Linear(8, 3)

    def forward(self, t):
        u, inverse = torch.unique(t, return_inverse=True)
        return self.h((self.e(u) * 2)[inverse].mean(1))


# torch.unique with return_inverse or return_counts returns a tuple (_unique2),
# and only ops returning one tensor got a shape guard: a step with more
# distinct tokens than the captured one ran its plan and failed ("index 13 is
# out of bounds for dimension 0 with size 13"), or with fewer, indexed past them.
def test_the_number_of_distinct_values_torch_unique_returns_is_guarded():
    g = torch.Generator().manual_seed(5)
    counts = []
    data = []
    for _ in range(5):
        t = torch.randint(0, 30, (4, 6), generator=g)
        counts.append(len(torch.unique(t)))
        data.append((t, torch.randint(0, 3, (4,), generator=g)))
    assert len(set(counts)) > 1, counts
    step, said = train_both(UniqueTokens, sgd, data)
    assert any("the output shape of _unique2" in r for c in step.plans.values() for r in c.reasons) or step.segmented
