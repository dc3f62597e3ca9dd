"""Notes that training prints before it starts, where a setting would otherwise surprise."""

import torch

from pyro_vae import Config, train
from pyro_vae.datasets import Dataset


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
