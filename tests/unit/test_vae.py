import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_vae import Config, build_vae
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.errors import ConfigError, ModelError
from pyro_vae.estimators import elbo_per_datapoint, evaluate_vae

SHAPE = (1, 28, 28)


def small_vae(**changes):
    return build_vae(Config(latent_dim=3, hidden=[32], **changes), SHAPE)


def test_parts_return_distributions_of_the_right_shapes(binary_batch):
    vae = small_vae()
    q = vae.encoder(binary_batch)
    assert isinstance(q, dist.Distribution) and q.has_rsample
    assert q.batch_shape == (64,) and q.event_shape == (3,)
    assert (q.stddev > 0).all()
    p = vae.prior()
    assert p.event_shape == (3,) and p.batch_shape == ()
    assert torch.allclose(p.mean, torch.zeros(3)) and torch.allclose(p.stddev, torch.ones(3))
    p_x = vae.likelihood(vae.decoder(torch.zeros(5, 64, 3)))
    assert p_x.batch_shape == (5, 64) and p_x.event_shape == SHAPE
    assert isinstance(p_x.base_dist, dist.Bernoulli)


def test_helpers_have_the_documented_shapes(binary_batch):
    vae = small_vae()
    loc, scale = vae.encode(binary_batch)
    assert loc.shape == scale.shape == (64, 3) and (scale > 0).all()
    images = vae.decode(torch.zeros(4, 3))
    assert images.shape == (4, *SHAPE) and ((images >= 0) & (images <= 1)).all()
    assert vae.reconstruct(binary_batch).shape == binary_batch.shape
    drawn = vae.sample(6, mean=False)
    assert drawn.shape == (6, *SHAPE) and set(drawn.unique().tolist()) <= {0.0, 1.0}


def test_untrained_elbo_is_near_784_log_2(binary_batch):
    torch.manual_seed(0)
    elbo = elbo_per_datapoint(small_vae(), binary_batch)
    assert abs(-elbo - 784 * math.log(2)) < 0.05 * 784 * math.log(2)


def test_fast_path_equals_pyro_trace_elbo_loss_and_gradients(binary_batch):
    vae = small_vae()
    loss_fn = build_objective("elbo")(vae, vae.guide_module())
    torch.manual_seed(11)
    fast = loss_fn(binary_batch, 4500)
    fast_grads = torch.autograd.grad(fast, list(vae.parameters()))
    torch.manual_seed(11)
    pyro_loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, binary_batch, 4500)
    pyro_grads = torch.autograd.grad(pyro_loss, list(vae.parameters()))
    assert torch.allclose(fast, pyro_loss, rtol=1e-5)
    for a, b in zip(fast_grads, pyro_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3)


def test_minibatch_loss_is_scaled_to_the_dataset_size(binary_batch):
    vae = small_vae()
    loss_fn = build_objective("elbo")(vae, vae.guide_module())
    torch.manual_seed(0)
    unscaled = loss_fn(binary_batch)
    torch.manual_seed(0)
    scaled = loss_fn(binary_batch, 10_000)
    assert torch.allclose(scaled, unscaled * 10_000 / 64)
    torch.manual_seed(0)
    pyro_scaled = Trace_ELBO().differentiable_loss(vae.model, vae.guide, binary_batch, 10_000)
    assert torch.allclose(scaled, pyro_scaled, rtol=1e-5)


def _changed(vae, before):
    return {k for k, v in vae.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("loss", [Trace_ELBO, lambda: build_objective("elbo")])
def test_two_vaes_train_independently_under_classic_svi(binary_batch, loss):
    first, second = small_vae(), small_vae()
    for vae in (first, second):
        before = {k: v.clone() for k, v in vae.state_dict().items()}
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), loss=loss())
        svi.step(binary_batch, 4500)
        assert _changed(vae, before) == set(before), "every parameter of every part trains"
    store = pyro.get_param_store()
    assert any(name.startswith(first._pyro_name + ".") for name in store)
    assert any(name.startswith(second._pyro_name + ".") for name in store)
    assert first._pyro_name != second._pyro_name


