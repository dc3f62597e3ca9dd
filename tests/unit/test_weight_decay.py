"""``--weight-decay``: AdamW's decoupled decay on top of the same Adam step, stored with the
run so that a resumed run decays alike; 0 keeps plain Adam."""

import pytest
import torch

from pyro_vae import Config, build_vae
from pyro_vae.app.train import train
from pyro_vae.app.trainer import Trainer
from pyro_vae.data import prepare_data
from pyro_vae.datasets import load_npz
from pyro_vae.errors import ConfigError


def one_step(tiny_npz, weight_decay: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters before and after one training step from the same seed and batch."""
    cfg = Config(hidden=[16], latent_dim=2, lr=1e-2, weight_decay=weight_decay)
    data = prepare_data(load_npz(tiny_npz), "binary", "bernoulli", "dynamic", seed=0)
    torch.manual_seed(0)
    trainer = Trainer(cfg, build_vae(cfg, data.data_shape), data)
    before = [p.detach().clone() for p in trainer.parameters]
    torch.manual_seed(1)
    trainer.train_step(data.epoch_train(0)[:50])
    return before, [p.detach().clone() for p in trainer.parameters]


def test_the_decay_is_decoupled_from_the_adam_step(tiny_npz):
    """AdamW: p <- p - lr * wd * p - lr * (Adam's direction); the direction is Adam's own."""
    before, adam = one_step(tiny_npz, 0.0)
    _, decayed = one_step(tiny_npz, 0.5)
    for p0, p_adam, p_decayed in zip(before, adam, decayed, strict=True):
        torch.testing.assert_close(p_decayed, p_adam - 1e-2 * 0.5 * p0, rtol=0, atol=2e-6)
    moved = max(float((a - d).abs().max()) for a, d in zip(adam, decayed, strict=True))
    assert moved > 1e-3  # the decay is visible, not lost in rounding


def test_no_decay_is_plain_adam(tiny_npz):
    cfg = Config(hidden=[16], latent_dim=2)
    data = prepare_data(load_npz(tiny_npz), "binary", "bernoulli", "dynamic", seed=0)
    trainer = Trainer(cfg, build_vae(cfg, data.data_shape), data)
    assert type(trainer.optimizer) is torch.optim.Adam
    trainer = Trainer(cfg.replace(weight_decay=0.1), build_vae(cfg, data.data_shape), data)
    assert type(trainer.optimizer) is torch.optim.AdamW
    assert trainer.optimizer.defaults["weight_decay"] == 0.1


def test_a_decayed_run_resumes_bit_exactly(tiny_npz, tmp_path):
    quiet = dict(progress=False, log=lambda _: None)
    values = dict(dataset=str(tiny_npz), batch_size=100, hidden=[16], latent_dim=2,
                  weight_decay=0.05, device="cpu")  # fmt: skip
    whole = train(Config(**values, epochs=2, out=str(tmp_path / "whole")), **quiet)
    train(Config(**values, epochs=1, out=str(tmp_path / "stopped")), **quiet)
    assert Config.from_file(tmp_path / "stopped" / "config.toml").weight_decay == 0.05
    resumed = train(resume=tmp_path / "stopped", epochs=2, **quiet)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_negative_decay_is_refused():
    with pytest.raises(ConfigError, match="weight_decay"):
        Config(weight_decay=-0.1)
