"""pyro_vae.app.impute: what `pyro-vae impute` writes, and that a refusal writes nothing."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pyro_vae import Config, ConfigError, DataError, ModelError, evaluate, train
from pyro_vae.app.cli import main
from pyro_vae.app.data_record import check_range
from pyro_vae.app.impute import _check_imputable, impute_file
from pyro_vae.data import prepare_data
from pyro_vae.datasets import Dataset, load_npz_points
from pyro_vae.families.cvae import mlp_cvae
from pyro_vae.families.m2 import mlp_m2

TINY = dict(epochs=1, batch_size=50, hidden=[16], latent_dim=2, eval_k=10, seed=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist5k) -> Path:
    """Grey digits with 30% of their pixels missing, as floats with NaN (``grey.npz``) and as
    8-bit levels with a mask (``levels.npz``), and runs trained on them: Bernoulli with
    dynamic binarization (``dynamic``), with static (``static``) and a continuous Bernoulli
    (``cb``)."""
    folder = tmp_path_factory.mktemp("impute")
    levels = mnist5k.x_train[:150, 0].numpy()
    mask = np.random.default_rng(0).random(levels.shape) >= 0.3
    grey = levels / np.float32(255)
    grey[~mask] = np.nan
    np.savez(folder / "grey.npz", x=grey)
    np.savez(folder / "levels.npz", x=levels, mask=mask)
    for name, data, changes in (
        ("dynamic", "grey.npz", {}),
        ("static", "levels.npz", {"binarize": "static"}),
        ("cb", "grey.npz", {"likelihood": "continuous-bernoulli"}),
    ):
        cfg = Config(dataset=str(folder / data), out=str(folder / name), **TINY, **changes)
        train(cfg, progress=False, log=lambda _: None)
    return folder


def _given(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A file's x on the model's [0, 1] scale (NaN where missing) and its mask."""
    arrays = np.load(path)
    x = arrays["x"]
    if x.dtype == np.uint8:
        x = np.where(arrays["mask"], x / np.float32(255), np.nan).astype(np.float32)
    return x, ~np.isnan(x)


@pytest.mark.parametrize("run, data", [("dynamic", "grey.npz"), ("static", "levels.npz")])
def test_a_bernoulli_run_returns_the_observed_grey_entries_as_given(runs, tmp_path, run, data):
    """The model scores a binarized copy of x_obs; the file gets the data back unchanged."""
    out = tmp_path / "filled.npz"
    impute_file(runs / run, runs / data, out, draws=3, k=10)
    given, seen = _given(runs / data)
    filled = np.load(out)
    assert not np.isin(given[seen], [0, 1]).all()  # grey: binarized values would differ
    assert np.array_equal(filled["mask"], seen)
    assert np.array_equal(filled["x"][seen], given[seen])
    assert all(np.array_equal(draw[seen], given[seen]) for draw in filled["draws"])
    imputed = filled["x"][~seen]  # probabilities P(x_mis = 1 | x_obs)
    assert ((imputed > 0) & (imputed < 1)).all()
    assert np.isin(filled["draws"][:, ~seen], [0, 1]).all()
    assert (tmp_path / "filled.png").read_bytes()[:4] == b"\x89PNG"


def test_draws_0_writes_an_empty_draws_array(runs, tmp_path):
    out = tmp_path / "filled.npz"
    impute_file(runs / "cb", runs / "grey.npz", out, draws=0, k=5)
    given, seen = _given(runs / "grey.npz")
    filled = np.load(out)
    assert filled["draws"].shape == (0, *given.shape) and filled["draws"].dtype == np.float32
    assert np.array_equal(filled["x"][seen], given[seen])


@pytest.mark.parametrize(
    "figure, message",
    [
        ("f.jpg", "--figure .*f.jpg: name the output file FILE.png"),
        ("f.txt", "--figure .*f.txt: name the output file FILE.png"),
        ("nodir/f.png", "folder .*nodir does not exist; create it first"),
        ("old.png", "--figure .*old.png exists; choose another path or remove it first"),
        ("folder.png", "is a folder"),
        (None, r"--figure \(by default --out as .png\) .*filled.png exists"),
    ],
)
def test_a_bad_figure_path_is_refused_before_any_work(runs, tmp_path, figure, message):
    (tmp_path / "old.png").write_bytes(b"old")
    (tmp_path / "filled.png").write_bytes(b"old")  # where the figure of filled.npz goes
    (tmp_path / "folder.png").mkdir()
    before = sorted(tmp_path.rglob("*"))
    figure = None if figure is None else tmp_path / figure
    for run in (runs / "cb", tmp_path / "no-such-run"):  # refused before the run is read
        with pytest.raises(ConfigError, match=message):
            impute_file(run, runs / "grey.npz", tmp_path / "filled.npz", k=5, figure=figure)
    assert sorted(tmp_path.rglob("*")) == before  # no --out, no temporary file
    assert (tmp_path / "old.png").read_bytes() == b"old"