def test_two_vaes_train_independently_under_torch_optim(binary_batch):
    first, second = small_vae(), small_vae()
    for vae in (first, second):
        loss_fn = Trace_ELBO()(vae, vae.guide_module())
        assert {id(p) for p in loss_fn.parameters()} == {id(p) for p in vae.parameters()}
        before = {k: v.clone() for k, v in vae.state_dict().items()}
        optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
        loss_fn(binary_batch).backward()
        optim.step()
        assert _changed(vae, before) == set(before)


def test_bound_methods_are_the_trap_guide_module_avoids():
    vae = small_vae()
    assert len(list(Trace_ELBO()(vae.model, vae.guide).parameters())) == 0
    assert len(list(Trace_ELBO()(vae, vae.guide_module()).parameters())) == len(
        list(vae.parameters())
    )


def test_user_prior_with_the_wrong_latent_size_is_refused():
    class Prior(torch.nn.Module):
        def forward(self):
            return dist.Normal(torch.zeros(5), 1.0).to_event(1)

    with pytest.raises(ModelError, match=r"event shape \(3,\).*p\(z\) has event shape \(5,\)"):
        build_vae(Config(latent_dim=3, hidden=[8]), SHAPE, prior=Prior())


def test_short_training_on_mnist5k_improves_the_elbo_by_a_large_margin(mnist5k):
    from pyro_vae.app.trainer import Trainer
    from pyro_vae.data import prepare_data

    torch.manual_seed(0)
    cfg = Config(dataset="mnist5k", latent_dim=10, hidden=[200], epochs=3)
    data = prepare_data(mnist5k, "binary", "bernoulli", "dynamic", seed=0)
    trainer = Trainer(cfg, build_vae(cfg, SHAPE), data)
    before = trainer.test_elbo()
    rows = [trainer.run_epoch() for _ in range(3)]
    assert rows[-1]["test_elbo"] > before + 250, (before, rows)
    assert rows[-1]["train_elbo"] > rows[0]["train_elbo"]


def _families():
    from pyro_vae import mlp_vae
    from pyro_vae.families import mlp_cvae, mlp_m2, mlp_stacked_vae

    return {
        "vae": (mlp_vae(SHAPE, 2, [8]), {}),
        "stacked": (mlp_stacked_vae(SHAPE, (3, 2), [8]), {}),
        "cvae": (mlp_cvae(SHAPE, 3, 2, [8]), {"y": torch.tensor([0, 1, 2, 0])}),
        "m2": (mlp_m2(SHAPE, 3, 2, [8]), {}),
    }


@pytest.mark.parametrize("family", ["vae", "stacked", "cvae", "m2"])
@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.uint8, torch.float64])
def test_binary_data_of_any_dtype_score_as_their_float_values(family, dtype):
    """numpy's float64, bool pixels and integer 0/1 data used to fail deep in the encoder
    (mat1 and mat2 must have the same dtype) in model, guide, losses and evaluation."""
    vae, labels = _families()[family]
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.3))
    expected = evaluate_vae(vae, x, k=3, seed=0, **labels)
    given = evaluate_vae(vae, x.to(dtype), k=3, seed=0, **labels)
    assert given.log_px == expected.log_px and given.elbo == expected.elbo
    torch.manual_seed(0)
    loss = build_objective("iwae:k=2")(vae, vae.guide_module())(x, **labels)
    torch.manual_seed(0)
    assert torch.equal(
        build_objective("iwae:k=2")(vae, vae.guide_module())(x.to(dtype), **labels), loss
    )


def test_a_float64_model_scores_float64_and_float32_data_alike():
    vae = small_vae().double()
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.3))
    assert vae.sample(2).dtype == torch.float64
    scores = [
        evaluate_vae(vae, x.to(dtype), k=3, seed=0).log_px
        for dtype in (torch.float64, torch.float32)
    ]
    assert scores[0] == scores[1] and math.isfinite(scores[0])


def _builders():
    from pyro_vae import mlp_vae
    from pyro_vae.families import mlp_cvae, mlp_m2, mlp_stacked_vae

    return {
        "mlp_vae": lambda shape, dim, hidden: mlp_vae(shape, dim, hidden),
        "mlp_cvae": lambda shape, dim, hidden: mlp_cvae(shape, 3, dim, hidden),
        "mlp_m2": lambda shape, dim, hidden: mlp_m2(shape, 3, dim, hidden),
        "mlp_stacked_vae": lambda shape, dim, hidden: mlp_stacked_vae(shape, (dim, 2), hidden),
    }


