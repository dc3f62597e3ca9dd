import math
from collections.abc import Callable
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae import Config, build_vae
from pyro_vae.app.checkpoint import load_checkpoint
from pyro_vae.app.faults import (
    MAX_RECOVERIES,
    NonFiniteStep,
    NumericalFault,
    StepScan,
    absurd_elbo_warning,
    name_non_finite_state,
    non_finite_kind,
    non_finite_state,
)
from pyro_vae.app.run_folder import RunFolder
from pyro_vae.app.train import train
from pyro_vae.app.trainer import Trainer
from pyro_vae.data import prepare_data
from pyro_vae.guides import MIN_SCALE


class FaultyEncoder(nn.Module):
    """A user's encoder that emits a NaN mean on chosen training calls (a real fault)."""

    def __init__(self, inner: nn.Module, bad_calls, gradient_only: bool = False):
        super().__init__()
        self.inner, self.bad_calls, self.gradient_only, self.calls = (
            inner,
            bad_calls,
            gradient_only,
            0,
        )

    def forward(self, x):
        q = self.inner(x)
        if not self.training:
            return q
        self.calls += 1
        if not self.bad_calls(self.calls):
            return q
        loc, scale = q.base_dist.loc, q.base_dist.scale
        # gradient_only: the forward stays finite, the backward is 0 * inf = NaN
        loc = loc + torch.sqrt(loc - loc) if self.gradient_only else loc * float("nan")
        return dist.Normal(loc, scale).to_event(1)


def make_trainer(tiny, tmp_path, bad_calls, fault_read_every=None, **changes):
    tiny_run = dict(dataset="tiny.npz", hidden=[16], latent_dim=2, batch_size=50, epochs=3)
    cfg = Config(**{**tiny_run, **changes})
    data = prepare_data(tiny, "binary", "bernoulli", "dynamic", seed=0)
    torch.manual_seed(0)
    vae = build_vae(cfg, data.data_shape)
    vae.encoder = FaultyEncoder(vae.encoder, bad_calls)
    trainer = Trainer(cfg, vae, data, fault_read_every=fault_read_every)
    return trainer, RunFolder.create(tmp_path / "run")


@pytest.fixture
def tiny(tiny_npz):
    from pyro_vae.datasets import load_npz

    return load_npz(tiny_npz)


def test_transient_nan_is_recovered_and_never_saved(tiny, tmp_path):
    trainer, run = make_trainer(tiny, tmp_path, bad_calls=lambda n: n == 9)
    messages = []
    trainer.fit(run, messages.append, progress=False)
    recovered = [m for m in messages if "restored the last good state" in m]
    assert len(recovered) == 1 and "non-finite loss at epoch 2, step 3" in recovered[0]
    assert trainer.recoveries == 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.cfg.lr / 2)
    assert [row["epoch"] for row in run.read_metrics()] == [1, 2, 3]
    state = load_checkpoint(run.checkpoint_path)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert state["recoveries"] == 1
    assert not any(m.startswith("warning:") for m in messages)  # a sane ELBO: no warning


def test_nan_gradient_with_finite_loss_is_caught_before_the_step(tiny, tmp_path):
    trainer, _ = make_trainer(tiny, tmp_path, bad_calls=lambda n: n == 2)
    trainer.model.encoder.gradient_only = True
    batch = trainer.data.epoch_train(0)[:50]
    trainer.train_step(batch)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NonFiniteStep, match="non-finite gradient at epoch 1, step 1"):
        trainer.train_step(batch)
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_persistent_nan_stops_after_three_recoveries_saying_what_was_tried(tiny, tmp_path):
    trainer, run = make_trainer(tiny, tmp_path, bad_calls=lambda n: n >= 4)
    with pytest.raises(NumericalFault) as info:
        trainer.fit(run, lambda _: None, progress=False)
    message = str(info.value)
    assert "non-finite loss at epoch 1, step 1" in message
    assert f"halved the learning rate {MAX_RECOVERIES} times" in message
    assert trainer.recoveries == MAX_RECOVERIES


def test_stop_policy_stops_at_the_first_fault(tiny, tmp_path):
    trainer, run = make_trainer(tiny, tmp_path, bad_calls=lambda n: n == 3, on_nan="stop")
    with pytest.raises(NumericalFault, match=r"epoch 1, step 3; tried nothing \(--on-nan stop\)"):
        trainer.fit(run, lambda _: None, progress=False)


