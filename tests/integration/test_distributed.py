"""Data-parallel training on CPU with gloo: 2 real processes on this machine."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pyro.distributions as dist
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch import nn

from pyro_vae import Config, build_vae
from pyro_vae.app.checkpoint import load_checkpoint
from pyro_vae.app.distributed import DistContext, exit_rank, init_distributed
from pyro_vae.app.registry import load_dataset
from pyro_vae.app.run_folder import RunFolder
from pyro_vae.app.trainer import Trainer
from pyro_vae.data import prepare_data
from pyro_vae.estimators import elbo_per_datapoint, evaluate_vae

GLOBAL_BATCH = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SampleKeyedNormal(dist.Normal):
    """N(loc, scale) whose reparameterized noise is a fixed function of each datapoint.

    This is the test-only switch that makes the per-sample noise independent of how
    a batch is split over ranks, so 2 ranks and 1 process can be compared exactly.
    """

    def __init__(self, loc, scale, eps):
        super().__init__(loc, scale)
        self.eps = eps

    def rsample(self, sample_shape=()):
        return self.loc + self.scale * self.eps.expand(torch.Size(sample_shape) + self.eps.shape)


class SampleKeyedEncoder(nn.Module):
    def __init__(self, inner, latent_dim):
        super().__init__()
        self.inner = inner
        self.register_buffer(
            "projection", torch.randn(784, latent_dim, generator=torch.Generator().manual_seed(9))
        )

    def forward(self, x):
        q = self.inner(x).base_dist
        eps = torch.tanh(x.flatten(1) @ self.projection / 10)
        return SampleKeyedNormal(q.loc, q.scale, eps).to_event(1)


def make_trainer(ctx: DistContext) -> Trainer:
    cfg = Config(dataset="mnist5k", hidden=[32], latent_dim=3, batch_size=GLOBAL_BATCH, seed=4)
    dataset = load_dataset("mnist5k")
    dataset.x_train = dataset.x_train[:800]
    data = prepare_data(dataset, "binary", "bernoulli", "dynamic", seed=4)
    torch.manual_seed(4)
    vae = build_vae(cfg, data.data_shape)
    vae.encoder = SampleKeyedEncoder(vae.encoder, 3)
    return Trainer(cfg, vae, data, ctx)


def _flat(vae) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in vae.parameters()])


def _join_two_ranks(rank: int, port: int) -> DistContext:
    """Join a 2-process gloo group on this machine, as torchrun's environment would."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    ctx, _ = init_distributed("cpu", timeout_seconds=60)
    return ctx


EVAL_SIZES = (105, 5)  # 11 chunks of 10, shared unevenly; 1 chunk, so rank 1 scores none


def _log_px(vae, x, ctx=None) -> dict:
    """The importance-sampled evaluation's numbers (K = 7, chunks of 10 datapoints)."""
    result = evaluate_vae(vae, x, k=7, seed=5, max_samples=70, shard=ctx and ctx.shard())
    per_datapoint = result.log_px_per_datapoint
    numbers = {k: v for k, v in result.to_dict().items() if isinstance(v, float | int | list)}
    return {**numbers, "per_datapoint": per_datapoint}


def _worker(rank: int, port: int, out: str) -> None:
    ctx = _join_two_ranks(rank, port)
    trainer = make_trainer(ctx)
    per_step = []
    trainer.run_epoch(on_step=lambda: per_step.append(_flat(trainer.model).clone()))
    sharded_elbo = elbo_per_datapoint(
        trainer.model, trainer.data.test, batch_size=60, seed=3, shard=ctx and ctx.shard()
    )
    evaluations = [_log_px(trainer.model, trainer.data.test[:n], ctx) for n in EVAL_SIZES]
    torch.save(
        {
            "params": per_step,
            "state": trainer.model.state_dict(),
            "elbo": sharded_elbo,
            "evaluations": evaluations,
        },
        f"{out}/rank{rank}.pt",
    )
    exit_rank(0)  # the deterministic ending torchrun ranks get from the CLI