@pytest.mark.parametrize("builder", ["mlp_vae", "mlp_cvae", "mlp_m2", "mlp_stacked_vae"])
@pytest.mark.parametrize(
    "shape, dim, hidden, named",
    [
        (5, 2, [8], r"data_shape: expected a sequence of positive ints, such as \(5,\)"),
        ((0,), 2, [8], r"data_shape: every size must be a positive int; got \[0\]"),
        ((5,), 0, [8], r"latent_dims?: "),
        ((5,), 2.0, [8], r"latent_dims?: "),
        ((5,), 2, [], r"hidden: expected a sequence of positive ints, such as \[400\]; got \[\]"),
        ((5,), 2, 16, r"hidden: expected a sequence .* got 16"),
    ],
)
def test_builders_refuse_sizes_that_are_not_sizes_naming_the_argument(
    builder, shape, dim, hidden, named
):
    """A latent_dim of 0 built a VAE without latents (silently); an int data_shape, an empty
    or int hidden and a float latent_dim failed inside torch (TypeError, IndexError)."""
    with pytest.raises(ConfigError, match=named):
        _builders()[builder](shape, dim, hidden)


def test_numpy_sizes_build_the_same_model_as_ints():
    import numpy as np

    from pyro_vae import mlp_vae

    vae = mlp_vae(np.zeros((3, 5)).shape[1:], np.int64(2), [np.int64(4)])
    assert vae.data_shape == (5,) and vae.encode(torch.zeros(1, 5))[0].shape == (1, 2)


def test_a_likelihood_class_is_refused_asking_for_an_instance():
    from pyro_vae import mlp_vae
    from pyro_vae.likelihoods import GaussianLikelihood

    with pytest.raises(
        ModelError, match=r"GaussianLikelihood is a class; .*GaussianLikelihood\(\(5,\)\)"
    ):
        mlp_vae((5,), 2, [4], likelihood=GaussianLikelihood)


@pytest.mark.parametrize("family", ["vae", "stacked", "cvae", "m2"])
def test_a_float64_model_decodes_float32_codes(family):
    """train() of a vae.double() trained, then failed drawing manifold.png (a float32 grid of
    z) with 'mat1 and mat2 must have the same dtype', leaving the run unfinished."""
    vae, _ = _families()[family]
    vae = vae.double()
    top = vae.latent_dims[-1] if family == "stacked" else 2
    z = torch.zeros(3, top)
    labels = [torch.tensor([0, 1, 2])] if family in ("cvae", "m2") else []
    decoded = vae.decode(z, *labels)
    assert decoded.dtype == torch.float64
    assert torch.equal(decoded, vae.decode(z.double(), *labels))


def _tiny_families():
    from pyro_vae.families import mlp_cvae, mlp_m2, mlp_stacked_vae

    torch.manual_seed(0)
    return {
        "vae": (build_vae(Config(hidden=[8], latent_dim=2), (1, 4, 4)), {}),
        "cvae": (mlp_cvae((1, 4, 4), 3, 2, [8]), {"y": torch.tensor([0, 1, 2, 0])}),
        "m2": (mlp_m2((1, 4, 4), 3, latent_dim=2, hidden=[8]), {}),
        "stacked": (mlp_stacked_vae((1, 4, 4), latent_dims=(3, 2), hidden=[8]), {}),
    }


