import re

import pytest
import torch

from pyro_vae.app.build import build_likelihood
from pyro_vae.app.config import Config
from pyro_vae.data import draw_bernoulli, prepare_data
from pyro_vae.datasets import Dataset
from pyro_vae.errors import DataError
from pyro_vae.parts import likelihood_contract


def test_dynamic_binarization_is_fresh_each_epoch_and_reproducible(mnist5k):
    data = prepare_data(mnist5k, "binary", "bernoulli", "auto", seed=3)
    assert data.dynamic
    e0, e1 = data.epoch_train(0), data.epoch_train(1)
    assert set(e0.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(e0, e1)
    assert torch.equal(e0, data.epoch_train(0))
    # the draw follows the grey levels: mean pixel matches the probabilities
    assert abs(float(e0.mean()) - float(data.train.mean())) < 1e-3


def test_draw_bernoulli_draws_bernoulli_with_the_pixel_probability():
    probabilities = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    n = 200_000
    draws = draw_bernoulli(probabilities.repeat(n, 1), torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert draws[:, 0].sum() == 0 and draws[:, -1].sum() == n  # the edges are exact
    standard_error = (probabilities * (1 - probabilities) / n).sqrt()
    assert ((draws.mean(0) - probabilities).abs() <= 4 * standard_error + 1e-9).all()
    again = draw_bernoulli(probabilities.repeat(n, 1), torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_static_binarization_is_fixed_and_seeded(mnist5k):
    a = prepare_data(mnist5k, "binary", "bernoulli", "static", seed=1)
    b = prepare_data(mnist5k, "binary", "bernoulli", "static", seed=1)
    c = prepare_data(mnist5k, "binary", "bernoulli", "static", seed=2)
    assert torch.equal(a.epoch_train(0), a.epoch_train(5)) and torch.equal(a.train, b.train)
    assert not torch.equal(a.train, c.train)
    assert torch.equal(a.test, c.test), "every run is scored on the same test bits"


def test_grey_pixels_with_bernoulli_and_no_binarization_fail_with_the_fix(mnist5k):
    with pytest.raises(DataError) as info:
        prepare_data(mnist5k, "binary", "bernoulli", "none", seed=0)
    message = str(info.value)
    assert "'bernoulli'" in message and "[0, 1]" in message and "--binarize dynamic" in message


def test_epochs_are_permutations_keyed_by_seed_and_epoch(mnist5k):
    data = prepare_data(mnist5k, "binary", "bernoulli", "auto", seed=0)
    batches = data.batch_indices(epoch=4, batch_size=128)
    assert batches.shape == (4500 // 128, 128)
    assert batches.flatten().unique().numel() == batches.numel()
    assert torch.equal(batches, data.batch_indices(epoch=4, batch_size=128))
    assert not torch.equal(batches, data.batch_indices(epoch=5, batch_size=128))


def test_ranks_split_each_global_batch(mnist5k):
    data = prepare_data(mnist5k, "binary", "bernoulli", "auto", seed=0)
    whole = data.batch_indices(0, 128)
    halves = [data.batch_indices(0, 128, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat(halves, dim=1), whole)


def test_batch_larger_than_dataset_is_a_clear_error(mnist5k):
    data = prepare_data(mnist5k, "binary", "bernoulli", "auto", seed=0)
    with pytest.raises(DataError, match="larger than the 4500 training images"):
        data.batch_indices(0, 10_000)


@pytest.mark.parametrize("binarize", ["dynamic", "static"])
def test_binarizing_refuses_values_that_are_not_probabilities(binarize):
    standardized = torch.randn(20, 1, 2, 2) * 3
    data = Dataset("table", standardized[:16], None, standardized[16:], None)
    with pytest.raises(DataError, match=r"Bernoulli\(value\), which needs values in \[0, 1\]"):
        prepare_data(data, "binary", "bernoulli", binarize, seed=0)


def table(train: torch.Tensor, test: torch.Tensor, mask_train=None, mask_test=None) -> Dataset:
    return Dataset("table", train, None, test, None, mask_train=mask_train, mask_test=mask_test)


def test_an_open_unit_likelihood_refuses_values_outside_0_1_instead_of_clamping_them():
    values = torch.linspace(-2, 3, 80).reshape(20, 4)  # clamping would train on garbage
    with pytest.raises(DataError, match=r"'beta' needs values in \(0, 1\).*range over \[-2, "):
        prepare_data(table(values[:16], values[16:]), "open-unit", "beta", "none", seed=0)


def test_an_open_unit_likelihood_moves_0_and_1_just_inside():
    values = torch.tensor([[0.0, 0.5, 1.0]]).repeat(4, 1)
    data = prepare_data(table(values[:2], values[2:]), "open-unit", "beta", "none", seed=0)
    assert 0 < float(data.train.min()) < 0.01 and 0.99 < float(data.train.max()) < 1
    assert float(data.train[0, 1]) == 0.5


@pytest.mark.parametrize(
    ("support", "likelihood", "binarize"),
    [("binary", "bernoulli", "dynamic"), ("binary", "bernoulli", "static"),
     ("open-unit", "beta", "none"), ("unit", "continuous-bernoulli", "none"),
     ("counts", "poisson", "none")],
)  # fmt: skip
def test_masked_out_entries_are_never_checked(support, likelihood, binarize):
    """Whatever a masked-out entry holds (here -5), the checks look at observed entries only."""
    values = torch.rand(20, 6).round() if support == "counts" else torch.rand(20, 6) * 0.9 + 0.05
    mask = torch.rand(20, 6) > 0.3
    mask[:, 0] = False
    data = prepare_data(
        table(values[:16].masked_fill(~mask[:16], -5.0), values[16:].masked_fill(~mask[16:], -5.0),
              mask[:16], mask[16:]),
        support, likelihood, binarize, seed=0,
    )  # fmt: skip
    assert bool(torch.isnan(data.train[~mask[:16]]).all())
    assert bool(torch.isfinite(data.train[mask[:16]]).all())


def test_a_count_likelihood_names_a_fractional_count():
    counts = torch.randint(0, 10, (20, 4)).float()
    counts[17, 2] = 2.5
    with pytest.raises(DataError, match=r"including 2.5, which is not an integer"):
        prepare_data(table(counts[:16], counts[16:]), "counts", "poisson", "none", seed=0)


def test_a_count_likelihood_refuses_counts_float32_cannot_hold_exactly():
    counts = torch.randint(0, 10, (20, 4)).float()
    counts[3, 1] = 3.4e38
    with pytest.raises(DataError, match=r"above 16,777,216 \(2\^24\)"):
        prepare_data(table(counts[:16], counts[16:]), "counts", "poisson", "none", seed=0)
    counts[3, 1] = 2**24  # the largest exact one is still a count
    prepare_data(table(counts[:16], counts[16:]), "counts", "poisson", "none", seed=0)


def test_a_count_likelihood_refuses_negative_counts_and_says_how_to_mark_them():
    counts = torch.randint(0, 10, (20, 4)).float()
    counts[0, 0] = -1
    with pytest.raises(DataError, match=r"cannot be negative: mark such entries missing"):
        prepare_data(table(counts[:16], counts[16:]), "counts", "poisson", "none", seed=0)


def _support_of(name):
    return likelihood_contract(build_likelihood(Config(likelihood=name), (3,)), (3,)).support


@pytest.mark.parametrize(
    "kind, x",
    [
        ("counts", torch.tensor([[0.0, 3.0, 16.0], [2.0, 0.0, 9.0]]).repeat(10, 1)),
        ("reals", torch.tensor([[-1.5, 0.3, 2.0], [0.7, -0.2, 5.5]]).repeat(10, 1)),
        ("unit", torch.tensor([[0.0, 0.3, 1.0], [0.7, 0.2, 0.5]]).repeat(10, 1)),
    ],
)
@pytest.mark.parametrize(
    "refusing, binarize",
    [("bernoulli", "auto"), ("bernoulli", "none"), ("continuous-bernoulli", "auto")]
    + [("beta", "none"), ("poisson", "none")],
)
def test_a_refusal_of_the_data_names_a_likelihood_that_accepts_them(kind, x, refusing, binarize):
    """Found by a CLI probe: digits (counts 0..16) under the default Bernoulli were told to
    use gaussian, never the count likelihoods; following a refusal's advice must work."""
    dataset = Dataset.from_tensors(x, x[:4])
    try:
        prepare_data(dataset, _support_of(refusing), refusing, binarize, seed=0)
    except DataError as err:
        advised = re.search(r"--likelihood ([a-z-]+)", str(err))
        assert advised, str(err)
        name = advised.group(1)
        prepare_data(dataset, _support_of(name), name, "auto", seed=0)  # no DataError
        if kind == "counts":
            assert "negative-binomial" in str(err)