def test_two_ranks_equal_one_process_at_twice_the_batch(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    # the ranks agree with each other after every step, bit for bit
    assert len(ranks[0]["params"]) == 800 // GLOBAL_BATCH
    for a, b in zip(ranks[0]["params"], ranks[1]["params"], strict=True):
        assert torch.equal(a, b)

    # and with one process that takes the whole global batch
    torch.set_num_threads(1)
    single = make_trainer(DistContext())
    single.run_epoch()
    for name, value in single.model.state_dict().items():
        assert torch.allclose(ranks[0]["state"][name], value, rtol=1e-4, atol=1e-6), name
    moved = (ranks[0]["params"][-1] - _flat(make_trainer(DistContext()).model)).abs().max()
    assert moved > 1e-3, "training moved the parameters, so the comparison means something"

    # sharded evaluation equals single-process evaluation of the same model
    single.model.load_state_dict(ranks[0]["state"])
    expected = elbo_per_datapoint(single.model, single.data.test, batch_size=60, seed=3)
    assert abs(ranks[0]["elbo"] - expected) < 1e-9 * abs(expected)
    assert ranks[0]["elbo"] == ranks[1]["elbo"]
    for n, sharded, other_rank in zip(
        EVAL_SIZES, ranks[0]["evaluations"], ranks[1]["evaluations"], strict=True
    ):
        alone = _log_px(single.model, single.data.test[:n])
        assert torch.equal(sharded.pop("per_datapoint"), alone.pop("per_datapoint"))
        other_rank.pop("per_datapoint")
        assert sharded.keys() == alone.keys() and sharded == other_rank
        for key, value in alone.items():
            assert torch.allclose(
                torch.tensor(sharded[key], dtype=torch.float64),
                torch.tensor(value, dtype=torch.float64),
                rtol=1e-9,
            ), (n, key)


OBJECTIVE_SPECS = [
    "elbo", "analytic-kl", "graph", "stl", "beta:b=4", "iwae:k=3", "dreg:k=3",
    "renyi:alpha=0.5,k=3", "tail-adaptive:k=3", "elbo:num_particles=2",
]  # fmt: skip


def _objectives_worker(rank: int, port: int, out: str) -> None:
    ctx = _join_two_ranks(rank, port)
    dataset = load_dataset("mnist5k")
    data = prepare_data(dataset, "binary", "bernoulli", "dynamic", seed=0)
    results = {}
    for spec in OBJECTIVE_SPECS:
        cfg = Config(hidden=[16], latent_dim=2, batch_size=64, objective=spec, kl_warmup=0)
        torch.manual_seed(0)
        trainer = Trainer(cfg, build_vae(cfg, data.data_shape), data, ctx)
        before = _flat(trainer.model).clone()
        x = data.epoch_train(0)
        for batch in data.batch_indices(0, 64, ctx.rank, ctx.world_size)[:2]:
            trainer.train_step(x[batch])
        results[spec] = {"before": before, "after": _flat(trainer.model).clone()}
    torch.save(results, f"{out}/objectives{rank}.pt")
    exit_rank(0)  # the deterministic ending torchrun ranks get from the CLI


def test_every_builtin_objective_trains_data_parallel(tmp_path):
    mp.spawn(_objectives_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"objectives{r}.pt", weights_only=True) for r in range(2)]
    for spec in OBJECTIVE_SPECS:
        a, b = ranks[0][spec], ranks[1][spec]
        assert torch.isfinite(a["after"]).all(), spec
        assert torch.equal(a["after"], b["after"]), f"{spec}: ranks diverged"
        assert not torch.equal(a["after"], a["before"]), f"{spec}: nothing trained"


def _cli_env(rank: int, port: int) -> dict:
    return {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "WORLD_SIZE": "2",
        "LOCAL_RANK": str(rank),
        "OMP_NUM_THREADS": "1",
    }