def test_gradient_clipping_bounds_the_update(tiny, tmp_path):
    trainer, _ = make_trainer(tiny, tmp_path, bad_calls=lambda n: False, clip_grad=0.5)
    batch = trainer.data.epoch_train(0)[:50]
    seen = []
    trainer.optimizer.step = lambda: seen.append(
        torch.nn.utils.get_total_norm([p.grad for p in trainer.model.parameters()])
    )
    trainer.train_step(batch)
    assert float(seen[0]) <= 0.5 + 1e-5


def test_scale_guard_keeps_q_finite_where_exp_would_not(mnist5k):
    """At a deliberately high learning rate the raw scale outputs run to -hundreds."""
    torch.manual_seed(0)
    cfg = Config(lr=1.0, hidden=[64], latent_dim=4, on_nan="off")
    data = prepare_data(mnist5k, "binary", "bernoulli", "dynamic", seed=0)
    vae = build_vae(cfg, data.data_shape)
    trainer = Trainer(cfg, vae, data)
    raw = []
    vae.encoder.head.register_forward_hook(lambda m, i, out: raw.append(out.detach()[..., 4:]))
    x, batches = data.epoch_train(0), data.batch_indices(0, 128)
    guard_acted = False
    for i in range(10):
        loss = trainer.train_step(x[batches[i]])
        assert torch.isfinite(loss)
        scale = vae.encode(x[batches[i]])[1]
        assert torch.isfinite(scale).all() and (scale >= MIN_SCALE).all()
        if torch.exp(raw[-1]).min() == 0:  # an exp parameterisation would give log q = inf here
            guard_acted = True
            assert torch.isfinite(vae.log_weights(x[batches[i]]).log_q).all()
    assert guard_acted


@pytest.mark.parametrize("fused_kernel", [True, False])
def test_gradient_scan_finds_nan_and_inf_and_leaves_gradients_untouched(monkeypatch, fused_kernel):
    if not fused_kernel:  # a torch without the fused scan for these tensors

        def missing(*args):
            raise NotImplementedError

        monkeypatch.setattr(torch, "_amp_foreach_non_finite_check_and_unscale_", missing)
    params = [torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(5))]
    for p in params:
        p.grad = torch.randn_like(p)
    before = [p.grad.clone() for p in params]
    loss, scan = torch.tensor(2.0), StepScan(torch.device("cpu"))
    assert non_finite_kind(loss, params).tolist() == [0.0]
    assert scan.flag(loss, params).tolist() == [0.0] and loss.item() == 2.0
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before, strict=True))
    params[1].grad[2] = float("inf")
    assert non_finite_kind(loss, params).tolist() == [0.5]  # a gradient
    assert scan.flag(loss, params).tolist() == [1.0]
    params[1].grad[2] = 0.0
    assert scan.flag(loss, params).tolist() == [0.0]  # the flag is the latest step's
    params[1].grad[2] = float("inf")
    assert non_finite_kind(torch.tensor(float("nan")), params).tolist() == [1.0]  # the loss
    params[1].grad[2] = 0.0
    assert scan.flag(torch.tensor(float("-inf")), params).tolist() == [1.0]


def test_deferred_read_skips_the_bad_step_on_the_device(tiny, tmp_path):
    """As on a GPU: no host read per step; the fused Adam leaves a flagged step out."""
    trainer, _ = make_trainer(tiny, tmp_path, bad_calls=lambda n: n == 2, fault_read_every=10)
    trainer.model.encoder.gradient_only = True
    batch = trainer.data.epoch_train(0)[:50]
    trainer.train_step(batch)
    params = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    adam_steps = [s["step"].clone() for s in trainer.optimizer.state.values()]
    trainer.position.step = 1
    trainer.train_step(batch)  # the fault: noted, not raised, not applied
    assert all(torch.equal(v, params[k]) for k, v in trainer.model.state_dict().items())
    assert all(
        torch.equal(s["step"], n)
        for s, n in zip(trainer.optimizer.state.values(), adam_steps, strict=True)
    )
    trainer.position.step = 2
    trainer.train_step(batch)  # a good step still moves the parameters
    assert not torch.equal(
        trainer.model.state_dict()["decoder.layers.0.weight"], params["decoder.layers.0.weight"]
    )
    with pytest.raises(NonFiniteStep, match="non-finite gradient at epoch 1, step 2"):
        trainer.read_faults()
    trainer.read_faults()  # the read cleared the record


