"""The run's figures say what they show: visible single epochs, labelled axes, clean units."""

import pytest
import torch
from PIL import Image

from pyro_vae import mlp_vae
from pyro_vae.app.cli import main
from pyro_vae.app.plots import is_image_shape, plot_latent_scatter, plot_losses, save_image_grid


def test_a_one_epoch_history_draws_marked_points_with_labelled_axes(tmp_path):
    fig = plot_losses(
        [{"epoch": 1, "train_elbo": -180.0, "test_elbo": -170.0}], tmp_path / "losses.png"
    )
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["train ELBO", "test ELBO"]
    assert all(line.get_marker() not in ("", "None", None) for line in lines)
    assert [list(line.get_ydata()) for line in lines] == [[-180.0], [-170.0]]
    assert ax.get_xlabel() == "epoch" and "ELBO per datapoint" in ax.get_ylabel()
    assert all(float(t).is_integer() for t in ax.get_xticks())  # no epoch 0.98
    assert (tmp_path / "losses.png").read_bytes()[:4] == b"\x89PNG"


def test_long_histories_are_plain_lines():
    rows = [{"epoch": e, "train_elbo": -e, "test_elbo": -e} for e in range(1, 101)]
    fig = plot_losses(rows, "/dev/null")
    assert all(line.get_marker() in ("", "None") for line in fig.axes[0].get_lines())


@pytest.mark.parametrize("units", ["nats", "nats (density)", "nats (8-bit levels)"])
def test_loss_units_are_never_in_doubled_parentheses(units, tmp_path):
    rows = [{"epoch": 1, "train_elbo": -1.0, "test_elbo": -1.0}]
    label = plot_losses(rows, tmp_path / "l.png", units).axes[0].get_ylabel()
    assert units in label and "((" not in label and "))" not in label
    assert label.count("(") == label.count(")") <= 1


@pytest.mark.parametrize(
    "latent_dim, xlabel, ylabel",
    [(2, "$z_1$", "$z_2$"), (5, "PC 1 (", "PC 2 ("), (1, "$z_1$", "")],
)
def test_latent_scatter_names_its_axes(latent_dim, xlabel, ylabel, binary_batch, tmp_path):
    torch.manual_seed(0)
    vae = mlp_vae((1, 28, 28), latent_dim, (16,))
    fig = plot_latent_scatter(vae, binary_batch, torch.arange(64) % 10, tmp_path / "latent.png")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith(xlabel) and ax.get_ylabel().startswith(ylabel)
    if latent_dim > 2:  # the principal components' shares of the variance, largest first
        shares = [float(label.split("(")[1].split("%")[0]) for label in
                  (ax.get_xlabel(), ax.get_ylabel())]  # fmt: skip
        assert 100 >= shares[0] >= shares[1] > 0
    assert "latent space" in ax.get_title()


@pytest.mark.parametrize("points", [1, 2])
def test_latent_scatter_of_one_or_two_test_points_is_drawn(points, binary_batch, tmp_path):
    """A test split of one datapoint has one principal component (and none of variance):
    the scatter used to raise IndexError after training, and resume hit it again."""
    vae = mlp_vae((1, 28, 28), 5, (16,))
    fig = plot_latent_scatter(vae, binary_batch[:points], None, tmp_path / "latent.png")
    assert (tmp_path / "latent.png").stat().st_size > 0
    assert fig.axes[0].get_ylabel().startswith("PC 2 (")


def test_an_image_grid_title_is_in_the_png(tmp_path):
    assert save_image_grid(torch.rand(4, 1, 8, 8), tmp_path / "g.png", title="four images")
    assert Image.open(tmp_path / "g.png").info["Title"] == "four images"


@pytest.mark.integration
@pytest.mark.slow
def test_sample_writes_a_titled_grid_named_after_seed_and_count(tiny_npz, tmp_path):
    run = tmp_path / "my-run"
    args = ["--dataset", str(tiny_npz), "--epochs", "1", "--batch-size", "100", "--hidden", "16",
            "--latent-dim", "2", "--device", "cpu", "--out", str(run), "--no-progress"]  # fmt: skip
    assert main(["train", *args]) == 0
    assert main(["sample", str(run), "--n", "9", "--seed", "4"]) == 0
    png = run / "plots" / "prior-samples-seed4-n9.png"
    assert Image.open(png).info["Title"] == "my-run: 9 samples from the prior (E[x|z]), seed 4"


def test_flat_rows_are_images_only_from_8x8_up():
    assert is_image_shape((784,)) and is_image_shape((64,))
    assert not is_image_shape((16,)) and not is_image_shape((1,)) and not is_image_shape((10,))


@pytest.mark.parametrize("classes", [3, 12])
def test_latent_scatter_gives_each_class_its_own_colour_and_named_legend_entry(
    classes, binary_batch, tmp_path
):
    """Found by a CLI probe: iris's 3 classes were coloured on a 10-band colour bar from 0 to
    2, so class 1 was brown, between ticks 1.00 and 1.25; 12 classes would share colours."""
    torch.manual_seed(0)
    vae = mlp_vae((1, 28, 28), 2, (16,))
    labels = torch.arange(64) % classes
    labels[0] = -1  # m2's unlabelled rows
    fig = plot_latent_scatter(vae, binary_batch, labels, tmp_path / "latent.png")
    ax = fig.axes[0]
    names = [text.get_text() for text in ax.get_legend().get_texts()]
    assert names == ["no label"] + [str(c) for c in range(classes)]
    keyed = [tuple(handle.get_color()) for handle in ax.get_legend().legend_handles]
    assert len(set(keyed)) == classes + 1  # one colour per class
    (points,) = ax.collections  # one scatter in the data's order: no class drawn over all
    drawn = [tuple(colour) for colour in points.get_facecolor()[:, :3]]
    position = {-1: 0, **{c: c + 1 for c in range(classes)}}
    assert drawn == [keyed[position[int(label)]][:3] for label in labels]
    assert len(fig.axes) == 1  # no colour bar beside the legend


def test_count_images_are_drawn_on_the_counts_scale_not_clipped_to_white(tmp_path, monkeypatch):
    """A run on counts (digits: 0..16) drew every non-zero count white, clipped at 1, so
    its reconstructions and samples showed blots instead of digits. Now the largest training
    count is white and the counts between are greys, in training's figures and in sample's."""
    import pyro_vae
    from pyro_vae.app import plots

    shown = []
    as_images = plots._as_images

    def spy(x, *args, **kwargs):
        shown.append(as_images(x, *args, **kwargs))
        return shown[-1]

    monkeypatch.setattr(plots, "_as_images", spy)
    cfg = pyro_vae.Config(dataset="digits", likelihood="poisson", epochs=1, hidden=[16],
                          latent_dim=2, out=str(tmp_path / "run"))  # fmt: skip
    pyro_vae.train(cfg, progress=False, log=lambda _: None)
    inputs = shown[0][:8]  # reconstructions.png: the first row holds 8 test digits
    lit = inputs[inputs > 0]
    assert len(lit) and float((lit >= 1).float().mean()) < 0.5  # a few 16s, not every count
    assert len(torch.unique(lit)) > 3  # counts 1..16 stay distinct greys
    shown.clear()
    assert main(["sample", str(tmp_path / "run"), "--out", str(tmp_path / "s.png")]) in (0, None)
    (samples,) = shown
    assert float((samples >= 1).float().mean()) < 0.5
