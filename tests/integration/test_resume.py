"""Kill a real training process with SIGKILL mid-epoch, resume it, and compare bit for bit."""

import signal
import subprocess
import sys
import time

import torch

from pyro_vae.app.checkpoint import load_checkpoint
from pyro_vae.app.run_folder import RunFolder

ARGS = [
    "--dataset", "mnist5k", "--epochs", "3", "--batch-size", "50", "--hidden", "256",
    "--latent-dim", "4", "--checkpoint-every", "7", "--seed", "5", "--no-progress",
    "--device", "cpu",
]  # fmt: skip


def cli(*args):
    return [sys.executable, "-m", "pyro_vae", "train", *args]


def _mid_epoch_checkpoint(path):
    try:
        position = load_checkpoint(path)["position"]
    except Exception:  # not written yet, or being replaced
        return False
    return position["epoch"] >= 1 and position["step"] > 0


def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path):
    reference = tmp_path / "reference"  # trains alongside the run to be killed: a second core
    uninterrupted = subprocess.Popen(
        cli(*ARGS, "--out", str(reference)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        cli(*ARGS, "--out", str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not _mid_epoch_checkpoint(killed / "checkpoint.pt"):  # however slow the machine
        assert process.poll() is None, "training finished before it could be killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    interrupted_at = load_checkpoint(killed / "checkpoint.pt")["position"]
    assert interrupted_at["step"] > 0

    resumed = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "train", "--resume", str(killed), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout + resumed.stderr
    _, stderr = uninterrupted.communicate()
    assert uninterrupted.returncode == 0, stderr.decode()

    expected = load_checkpoint(reference / "checkpoint.pt")
    got = load_checkpoint(killed / "checkpoint.pt")
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    rows = RunFolder(killed).read_metrics()
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    for row, ref in zip(rows, RunFolder(reference).read_metrics(), strict=True):
        assert row["train_elbo"] == ref["train_elbo"] and row["test_elbo"] == ref["test_elbo"]
