"""The README's Python examples and its shell commands run as written.

The commands run on a tiny budget (one epoch, K = 5) in fresh processes on one thread,
in a temporary working directory, so that ``runs/`` lands there.
"""

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_block(marker: str) -> str:
    """The README's one Python block that contains ``marker``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def test_readme_python_example_runs():
    namespace: dict = {}
    exec(compile(python_block("loss=Trace_ELBO())"), "README.md", "exec"), namespace)
    assert namespace["images"].shape == (16, 1, 28, 28)
    assert namespace["loc"].shape == (8, 10)


def test_readme_stacked_example_runs():
    namespace: dict = {}
    exec(compile(python_block("mlp_stacked_vae"), "README.md", "exec"), namespace)
    assert namespace["two_layer_samples"].shape == (16, 1, 28, 28)


def test_readme_swapping_example_runs():
    namespace: dict = {}
    exec(compile(python_block("LaplaceWithLearnedScale"), "README.md", "exec"), namespace)
    vae, vamp_vae = namespace["vae"], namespace["vae_with_vamp"]
    assert vae.prior().event_shape == (8,) and len(list(vae.prior.parameters())) == 1
    assert vamp_vae.prior.pseudo_inputs.shape == (50, 1, 28, 28)
    assert vamp_vae.prior.encoder is vamp_vae.encoder and len(vamp_vae.encoder.steps) == 4


# (the command as the README writes it, the command run here: a tiny budget, RUN the run)
COMMANDS = [
    ('pip install -e ".[dev]" && pyro-vae train    #', "train --epochs 1 --out RUN"),
    ("`pyro-vae train --config runs/X/config.toml` reruns it", "train --config RUN/config.toml"),
    ("pyro-vae sample RUN_DIR [--n 64]", "sample RUN"),
    ("pyro-vae evaluate RUN_DIR [", "evaluate RUN --k 5"),
    ("pyro-vae list  ", "list"),
]


def start_pyro_vae(words: str, run: Path, cwd: Path) -> subprocess.Popen:
    """Start ``pyro-vae WORDS`` (RUN replaced by ``run``) as a new process."""
    argv = [sys.executable, "-m", "pyro_vae", *shlex.split(words.replace("RUN", str(run)))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def output_of(words: str, process: subprocess.Popen) -> str:
    """Wait for a process from :func:`start_pyro_vae` to succeed; its stdout."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, f"pyro-vae {words} exited {process.returncode}:\n{err}"
    return out


def metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as file:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(file)]


@pytest.mark.slow
def test_readme_commands_run_and_do_what_it_says(tmp_path):
    text = README.read_text()
    for written, _ in COMMANDS:
        assert written in text, f"the README no longer shows {written!r}: update this test"
    run = tmp_path / "run"
    # in order, two at a time on the machine's two cores: `list` beside the first training,
    # the rerun from its config.toml beside `sample` then `evaluate` of the first run
    (train, rerun, sample, evaluate, listing) = (words for _, words in COMMANDS)
    listing_process = start_pyro_vae(listing, run, tmp_path)
    said = {train: output_of(train, start_pyro_vae(train, run, tmp_path))}
    said[listing] = output_of(listing, listing_process)
    rerun_process = start_pyro_vae(rerun, run, tmp_path)
    for words in (sample, evaluate):
        said[words] = output_of(words, start_pyro_vae(words, run, tmp_path))
    said[rerun] = output_of(rerun, rerun_process)

    # "Where results appear": every file of the table, and the header of metrics.csv
    for name in ("config.toml", "run.json", "checkpoint.pt", "eval.json"):
        assert (run / name).is_file(), name
    plots = {p.name for p in (run / "plots").iterdir()}
    assert {"losses.png", "reconstructions.png", "samples.png", "latent.png"} <= plots
    assert "prior-samples-seed0-n64.png" in plots  # what `pyro-vae sample` adds
    assert (run / "metrics.csv").read_text().startswith("epoch,train_elbo,test_elbo,seconds")

    # the rerun: a new folder under runs/, said in one line, the same metrics (same seed)
    rerun_said = said["train --config RUN/config.toml"]
    assert sum("which holds a run: this run goes to a new folder" in line
               for line in rerun_said.splitlines()) == 1  # fmt: skip
    (rerun,) = (tmp_path / "runs").iterdir()
    assert metrics(rerun) == metrics(run) and len(metrics(run)) == 1
    assert "bernoulli" in said["list"] and "mnist5k" in said["list"]

    # the load_run example, on this run
    namespace: dict = {}
    block = python_block("pyro_vae.load_run(").replace("runs/X", str(run))
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["run"].note == "" and namespace["images"].shape == (16, 1, 28, 28)


@pytest.mark.slow
def test_readme_compare_example_runs_and_ranks_both_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_block("pyro_vae.compare("), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert sorted(row["objective"] for row in result.rows) == ["elbo", "iwae:k=5"]
    assert "| rank | objective |" in result.markdown
    assert result.markdown.strip() in (tmp_path / "runs/cmp/comparison.md").read_text()
    assert namespace["best"]["log_px"] == max(row["log_px"] for row in result.rows) < 0


def test_every_in_page_link_names_a_section_and_every_section_is_listed():
    """The contents line at the top: a renamed heading would leave a dead link, and a new
    section would be missing from it (anchors as GitHub makes them from ``## `` headings)."""
    text = README.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^## (.+)$", text, flags=re.M)
    }
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert [link for link in links if link not in anchors] == []
    assert anchors == set(links)
