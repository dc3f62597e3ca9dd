"""The conditional VAE: its fast path against Pyro's traces, labels, its prior, and the app."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vae import mlp_vae
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.convention import GuideCall, ModelCall, loss_modules
from pyro_vae.errors import ModelError
from pyro_vae.estimators import evaluate_vae
from pyro_vae.families import CVAE, ConditionalNormalPrior, mlp_cvae
from pyro_vae.objectives.structured import structured_vae
from pyro_vae.objectives.traces import traced_log_weights

SHAPE = (1, 28, 28)
ALL = [
    "elbo:num_particles=2",
    "analytic-kl:num_particles=2",
    "graph:num_particles=2",
    "stl:num_particles=2",
    "beta:b=2,of=stl",
    "beta:b=0.5,of=analytic-kl",
    "iwae:k=3,num_particles=2",
    "dreg:k=4",
    "renyi:alpha=0.3,k=4",
    "tail-adaptive:k=4",
]


def small_vae():
    torch.manual_seed(0)
    return mlp_vae(SHAPE, 3, [32])


def small_cvae(conditional_prior=False, seed=0, classes=10):
    torch.manual_seed(seed)
    return mlp_cvae(SHAPE, classes, 3, [32], conditional_prior=conditional_prior)


class TracedCVAE(CVAE):
    """The same model, but a subclass: the objectives must take Pyro's traced path."""

    def model(self, x, num_data=None, kl_scale=1.0, y=None, *, observe=True):
        return CVAE.model(self, x, num_data, kl_scale, y, observe=observe)


def traced_twin(cvae):
    parts = (cvae.encoder, cvae.decoder, cvae.prior, cvae.likelihood)
    return TracedCVAE(*parts, cvae.num_classes, data_shape=SHAPE)


@pytest.fixture
def labelled_batch(mnist5k):
    """32 real digits binarized with a fixed seed, and their labels."""
    pick = torch.linspace(0, len(mnist5k.x_test) - 1, 32).long()  # the test set is sorted
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(mnist5k.x_test[pick].float() / 255, generator=generator)
    return x, mnist5k.y_test[pick]


def loss_and_grads(model, spec, x, y, num_data, seed):
    loss_fn = build_objective(spec)(*loss_modules(model))
    loss_fn(x, num_data, 1.0, y)  # the traced path guesses the plate nesting once
    torch.manual_seed(seed)
    loss = loss_fn(x, num_data, 1.0, y)
    return loss, torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("conditional_prior", [False, True], ids=["p(z)", "p(z|y)"])
@pytest.mark.parametrize("spec", ALL)
def test_fast_path_equals_pyro_traced_path_with_labels(spec, conditional_prior, labelled_batch):
    cvae = small_cvae(conditional_prior)
    traced = traced_twin(cvae)
    assert structured_vae(cvae, cvae.guide_module()) is cvae
    assert structured_vae(cvae.model, cvae.guide) is cvae
    assert structured_vae(traced, traced.guide_module()) is None
    x, y = labelled_batch
    fast, fast_grads = loss_and_grads(cvae, spec, x, y, 1000, seed=5)
    slow, slow_grads = loss_and_grads(traced, spec, x, y, 1000, seed=5)
    assert torch.isfinite(fast) and torch.allclose(fast, slow, rtol=1e-5)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    assert any(bool(g.abs().sum() > 0) for g in fast_grads)


def test_the_fast_path_depends_on_the_labels(labelled_batch):
    cvae, (x, y) = small_cvae(True), labelled_batch
    torch.manual_seed(1)
    right = cvae.log_weights(x, 4, y=y).log_w
    torch.manual_seed(1)
    wrong = cvae.log_weights(x, 4, y=(y + 1) % 10).log_w
    assert not torch.allclose(right, wrong)


@pytest.mark.parametrize("conditional_prior", [False, True], ids=["p(z)", "p(z|y)"])
def test_log_weights_equal_pyro_traced_log_weights(conditional_prior, labelled_batch):
    cvae, (x, y) = small_cvae(conditional_prior), labelled_batch
    traced = traced_twin(cvae)
    torch.manual_seed(2)
    fast = cvae.log_weights(x, 6, y=y).log_w
    torch.manual_seed(2)
    model, guide = ModelCall(traced), GuideCall(traced)
    args = (x, None, 1.0, y)
    slow = traced_log_weights(Trace_ELBO(max_plate_nesting=1), model, guide, args, {}, 6, "test")
    assert fast.shape == (6, 32) and torch.allclose(fast, slow.log_w, rtol=1e-5)


