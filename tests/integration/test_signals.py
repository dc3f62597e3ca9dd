"""Real signals at the stages of a command where nothing is on disk yet, and what the
command says then: its advice must match what the folder holds."""

import os
import signal
import subprocess
import sys


def test_ctrl_c_while_the_data_load_says_nothing_was_saved(tmp_path):
    """The data file is a FIFO, so the process blocks reading it, deterministically, before
    the run folder exists; a Ctrl-C there once said `--resume RUN continues the run`."""
    fifo, run = tmp_path / "data.npz", tmp_path / "run"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [sys.executable, "-m", "pyro_vae", "train", "--dataset", str(fifo), "--out", str(run)],
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = os.open(fifo, os.O_WRONLY)  # returns once the process has opened it to read
    try:
        process.send_signal(signal.SIGINT)
        err = process.communicate(timeout=120)[1]
    finally:
        os.close(writer)
    assert process.returncode == 130
    assert err.strip() == (
        f"pyro-vae: interrupted; nothing was saved ({run} holds no run): the same command "
        "starts it again"
    )
    assert not run.exists()
