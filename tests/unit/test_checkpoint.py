import copy
import io
import os
import pickle
import resource
import shutil
import signal
import stat
import subprocess
import sys
import zipfile

import pytest
import torch

from pyro_vae import Config, build_vae
from pyro_vae.app.atomic import atomic_torch_save, atomic_write_text
from pyro_vae.app.checkpoint import (
    FORMAT,
    REQUIRED_KEYS,
    check_checkpoint,
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    save_checkpoint,
)
from pyro_vae.app.load import load_run
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


def _with_pickle(path, checkpoint_bytes, pickle_bytes):
    """A copy of a torch checkpoint archive whose data.pkl is replaced."""
    source = zipfile.ZipFile(io.BytesIO(checkpoint_bytes))
    with zipfile.ZipFile(path, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            archive.writestr(info, pickle_bytes if info.filename.endswith("data.pkl") else data)
    return path


@pytest.mark.parametrize("kind", ["global", "instruction"])
def test_code_carrying_checkpoint_is_refused_for_safety_and_the_code_never_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": FORMAT, "payload": RunsCode(marker)}, path)
    if kind == "instruction":  # protocol-0 INST opcode: no GLOBAL line in torch's message
        _with_pickle(path, path.read_bytes(), f"(S'touch {marker}'\nios\nsystem\n.".encode())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: refused for safety: the file holds code or objects")
    assert "weights_only" not in message and "corrupted" not in message
    assert "\n" not in message
    assert not marker.exists()


def test_a_bare_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"format": FORMAT, "payload": RunsCode(marker)}))
    with pytest.raises(CheckpointError, match="not a PyTorch archive.*it was not loaded"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.integration
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
        assert done.returncode == 2 and "refused for safety" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_is_named_and_not_unpickled(finished_run, tmp_path, damage):
    data = (finished_run / "checkpoint.pt").read_bytes()
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match=f"{path}: not a pyro-vae checkpoint .*truncated"):
        load_checkpoint(path)


def test_an_archive_with_a_damaged_member_is_named(finished_run, tmp_path):
    data = (finished_run / "checkpoint.pt").read_bytes()
    archive = zipfile.ZipFile(io.BytesIO(data))
    pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    path = _with_pickle(tmp_path / "checkpoint.pt", data, pickled[:20])
    with pytest.raises(CheckpointError, match=f"{path}: truncated or corrupted checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_a_checkpoint_without_a_required_entry_is_named(finished_run, tmp_path, key):
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    del state[key]
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=f"checkpoint.pt: checkpoint lacks {key};"):
        load_checkpoint(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("model", [1, 2], "'model' is list, expected a table of tensors"),
        ("model", {"w": torch.tensor([float("nan")])}, "'model' holds 'w' with NaN"),
        ("data_shape", [1, 2**20, 2**20], "declares 1099511627776 values per datapoint"),
        ("data_shape", [0, 28], "expected 1 to 4 positive sizes"),
        ("position", {"epoch": 1, "bogus": 2}, "'position' is .*expected a table with some of"),
        ("position", {"epoch": -1}, "has epoch = -1, expected a non-negative int"),
        ("loss_sum", 3.0, "'loss_sum' is float 3.0, expected a floating-point scalar tensor"),
        ("rng", [{"torch": torch.zeros(3, dtype=torch.uint8)}], "invalid random-number state"),
        ("optimizer", {"state": {}}, "lacks its 'state' table or its 'param_groups' list"),
        ("config", {"latent_dim": "ten"}, "'config' is not a valid config \\(latent_dim: expected"),
        ("history", [1], "'history' is not a list of rows"),
    ],
)
def test_a_checkpoint_entry_of_the_wrong_kind_is_named(finished_run, key, value, message):
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    state[key] = value
    with pytest.raises(CheckpointError, match=f"^ckpt.pt: checkpoint entry .*{message}"):
        check_checkpoint(state, "ckpt.pt")


def test_extra_entries_are_allowed(finished_run):
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    assert check_checkpoint({**state, "added_later": [1, 2]}, "ckpt.pt")["added_later"] == [1, 2]


@pytest.mark.integration
def test_cli_names_a_checkpoint_without_its_model_or_data_shape(finished_run, tmp_path):
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    commands = {"model": ["train", "--resume"], "data_shape": ["sample"]}
    for key, command in commands.items():
        run = tmp_path / key
        run.mkdir()
        (run / "config.toml").write_text((finished_run / "config.toml").read_text())
        torch.save({k: v for k, v in state.items() if k != key}, run / "checkpoint.pt")
        done = subprocess.run(
            [sys.executable, "-m", "pyro_vae", *command, str(run)], capture_output=True, text=True
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert f"checkpoint lacks {key}; " in lines[0] and str(run) in lines[0]


def test_an_optimizer_state_of_other_shapes_is_named(finished_run):
    state = load_checkpoint(finished_run / "checkpoint.pt")
    model = load_run(finished_run).model
    optimizer = torch.optim.Adam(model.parameters())
    load_optimizer_state(optimizer, state["optimizer"], "ckpt.pt")
    assert len(optimizer.state) == len(list(model.parameters()))
    bad = copy.deepcopy(state["optimizer"])
    first = next(iter(bad["state"].values()))
    first["exp_avg"] = torch.zeros(3)
    with pytest.raises(
        CheckpointError, match="optimizer state entry 'exp_avg' of parameter 0 is shape \\(3,\\)"
    ):
        load_optimizer_state(torch.optim.Adam(model.parameters()), bad, "ckpt.pt")


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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "metrics.csv", "epoch\n1\n")
        save_checkpoint(tmp_path / "checkpoint.pt", {"model": {"w": torch.ones(2)}})
    finally:
        os.umask(previous)
    for name in ("metrics.csv", "checkpoint.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def _limit_file_size():
    """In the child: writes beyond 64 kB fail with EFBIG instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))


@pytest.mark.integration
def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_temp_file(tiny_npz, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable, "-m", "pyro_vae", "train", "--dataset", str(tiny_npz), "--epochs",
            "1", "--batch-size", "50", "--hidden", "16", "--latent-dim", "2", "--device", "cpu",
            "--out", str(out), "--no-progress",
        ],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"cannot write checkpoint {out / 'checkpoint.pt'} (File too large)" in lines[0]
    assert "ulimit -f" in lines[0] and "inline_container" not in lines[0]
    assert not list(out.glob(".*.tmp")) and not (out / "checkpoint.pt").exists()


def test_a_config_toml_that_disagrees_with_the_checkpoint_is_noted(finished_run, tmp_path):
    assert load_run(finished_run).note == ""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace("latent_dim = 2", "latent_dim = 3"))
    loaded = load_run(run)
    assert loaded.config.latent_dim == 2, "the weights keep the config they were trained with"
    assert loaded.note.startswith(f"{run / 'config.toml'} differs from the config saved in")
    assert "latent_dim = 3 there but 2" in loaded.note and "\n" not in loaded.note
    (run / "config.toml").write_text("latent_dim = [")
    assert "not valid TOML" in load_run(run).note


def test_a_run_written_to_the_default_folder_loads_without_a_note(tiny_npz, tmp_path, monkeypatch):
    """Its checkpoint's config holds out = '' (the folder was chosen later): not a difference."""
    monkeypatch.chdir(tmp_path)
    out = train(
        Config(dataset=str(tiny_npz), epochs=1, batch_size=100, hidden=[16], latent_dim=2),
        progress=False,
        log=lambda _: None,
    ).run_dir
    assert load_run(out).note == ""
