"""``evaluate``: score a run folder and write ``RUN_DIR/eval.json``.

It loads the run, prepares the data the way training did (the run's own test split,
or another dataset of the same shape), scores it with the core's
:func:`pyro_vae.estimators.evaluate_vae` (sharded over ranks under torchrun) and writes
the results.

Example::

    result = evaluate("runs/2026-11-26_08-00-00", k=1000)
    print(result.table())
"""

from __future__ import annotations

from pathlib import Path

from ..data import draw_bernoulli, prepare_data, seeded_generator
from ..errors import ConfigError, DataError
from ..estimators import Evaluation, evaluate_vae
from .config import Config
from .distributed import init_distributed
from .load import load_run
from .registry import load_dataset

__all__ = ["evaluate"]


def evaluate(
    run_dir: str | Path,
    *,
    data: str | None = None,
    data_dir: str = "",
    split: str = "test",
    k: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
) -> Evaluation:
    """Score the run in ``run_dir`` and write the results to ``RUN_DIR/eval.json`` (or ``out``).

    ``data`` is a dataset name or ``.npz`` path (default: the run's own dataset, as
    training prepared it); ``split`` is ``test`` or ``train``; ``k`` defaults to the
    run's ``eval_k``. Launched by torchrun, the ranks share the datapoints and rank 0
    writes the file; the numbers are those of one process.
    """
    if split not in ("test", "train"):
        raise ConfigError(f"split: expected 'test' or 'train', got {split!r}")
    ctx, torch_device = init_distributed(device, Config().dist_timeout)
    run = load_run(run_dir, torch_device)
    cfg = run.config
    dataset = load_dataset(data or cfg.dataset, data_dir or cfg.data_dir, fallback=False)
    if tuple(dataset.data_shape) != tuple(run.data_shape):
        raise DataError(
            f"{dataset.name} holds datapoints of shape {tuple(dataset.data_shape)} but the run "
            f"in {run.folder.path} models shape {tuple(run.data_shape)}; evaluate data of the "
            "same shape (reshape or resize it first)"
        )
    prepared = prepare_data(
        dataset,
        getattr(run.vae.likelihood, "support", "real"),
        cfg.likelihood,
        cfg.binarize,
        cfg.seed,
        torch_device,
    )
    x = prepared.test
    if split == "train":
        x = prepared.train
        if prepared.dynamic:  # probabilities: one fixed binarization for evaluation
            generator = seeded_generator(0, purpose="eval", device=x.device)
            x = draw_bernoulli(x, generator)
    result = evaluate_vae(run.vae, x, k or cfg.eval_k, seed=seed, shard=ctx.shard())
    result.data = f"{dataset.name}, {split} split, {len(x)} datapoints"
    info = {"run": str(run.folder.path), "dataset": dataset.name, "split": split}
    if ctx.is_main:
        path = Path(out) if out else run.folder.eval_path
        run.folder.write_json(path, {**info, **result.to_dict()})
    return result
