"""Real-code idioms (python/bench/capture_corpus.py): capture -> memfit
validate -> memfit.run -> gradients (and, for the recurrent layers, SGD's
updated parameters) equal to eager. The whole corpus is fast (~10 s);
python/bench/capture_coverage.py --only corpus prints its table.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import memfit
from memfit.verify import relative_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from capture_corpus import BREAKS_ONLY, CORPUS  # noqa: E402
from capture_coverage import grad_error, segmented_error  # noqa: E402
from fc_module import FcModule


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_idiom(name, memfit_cli, tmp_path):
    torch.manual_seed(0)
    model, inputs, loss_fn, k = CORPUS[name]()
    if name in BREAKS_ONLY:
        with pytest.raises(memfit.Error, match=BREAKS_ONLY[name]):
            memfit.capture(model, inputs, loss_fn=loss_fn, num_module_inputs=k, name=name)
        err, _ = segmented_error(model, inputs, loss_fn, k)
        assert err <= 1e-5
        return
    cap = memfit.capture(model, inputs, loss_fn=loss_fn, num_module_inputs=k, name=name)
    path = tmp_path / "g.json"
    memfit.save(cap.graph, path)
    v = subprocess.run([memfit_cli, "validate", str(path)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    out = memfit.run(memfit.load(path), {k: v.clone() for k, v in cap.inputs.items()})
    assert relative_error(out[cap.graph.tensors[cap.graph.outputs[0]].name], cap.loss) <= 1e-5
    assert grad_error(out, cap.grads) <= 1e-5
    assert cap.guards_hold(inputs)


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
def test_bidirectional_batch_first_recurrent_layers_update_like_eager(cls, memfit_cli, tmp_path):
    """Before: RNN / GRU failed to capture (a cat of [10, 2, 64] declared [2,
    10, 64]) and LSTM differed from eager by 2.5e-4: torch 1.13's
    functional_call does not reach the layers' _flat_weights, so the weights
    were traced as constants."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.rnn = cls(16, 32, batch_first=True, bidirectional=True)
    x = torch.randn(2, 10, 16)

    class Out(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner.rnn(x)[0]

    cap = memfit.capture(Out(), (x,), optimizer="sgd-momentum", name=cls.__name__)
    assert len(cap.updated) == 2 * 8  # every weight and bias of both directions, and its momentum buffer
    sources = {k: v.clone() for k, v in cap.inputs.items()}
    memfit.run(cap.graph, sources)
    for k, want in cap.updated.items():
        assert relative_error(sources[k], want) <= 1e-6, k


class CachedWeight(FcModule):
    def __init__(self):
        super().__init__()
        self.weights = [self.fc.weight]  # a reference the module keeps: not substituted

    def forward(self, x):
        return x @ self.weights[0].t() + self.fc.bias


def test_a_parameter_traced_as_a_constant_is_an_error():
    with pytest.raises(memfit.Error, match=r"parameter 'fc.weight' gets a gradient in eager autograd but not in the "
                                           r"captured graph"):
        memfit.capture(CachedWeight(), (torch.randn(3, 4),))


def test_the_module_is_left_as_it_was():
    """The eager reference runs the module itself (its own parameters), then
    restores buffers, reassigned buffers and requires_grad flags."""
    torch.manual_seed(0)
    model, inputs, loss_fn, k = CORPUS["buffer_updated_in_forward"]()
    frozen = nn.Linear(8, 8)
    frozen.weight.requires_grad_(False)
    model.extra = frozen
    before = {n: t.clone() for n, t in list(model.state_dict().items())}
    buffers = dict(model.named_buffers())
    memfit.capture(model, inputs, loss_fn=loss_fn, num_module_inputs=k)
    assert all(torch.equal(model.state_dict()[n], t) for n, t in before.items())
    assert all(dict(model.named_buffers())[n] is t for n, t in buffers.items())
    assert not frozen.weight.requires_grad and all(p.grad is None for p in model.parameters())


def test_structured_inputs_are_named_and_guarded():
    torch.manual_seed(0)
    model, inputs, loss_fn, k = CORPUS["dict_in_dict_out"]()
    cap = memfit.capture(model, inputs, loss_fn=loss_fn)
    names = {t.name for t in cap.graph.tensors if t.role == "input"}
    assert names == {"input0.0", "input0.1"}
    assert cap.guards_hold(({"x": torch.randn(4, 8), "y": torch.randint(0, 3, (4,))},))
    check = cap.check_guards(({"x": torch.randn(4, 8)},))
    assert not check.ok and "structure changed" in check.reason


def test_out_variants_and_filled_constants_become_registered_ops():
    """spectral_norm's F.normalize(..., out=u) is aten.div.out: rewritten as
    div + copy_; ctc_loss's target lengths (C++ writes them into aten.empty
    without dispatching) become a constant with the value the step saw."""
    torch.manual_seed(0)
    for name in ("weight_and_spectral_norm", "ctc_loss"):
        model, inputs, loss_fn, k = CORPUS[name]()
        cap = memfit.capture(model, inputs, loss_fn=loss_fn, num_module_inputs=k)
        assert not any(op.overload == "out" for op in cap.graph.ops)
        if name == "ctc_loss":
            filled = [t for t in cap.graph.tensors if t.name.startswith("_memfit_filled")]
            assert len(filled) == 1 and torch.equal(cap.inputs[filled[0].name], torch.tensor([2.0, 3.0]))


def test_check_makes_a_wrong_graph_an_error(monkeypatch):
    torch.manual_seed(0)
    model, inputs, loss_fn, k = CORPUS["module_called_twice"]()
    cap = memfit.capture(model, inputs, check=True, optimizer="sgd")
    assert cap.updated
    capture_module = sys.modules["memfit.capture"]
    # A graph that computes something else: the first relu becomes a sigmoid.
    original = capture_module.fx_to_graph

    def corrupt(*args, **kwargs):
        g = original(*args, **kwargs)
        op = next(op for op in g.ops if op.type == "aten.relu")
        op.type = "aten.sigmoid"
        return g

    monkeypatch.setattr(capture_module, "fx_to_graph", corrupt)
    with pytest.raises(memfit.Error, match=r"'SharedTwice': the graph differs from eager PyTorch by .* at the loss"):
        memfit.capture(model, inputs, check=True)


def test_coverage_script_prints_the_table(capsys, memfit_cli, monkeypatch):
    """python/bench/capture_coverage.py (the full sweep is a benchmark) on two programs."""
    import capture_coverage

    monkeypatch.setenv("MEMFIT_CLI", memfit_cli)
    assert capture_coverage.main(["--only", "corpus", "--models", "item_scale,tied_weights"]) == 0
    out = capsys.readouterr().out
    assert "corpus: 2 programs: 2 whole, 0 with breaks, 0 fake-only, 0 failed; gradients equal eager 2/2" in out
    assert "1 value guards" in out  # item_scale reads x.std().item()


class ClampsItsWeight(FcModule):
    def forward(self, x):
        self.fc.weight.data.clamp_(-0.1, 0.1)  # weight clipping inside forward (WGAN critics)
        return self.fc(x)


def test_a_forward_that_writes_its_parameters_leaves_the_module_alone():
    torch.manual_seed(0)
    model = ClampsItsWeight()
    before = model.fc.weight.detach().clone()
    assert before.abs().max() > 0.1
    cap = memfit.capture(model, (torch.randn(3, 4),), check=True)
    assert torch.equal(model.fc.weight, before)
    assert cap.grads
