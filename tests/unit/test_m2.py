"""M2 (pyro_vae.families.M2): the label summed exactly, the bounds against a closed-form
log p(x), the balanced labelled subset and its batches, and a bit-exact resume."""

import json
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate
from torch import nn

import pyro_vae
from pyro_vae.app.checkpoint import load_checkpoint
from pyro_vae.app.cli import main
from pyro_vae.app.labels import check_labels_fit
from pyro_vae.app.plots import class_samples
from pyro_vae.app.registry import OBJECTIVES
from pyro_vae.data import prepare_data
from pyro_vae.datasets import Dataset, load_npz
from pyro_vae.errors import ConfigError, DataError, ModelError
from pyro_vae.families import M2, mlp_m2
from pyro_vae.objectives import (
    IWAE_ELBO,
    STL_ELBO,
    DReG_ELBO,
    FastTrace_ELBO,
    Graph_ELBO,
    Renyi_ELBO,
)
from pyro_vae.objectives.enumerated import enumerated_elbo
from pyro_vae.priors import StandardNormalPrior
from pyro_vae.semisupervised import (
    UNLABELLED,
    SemiSupervisedLoss,
    evaluate_m2,
    label_shares,
    labelled_subset,
    parse_labels,
    semi_supervised,
)

CLASSES = 10


@pytest.fixture
def small_m2():
    torch.manual_seed(0)
    return mlp_m2((1, 4, 4), num_classes=CLASSES, latent_dim=3, hidden=[16])


@pytest.fixture
def pixels():
    return torch.bernoulli(torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)))


def _by_hand(m2: M2, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """U(x) summed over the batch, the 10 labels written out in plain torch."""
    q_y = torch.softmax(m2.classifier(x), -1)
    total = torch.zeros(())
    for label in range(CLASSES):
        y = torch.full((len(x),), label)
        q = m2.encoder(x, y)
        loc, scale = q.base_dist.loc, q.base_dist.scale
        z = loc + scale * eps[label]
        logits = m2.decoder(z, y).view_as(x)
        log_px = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
        log_qz = torch.distributions.Normal(loc, scale).log_prob(z).sum(1)
        per_label = log_px + math.log(1 / CLASSES) + log_pz - log_qz
        total = total + (q_y[:, label] * (per_label - q_y[:, label].log())).sum()
    return total


def test_enumeration_sums_the_ten_labels_exactly(small_m2, pixels):
    """TraceEnum_ELBO on the enumerated guide, the fast path and a hand-written sum over the
    10 labels give the same loss on the same draws, and the same gradients."""
    params = list(small_m2.parameters())
    pyro.set_rng_seed(3)
    traced = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        small_m2.model, config_enumerate(small_m2.guide), pixels, num_data=60
    )
    pyro.set_rng_seed(3)
    fast = FastTrace_ELBO()(small_m2, small_m2.guide_module())(pixels, num_data=60)
    pyro.set_rng_seed(3)
    eps = torch.empty(CLASSES, len(pixels), 3).normal_()
    by_hand = -_by_hand(small_m2, pixels, eps) * 10  # num_data / batch
    assert torch.allclose(traced, by_hand, rtol=1e-5) and torch.allclose(fast, by_hand, rtol=1e-5)
    grads = zip(torch.autograd.grad(traced, params), torch.autograd.grad(fast, params), strict=True)
    for a, b in grads:
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3)


def test_labelled_loss_is_trace_elbo_with_y_observed(small_m2, pixels):
    y = torch.arange(len(pixels))
    pyro.set_rng_seed(4)
    traced = Trace_ELBO().differentiable_loss(small_m2.model, small_m2.guide, pixels, y)
    pyro.set_rng_seed(4)
    fast = FastTrace_ELBO()(small_m2, small_m2.guide_module())(pixels, y)
    assert torch.allclose(traced, fast, rtol=1e-6)


# -- a linear-Gaussian M2 whose log p(x) is known in closed form -----------------------------


