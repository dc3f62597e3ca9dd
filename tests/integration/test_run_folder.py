"""Run folders from the outside: one writer at a time, replacements that can be undone,
paths refused before anything is made, and every such failure one line from the CLI."""

import os
import signal
import subprocess
import sys

import pytest

from pyro_vae.app.cli import main
from pyro_vae.app.config import Config
from pyro_vae.app.run_folder import LOCK_FILE, PREVIOUS, SETTING_ASIDE, RunFolder
from pyro_vae.errors import ConfigError, RunFolderError

HOLD = """
import sys
from pyro_vae.app.run_folder import RunFolder
run = RunFolder.create(sys.argv[1])
run.config_path.write_text("")
run.checkpoint_path.write_bytes(b"")
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    """Another process that created tmp_path/run and holds it until its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "locked"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_second_process_never_writes_a_folder_being_trained_into(holder, tmp_path, capsys):
    out = tmp_path / "run"
    before = _files(out)
    code = main(["train", "--dataset", "mnist5k", "--epochs", "1", "--out", str(out)])
    line = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in line
    assert f"{out}: another process (pid {holder.pid}) is training into this run folder" in line
    with pytest.raises(RunFolderError, match=f"pid {holder.pid}"):
        RunFolder.open(out, write=True)  # as --resume opens it
    with pytest.raises(RunFolderError, match="another process"):
        RunFolder.create(out, overwrite=True)
    assert RunFolder.open(out).path == out, "reading (sample, evaluate) takes no lock"
    assert _files(out) == before, "a refused process changes nothing"

    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    assert not (out / LOCK_FILE).exists(), "a process that exits removes its lock"
    run = RunFolder.open(out, write=True)
    assert (out / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    run.release()
    assert not (out / LOCK_FILE).exists()


def test_the_lock_of_a_killed_process_is_free(holder, tmp_path):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    out = tmp_path / "run"
    assert (out / LOCK_FILE).exists(), "a killed process leaves its lock file behind"
    run = RunFolder.open(out, write=True)  # but not its lock
    assert (out / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    run.release()


OLD_RUN = {
    "config.toml": "old config",
    "run.json": '{"pyro_vae_version": "0.1.0"}',
    "metrics.csv": "epoch\n1\n",
    "checkpoint.pt": "old weights",
    "plots/samples.png": "old picture",
}


@pytest.fixture
def old_run(tmp_path):
    out = tmp_path / "run"
    (out / "plots").mkdir(parents=True)
    for name, text in OLD_RUN.items():
        (out / name).write_text(text)
    (out / "notes.txt").write_text("the user's own file")
    return out


def _contents(folder):
    return {
        str(p.relative_to(folder)): p.read_text()
        for p in folder.rglob("*")
        if p.is_file() and p.name != LOCK_FILE
    }


def test_overwrite_keeps_the_old_run_until_the_new_one_is_confirmed(old_run):
    with pytest.raises(RunFolderError, match="already holds a run; pass --overwrite"):
        RunFolder.create(old_run)
    run = RunFolder.create(old_run, overwrite=True)
    assert not run.holds_run() and (old_run / "notes.txt").exists()
    assert _contents(old_run / PREVIOUS) == OLD_RUN
    run.write_config(Config(epochs=1))
    run.checkpoint_path.write_text("new weights")
    run.confirm_replacement()
    assert not (old_run / PREVIOUS).exists()
    assert run.checkpoint_path.read_text() == "new weights"
    run.release()


def test_a_failed_replacement_puts_the_old_run_back_exactly(old_run):
    before = _contents(old_run)
    run = RunFolder.create(old_run, overwrite=True)
    run.write_config(Config(epochs=1))
    run.write_metrics([{"epoch": 1}])
    (run.plots / "losses.png").write_text("new picture")
    (old_run / ".checkpoint.pt.0badc0de.tmp").write_text("half a checkpoint")
    run.restore_previous()
    assert _contents(old_run) == before
    assert sorted(p.name for p in old_run.iterdir()) == sorted(
        [LOCK_FILE, "config.toml", "run.json", "metrics.csv", "checkpoint.pt", "plots", "notes.txt"]
    )
    run.release()


def test_confirm_and_restore_are_no_ops_without_an_old_run(tmp_path):
    run = RunFolder.create(tmp_path / "run")
    run.write_config(Config(epochs=1))
    before = _contents(run.path)
    run.restore_previous()
    run.confirm_replacement()
    assert _contents(run.path) == before
    run.release()


def test_a_replacement_killed_before_its_first_checkpoint_is_undone_on_next_open(old_run):
    before = _contents(old_run)
    run = RunFolder.create(old_run, overwrite=True)
    run.write_config(Config(epochs=1))
    run.release()  # as if killed: neither confirmed nor restored
    with pytest.raises(RunFolderError, match="already holds a run"):
        RunFolder.create(old_run)
    assert _contents(old_run) == before


def test_a_replacement_killed_after_its_first_checkpoint_is_kept_on_next_open(old_run):
    run = RunFolder.create(old_run, overwrite=True)
    run.write_config(Config(epochs=1))
    run.checkpoint_path.write_text("new weights")
    run.release()
    RunFolder.open(old_run, write=True).release()
    assert not (old_run / PREVIOUS).exists()
    assert run.checkpoint_path.read_text() == "new weights"


def test_files_caught_halfway_to_the_side_go_back(old_run):
    aside = old_run / SETTING_ASIDE
    aside.mkdir()
    for name in ("checkpoint.pt", "plots"):
        os.rename(old_run / name, aside / name)
    RunFolder.open(old_run, write=True).release()
    assert not aside.exists() and _contents(old_run) == {
        **OLD_RUN,
        "notes.txt": "the user's own file",
    }


def test_temporary_files_of_killed_writes_are_removed_when_opened_for_writing(old_run):
    stale = [old_run / ".checkpoint.pt.1a2b3c4d.tmp", old_run / ".metrics.csv.5e6f7a8b.tmp"]
    for path in stale:
        path.write_text("half")
    RunFolder.open(old_run)
    assert all(path.exists() for path in stale), "reading removes nothing"
    RunFolder.open(old_run, write=True).release()
    assert not any(path.exists() for path in stale)


@pytest.mark.parametrize(
    "name, message",
    [
        ("r" * 300, r"the name r{20}\.\.\. is 300 bytes long, more than the 255"),
        (os.fsdecode(b"run-\xff"), r"'.*run-\\udcff': the path is not valid UTF-8 text"),
    ],
)
def test_an_unusable_out_path_is_refused_before_anything_is_made(tmp_path, name, message):
    with pytest.raises(RunFolderError, match=message):
        RunFolder.create(tmp_path / "new" / name)
    assert list(tmp_path.iterdir()) == []


def test_overlong_paths_are_one_line_from_every_command(tmp_path, capsys):
    long = str(tmp_path / ("x" * 300))
    commands = [
        ["train", "--epochs", "1", "--out", long],
        ["train", "--resume", long],
        ["train", "--dataset", long + ".npz", "--out", str(tmp_path / "run")],
        ["sample", long],
        ["evaluate", long],
    ]
    for command in commands:
        assert main(command) == 2, command
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and ("300 bytes long" in lines[0] or "too long" in lines[0])


def test_a_sample_written_to_an_overlong_path_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist5k", "--epochs", "1", "--hidden", "16",
                 "--latent-dim", "2", "--batch-size", "500", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    assert (
        main(["sample", str(out), "--n", "4", "--out", str(tmp_path / ("s" * 300 + ".png"))]) == 2
    )
    line = capsys.readouterr().err.strip()
    assert line.startswith("pyro-vae: error: File name too long: ") and "\n" not in line
    assert line.endswith("use a shorter path (at most 255 bytes per name)")


def test_absurd_sizes_are_config_errors_not_allocations(capsys):
    with pytest.raises(ConfigError, match="latent_dim: must be <= 4096, got 1000000"):
        Config(latent_dim=1_000_000)
    assert main(["train", "--latent-dim", "1000000"]) == 2
    assert "latent_dim: must be <= 4096" in capsys.readouterr().err