def test_torchrun_trains_and_only_rank_zero_reports(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "pyro_vae", "train", "--dataset", "mnist5k", "--epochs", "2", "--hidden", "64",
         "--latent-dim", "2", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert output.count("epoch   2/2") == 1, "one report per epoch: rank 0 alone logs"
    run = RunFolder(out)
    assert [row["epoch"] for row in run.read_metrics()] == [1, 2]
    assert run.read_info()["world_size"] == 2
    state = load_checkpoint(run.checkpoint_path)
    assert len(state["rng"]) == 2 and not torch.equal(
        state["rng"][0]["torch"], state["rng"][1]["torch"]
    )

    # evaluation launched the same way shares the test digits and reports once
    evaluate = ["-m", "pyro_vae", "evaluate", str(out), "--k", "20"]
    sharded = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *evaluate, "--out", str(tmp_path / "sharded.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    assert sharded.stdout.count("written to") == 1
    alone = subprocess.run(
        [sys.executable, *evaluate, "--out", str(tmp_path / "alone.json")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-2000:]
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("sharded", "alone"))
    assert a["num_datapoints"] == b["num_datapoints"] == 500
    for key in ("log_px", "log_px_se", "elbo", "kl", "active_units"):
        assert a[key] == pytest.approx(b[key], rel=1e-9), key


def test_a_dead_rank_stops_the_other_with_a_clear_error_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    port = free_port()
    args = [sys.executable, "-m", "pyro_vae", "train", "--dataset", "mnist5k", "--epochs", "40",
            "--hidden", "128", "--latent-dim", "2", "--out", str(out), "--no-progress",
            "--dist-timeout", "30", "--checkpoint-every", "10"]  # fmt: skip
    procs = [
        subprocess.Popen(
            args, env=_cli_env(r, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for r in range(2)
    ]
    while not (out / "checkpoint.pt").exists():  # however slow the machine
        assert procs[0].poll() is None, procs[0].communicate()[1][-2000:]
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = procs[0].communicate()
    # --dist-timeout 30: the survivor stops then, not after minutes (a wide margin for load)
    assert time.monotonic() - killed_at < 150, "the survivor stops within the timeout"
    assert procs[0].returncode == 2
    assert "rank 0 lost contact with the other ranks" in stderr and "--resume" in stderr
    procs[1].communicate()

    position = load_checkpoint(out / "checkpoint.pt")["position"]
    resumed = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "train", "--resume", str(out), "--no-progress",
         "--epochs", str(position["epoch"] + 1)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "written by 2 process(es), resumed by 1" in resumed.stdout + resumed.stderr
    rows = RunFolder(out).read_metrics()
    assert [row["epoch"] for row in rows] == list(range(1, position["epoch"] + 2))


def test_the_command_leaves_the_process_group_it_ran_in(tmp_path):
    """A rank that exits still in its group can abort in gloo's teardown (torchrun then
    reports the run as failed), so every pyro-vae command leaves the group first."""
    from pyro_vae.app.cli import main

    store = torch_dist.FileStore(str(tmp_path / "store"), 1)
    torch_dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert main(["list"]) == 0
    assert not torch_dist.is_initialized()


def test_a_torchrun_rank_exits_with_the_commands_status_and_its_output_flushed(tmp_path):
    """Ranks end through exit_rank (no interpreter teardown): the status and the last
    line of output must still come through."""
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    missing = tmp_path / "no-such-run"
    failed = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "sample", str(missing)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failed.returncode == 2
    assert "pyro-vae: error:" in failed.stderr and "no-such-run" in failed.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "list"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "gaussian" in listed.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR, MASTER_PORT are not set"),
     ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer")],
)  # fmt: skip
def test_a_half_set_torchrun_environment_is_named_not_a_traceback(env, named, tmp_path):
    clean = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    result = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "train", "--epochs", "1", "--out", str(tmp_path / "r")],
        env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and "torchrun" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def _silent_peer_worker(rank: int, port: int, run: str, out: str) -> None:
    """Rank 0 evaluates; rank 1 joins the group and then never answers a collective.

    Rank 1 stays silent until rank 0 has written what it said (at most 60 s), not a fixed
    20 s: the test then ends when rank 0 gives up rather than when the sleep runs out."""
    from pyro_vae.app.distributed import DistributedFault
    from pyro_vae.app.evaluate import evaluate

    ctx = _join_two_ranks(rank, port) if rank == 1 else None
    if ctx is not None:
        deadline = time.monotonic() + 60
        while not os.path.exists(out) and time.monotonic() < deadline:
            time.sleep(0.1)
        os._exit(0)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0",
                      WORLD_SIZE="2", LOCAL_RANK="0")  # fmt: skip
    torch.set_num_threads(1)
    started = time.monotonic()
    try:
        evaluate(run, k=50, dist_timeout=4)
        said = "no error"
    except DistributedFault as err:
        said = str(err)
    with open(out, "w") as handle:
        handle.write(f"{time.monotonic() - started:.1f}\n{said}")
    os._exit(0)


def test_evaluate_stops_within_its_dist_timeout_when_a_peer_falls_silent(tiny_npz, tmp_path):
    """Found by a probe: evaluate waited out the 300 s default whatever the run's timeout,
    then ended in a gloo traceback."""
    from pyro_vae.app.train import train

    cfg = Config(dataset=str(tiny_npz), epochs=1, batch_size=100, hidden=[16], latent_dim=2,
                 device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    train(cfg, progress=False, log=lambda _: None)
    out = tmp_path / "said.txt"
    mp.spawn(_silent_peer_worker, args=(free_port(), str(tmp_path / "run"), str(out)), nprocs=2)
    seconds, said = out.read_text().split("\n", 1)
    assert said.startswith("rank 0 lost contact with the other ranks") and "within 4 s" in said
    assert float(seconds) < 30 and not (tmp_path / "run" / "eval.json").exists()