@pytest.mark.parametrize(
    "arrays", [{}, {"masks": np.zeros((4, 28, 28), bool)}], ids=["no-mask", "misnamed-mask"]
)
def test_data_without_holes_say_how_to_mark_a_missing_entry(tmp_path, arrays):
    """A mask saved under another name ('masks') is not read, so x looks complete: the
    refusal says how pyro-vae reads missing entries rather than only that there are none."""
    np.savez(tmp_path / "full.npz", x=np.full((4, 28, 28), 0.5, np.float32), **arrays)
    with pytest.raises(DataError, match="nothing to impute") as caught:
        impute_file(tmp_path / "no-run", tmp_path / "full.npz", tmp_path / "o.npz")
    assert "NaN" in str(caught.value) and "named 'mask'" in str(caught.value)
    assert "mask=" in str(caught.value)  # the numpy.savez that saves one


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"mask": np.ones((4, 28, 28), bool)}, "x has no missing entry"),
        ({"mask": np.zeros((4, 28, 28), bool)}, "every entry of x is missing"),
    ],
)
def test_data_without_holes_or_without_observed_entries_name_the_file(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", x=np.full((4, 28, 28), 0.5, np.float32), **arrays)
    with pytest.raises(DataError, match=message) as caught:  # before the run is read
        impute_file(tmp_path / "no-run", tmp_path / "bad.npz", tmp_path / "o.npz")
    assert "bad.npz" in str(caught.value) and "train" not in str(caught.value)
    assert not (tmp_path / "o.npz").exists()


def test_values_out_of_range_name_the_file_not_a_train_split(runs, tmp_path):
    given, _ = _given(runs / "grey.npz")
    np.savez(tmp_path / "big.npz", x=given * 2)
    for score in (
        lambda: evaluate(runs / "cb", data=str(tmp_path / "big.npz"), out=tmp_path / "e.json"),
        lambda: impute_file(runs / "cb", tmp_path / "big.npz", tmp_path / "o.npz"),
    ):
        with pytest.raises(DataError, match=r"big.npz x values range over \[0, 2\]") as caught:
            score()
        assert "train" not in str(caught.value)
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("name", ["cvae", "m2"])
def test_a_labelled_run_is_refused_with_what_imputes(name):
    build = mlp_cvae if name == "cvae" else mlp_m2
    model = build((1, 28, 28), num_classes=10, latent_dim=2, hidden=[8])
    run = SimpleNamespace(model=model, config=Config(model=name), folder=SimpleNamespace(path="r"))
    with pytest.raises(ModelError) as caught:
        _check_imputable(run)
    message = str(caught.value)
    assert f"r holds a run of --model {name}, which conditions on labels y" in message
    assert "Train a --model vae run on data with missing entries" in message
    assert "impute the data first" not in message


def test_sample_checks_out_before_drawing_and_replaces_an_old_file(runs, tmp_path, capsys):
    run = str(runs / "cb")
    for out in ("s.jpg", "nodir/s.png"):
        assert main(["sample", run, "--out", str(tmp_path / out), "--n", "4"]) == 2
    assert "pyro-vae: error: --out" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "s.png").write_bytes(b"old")
    assert main(["sample", run, "--out", str(tmp_path / "s.png"), "--n", "4"]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_sample_makes_the_runs_plots_folder_again_when_it_was_removed(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs / "cb", run)
    shutil.rmtree(run / "plots")
    assert main(["sample", str(run), "--n", "4"]) == 0, capsys.readouterr().err
    png = run / "plots" / "prior-samples-seed0-n4.png"
    assert capsys.readouterr().out.strip() == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_impute_and_scoring_refuse_a_file_with_nothing_observed_in_the_same_words(tmp_path):
    """One test (pyro_vae.data.has_missing) serves the early check of impute and the data's."""
    levels = np.full((4, 28, 28), 128, np.uint8)
    np.savez(tmp_path / "none.npz", x=levels, mask=np.zeros(levels.shape, bool))
    with pytest.raises(DataError) as early:  # before the run is read
        impute_file(tmp_path / "no-run", tmp_path / "none.npz", tmp_path / "o.npz")
    x, mask, _ = load_npz_points(tmp_path / "none.npz")
    whole = Dataset("none.npz", x, None, x, None, source="", mask_train=mask, mask_test=mask)
    with pytest.raises(DataError) as scored:
        prepare_data(whole, "unit", "continuous-bernoulli", "none", 0, splits=("x", "x"))
    words = "every entry of {} is missing (NaN, or False in a mask); there is nothing to"
    assert words.format("x") in str(early.value)
    assert words.format("its x") in str(scored.value)


# -- data on another scale than the training data ------------------------------------------------


@pytest.fixture(scope="module")
def gaussian_on_levels(runs, mnist5k) -> Path:
    """A gaussian run trained on uint8 levels (divided by 255 to [0, 1]), and beside it the
    same images as floats 0..255 with holes (``floats255.npz``, the natural way to add NaN,
    which uint8 cannot hold) and divided by 255 (``floats1.npz``)."""
    levels = mnist5k.x_train[:150, 0].numpy()
    np.savez(runs / "levels-only.npz", x=levels)
    cfg = Config(dataset=str(runs / "levels-only.npz"), likelihood="gaussian",
                 out=str(runs / "gaussian"), **TINY)  # fmt: skip
    train(cfg, progress=False, log=lambda _: None)
    floats = levels[:20].astype(np.float32)
    floats[:, 10:14, 10:14] = np.nan
    np.savez(runs / "floats255.npz", x=floats)
    np.savez(runs / "floats1.npz", x=floats / 255)
    return runs / "gaussian"


def test_floats_0_to_255_for_a_run_on_levels_divided_by_255_are_refused(
    gaussian_on_levels, runs, tmp_path
):
    """They were imputed (observed 0..254 back, imputed -19..17) and scored (log p(x_obs)
    -2.2e8) without a word."""
    run = gaussian_on_levels
    for score in (
        lambda: impute_file(run, runs / "floats255.npz", tmp_path / "o.npz", k=5),
        lambda: evaluate(run, data=str(runs / "floats255.npz"), k=5, out=tmp_path / "e.json"),
    ):
        with pytest.raises(DataError) as refused:
            score()
        message = str(refused.value)
        assert message.startswith(
            f"{runs / 'floats255.npz'}: its observed values range over [0, 255] on the model's "
            f"scale, far outside the [0, 1] of the data {run} was trained on (uint8 levels "
            "divided by 255)"
        )
        assert message.endswith(
            "floats, taken as stored: divide them by 255, or save them as uint8"
        )
    assert list(tmp_path.iterdir()) == []
    impute_file(run, runs / "floats1.npz", tmp_path / "o.npz", k=5, draws=0)
    assert evaluate(run, data=str(runs / "floats1.npz"), k=5, out=tmp_path / "e.json").log_px > -1e4


@pytest.mark.parametrize("run", ["dynamic", "cb"])
def test_floats_0_to_255_for_a_bernoulli_run_are_named_a_scale_error_not_given_train_flags(
    runs, tmp_path, run
):
    """A Bernoulli (or continuous Bernoulli) run refused them by its support check before the
    range check, with a fix for training ("use --likelihood gaussian with --binarize none"),
    a flag neither evaluate nor impute takes."""
    given, _ = _given(runs / "grey.npz")
    np.savez(tmp_path / "f255.npz", x=given * 255)
    for score in (
        lambda: evaluate(runs / run, data=str(tmp_path / "f255.npz"), out=tmp_path / "e.json"),
        lambda: impute_file(runs / run, tmp_path / "f255.npz", tmp_path / "o.npz"),
    ):
        with pytest.raises(DataError) as refused:
            score()
        message = str(refused.value)
        assert "f255.npz: its observed values range over [0, 255]" in message
        assert "--likelihood" not in message and "--binarize" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f255.npz"]


def test_a_run_recorded_without_the_training_range_is_not_checked(
    gaussian_on_levels, runs, tmp_path
):
    run = Path(shutil.copytree(gaussian_on_levels, tmp_path / "run"))
    info = json.loads((run / "run.json").read_text())
    del info["data_range"]  # as an older pyro-vae wrote it
    (run / "run.json").write_text(json.dumps(info))
    impute_file(run, runs / "floats255.npz", tmp_path / "o.npz", k=2, draws=0)
    assert (tmp_path / "o.npz").is_file()


@pytest.mark.parametrize(
    "low, high, found, refused",
    [
        (-4.5, 4.5, (-6.0, 7.0), False),  # standardized: a test set a little beyond the extremes
        (-4.5, 4.5, (-14.0, 2.0), True),
        (280.0, 300.0, (275.0, 330.0), False),  # kelvins: narrow, far from 0
        (280.0, 300.0, (275.0, 76_500.0), True),  # the same x 255
        (0.0, 16.0, (0.0, 30.0), False),  # counts
        (0.0, 1.0, (0.0, 0.5), False),  # a shrunk scale stays inside: not caught
    ],
)
def test_the_range_check_catches_scale_errors_not_test_set_variation(low, high, found, refused):
    info = {"data_range": {"dtype": "float32", "scaling": "values taken as stored",
                           "min": low, "max": high}}  # fmt: skip
    x = torch.tensor([found[0], math.nan, found[1]])
    if not refused:
        check_range(Path("run"), info, x, False, "new.npz")
        return
    with pytest.raises(DataError, match=r"new.npz: .* put them on the training data's scale"):
        check_range(Path("run"), info, x, False, "new.npz")


def test_a_few_outliers_are_scored_but_a_scale_error_is_refused():
    """Found by a probe: one value of 40 in standardized data refused the whole file, which
    blocks scoring anomalies; a scale error moves nearly every entry, an outlier a few."""
    info = {"data_range": {"dtype": "float32", "scaling": "values taken as stored",
                           "min": -4.5, "max": 4.5}}  # fmt: skip
    x = torch.randn(100, 5).clamp(-4, 4)
    x[5, 2] = 40.0  # 1 entry of 500
    check_range(Path("run"), info, x, False, "outlier.npz")
    with pytest.raises(DataError, match="outlier.npz: .* far outside"):
        check_range(Path("run"), info, x * 255, False, "outlier.npz")
