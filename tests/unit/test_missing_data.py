"""Missing entries in the data: the .npz mask and NaN, and prepare_data's handling of them."""

import numpy as np
import pytest
import torch

from pyro_vae import Config, DataError, train
from pyro_vae.data import prepare_data
from pyro_vae.datasets import Dataset, load_npz, load_npz_points


def _digits(mnist5k, n=60):
    return mnist5k.x_train[:n], mnist5k.x_test[:20]


def _mask(shape, seed=0, p=0.5):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) >= p


def test_an_npz_mask_and_nan_both_mark_missing_entries(tmp_path, mnist5k):
    x = mnist5k.x_train[:50, 0].numpy()
    mask = _mask(x.shape).numpy()
    np.savez(tmp_path / "masked.npz", x=x, mask=mask)
    grey = (x / 255.0).astype(np.float32)
    grey[~mask] = np.nan
    np.savez(tmp_path / "nan.npz", x=grey)
    by_mask, by_nan = load_npz(tmp_path / "masked.npz"), load_npz(tmp_path / "nan.npz")
    assert by_mask.is_8bit and by_mask.mask_train.shape == by_mask.x_train.shape
    # the mask was split with x: the same entries are missing in both files' splits
    for split in ("train", "test"):
        a = prepare_data(by_mask, "unit", "continuous-bernoulli", "none", 0)
        b = prepare_data(by_nan, "unit", "continuous-bernoulli", "none", 0)
        left, right = getattr(a, split), getattr(b, split)
        assert torch.equal(left.isnan(), right.isnan()) and a.missing and b.missing
        assert torch.allclose(left.nan_to_num(), right.nan_to_num())
    points, mask_read, shape = load_npz_points(tmp_path / "masked.npz")
    assert shape == (50, 28, 28) and torch.equal(mask_read[:, 0], torch.from_numpy(mask))


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"mask": np.ones((5, 3), bool)}, r"'mask' has shape \(5, 3\) but 'x' has shape \(5, 4\)"),
        ({"mask": np.ones((5, 4), np.int64)}, r"'mask' has dtype int64 but must be boolean"),
        ({"mask_test": np.ones((5, 4), bool)}, r"has 'mask_test' but no 'x_test'"),
        (
            {"x_test": np.zeros((2, 4)), "mask_test": np.ones((2, 5), bool)},
            r"'mask_test' has shape \(2, 5\) but 'x_test' has shape \(2, 4\)",
        ),
    ],
)
def test_a_bad_mask_is_one_clear_error(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((5, 4), np.float32), **arrays)
    with pytest.raises(DataError, match=message):
        load_npz(path)
    if "mask" in arrays:
        with pytest.raises(DataError, match=message):
            load_npz_points(path)


def test_values_under_the_mask_never_reach_the_model(mnist5k):
    x_train, x_test = _digits(mnist5k)
    mask_train, mask_test = _mask(x_train.shape), _mask(x_test.shape, seed=1)
    other = torch.where(mask_train, x_train, 255 - x_train)  # the hidden pixels changed
    a = prepare_data(
        Dataset.from_tensors(x_train, x_test, mask_train=mask_train, mask_test=mask_test),
        "binary",
        "b",
        "dynamic",
        3,
    )
    b = prepare_data(
        Dataset.from_tensors(other, x_test, mask_train=mask_train, mask_test=mask_test),
        "binary",
        "b",
        "dynamic",
        3,
    )
    for epoch in (0, 1):
        assert torch.equal(a.epoch_train(epoch).nan_to_num(-1), b.epoch_train(epoch).nan_to_num(-1))


def test_an_all_observed_mask_is_the_unmasked_data_bit_for_bit(mnist5k):
    x_train, x_test = _digits(mnist5k)
    for binarize in ("dynamic", "static"):
        plain = prepare_data(Dataset.from_tensors(x_train, x_test), "binary", "b", binarize, 5)
        full = torch.ones_like(x_train, dtype=torch.bool)
        masked = prepare_data(
            Dataset.from_tensors(x_train, x_test, mask_train=full,
                                 mask_test=torch.ones_like(x_test, dtype=torch.bool)),
            "binary", "b", binarize, 5,
        )  # fmt: skip
        assert not masked.missing and torch.equal(plain.test, masked.test)
        assert torch.equal(plain.epoch_train(2), masked.epoch_train(2))


