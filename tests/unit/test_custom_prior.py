"""experiments/custom_prior.py runs with a tiny budget, so the example never rots."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "custom_prior.py"


def load_script():
    spec = importlib.util.spec_from_file_location("custom_prior", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_user_prior_is_about_15_lines_and_a_valid_prior():
    script = load_script()
    source = SCRIPT.read_text().split("class LowRankPrior")[1].split("\ndef ")[0]
    assert len([line for line in source.splitlines() if line.strip()]) <= 16
    p = script.LowRankPrior(4)()
    assert p.event_shape == (4,) and p.batch_shape == ()


@pytest.mark.integration
def test_script_trains_one_epoch_and_prints_its_test_elbo(capsys):
    elbo = load_script().main(["--epochs", "1"])
    out = capsys.readouterr().out
    assert f"test ELBO after 1 epochs: {elbo:.2f} nats" in out
    # an untrained model scores about -540 nats per digit; one epoch must clearly learn
    assert -300 < elbo < -100 and torch.isfinite(torch.tensor(elbo))
