"""``pyro-vae sample --out FILE.npz``: samples as numbers, for data of any shape."""

import numpy as np
import pytest
import torch

from pyro_vae import Config, train
from pyro_vae.app.cli import main
from pyro_vae.app.load import load_run
from pyro_vae.rng import isolated_rng


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    rows = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    np.savez(folder / "table.npz", x=rows)
    cfg = Config(dataset=str(folder / "table.npz"), likelihood="gaussian", epochs=1,
                 batch_size=40, hidden=[16], latent_dim=2, out=str(folder / "run"))  # fmt: skip
    return train(cfg, progress=False, log=lambda _: None).run_dir


def test_a_table_run_writes_means_draws_and_latents_the_png_path_would_draw(table_run, tmp_path):
    out = tmp_path / "draws.npz"
    assert main(["sample", str(table_run), "--out", str(out), "--n", "5", "--seed", "3"]) == 0
    draws = dict(np.load(out))
    assert {k: v.shape for k, v in draws.items()} == {"mean": (5, 6), "x": (5, 6), "z": (5, 2)}
    vae = load_run(table_run).model
    with torch.no_grad(), isolated_rng(3, "cpu"):
        expected = vae.sample(5)
    assert np.array_equal(draws["mean"], expected.numpy())  # E[x|z] at the same z
    assert not np.allclose(draws["x"], draws["mean"])  # a draw of x, with the likelihood's noise
    assert main(["sample", str(table_run), "--out", str(out), "--n", "5", "--seed", "3"]) == 0
    assert all(np.array_equal(v, np.load(out)[k]) for k, v in draws.items())  # seeded


def test_a_table_run_without_npz_names_the_numeric_output(table_run, capsys):
    assert main(["sample", str(table_run)]) == 2
    assert "--out FILE.npz writes the samples' numbers" in capsys.readouterr().err


def test_labels_are_refused_for_a_model_without_classes(table_run, tmp_path, capsys):
    assert main(["sample", str(table_run), "--out", str(tmp_path / "d.npz"), "--label", "1"]) == 2
    assert "--label draws class-conditional samples" in capsys.readouterr().err


def test_a_cvae_run_writes_the_label_of_each_row(tiny_npz, tmp_path):
    cfg = Config(dataset=str(tiny_npz), model="cvae", epochs=1, batch_size=100, hidden=[16],
                 latent_dim=2, out=str(tmp_path / "cvae"))  # fmt: skip
    run = train(cfg, progress=False, log=lambda _: None).run_dir
    out = tmp_path / "d.npz"
    assert main(["sample", str(run), "--out", str(out), "--n", "4", "--label", "7"]) == 0
    draws = np.load(out)
    assert draws["mean"].shape == draws["x"].shape == (4, 1, 28, 28) and draws["z"].shape == (4, 2)
    assert draws["y"].tolist() == [7] * 4
    assert main(["sample", str(run), "--out", str(out), "--n", "2"]) == 0
    assert np.load(out)["y"].tolist() == [c for c in range(10) for _ in range(2)]


def test_an_m2_run_writes_draws_and_latents_too(tmp_path):
    rng = np.random.default_rng(1)
    centres, y = rng.normal(scale=3, size=(3, 6)), rng.integers(0, 3, 200)
    x = (centres[y] + rng.normal(size=(200, 6))).astype(np.float32)
    unlabelled = y.copy()
    unlabelled[rng.random(200) < 0.8] = -1
    np.savez(tmp_path / "m2.npz", x=x[:150], y=unlabelled[:150], x_test=x[150:], y_test=y[150:])
    cfg = Config(dataset=str(tmp_path / "m2.npz"), model="m2", likelihood="gaussian", epochs=1,
                 batch_size=50, hidden=[16], latent_dim=2, out=str(tmp_path / "run"))  # fmt: skip
    run = train(cfg, progress=False, log=lambda _: None).run_dir
    out = tmp_path / "d.npz"
    assert main(["sample", str(run), "--out", str(out), "--n", "4", "--label", "1"]) == 0
    draws = dict(np.load(out))
    assert {k: v.shape for k, v in draws.items()} == {
        "mean": (4, 6),
        "x": (4, 6),
        "z": (4, 2),
        "y": (4,),
    }
    m2 = load_run(run).model  # building it draws initial weights: outside the seeded stream
    with torch.no_grad(), isolated_rng(0, "cpu"):
        expected = m2.sample(4, torch.full((4,), 1))
    assert np.array_equal(draws["mean"], expected.numpy())  # the PNG path's images


def test_a_png_grid_too_large_to_read_is_refused_and_numbers_are_not(table_run, tmp_path, capsys):
    png = tmp_path / "big.png"
    assert main(["sample", str(table_run), "--n", "1025", "--out", str(png)]) == 2
    assert "more than a PNG grid shows legibly" in capsys.readouterr().err
    assert not png.exists()
    npz = tmp_path / "many.npz"
    assert main(["sample", str(table_run), "--n", "1025", "--out", str(npz)]) == 0
    assert np.load(npz)["x"].shape == (1025, 6)
