"""The command line in a hostile environment: variables it has no use for change nothing."""

import os
import subprocess
import sys


def test_a_bogus_matplotlib_backend_in_the_environment_is_ignored(tmp_path, tiny_npz):
    """Found by a hostile probe: MPLBACKEND=bogus failed `import matplotlib` with a
    traceback when train reached its plots; every figure is drawn with Agg anyway."""
    run = tmp_path / "run"
    argv = ["train", "--dataset", str(tiny_npz), "--epochs", "1", "--hidden", "16"]
    done = subprocess.run(
        [sys.executable, "-m", "pyro_vae", *argv, "--out", str(run), "--no-progress"],
        env={**os.environ, "MPLBACKEND": "bogus"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (run / "plots" / "samples.png").stat().st_size > 0
