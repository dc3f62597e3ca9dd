"""Notes that training prints before it starts, where a setting would otherwise surprise."""

import pytest
import torch

from pyro_vae import Config, train
from pyro_vae.datasets import Dataset
from pyro_vae.errors import DataError


def test_a_model_whose_checkpoints_run_to_gigabytes_is_announced(tmp_path, monkeypatch):
    """categorical-256 with the MLP on 32x32 colour images has 317 million parameters and a
    3.5 GiB checkpoint; the note says so before training (threshold lowered here)."""
    monkeypatch.setattr("pyro_vae.app.train.LARGE_MODEL", 1_000)
    data = Dataset.from_tensors(torch.rand(50, 20), torch.rand(10, 20))
    cfg = Config(likelihood="gaussian", epochs=1, batch_size=25, hidden=[200], latent_dim=2,
                 device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    said: list[str] = []
    train(cfg, data=data, progress=False, log=said.append)
    assert any(line.startswith("note: the model has ") and "GiB" in line for line in said)


def _gaussian(tmp_path, name):
    return Config(likelihood="gaussian", epochs=1, batch_size=25, hidden=[16], latent_dim=2,
                  device="cpu", out=str(tmp_path / name))  # fmt: skip


def test_real_valued_data_far_from_unit_scale_get_a_note_and_unit_scale_none(tmp_path):
    unscaled = torch.randn(60, 5) * 1e5 + 3e5  # prices, say
    said: list[str] = []
    data = Dataset.from_tensors(unscaled[:50], unscaled[50:])
    train(_gaussian(tmp_path, "prices"), data=data, progress=False, log=said.append)
    assert any("reach |x| = " in line and "standardize each feature" in line for line in said)
    said.clear()
    scaled = (unscaled - unscaled.mean(0)) / unscaled.std(0)
    data = Dataset.from_tensors(scaled[:50], scaled[50:])
    train(_gaussian(tmp_path, "scaled"), data=data, progress=False, log=said.append)
    assert not any("standardize" in line for line in said)


def test_data_whose_first_loss_overflows_are_refused_before_the_folder(tmp_path):
    huge = torch.full((60, 5), 1e30)  # squares overflow float32
    data = Dataset.from_tensors(huge[:50], huge[50:])
    with pytest.raises(DataError, match=r"loss at the initial weights is inf .* 1e\+30"):
        train(_gaussian(tmp_path, "huge"), data=data, progress=False, log=lambda _: None)
    assert not (tmp_path / "huge").exists()