def test_deferred_reads_recover_exactly_like_immediate_ones(tiny, tmp_path):
    """A fault read a step late is reported at its own step and gives the same run."""
    runs = {}
    for every in (1, 4):
        trainer, run = make_trainer(
            tiny, tmp_path / str(every), bad_calls=lambda n: n == 9, fault_read_every=every
        )
        messages = []
        trainer.fit(run, messages.append, progress=False)
        runs[every] = (trainer, [m for m in messages if "restored" in m])
    (immediate, said), (deferred, said_later) = runs[1], runs[4]
    assert said == said_later and "non-finite loss at epoch 2, step 3" in said[0]
    for (name, a), b in zip(
        immediate.model.state_dict().items(), deferred.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name

    def without_time(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert without_time(immediate.history) == without_time(deferred.history)


def test_deferred_reads_need_the_fused_adam(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(
        "pyro_vae.app.trainer.make_adam", lambda p, lr, wd: torch.optim.Adam(p, lr=lr)
    )
    with pytest.raises(ValueError, match="fused Adam"):
        make_trainer(tiny, tmp_path, bad_calls=lambda n: False, fault_read_every=4)


def _finite(state) -> bool:
    """Every tensor in a (nested) state is finite."""
    if torch.is_tensor(state):
        return bool(torch.isfinite(state).all())
    values = state.values() if isinstance(state, dict) else state if isinstance(state, list) else []
    return all(_finite(v) for v in values)


def test_huge_lr_poisoning_adam_state_is_recovered_and_never_saved(tiny, tmp_path):
    """lr 3e4: every loss and gradient is finite, but a gradient over 1.8e19 squares to inf in
    Adam's exp_avg_sq, freezing its weights for good; the scan at the epoch's end finds it."""
    trainer, run = make_trainer(tiny, tmp_path, bad_calls=lambda n: False, lr=3e4, epochs=2)
    messages = []
    trainer.fit(run, messages.append, progress=False)
    faults = [m for m in messages if m.startswith("non-finite")]
    assert len(faults) == 1 and "optimizer state (exp_avg_sq of " in faults[0]
    assert "by epoch 1, step 6: restored the last good state (epoch 1, step 0)" in faults[0]
    assert trainer.recoveries == 1 and trainer.optimizer.param_groups[0]["lr"] == 1.5e4
    state = load_checkpoint(run.checkpoint_path)
    assert state["optimizer"]["state"] and _finite(state["optimizer"]) and _finite(state["model"])
    assert state["recoveries"] == 1 and [r["epoch"] for r in run.read_metrics()] == [1, 2]
    warnings = [m for m in messages if m.startswith("warning: test ELBO")]  # finite but absurd
    assert len(warnings) == 2 and "far below -543.4" in warnings[0]


def test_a_poisoned_state_is_refused_before_the_checkpoint_under_stop(tiny, tmp_path):
    trainer, run = make_trainer(
        tiny, tmp_path, bad_calls=lambda n: False, lr=3e4, on_nan="stop", checkpoint_every=1
    )
    with pytest.raises(
        NumericalFault, match=r"optimizer state .* by epoch 1, step 2; tried nothing"
    ):
        trainer.fit(run, lambda _: None, progress=False)
    state = load_checkpoint(run.checkpoint_path)  # step 1's, written before the poison
    assert state["position"]["step"] == 1 and _finite(state["optimizer"])
    assert not all(_finite(s["exp_avg_sq"]) for s in trainer.optimizer.state.values())


def test_state_scan_finds_a_bad_parameter_or_moment_names_it_and_changes_nothing(tiny, tmp_path):
    trainer, _ = make_trainer(tiny, tmp_path, bad_calls=lambda n: False)
    trainer.train_step(trainer.data.epoch_train(0)[:50])
    assert non_finite_state(trainer.optimizer).tolist() == [0.0]
    weight = trainer.model.decoder.layers[0].weight
    moments = trainer.optimizer.state[weight]
    moments["exp_avg_sq"][:3, 0] = float("inf")
    before = {k: v.clone() for k, v in moments.items()}
    assert non_finite_state(trainer.optimizer).tolist() == [0.25]
    assert all(torch.equal(v, before[k]) for k, v in moments.items())
    names = trainer.parameter_names
    assert name_non_finite_state(trainer.optimizer, names) == (
        f"optimizer state (exp_avg_sq of decoder.layers.0.weight: 3 of {weight.numel()} values)"
    )
    moments["exp_avg_sq"].zero_()
    with torch.no_grad():
        weight[1, 1] = float("nan")
    assert non_finite_state(trainer.optimizer).tolist() == [0.25]
    assert name_non_finite_state(trainer.optimizer, names).startswith(
        "parameter (decoder.layers.0.weight: 1 of"
    )


def test_running_loss_sum_of_finite_float32_losses_does_not_overflow(tiny, tmp_path):
    """Six float32 losses of 3e38 sum past float32's 3.4e38 (to inf in a float32 sum)."""
    trainer, _ = make_trainer(tiny, tmp_path, bad_calls=lambda n: False)
    big = torch.tensor(3e38, dtype=torch.float32)
    assert torch.isinf(big + big)
    trainer.train_step = lambda x, kl_scale, y: big
    row = trainer.run_epoch()
    assert row["train_elbo"] == pytest.approx(-6 * 3e38 / 6 / 300, rel=1e-6)
    old = trainer.state_dict()  # a checkpoint from before the float64 sum
    old["loss_sum"] = torch.tensor(12.5, dtype=torch.float32)
    trainer.load_state_dict(old, "an old checkpoint")
    assert trainer.loss_sum.dtype == torch.float64 and float(trainer.loss_sum) == 12.5


@pytest.mark.parametrize(
    ("elbo", "scale", "shape", "warns"),
    [
        (-6.8e30, "binary", (1, 28, 28), True),
        (-5000.0, "binary", (1, 28, 28), False),  # bad, but within 10x of -543.4
        (-5500.0, "binary", (1, 28, 28), True),
        (float("-inf"), "binary", (784,), True),
        (-40000.0, "8-bit", (1, 28, 28), False),  # the uniform bound is -4347.5
        (-50000.0, "8-bit", (1, 28, 28), True),
        (-1e30, "continuous", (784,), False),  # a density has no such bound
        (float("nan"), "binary", (784,), True),  # not finite, whatever the scale
        (float("nan"), "counts", (20,), True),
        (float("-inf"), "continuous", (784,), True),
        (float("inf"), "counts", (20,), True),
    ],
)
def test_absurd_elbo_warning_against_the_uniform_model(elbo, scale, shape, warns):
    warning = absurd_elbo_warning(elbo, scale, shape)
    assert bool(warning) == warns
    assert not warns or warning.startswith("warning: test ELBO") and "\n" not in warning
    if not math.isfinite(elbo):
        assert f"test ELBO {elbo} per datapoint is not finite" in warning and "diverged" in warning


class InterruptingEncoder(nn.Module):
    """An encoder whose chosen training call is interrupted, as Ctrl-C would."""

    def __init__(self, inner: nn.Module, at_call: int):
        super().__init__()
        self.inner, self.at_call, self.calls = inner, at_call, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return self.inner(x)


def failing_first_epoch(tiny, tmp_path, encoder: Callable[[nn.Module], nn.Module], out: Path):
    cfg = Config(dataset="tiny.npz", hidden=[16], latent_dim=2, batch_size=50, epochs=2,
                 on_nan="stop", device="cpu", out=str(out))  # fmt: skip
    vae = build_vae(cfg, tiny.data_shape)
    vae.encoder = encoder(vae.encoder)
    return cfg, vae


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_nothing(tiny, tmp_path):
    """The same command can run again: no half-made folder asks for --overwrite."""
    out = tmp_path / "new" / "run"
    cfg, vae = failing_first_epoch(
        tiny, tmp_path, lambda e: FaultyEncoder(e, lambda n: n == 3), out
    )
    with pytest.raises(NumericalFault):
        train(cfg, model=vae, data=tiny, progress=False, log=lambda _: None)
    assert not (tmp_path / "new").exists()
    cfg, vae = failing_first_epoch(tiny, tmp_path, lambda e: e, out)
    train(cfg, model=vae, data=tiny, progress=False, log=lambda _: None)
    assert (out / "checkpoint.pt").exists()


def test_a_fresh_run_interrupted_in_its_first_epoch_stays_to_be_resumed(tiny, tmp_path):
    out = tmp_path / "run"
    cfg, vae = failing_first_epoch(tiny, tmp_path, lambda e: InterruptingEncoder(e, 3), out)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, model=vae, data=tiny, progress=False, log=lambda _: None)
    assert (out / "config.toml").exists() and not (out / "checkpoint.pt").exists()
    vae.encoder = vae.encoder.inner
    train(resume=out, model=vae, data=tiny, progress=False, log=lambda _: None)
    assert (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("text", ["[1, 2]", '"a string"', "{bad", "\xff\xfe"])
def test_a_run_json_that_is_not_an_object_reads_as_nothing(tmp_path, text):
    """A damaged run.json must not stop a resume or a load (a list crashed both)."""
    (tmp_path / "run.json").write_bytes(text.encode("latin-1"))
    assert RunFolder(tmp_path).read_info() == {}


def test_the_below_baseline_warning_names_the_python_fix_beside_the_flags():
    """A model passed from Python was told only of --likelihood-scale-value, a flag that does
    not reach its likelihood."""
    from pyro_vae.app.faults import below_baseline_warning

    line = below_baseline_warning("log p(x)", -50.0, -5.0)
    assert "scale_value=pyro_vae.likelihoods.scale_from_data(x_train)" in line
    assert "--likelihood-scale-value 0" in line