@pytest.mark.parametrize("family", ["vae", "cvae", "m2", "stacked"])
@pytest.mark.parametrize(
    "changes, named",
    [
        ({"num_data": 2}, "num_data=2 is smaller than the minibatch of 4"),
        ({"num_data": 0}, "num_data=0 is smaller than the minibatch of 4"),
        ({"num_data": 10.5}, "num_data must be a whole number"),
        ({"num_data": math.inf}, "num_data must be a whole number"),
        ({"kl_scale": -1.0}, "kl_scale must be a finite weight >= 0"),
        ({"kl_scale": math.nan}, "kl_scale must be a finite weight >= 0"),
    ],
)
def test_a_dataset_size_or_kl_weight_that_means_nothing_is_refused_on_every_path(
    family, changes, named
):
    """The fast path scaled the loss by num_data / batch (0 or below 1: a silently wrong
    number) and weighed the KL by -1; Pyro's traces failed with ZeroDivisionError or
    'Expected scale > 0'. Every family's own objective and classic SVI now refuse alike."""
    model, labels = _tiny_families()[family]
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.5))
    loss = build_objective("elbo")(model, model.guide_module())
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    for step in (lambda: loss(x, **labels, **changes), lambda: svi.step(x, **labels, **changes)):
        with pytest.raises(ModelError, match=named):
            step()
    assert torch.isfinite(loss(x, **labels, num_data=4, kl_scale=0.0))


@pytest.mark.parametrize("family", ["vae", "cvae", "m2", "stacked"])
def test_counts_that_mean_nothing_are_refused_naming_the_argument(family):
    """num_particles=0, n=-1 or 2.0, k=5.0, an empty batch failed deep in torch (a reshape,
    torch.Size, ZeroDivisionError) or were taken silently (batch_size=0); a NumPy integer
    is a count like any int."""
    import numpy as np

    from pyro_vae.imputation import impute
    from pyro_vae.missing import allow_missing

    model, labels = _tiny_families()[family]
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.5))
    scorer = getattr(model, "labelled_terms", None) if family == "m2" else model.log_weights
    calls = {
        "num_particles must be an int >= 1, got 0": [
            lambda: elbo_per_datapoint(model, x, num_particles=0, **labels),
        ],
        "batch_size must be an int >= 1, got 0": [
            lambda: elbo_per_datapoint(model, x, batch_size=0, **labels),
            lambda: evaluate_vae(model, x, k=2, batch_size=0, **labels),
        ],
        "k must be an int >= 1, got 5.0": [lambda: evaluate_vae(model, x, k=5.0, **labels)],
        "at least one datapoint": [
            lambda: elbo_per_datapoint(model, x[:0]),
            lambda: evaluate_vae(model, x[:0], k=2),
        ],
    }
    if family == "m2":
        calls["num_particles must be an int >= 1, got 0"] += [
            lambda: model.label_terms(x, 0),
            lambda: scorer(x, torch.tensor([0, 1, 2, 0]), 0),
        ]
    else:
        calls["num_particles must be an int >= 1, got 0"].append(lambda: scorer(x, 0, **labels))
    if family != "cvae":  # CVAE.sample takes the labels, not a count
        calls["n must be an int >= 0, got -1"] = [lambda: model.sample(-1)]
        calls["n must be an int >= 0, got 2.0"] = [lambda: model.sample(2.0)]
    if family == "vae":
        calls["draws must be an int >= 0, got -1"] = [
            lambda: impute(allow_missing(model), x, 2, -1)
        ]
    for named, refused in calls.items():
        for call in refused:
            with pytest.raises(ConfigError, match=named):
                call()
    assert math.isfinite(evaluate_vae(model, x, k=np.int64(2), **labels).log_px)


@pytest.mark.parametrize("family", ["vae", "cvae", "m2", "stacked"])
def test_every_family_gives_posterior_predictive_draws_beside_the_data(family):
    """Predictive passes the model's arguments to the guide too: M2's model had no observe=
    and its guide no batch_size= or observe=, so Predictive(m2.model, guide=m2.guide)(x,
    observe=False) raised TypeError. The drawn x differ from the data; an objective still
    refuses observe=False."""
    from pyro.infer import Predictive

    model, labels = _tiny_families()[family]
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.5))
    for parallel in (False, True):
        predictive = Predictive(model.model, guide=model.guide, num_samples=3, parallel=parallel)
        drawn = predictive(x, observe=False, **labels)["x"]
        assert drawn.shape == (3, *x.shape) and not torch.equal(drawn, x.expand_as(drawn))
    with pytest.raises(ModelError, match="observed data.*observe=True"):
        build_objective("elbo")(model, model.guide_module())(x, observe=False, **labels)
