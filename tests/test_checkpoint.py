import os
import subprocess
import sys

import pytest
import torch

from pyro_vae import Config, build_vae
from pyro_vae.app.atomic import atomic_torch_save
from pyro_vae.app.checkpoint import FORMAT, load_checkpoint, load_model_state, save_checkpoint
from pyro_vae.app.train import train
from pyro_vae.errors import CheckpointError


class RunsCode:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished_run(tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "run"
    cfg = Config(
        dataset=str(tiny_npz), epochs=1, batch_size=50, hidden=[16], latent_dim=2, out=str(out)
    )
    return train(cfg, progress=False, log=lambda _: None).run_dir


def test_checkpoint_loads_with_weights_only_and_holds_everything(finished_run):
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    assert state["format"] == FORMAT
    assert {"model", "optimizer", "config", "position", "rng", "history", "data_shape"} <= set(
        state
    )
    assert len(state["rng"]) == 1 and set(state["rng"][0]) >= {"torch", "numpy", "python"}
    assert state["position"]["epoch"] == 1 and state["position"]["step"] == 0


def test_code_carrying_checkpoint_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": FORMAT, "payload": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load.*could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_cli_refuses_a_code_carrying_checkpoint(finished_run, tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text((finished_run / "config.toml").read_text())
    torch.save({"format": FORMAT, "payload": RunsCode(marker)}, run / "checkpoint.pt")
    for args in (["sample", str(run)], ["train", "--resume", str(run)]):
        done = subprocess.run(
            [sys.executable, "-m", "pyro_vae", *args], capture_output=True, text=True
        )
        assert done.returncode == 2 and "refused to load" in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_is_named(finished_run, tmp_path, damage):
    data = (finished_run / "checkpoint.pt").read_bytes()
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match=f"{path}: truncated or corrupted"):
        load_checkpoint(path)


def test_checkpoint_from_another_config_names_the_parameter(finished_run):
    state = load_checkpoint(finished_run / "checkpoint.pt")
    other = build_vae(Config(hidden=[16], latent_dim=3), (1, 28, 28))
    with pytest.raises(
        CheckpointError, match=r"parameter 'encoder\.head\.weight' has shape \(4, 16\)"
    ):
        load_model_state(other, state["model"], "ckpt")


def test_a_crash_while_writing_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "model": {"w": torch.ones(3)}})
    good = path.read_bytes()

    def crashing_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"epoch": 2}, path, save=crashing_save)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"], "no temp file left behind"


def test_a_nan_parameter_is_never_written(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}})
    good = path.read_bytes()
    with pytest.raises(CheckpointError, match="'w' is not finite"):
        save_checkpoint(path, {"model": {"w": torch.tensor([1.0, float("nan")])}})
    assert path.read_bytes() == good
