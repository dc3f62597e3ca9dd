"""Real signals at the stages of a command where nothing is on disk yet, and what the
command says then: its advice must match what the folder holds."""

import os
import signal
import subprocess
import sys
import time


def _answer_ctrl_c() -> None:
    """In the child before it runs Python: SIGINT's default action. A suite started in the
    background by a shell without job control (`pytest &`, nohup, some CI runners) hands its
    children SIGINT ignored, and Python started so installs no KeyboardInterrupt: the command
    would never see the Ctrl-C and the test would wait out its timeout."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_until_blocked_reading(pid: int, timeout: float = 60.0) -> None:
    """Return once process ``pid`` sleeps in a read of a pipe. A signal sent between its
    open() and its read() is handled only when the read returns, which it never does here:
    Python runs a signal's handler between bytecodes, and a read that has not started yet is
    not interrupted (the test hung that way under load)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/wchan") as wchan, open(f"/proc/{pid}/syscall") as syscall:
            if "pipe" in wchan.read() or syscall.read().split()[0] == "0":  # 0: read
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never blocked reading the FIFO")


def test_ctrl_c_while_the_data_load_says_nothing_was_saved(tmp_path):
    """The data file is a FIFO, so the process blocks reading it, deterministically, before
    the run folder exists; a Ctrl-C there once said `--resume RUN continues the run`."""
    fifo, run = tmp_path / "data.npz", tmp_path / "run"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [sys.executable, "-m", "pyro_vae", "train", "--dataset", str(fifo), "--out", str(run)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_answer_ctrl_c,
    )
    writer = os.open(fifo, os.O_WRONLY)  # returns once the process has opened it to read
    try:
        _wait_until_blocked_reading(process.pid)
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
