import subprocess
import sys

import pytest

from pyro_vae.app.cli import main
from pyro_vae.app.run_folder import RunFolder


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "pyro_vae", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_train_end_to_end_then_sample(tiny_npz, tmp_path):
    out = tmp_path / "run"
    done = run_cli(
        "train", "--dataset", str(tiny_npz), "--epochs", "2", "--batch-size", "50",
        "--hidden", "32", "16", "--latent-dim", "2", "--seed", "3", "--device", "cpu",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "epoch   2/2" in done.stdout + done.stderr
    cfg = RunFolder(out).read_config()
    assert cfg.hidden == [32, 16] and cfg.seed == 3 and cfg.epochs == 2
    sampled = run_cli("sample", str(out), "--n", "9", "--out", str(tmp_path / "s.png"))
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_config_file_with_flag_override(tiny_npz, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'dataset = "{tiny_npz}"\nepochs = 5\nhidden = [16]\nlatent_dim = 2\n')
    out = tmp_path / "run"
    code = main(
        ["train", "--config", str(config), "--epochs", "1", "--out", str(out), "--no-progress"]
    )
    assert code == 0
    assert RunFolder(out).read_config().epochs == 1
    assert len(RunFolder(out).read_metrics()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--prior", "gauss"], "prior: unknown name 'gauss'; valid choices: "),
        (["train", "--epochs", "-1"], "epochs: must be >= 1, got -1"),
        (["train", "--epochs", "ten"], "invalid int value: 'ten'"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--dataset", "missing.npz", "--out", "{tmp}/r"], "missing.npz: file not found"),
        (["sample", "{tmp}/no-run"], "no such run folder"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, tmp_path):
    done = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback_for_user_errors():
    done = run_cli("--debug", "train", "--prior", "gauss")
    assert done.returncode != 0 and "Traceback" in done.stderr and "ConfigError" in done.stderr


def test_list_names_every_builtin():
    done = run_cli("list")
    assert done.returncode == 0
    for name in (
        "mnist5k",
        "fashion-mnist",
        "standard-normal",
        "bernoulli",
        "normal",
        "mlp",
        "elbo",
    ):
        assert name in done.stdout


def test_a_run_whose_output_reader_goes_away_trains_to_the_end(tiny_npz, tmp_path):
    """`pyro-vae train | head -1`: the run died of a BrokenPipeError after the reader left,
    with 'check the path and disk'; now its output goes nowhere and it trains on."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pyro_vae", "train", "--dataset", str(tiny_npz),
               "--epochs", "4", "--batch-size", "100", "--hidden", "16", "--latent-dim", "2",
               "--no-progress", "--out", str(out)]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.readline()  # the first line, then the reader goes away
    child.stdout.close()
    assert child.wait(timeout=300) == 0, child.stderr.read().decode()
    assert len(RunFolder(out).read_metrics()) == 4
