"""Every command runs torch on the configured number of CPU threads, one by default."""

import os
import subprocess
import sys

import pytest
import torch

from pyro_vae.app.cli import main
from pyro_vae.app.config import Config
from pyro_vae.app.runtime import apply_threads
from pyro_vae.errors import ConfigError


@pytest.fixture
def one_thread_after():
    yield
    apply_threads(1)


def test_apply_threads_sets_the_count_and_zero_leaves_it(one_thread_after):
    apply_threads(2)
    assert torch.get_num_threads() == 2
    apply_threads(0)
    assert torch.get_num_threads() == 2
    apply_threads(1)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_apply_threads_refuses_what_is_not_a_count(bad):
    with pytest.raises(ConfigError, match=r"^threads: must be an integer >= 0"):
        apply_threads(bad)


def test_threads_is_a_training_key_that_defaults_to_one():
    assert Config().threads == 1 and "threads = 1" in Config().to_toml().split("[training]")[1]
    with pytest.raises(ConfigError, match="threads: must be >= 0"):
        Config(threads=-1)


@pytest.mark.parametrize(
    "command",
    [["evaluate", "{tmp}/no-run"], ["sample", "{tmp}/no-run"], ["train", "--out", "/proc/no/run"]],
)
def test_each_command_applies_threads_before_any_work(command, tmp_path, capsys, one_thread_after):
    args = [a.format(tmp=tmp_path) for a in command]
    assert main([*args, "--threads", "2"]) == 2  # fails on the missing run or unwritable --out
    assert torch.get_num_threads() == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_bad_thread_count_is_one_line_before_the_run_is_read(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "no-run"), "--threads", "-2"]) == 2
    assert capsys.readouterr().err == (
        "pyro-vae: error: threads: must be an integer >= 0 (0: leave torch's setting), got -2\n"
    )


def test_processes_started_by_tests_run_on_one_thread():
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    child = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert child.stdout.strip() == "1"