class LinearDecoder(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = nn.Parameter(a.clone()), nn.Parameter(b.clone())

    def forward(self, z, y):
        return self.a[y] * z + self.b[y]


class PosteriorEncoder(nn.Module):
    """q(z|x,y) = N(w_y . (x - b_y), s_y^2), the exact posterior at the start."""

    def __init__(self, a, b, noise):
        super().__init__()
        variance = 1.0 / (1.0 + (a**2).sum(1) / noise**2)
        self.w = nn.Parameter(variance[:, None] * a / noise**2)
        self.b = nn.Parameter(b.clone())
        self.log_scale = nn.Parameter(0.5 * variance.log())

    def forward(self, x, y):
        loc = (self.w[y] * (x - self.b[y])).sum(-1, keepdim=True)
        scale = self.log_scale[y].exp().unsqueeze(-1).expand_as(loc)
        return dist.Normal(loc, scale).to_event(1)


class ExactClassifier(nn.Module):
    """q(y|x) = p(y|x) at the start; ``shift`` moves it away."""

    def __init__(self, marginals):
        super().__init__()
        self.marginals = marginals
        self.shift = nn.Parameter(torch.zeros(len(marginals)))

    def forward(self, x):
        return torch.stack([m.log_prob(x) for m in self.marginals], -1) + self.shift


class Noise(nn.Module):
    def forward(self, mean):
        return dist.Normal(mean, 0.5).to_event(1)


def linear_m2():
    """(M2 with the exact guide, exact log p(x) of a datapoint, data from the model)."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 2, generator=generator), 2 * torch.randn(3, 2, generator=generator)
    marginals = [
        dist.MultivariateNormal(b[c], torch.outer(a[c], a[c]) + 0.25 * torch.eye(2))
        for c in range(3)
    ]
    m2 = M2(ExactClassifier(marginals), PosteriorEncoder(a, b, 0.5), LinearDecoder(a, b),
            StandardNormalPrior(1), Noise(), num_classes=3, data_shape=(2,))  # fmt: skip

    def log_px(x):
        return torch.logsumexp(torch.stack([m.log_prob(x) for m in marginals]) - math.log(3), 0)

    labels = torch.randint(3, (40,), generator=generator)
    x = b[labels] + a[labels] * torch.randn(40, 1, generator=generator)
    x = x + 0.5 * torch.randn(40, 2, generator=generator)
    return m2, log_px, x, (a, b)


def test_brute_force_quadrature_agrees_with_the_closed_form():
    m2, log_px, x, (a, b) = linear_m2()
    z = torch.linspace(-9, 9, 6001)
    per_label = []
    for c in range(3):
        mean = a[c] * z[:, None, None] + b[c]  # [grid, 1, 2]
        log_joint = (
            dist.Normal(mean, 0.5).log_prob(x).sum(-1) + dist.Normal(0, 1).log_prob(z)[:, None]
        )
        per_label.append(torch.logsumexp(log_joint, 0) + math.log(z[1] - z[0]) - math.log(3))
    assert torch.allclose(torch.logsumexp(torch.stack(per_label), 0), log_px(x), atol=1e-4)


def test_exact_guide_makes_every_bound_equal_log_px():
    m2, log_px, x, _ = linear_m2()
    with torch.no_grad():
        elbo = enumerated_elbo(m2.label_terms(x, 4))
        for k in (1, 5):
            iwae = -IWAE_ELBO(k=k)(m2, m2.guide_module())(x[:1]) * 1.0
            assert torch.allclose(iwae, log_px(x[:1]).sum(), atol=1e-4)
    assert torch.allclose(elbo, log_px(x), atol=1e-4)


def test_bounds_order_and_converge_with_a_perturbed_guide():
    m2, log_px, x, _ = linear_m2()
    with torch.no_grad():
        m2.encoder.w.add_(0.3)
        m2.encoder.log_scale.add_(0.4)
        m2.classifier.shift.copy_(torch.tensor([1.0, -1.0, 0.5]))
        pyro.set_rng_seed(0)
        elbo = enumerated_elbo(m2.label_terms(x, 2000)).mean()
        bounds = []
        for k in (1, 5, 50):
            loss = IWAE_ELBO(k=k, num_particles=400)(m2, m2.guide_module())(x)
            bounds.append(float(-loss) / len(x))
    exact = float(log_px(x).mean())
    assert float(elbo) < bounds[0] < bounds[1] < bounds[2] < exact
    scores = evaluate_m2(m2, x, k=3000, seed=1)
    assert abs(scores.log_px - exact) < 4 * scores.log_px_mc_se + 1e-3
    assert abs(scores.elbo - float(elbo)) < 0.05


def test_dreg_guide_gradient_vanishes_at_the_exact_posterior_and_iwae_does_not():
    m2, _, x, _ = linear_m2()
    encoder = list(m2.encoder.parameters())
    grads = {}
    for objective in (IWAE_ELBO(k=4), DReG_ELBO(k=4)):
        pyro.set_rng_seed(2)
        loss = objective(m2, m2.guide_module())(x)
        grads[objective.name] = (loss, torch.autograd.grad(loss, encoder))
    assert torch.allclose(grads["iwae"][0], grads["dreg"][0])  # the same bound
    assert max(float(g.abs().max()) for g in grads["dreg"][1]) < 1e-4
    assert max(float(g.abs().max()) for g in grads["iwae"][1]) > 1e-2


def test_iwae_gives_the_classifier_no_gradient_from_unlabelled_data():
    """q(y|x) cancels from the weight summed over labels: only the aux loss trains it."""
    m2, _, x, _ = linear_m2()
    loss = IWAE_ELBO(k=3)(m2, m2.guide_module())(x)
    assert torch.autograd.grad(loss, [m2.classifier.shift], allow_unused=True)[0] is None
    loss = FastTrace_ELBO()(m2, m2.guide_module())(x)
    assert torch.autograd.grad(loss, [m2.classifier.shift])[0].abs().max() > 0


# -- the labelled subset, the batches and the loss -------------------------------------------


def test_labelled_subset_is_balanced_and_reproducible(mnist5k):
    y = mnist5k.y_train
    chosen = labelled_subset(y, 100, CLASSES, seed=0)
    assert torch.bincount(y[chosen], minlength=CLASSES).tolist() == [10] * CLASSES
    assert torch.equal(chosen, labelled_subset(y, 100, CLASSES, seed=0))
    assert not torch.equal(chosen, labelled_subset(y, 100, CLASSES, seed=1))
    spread = torch.bincount(y[labelled_subset(y, 105, CLASSES, seed=0)], minlength=CLASSES)
    assert sorted(spread.tolist()) == [10] * 5 + [11] * 5
    with pytest.raises(DataError, match="class 9 has 0 labelled"):
        labelled_subset(torch.arange(40) % 9, 20, CLASSES, seed=0)


def test_a_count_that_does_not_split_evenly_is_spread_by_seed():
    """100 labels of 3 classes were refused ("do not split evenly"), and so was the default
    on any 3-, 7- or 25-class dataset; now 34/33/33, the extra label's class drawn by seed."""
    shares = {seed: label_shares([50, 50, 50], 100, seed) for seed in range(6)}
    assert all(sorted(s) == [33, 33, 34] for s in shares.values())
    assert len({s.index(34) for s in shares.values()}) == 3  # each class gets it for some seed
    assert shares[1] == label_shares([50, 50, 50], 100, seed=1)  # the same seed, the same
    assert sorted(label_shares([20] * 7, 100, seed=0)) == [14] * 5 + [15] * 2
    assert all(label_shares([33, 50, 50], 100, s)[0] == 33 for s in range(6))  # none to spare
    # a class short of an even share keeps every label it has; the others share the rest
    assert label_shares([50, 20, 50], 100, seed=0) == [40, 20, 40]
    assert label_shares([2, 2, 2, 2] + [50] * 22, 100, seed=0).count(2) == 4  # 26 classes
    assert sum(label_shares([2, 2, 2, 2] + [50] * 22, 100, seed=0)) == 100
    assert label_shares([33, 33, 35], 101, seed=0) == [33, 33, 35]  # two extras, one class
    with pytest.raises(ConfigError, match="100 labels asked for, but the training data have 90"):
        label_shares([30, 30, 30], 100, seed=0)
    with pytest.raises(ConfigError, match="2 labels leave some of the 3 classes without one"):
        label_shares([30, 30, 30], 2, seed=0)


def test_rows_labelled_minus_one_are_the_unlabelled_data():
    x = torch.rand(60, 3)
    y = torch.where(torch.arange(60) < 45, UNLABELLED, torch.arange(60) % 3)
    given = Dataset.from_tensors(x, x[:9], y, torch.arange(9) % 3)
    data = prepare_data(given, "real", "gaussian", "none", seed=0)
    assert parse_labels("auto", unlabelled=True) is None and parse_labels("auto") == 100
    with pytest.raises(ConfigError, match="positive count"):  # found by the fuzz test
        parse_labels("\u00b9")  # a superscript one: isdigit() but not int()
    every = semi_supervised(data, None, seed=0)
    assert every.labelled.tolist() == list(range(45, 60))
    assert every.unlabelled.tolist() == list(range(45)) and every.num_classes == 3
    some = semi_supervised(data, 7, seed=0)  # a subset of the given labels, 3/2/2
    assert set(some.labelled.tolist()) < set(range(45, 60))
    assert sorted(torch.bincount(y[some.labelled]).tolist()) == [2, 2, 3]
    assert some.num_unlabelled == 53 and int((some.y_train >= 0).sum()) == 7
    with pytest.raises(ConfigError, match="16 labels asked for, but the training data have 15"):
        semi_supervised(data, 16, seed=0)


def _semi(mnist5k, labels=30, n=500):
    dataset = Dataset.from_tensors(mnist5k.x_train[:n], mnist5k.x_test[:50],
                                   mnist5k.y_train[:n], mnist5k.y_test[:50])  # fmt: skip
    data = prepare_data(dataset, "binary", "bernoulli", "static", seed=0)
    return semi_supervised(data, labels, seed=0)


def test_batches_pair_unlabelled_with_a_cycled_labelled_subset(mnist5k):
    data = _semi(mnist5k)
    assert data.num_labelled == 30 and data.num_unlabelled == 470
    assert int((data.y_train != UNLABELLED).sum()) == 30  # the other labels are hidden
    labelled = set(data.labelled.tolist())
    stream = []
    for epoch in range(3):
        batches = data.batch_indices(epoch, batch_size=64)
        assert batches.shape == (470 // 64, 64 + 30)
        unlabelled = batches[:, :64].flatten()
        assert len(set(unlabelled.tolist())) == len(unlabelled)
        assert not set(unlabelled.tolist()) & labelled
        stream += batches[:, 64:].flatten().tolist()
        assert torch.equal(batches, data.batch_indices(epoch, batch_size=64))
    for start in range(0, len(stream) - 29, 30):  # every cycle is a permutation of the subset
        assert set(stream[start : start + 30]) == labelled
    small = data.batch_indices(0, batch_size=12)  # labelled batches of 12 cross the cycles
    cycled = small[:, 12:].flatten().tolist()
    assert all(set(cycled[s : s + 30]) == labelled for s in range(0, len(cycled) - 29, 30))
    shares = [data.batch_indices(1, 64, rank, 2) for rank in (0, 1)]
    whole = data.batch_indices(1, 64)
    assert torch.equal(torch.cat([shares[0][:, :32], shares[1][:, :32]], 1), whole[:, :64])
    assert torch.equal(torch.cat([shares[0][:, 32:], shares[1][:, 32:]], 1), whole[:, 64:])


def test_loss_adds_the_parts_with_their_scales(small_m2, pixels):
    y = torch.tensor([UNLABELLED] * 4 + [2, 5])
    objective = FastTrace_ELBO()
    model, guide = small_m2, small_m2.guide_module()
    loss = SemiSupervisedLoss(objective, small_m2, num_labelled=20, aux_loss=0.5, split=(4, 2))
    pyro.set_rng_seed(0)
    total = loss(pixels, 100, 1.0, y)
    pyro.set_rng_seed(0)
    unlabelled = objective.differentiable_loss(model, guide, pixels[:4], num_data=80)
    labelled = objective.differentiable_loss(model, guide, pixels[4:], y[4:], num_data=20)
    aux = F.cross_entropy(small_m2.classifier(pixels[4:]), y[4:], reduction="sum")
    assert torch.allclose(total, unlabelled + labelled + 0.5 * 100 / 2 * aux)
    order = [4, 0, 5, 1, 2, 3]
    with pytest.raises(ModelError, match="unlabelled rows first"):
        loss(pixels[order], 100, 1.0, y[order])
    any_order = SemiSupervisedLoss(objective, small_m2, num_labelled=20, aux_loss=0.5)
    pyro.set_rng_seed(0)
    assert torch.allclose(any_order(pixels[order], 100, 1.0, y[order]), total, rtol=1e-5)


@pytest.mark.parametrize("objective", [Renyi_ELBO(), STL_ELBO()])
def test_objectives_that_cannot_sum_the_label_refuse_in_one_line(small_m2, objective):
    with pytest.raises(ConfigError, match="cannot score M2's label") as error:
        SemiSupervisedLoss(objective, small_m2, num_labelled=10)
    assert "\n" not in str(error.value)


_M2_SPECS = [
    "elbo", "analytic-kl", "graph", "stl", "iwae:k=2", "dreg:k=2", "renyi:k=2",
    "tail-adaptive:k=2", "beta:b=2", "beta:b=2,of=analytic-kl", "beta:b=2,of=stl",
]  # fmt: skip


@pytest.mark.parametrize("spec", _M2_SPECS)
def test_every_objective_sums_samples_or_refuses_the_label_of_unlabelled_data(
    small_m2, pixels, spec
):
    """Given M2's own model and guide and unlabelled data, an objective sums y, samples it
    (graph) or raises ConfigError in one line; never a deep error from Pyro's traces."""
    objective = pyro_vae.build_objective(spec)
    loss = objective(small_m2, small_m2.guide_module())
    try:
        value = loss(pixels)
    except ConfigError as error:
        assert "cannot score M2's label" in str(error) and "\n" not in str(error)
    else:
        assert torch.isfinite(value)


def test_objective_specs_tried_on_m2_cover_every_objective():
    names = {spec.split(":")[0] for spec in _M2_SPECS}
    assert names == set(OBJECTIVES)


def test_graph_samples_the_label(small_m2, pixels):
    loss = SemiSupervisedLoss(Graph_ELBO(), small_m2, num_labelled=10)
    assert torch.isfinite(loss(pixels, None, 1.0, torch.full((6,), UNLABELLED)))


def test_graph_trains_the_decoder_through_the_sampled_label(small_m2, pixels):
    """The sampled label is not reparameterizable, so TraceGraph_ELBO tracks its provenance
    through the decoder: p(x|y,z) must still send the decoder Trace_ELBO's gradient."""
    grads = []
    for elbo in (Trace_ELBO(), TraceGraph_ELBO()):
        small_m2.zero_grad()
        pyro.set_rng_seed(0)
        elbo.loss_and_grads(small_m2.model, small_m2.guide, pixels)
        grads.append({n: p.grad for n, p in small_m2.named_parameters() if p.grad is not None})
    assert any(name.startswith("decoder") for name in grads[0])
    assert grads[1].keys() == grads[0].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


# -- through the pipeline ---------------------------------------------------------------------


def _config(out, **changes):
    values = dict(model="m2", epochs=2, batch_size=50, latent_dim=4, hidden=[32], labels="20",
                  seed=3, out=str(out), threads=1, eval_k=5)  # fmt: skip
    return pyro_vae.Config(**{**values, **changes})


@pytest.fixture
def tiny_data(mnist5k):
    return Dataset.from_tensors(mnist5k.x_train[:600], mnist5k.x_test[:100],
                                mnist5k.y_train[:600], mnist5k.y_test[:100])  # fmt: skip


def clusters(n: int, seed: int, labelled: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian clusters in 10-D (unit variance, means 4 apart on axes 0, 1, 2), classes
    0, 1, 2 in turn; a seeded ``1 - labelled`` of the rows get y = -1 (unlabelled)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 4.0 * F.one_hot(y, 10).float() + torch.randn(n, 10, generator=generator)
    hidden = torch.rand(n, generator=generator) >= labelled
    return x, torch.where(hidden, UNLABELLED, y)


@pytest.fixture
def unlabelled_data():
    """300 rows, 10% of them labelled; 150 test rows, every fifth without its label."""
    (x, y), (x_test, y_test) = clusters(300, 0, labelled=0.1), clusters(150, 1)
    y_test[::5] = UNLABELLED
    return Dataset.from_tensors(x, x_test, y, y_test, name="clusters")


UNLABELLED_RUN = {"labels": "auto", "likelihood": "gaussian"}
RUNS = {  # the data, and their settings beside _config's
    "mnist, 20 labels kept": ("tiny_data", {}),
    "clusters, unlabelled rows -1": ("unlabelled_data", UNLABELLED_RUN),
}


@pytest.mark.parametrize("source", RUNS)
def test_resumed_run_equals_an_uninterrupted_one_bit_for_bit(
    tmp_path, source, request, monkeypatch
):
    from pyro_vae.app.trainer import Trainer

    fixture, settings = RUNS[source]
    tiny_data = request.getfixturevalue(fixture)
    reference = pyro_vae.train(
        _config(tmp_path / "ref", **settings), data=tiny_data, progress=False
    )
    save = Trainer.save

    def save_then_stop(self, run):
        save(self, run)
        if self.position.epoch == 1 and self.position.step > 0:  # mid-epoch 2
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        pyro_vae.train(
            _config(tmp_path / "cut", checkpoint_every=4, **settings),
            data=tiny_data,
            progress=False,
        )
    monkeypatch.setattr(Trainer, "save", save)
    resumed = pyro_vae.train(resume=tmp_path / "cut", data=tiny_data, progress=False)
    expected = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["model"]
    got = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["model"]
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    for row, ref in zip(resumed.history, reference.history, strict=True):
        assert {**row, "seconds": 0} == {**ref, "seconds": 0}
    assert "test_accuracy" in reference.history[-1]


def test_evaluate_reports_accuracy_and_writes_the_plots(tmp_path, tiny_data):
    run = pyro_vae.train(_config(tmp_path / "run", epochs=1), data=tiny_data, progress=False)
    scores = pyro_vae.evaluate(run.run_dir, data=tiny_data, k=3)
    assert 0 <= scores.accuracy <= 1 and sum(map(sum, scores.confusion)) == 100
    assert scores.log_px >= scores.elbo - 1.0 and "classifier accuracy" in scores.table()
    for name in ("losses", "class-samples", "analogies", "confusion"):
        assert (run.run_dir / "plots" / f"{name}.png").is_file(), name
    assert scores.confusion_path == run.run_dir / "plots" / "confusion.png"
    assert scores.path.is_file() and scores.path.parent == run.run_dir
    elsewhere = tmp_path / "scores" / "m2.json"  # --out elsewhere: the plot goes with the scores
    elsewhere.parent.mkdir()
    moved = pyro_vae.evaluate(run.run_dir, data=tiny_data, k=3, out=elsewhere)
    assert moved.confusion_path == elsewhere.with_name("m2-confusion.png")
    assert moved.confusion_path.read_bytes()[:4] == b"\x89PNG"


def test_each_epoch_line_shows_the_classifiers_test_accuracy(tmp_path, tiny_data):
    """The epoch line of an m2 run gave the ELBOs alone: the accuracy of q(y|x), the number
    semi-supervised training is for, sat in metrics.csv only."""
    lines = []
    run = pyro_vae.train(_config(tmp_path / "run", epochs=2), data=tiny_data, progress=False,
                         log=lines.append)  # fmt: skip
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2
    for line, row in zip(epochs, run.history, strict=True):
        assert f"test accuracy {100 * row['test_accuracy']:.1f}%" in line


def test_scoring_other_data_keeps_the_runs_own_confusion_matrix(tmp_path, tiny_data):
    """evaluate --split train (or --data, --dataset) wrote eval-NAME.json beside eval.json
    but drew its confusion matrix over plots/confusion.png, the figure of eval.json."""
    run = pyro_vae.train(_config(tmp_path / "run", epochs=1), data=tiny_data, progress=False)
    own = pyro_vae.evaluate(run.run_dir, data=tiny_data, k=3)
    figure = own.confusion_path.read_bytes()
    other = pyro_vae.evaluate(run.run_dir, data=tiny_data, k=3, split="train")
    assert other.path.name != own.path.name and other.confusion_path != own.confusion_path
    assert own.confusion_path.read_bytes() == figure
    assert other.confusion_path.parent == own.confusion_path.parent
    assert other.path.stem.removeprefix("eval") in other.confusion_path.stem
    assert other.confusion_path.read_bytes()[:4] == b"\x89PNG"


def test_m2_learns_three_clusters_from_ten_percent_labels_and_unlabelled_rows(
    tmp_path, unlabelled_data
):
    """Real unlabelled data (y = -1) were refused ("give every datapoint its class"); now
    they train as M2's unlabelled part, and q(y|x) is far above chance (1/3). Measured at
    40 epochs (about a second): 0.94-0.99 over seeds 0-7."""
    cfg = _config(tmp_path / "run", labels="auto", likelihood="gaussian", epochs=40,
                  batch_size=32, hidden=[16], latent_dim=2, seed=0)  # fmt: skip
    run = pyro_vae.train(cfg, data=unlabelled_data, progress=False, log=lambda _: None)
    given = int((unlabelled_data.y_train >= 0).sum())
    info = json.loads((run.run_dir / "run.json").read_text())
    assert (info["num_labelled"], info["num_unlabelled"]) == (given, 300 - given)
    accuracy = run.history[-1]["test_accuracy"]
    assert accuracy > 0.85
    scores = pyro_vae.evaluate(run.run_dir, data=unlabelled_data, k=3)
    assert sum(map(sum, scores.confusion)) == 120  # the labelled test rows alone
    assert scores.accuracy == accuracy and "120 of them labelled" in scores.data
    assert math.isfinite(scores.log_px) and scores.num_datapoints == 150


def test_the_default_labels_split_over_three_classes(tmp_path):
    """The default kept 100 labels in equal numbers and refused 3 classes; now 34/33/33."""
    (x, y), (x_test, y_test) = clusters(300, 0), clusters(30, 1)
    data = Dataset.from_tensors(x, x_test, y, y_test)
    cfg = _config(tmp_path / "run", labels="auto", likelihood="gaussian", epochs=1,
                  batch_size=50, hidden=[16], latent_dim=2)  # fmt: skip
    run = pyro_vae.train(cfg, data=data, progress=False, log=lambda _: None)
    info = json.loads((run.run_dir / "run.json").read_text())
    assert (info["num_labelled"], info["num_unlabelled"]) == (100, 200)


def _with_labels(y_train, y_test):
    (x, _), (x_test, _) = clusters(len(y_train), 0), clusters(len(y_test), 1)
    return Dataset.from_tensors(x, x_test, torch.tensor(y_train), torch.tensor(y_test))


@pytest.mark.parametrize(
    ("model", "y_train", "y_test", "message"),
    [
        ("cvae", [0, 1, 2, -1] * 10, [0, 1, 2] * 4,
         r"include -1 \(an unlabelled datapoint\) in 10 rows, but cvae needs every datapoint's "
         r"class; drop those rows, or learn from them with --model m2"),
        ("m2", [0, 1, -1, -1] * 10, [0, 1, 2] * 4,
         r"hold 2 classes \(0, 1\) but the largest label is 2: .*\(2\) have no labelled "
         r"training datapoint "
         r"\(2 only in the test labels y_test\)"),
        ("m2", [-1] * 40, [0, 1, 2] * 4, r"every training label is -1 \(unlabelled\)"),
        ("m2", [0, 1, 2, -2] * 10, [0, 1, 2] * 4, r"include -2; classes are numbers 0..C-1 and -1"),
    ],
)  # fmt: skip
def test_labels_that_cannot_train_are_refused_before_any_work(
    tmp_path, model, y_train, y_test, message
):
    cfg = _config(tmp_path / "run", model=model, labels="auto", likelihood="gaussian",
                  batch_size=10, hidden=[16], latent_dim=2)  # fmt: skip
    data = _with_labels(y_train, y_test)
    with pytest.raises(DataError, match=message) as error:
        pyro_vae.train(cfg, data=data, progress=False, log=lambda _: None)
    assert "\n" not in str(error.value) and not (tmp_path / "run").exists()


def test_scoring_unlabelled_rows_is_for_a_model_that_sums_the_label():
    y = torch.tensor([0, 2, UNLABELLED])
    check_labels_fit(y, 3, "d.npz", "M2", unlabelled=True)  # the -1 row: log p(x) alone
    with pytest.raises(DataError, match="but CVAE needs every datapoint's class; drop those"):
        check_labels_fit(y, 3, "d.npz", "CVAE")


def test_cli_trains_and_evaluates_m2_on_an_npz_with_unlabelled_rows(tmp_path, capsys):
    """The user's case: an .npz whose y is -1 where a row has no label (no x_test: a seeded
    tenth of the rows, some unlabelled, becomes the test split)."""
    x, y = clusters(200, 0, labelled=0.2)
    path = tmp_path / "mine.npz"
    np.savez(path, x=x.numpy(), y=y.numpy())
    run = tmp_path / "run"
    flags = ["--dataset", str(path), "--likelihood", "gaussian", "--epochs", "1",
             "--batch-size", "20", "--hidden", "16", "--latent-dim", "2", "--eval-k", "2",
             "--threads", "1"]  # fmt: skip
    assert main(["train", "--model", "m2", *flags, "--out", str(run)]) == 0
    split = load_npz(path).y_train
    info = json.loads((run / "run.json").read_text())
    assert info["num_labelled"] == int((split >= 0).sum()) and info["num_unlabelled"] > 100
    assert "test_accuracy" in (run / "metrics.csv").read_text().splitlines()[0]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "2"]) == 0
    assert "classifier accuracy q(y|x)" in capsys.readouterr().out
    assert main(["train", "--model", "cvae", *flags, "--out", str(tmp_path / "cvae")]) == 2
    error = capsys.readouterr().err
    assert "but cvae needs every datapoint's class" in error and error.count("\n") == 1


def test_sample_cli_draws_the_asked_label_from_an_m2_run(tmp_path, tiny_npz, capsys):
    cfg = _config(tmp_path / "run", epochs=1, dataset=str(tiny_npz))  # 10 classes
    run = pyro_vae.train(cfg, progress=False, log=lambda _: None)
    folder, plots = str(run.run_dir), run.run_dir / "plots"
    assert main(["sample", folder, "--label", "3", "--n", "6"]) == 0
    assert capsys.readouterr().out.strip() == str(plots / "samples-label3-seed0-n6.png")
    assert "6 samples of label 3 (E[x|z, y=3], z ~ p(z))" in png_title(
        plots / "samples-label3-seed0-n6.png"
    )
    assert main(["sample", folder, "--label", "all", "--n", "2"]) == 0
    with Image.open(plots / "samples-label-all-seed0-n2-each.png") as image:
        assert image.text["Title"].endswith("seed 0") and image.height > image.width  # 10 rows
    assert main(["sample", folder, "--label", "10"]) == 2
    assert (
        "--label: expected a class 0..9 of this run or 'all', got '10'" in capsys.readouterr().err
    )

    m2, labels = run.model, torch.full((6,), 3)  # the label is decoded with the prior's z
    torch.manual_seed(0)
    drawn = class_samples(m2, labels)
    torch.manual_seed(0)
    z = m2.prior().sample((6,))
    assert torch.equal(drawn, m2.decode(z, labels))
    assert not torch.allclose(drawn, m2.decode(z, torch.full((6,), 5)))


# -- the experiment scripts, at a tiny budget ------------------------------------------------


def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_semisupervised_experiment_smoke(tiny_npz, tmp_path):
    argv = ["--dataset", str(tiny_npz), "--labels", "10", "--seeds", "0", "--epochs", "1",
            "--variants", "m2", "supervised", "--hidden", "16", "--latent-dim", "2",
            "--batch-size", "50", "--eval-k", "2", "--out", str(tmp_path)]  # fmt: skip
    rows = _script("m2_semisupervised").main(argv)
    assert [row["variant"] for row in rows] == ["m2", "supervised"]
    assert all(0 <= row["accuracy"] <= 1 for row in rows)
    assert "| supervised |" in (tmp_path / "results.md").read_text()


@pytest.mark.integration
def test_semisupervised_experiment_chooses_settings_on_a_validation_split(tiny_npz, tmp_path):
    argv = ["--dataset", str(tiny_npz), "--validation", "20", "--labels", "10", "--seeds", "0",
            "--epochs", "1", "--variants", "aux=1,latent_dim=3", "--hidden", "16",
            "--batch-size", "50", "--eval-k", "2", "--out", str(tmp_path)]  # fmt: skip
    (row,) = _script("m2_semisupervised").main(argv)
    split = np.load(tmp_path / "tiny-validation20.npz")
    assert np.bincount(split["y_test"]).tolist() == [2] * 10  # 2 of each class held out
    assert len(split["x"]) == 280 and row["dataset"] == "tiny-val20"
    run = tmp_path / "runs" / "tiny-val20-10" / "aux=1,latent_dim=3" / "seed0"
    config = pyro_vae.Config.from_file(run / "config.toml")
    assert (config.aux_loss, config.latent_dim) == (1.0, 3)


@pytest.mark.integration
def test_speed_experiment_smoke():
    argv = ["--rounds", "1", "--steps", "2", "--hidden", "16", "--latent-dim", "2"]
    result = _script("m2_speed").main(argv)
    assert set(result["step_seconds"]) == {"pyro-vae", "by hand"}
    assert all(seconds > 0 for seconds in result["epoch_seconds"].values())


@pytest.mark.integration
def test_pyro_reference_experiment_smoke(tiny_npz):
    argv = ["--dataset", str(tiny_npz), "--labels", "10", "--seeds", "0", "--epochs", "1",
            "--hidden", "16", "--latent-dim", "2", "--batch-size", "50"]  # fmt: skip
    (row,) = _script("m2_pyro_reference").main(argv)
    assert 0 <= row["accuracy"] <= 1


def png_title(path):
    with Image.open(path) as image:
        return image.text.get("Title", "")


@pytest.mark.parametrize("labels", [[0, 5, 12], [-2, 0, 1]])
def test_evaluating_labels_outside_the_runs_classes_is_one_line(tmp_path, tiny_data, labels):
    """They crashed in torch (bincount of a negative label, a confusion matrix of the wrong
    size) after scoring; now refused before any work."""
    pyro_vae.train(_config(tmp_path / "run", epochs=1), data=tiny_data, progress=False)
    y = torch.tensor(labels).repeat(34)[:100]
    other = Dataset.from_tensors(tiny_data.x_train[:10], tiny_data.x_test, y[:10], y)
    with pytest.raises(DataError, match=r"labels y run from -?\d+ to \d+, but the run's model"):
        pyro_vae.evaluate(tmp_path / "run", data=other, k=2)


@pytest.mark.parametrize(
    ("y", "cause"),
    [
        (
            torch.tensor([0, -1, 2, -1]),
            r"from -1 to 2 .* -1 marks an unlabelled row.*SemiSupervised",
        ),
        (torch.tensor([0.0, 1.0, 2.0, 1.0]), r"integer tensor.*float32.*y\.long\(\)"),
        (torch.tensor([0, 1, 2, 10]), r"from 0 to 10 but this M2 has 10 classes \(0\.\.9\)"),
        (torch.tensor([0, 1]), r"4 datapoints but 2 labels"),
    ],
)
def test_labels_m2_cannot_observe_are_refused_naming_the_cause(small_m2, y, cause):
    """Rows of -1 (y given to model/guide), float labels and labels out of range used to fail
    inside torch (IndexError: index out of range; embedding's dtype error)."""
    m2 = small_m2
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.3))
    optim = pyro.optim.Adam({"lr": 1e-3})
    svi = pyro.infer.SVI(
        m2.model, config_enumerate(m2.guide), optim, TraceEnum_ELBO(max_plate_nesting=1)
    )
    with pytest.raises(ModelError, match=cause):
        svi.step(x, y)
    with pytest.raises(ModelError, match=cause):
        FastTrace_ELBO()(m2, m2.guide_module())(x, y=y)
    with pytest.raises(ModelError, match=cause):
        m2.model(x, y)