@pytest.mark.parametrize("binarize", ["dynamic", "static"])
def test_binarization_keeps_missing_entries_missing(mnist5k, binarize):
    x_train, x_test = _digits(mnist5k)
    mask_train, mask_test = _mask(x_train.shape), _mask(x_test.shape, seed=1)
    data = prepare_data(
        Dataset.from_tensors(x_train, x_test, mask_train=mask_train, mask_test=mask_test),
        "binary", "bernoulli", binarize, 0,
    )  # fmt: skip
    for epoch in (0, 1):
        drawn = data.epoch_train(epoch)
        assert torch.equal(drawn.isnan(), ~mask_train)
        assert set(drawn[mask_train].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(data.test.isnan(), ~mask_test)
    assert set(data.test[mask_test].unique().tolist()) == {0.0, 1.0}


def test_support_checks_ignore_missing_entries_and_report_the_observed_range():
    x = torch.tensor([[0.0, 1.0, float("nan")], [1.0, float("nan"), 0.0]])
    data = prepare_data(Dataset.from_tensors(x, x), "binary", "bernoulli", "none", 0)
    assert data.missing and torch.equal(data.train.isnan(), x.isnan())
    grey = torch.tensor([[0.0, 0.5, float("nan")], [1.0, float("nan"), 0.0]])
    with pytest.raises(DataError, match=r"range over \[0, 1\] with grey levels"):
        prepare_data(Dataset.from_tensors(grey, grey), "binary", "bernoulli", "none", 0)
    counts = torch.tensor([[2.0, float("nan")], [-1.0, 3.0]])
    with pytest.raises(DataError, match=r"range over \[-1, 3\]"):
        prepare_data(Dataset.from_tensors(counts, counts), "counts", "poisson", "none", 0)
    inf = torch.tensor([[2.0, float("inf")]])
    with pytest.raises(DataError, match="infinite values"):
        prepare_data(Dataset.from_tensors(inf, inf), "real", "gaussian", "none", 0)


def test_a_split_with_nothing_observed_is_refused():
    x = torch.rand(4, 3)
    holes = torch.full((2, 3), float("nan"))
    with pytest.raises(DataError, match="every entry of its test split is missing"):
        prepare_data(Dataset.from_tensors(x, holes), "unit", "continuous-bernoulli", "none", 0)


def test_messages_name_the_splits_the_caller_names():
    """A file scored whole (evaluate, impute) has no train split: its errors name its x."""
    holes = torch.full((2, 3), float("nan"))
    whole = Dataset.from_tensors(holes, holes)
    with pytest.raises(DataError, match="every entry of its x is missing") as caught:
        prepare_data(whole, "unit", "continuous-bernoulli", "none", 0, splits=("x", "x"))
    assert "train" not in str(caught.value)
    big = torch.tensor([[0.0, 2.0, float("nan")]])
    with pytest.raises(DataError, match=r"f.npz x_test values range over \[0, 2\]") as caught:
        data = Dataset.from_tensors(big.clamp(max=1), big, name="f.npz")
        prepare_data(data, "unit", "continuous-bernoulli", "none", 0, splits=("x", "x_test"))
    assert "train" not in str(caught.value)
    with pytest.raises(DataError, match=r"train split values range over \[0, 2\]"):
        prepare_data(Dataset.from_tensors(big, big), "unit", "continuous-bernoulli", "none", 0)


def test_from_tensors_refuses_a_mask_that_does_not_fit():
    x = torch.rand(4, 3)
    with pytest.raises(DataError, match=r"mask_train must be a boolean tensor of x_train's"):
        Dataset.from_tensors(x, x, mask_train=torch.ones(4, 3))
    with pytest.raises(DataError, match=r"mask_test must be a boolean tensor"):
        Dataset.from_tensors(x, x, mask_test=torch.ones(4, 2, dtype=torch.bool))


def test_training_says_how_much_is_missing_and_which_features_never_are_observed(tmp_path):
    """A constant column standardized to 0/0 is all NaN: a note, not silence."""
    x = torch.randn(60, 5)
    x[:, 2] = float("nan")
    x[::3, 0] = float("nan")
    data = Dataset.from_tensors(x[:50], x[50:])
    cfg = Config(likelihood="gaussian", epochs=1, batch_size=25, hidden=[8], latent_dim=2,
                 device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    said: list[str] = []
    train(cfg, data=data, progress=False, log=said.append)
    note = next(line for line in said if line.startswith("note: "))
    assert "26.8% of the training entries are missing" in note
    assert "1 of 5 features are never observed" in note


def test_load_run_returns_the_model_prepared_for_the_missing_entries_it_trained_on(tmp_path):
    """load_run(run).model of such a run refused the run's own kind of data ('x holds missing
    (NaN) entries but the model scores every entry'), where train()'s model scored it."""
    from pyro_vae import evaluate_vae, load_run
    from pyro_vae.missing import handles_missing

    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 5, generator=g)
    x[torch.rand(80, 5, generator=g) < 0.2] = float("nan")
    cfg = Config(epochs=1, batch_size=16, likelihood="gaussian", hidden=[8], latent_dim=2)
    quiet = dict(progress=False, log=lambda _: None)
    trained = train(
        cfg.replace(out=str(tmp_path / "holes")), data=Dataset.from_tensors(x[:64], x[64:]), **quiet
    )
    loaded = load_run(trained.run_dir).model
    assert handles_missing(loaded)
    expected = evaluate_vae(trained.model.eval(), x[64:], k=5, seed=0).log_px
    assert evaluate_vae(loaded, x[64:], k=5, seed=0).log_px == expected
    full = torch.nan_to_num(x)
    complete = train(
        cfg.replace(out=str(tmp_path / "full")),
        data=Dataset.from_tensors(full[:64], full[64:]),
        **quiet,
    )
    assert not handles_missing(load_run(complete.run_dir).model)
