"""memfit's in-place optimizer updates against torch.optim.

The mlp's full training graph (forward, backward, update) runs in float64;
torch.optim.SGD / Adam then step copies of the same starting parameters with
memfit's gradients and the same optimizer state. memfit builds one
steady-state step: SGD momentum buffers already exist, Adam's bias correction
uses step 1 (torch's state 'step' = 0 before the step).
"""

import pytest
import torch

import memfit

LR = 1e-3  # memfit's default learning rate (TrainingOptions)


def run_step(zoo, *opt_args):
    g = memfit.load(zoo("mlp", "--batch", "4", "--train", *opt_args))
    sources = memfit.make_sources(g, seed=5, dtype=torch.float64)
    start = {n: v.clone() for n, v in sources.items()}
    out = memfit.run(g, sources, dtype=torch.float64, keep_all=True)
    params = [t.name for t in g.tensors if t.role == "parameter" and t.alias_of is None and t.producer is None]
    return g, start, sources, out, params


def torch_step(start, out, params, make_opt, state_fn):
    ref = {n: start[n].clone().requires_grad_(True) for n in params}
    opt = make_opt([ref[n] for n in params])
    for n in params:
        ref[n].grad = out[n + ".grad"].clone()
        opt.state[ref[n]] = state_fn(n)
    opt.step()
    return ref


def assert_updated(params, sources, out, ref):
    for n in params:
        # The parameter tensors passed in were updated in place, and the
        # graph's outputs are the same storage.
        assert not torch.equal(sources[n], ref[n].detach() * 0)
        torch.testing.assert_close(sources[n], ref[n].detach(), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(out[n], sources[n], rtol=0, atol=0)


def test_sgd(zoo):
    g, start, sources, out, params = run_step(zoo, "--optimizer", "sgd")
    ref = torch_step(start, out, params, lambda p: torch.optim.SGD(p, lr=LR), lambda n: {})
    assert_updated(params, sources, out, ref)
    for n in params:
        assert not torch.equal(sources[n], start[n])


def test_sgd_momentum(zoo):
    g, start, sources, out, params = run_step(zoo, "--optimizer", "sgd", "--momentum", "0.9")
    bufs = {n: start[n + ".momentum_buffer"].clone() for n in params}
    ref = torch_step(start, out, params, lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9),
                     lambda n: {"momentum_buffer": bufs[n]})
    assert_updated(params, sources, out, ref)
    for n in params:  # the buffers were updated in place too
        torch.testing.assert_close(sources[n + ".momentum_buffer"], bufs[n], rtol=1e-12, atol=1e-15)


def test_adam(zoo):
    g, start, sources, out, params = run_step(zoo, "--optimizer", "adam")
    states = {n: {"step": torch.tensor(0.0), "exp_avg": start[n + ".exp_avg"].clone(),
                  "exp_avg_sq": start[n + ".exp_avg_sq"].clone()} for n in params}
    ref = torch_step(start, out, params, lambda p: torch.optim.Adam(p, lr=LR, foreach=False), lambda n: states[n])
    assert_updated(params, sources, out, ref)
    for n in params:
        torch.testing.assert_close(sources[n + ".exp_avg"], states[n]["exp_avg"], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(sources[n + ".exp_avg_sq"], states[n]["exp_avg_sq"], rtol=1e-12, atol=1e-15)
        assert float(states[n]["step"]) == 1.0


def test_optimizer_gradients_match_no_update_graph(zoo):
    """--train with the update computes the same gradients as --no-update."""
    g, start, sources, out, params = run_step(zoo, "--optimizer", "adam")
    no_update = memfit.load(zoo("mlp", "--batch", "4", "--train", "--no-update"))
    grads = memfit.run(no_update, {n: start[n] for n in start if n in {t.name for t in no_update.tensors}},
                       dtype=torch.float64)
    for n in params:
        torch.testing.assert_close(grads[n + ".grad"], out[n + ".grad"], rtol=0, atol=0)