def test_evaluation_of_a_cvae_is_conditional_on_both_paths(labelled_batch):
    cvae, (x, y) = small_cvae(True), labelled_batch
    fast = evaluate_vae(cvae, x[:10], k=12, y=y[:10])
    slow = evaluate_vae(traced_twin(cvae), x[:10], k=12, y=y[:10])
    assert fast.conditional and slow.conditional
    assert fast.log_px > fast.elbo and fast.active_units is not None
    assert fast.log_px == pytest.approx(slow.log_px, abs=1.0)  # other draws: close, not equal
    table = fast.table()
    assert "log p(x|y)" in table and "conditional ELBO" in table and "log p(x) " not in table
    assert fast.to_dict()["conditional"] is True
    assert not evaluate_vae(small_vae(), x[:4], k=2).conditional


def test_decoder_outputs_differ_between_labels_for_the_same_z():
    cvae = small_cvae()
    z = torch.randn(5, 3)
    means = [cvae.decode(z, torch.full((5,), label)) for label in range(3)]
    assert not torch.allclose(means[0], means[1]) and not torch.allclose(means[1], means[2])


def test_a_labelled_model_refuses_missing_wrong_and_positional_labels(labelled_batch):
    cvae, (x, y) = small_cvae(), labelled_batch
    with pytest.raises(ModelError, match="pass y="):
        cvae.log_weights(x)
    with pyro.validation_enabled(True), pytest.raises(ModelError, match="run from 0 to 10"):
        cvae.log_weights(x[:2], y=torch.tensor([0, 10]))
    with pyro.validation_enabled(True), pytest.raises(ModelError, match="class indices"):
        cvae.sample(torch.tensor([0.0, 1.0]))
    with pytest.raises(ModelError, match="pass the labels by name"):
        cvae.model(x, y)
    with pytest.raises(ModelError, match="32 datapoints but 3 labels"):
        cvae.guide(x, y=y[:3])
    with pytest.raises(ModelError, match="pass y"):
        evaluate_vae(cvae, x, k=2)


def test_parts_that_do_not_fit_are_named():
    good = small_cvae()
    wide = torch.nn.Linear(3 + 10, 5)  # a decoder of 5 outputs where the likelihood needs 784

    class Decoder(torch.nn.Module):
        def forward(self, z, label):
            return wide(torch.cat([z, label.expand(*z.shape[:-1], -1)], -1))

    with pytest.raises(ModelError, match=r"decoder \(Decoder\) outputs \(2, 5\).*\[2, 784\]"):
        CVAE(good.encoder, Decoder(), good.prior, good.likelihood, 10, data_shape=SHAPE)
    with pytest.raises(
        ModelError, match="prior.*fails on input of shape no input.*takes_labels = True"
    ):
        unflagged = ConditionalNormalPrior(10, 3)
        unflagged.takes_labels = False  # a conditional prior that does not say so is called p()
        CVAE(good.encoder, good.decoder, unflagged, good.likelihood, 10, data_shape=SHAPE)


def test_generation_draws_one_datapoint_per_label():
    cvae = small_cvae(True)
    x = cvae.model(None, y=torch.tensor([1, 2, 3]))
    assert x.shape == (3, *SHAPE) and set(x.unique().tolist()) <= {0.0, 1.0}
    predictive = pyro.infer.Predictive(cvae.model, num_samples=2)(None, y=torch.tensor([4, 5]))
    assert predictive["x"].shape == (2, 2, *SHAPE) and predictive["z"].shape == (2, 2, 3)


def test_the_learned_conditional_prior_trains(labelled_batch):
    cvae, (x, y) = small_cvae(True), labelled_batch
    loss_fn = build_objective("elbo")(*loss_modules(cvae))
    optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in cvae.prior.named_parameters()}
    for step in range(20):
        optim.zero_grad()
        loss_fn(x, 1000, 1.0, y).backward()
        if step == 0:
            for name, p in cvae.prior.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        optim.step()
    for name, p in cvae.prior.named_parameters():
        assert not torch.equal(before[name], p), name
    locs = cvae.prior(cvae.one_hot(torch.arange(10))).mean
    assert (locs[0] - locs[1]).abs().max() > 1e-3  # different classes, different p(z|y)


@pytest.mark.slow
def test_a_tiny_cvae_on_two_classes_generates_class_typical_means(mnist5k):
    pick = (mnist5k.y_train == 0) | (mnist5k.y_train == 1)
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(mnist5k.x_train[pick].float() / 255, generator=generator)
    y = mnist5k.y_train[pick]
    cvae = small_cvae(classes=2)
    loss_fn = build_objective("elbo")(*loss_modules(cvae))
    optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(5):
        for batch in torch.randperm(len(x)).split(64):
            optim.zero_grad()
            loss_fn(x[batch], len(x), 1.0, y[batch]).backward()
            optim.step()
    class_means = torch.stack([x[y == c].mean(0) for c in (0, 1)])
    for label in (0, 1):
        generated = cvae.sample(torch.full((200,), label)).mean(0)
        distances = ((class_means - generated) ** 2).flatten(1).sum(1)
        assert distances[label] < distances[1 - label], (label, distances)  # nearer its own class
