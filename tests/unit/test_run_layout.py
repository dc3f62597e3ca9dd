"""pyro_vae.app.run_folder: a run folder whose paths have the wrong kind (a folder where
the run keeps a file, a file where it keeps plots/) is refused with one line before any
work. Found by a hostile probe: `train --resume` trained an epoch and then died on
'File exists: RUN/plots; check the path and disk', or on a temporary file's name."""

import shutil

import pytest

from pyro_vae import Config, train
from pyro_vae.app.cli import main

BREAKS = {
    "metrics.csv": "folder",
    "run.json": "folder",
    "eval.json": "folder",
    "plots/latent.png": "folder",
    "plots": "file",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_npz):
    run = tmp_path_factory.mktemp("trained") / "run"
    cfg = Config(dataset=str(tiny_npz), epochs=1, hidden=[16], latent_dim=2, out=str(run))
    train(cfg, progress=False, log=lambda _: None)
    return run


def _broken(trained, tmp_path, name):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    path = run / name
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if BREAKS[name] == "folder":
        path.mkdir()
    else:
        path.write_text("a note of the user's")
    return run, path


def _one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


@pytest.mark.parametrize("name", BREAKS)
def test_resume_and_overwrite_refuse_a_wrong_kind_of_path_before_any_work(
    trained, tmp_path, capsys, name
):
    run, path = _broken(trained, tmp_path, name)
    checkpoint = (run / "checkpoint.pt").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    kind = "a folder, where the run keeps its file" if BREAKS[name] == "folder" else "a file"
    assert _one_line(capsys) == (
        f"pyro-vae: error: {path} is {kind}"
        + (f" {path.name}; move or rename that folder and rerun" if BREAKS[name] == "folder" else
           ", where the run keeps its plots/ folder; move or rename that file and rerun")
    )  # fmt: skip
    assert (run / "checkpoint.pt").read_bytes() == checkpoint, "nothing was trained"
    assert not (run / ".lock").exists()
    # the data do not exist: the folder is refused before they are looked for
    argv = ["train", "--dataset", str(tmp_path / "none.npz"), "--out", str(run), "--overwrite"]
    assert main(argv) == 2
    said = _one_line(capsys)  # without a run.json the folder holds no run, and is refused so
    assert str(path) in said or (name == "run.json" and "holds no pyro-vae run" in said)
    assert (run / "checkpoint.pt").read_bytes() == checkpoint, "the old run is where it was"


def test_sample_into_a_plots_file_is_refused_with_the_fix(trained, tmp_path, capsys):
    run, path = _broken(trained, tmp_path, "plots")
    assert main(["sample", str(run), "--n", "2"]) == 2
    assert f"{path} is a file, where the run keeps its plots/ folder" in _one_line(capsys)
    assert path.read_text() == "a note of the user's"
