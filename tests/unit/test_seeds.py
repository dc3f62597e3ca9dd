"""Seeds at the edges of their range: every seed train, evaluate and sample accept must
work, also where the code derives another seed from it (an evaluation chunk's stream is
``seed * 1_000_003 + chunk``, the test ELBO's ``seed + 7919``), which torch would refuse
once it leaves -2**63 .. 2**64 - 1."""

import torch

from pyro_vae import Config, train
from pyro_vae.app.cli import main
from pyro_vae.estimators import elbo_per_datapoint
from pyro_vae.rng import isolated_rng

LARGEST = 2**63 - 1  # the largest seed config.toml takes


def test_a_derived_seed_beyond_torchs_range_is_the_same_seed_modulo_2_to_the_64():
    for seed in (5, -1, LARGEST):
        with isolated_rng(seed, "cpu"):
            wanted = torch.rand(3)
        with isolated_rng(seed + 2**64, "cpu"):
            assert torch.equal(torch.rand(3), wanted), seed


def test_the_largest_seed_trains_evaluates_and_samples(tmp_path, tiny_npz, capsys):
    run = tmp_path / "run"
    cfg = Config(dataset=str(tiny_npz), epochs=1, hidden=[16], latent_dim=2, seed=LARGEST)
    result = train(cfg.replace(out=str(run), eval_k=2), progress=False, log=lambda _: None)
    assert result.history[-1]["epoch"] == 1
    model = result.model
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    scores = [elbo_per_datapoint(model, x, seed=seed) for seed in (LARGEST, LARGEST + 2**64)]
    assert scores[0] == scores[1], "the same seed modulo 2**64 draws the same"
    for argv in (
        ["evaluate", str(run), "--k", "2", "--seed", str(LARGEST)],
        ["sample", str(run), "--n", "2", "--seed", str(10**30)],
    ):
        assert main(argv) == 0, capsys.readouterr().err
