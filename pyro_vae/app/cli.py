"""The ``pyro-vae`` command: train, sample, evaluate, impute, compare, benchmark, list built-ins.

User errors print one line on stderr and exit with status 2 (``--debug`` shows the
traceback); bugs keep their traceback.

Example:
    $ pyro-vae train --dataset mnist5k --epochs 5 --latent-dim 2
    $ pyro-vae sample runs/2026-11-26_08-00-00 --n 64
    $ pyro-vae evaluate runs/2026-11-26_08-00-00 --k 5000
    $ pyro-vae impute runs/2026-11-26_08-00-00 --data holes.npz --out filled.npz --draws 10
    $ pyro-vae compare --objectives elbo iwae:k=5 --seeds 0 1 2 --out comparisons/iwae
    $ pyro-vae bench --steps 200
    $ pyro-vae list
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import ConfigError, ModelError, PyroVAEError
from .bench_args import add_bench_arguments
from .cli_env import DIE_WITH_READER
from .config import Config

if TYPE_CHECKING:  # imported where used: the CLI starts without torch
    from ..families.cvae import CVAE
    from ..families.m2 import M2
    from .load import LoadedRun

__all__ = ["main", "build_parser"]


COMPARE_EXCLUDED = ("out", "seed")  # compare has its own --out (a folder of runs) and --seeds


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _DefaultsHelpFormatter(argparse.HelpFormatter):
    """Ends each option's help with its default; a config flag's default is Config's.

    A config flag's own default is SUPPRESS (only flags given override --config), so
    argparse's ArgumentDefaultsHelpFormatter would show nothing for it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if not text or text == argparse.SUPPRESS or not action.option_strings:
            return text
        if re.search(r"\bdefault[: ]", text):  # the help says it already
            return text
        default = action.default
        from_config = default is argparse.SUPPRESS
        if from_config:
            default = next((d for name, d, _ in Config.describe() if name == action.dest), None)
        if default is None or (default is False and not from_config) or default in ("", [], {}):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """``--threads`` for a command without config flags (train and compare have it from Config)."""
    (option,) = [f for f in fields(Config) if f.name == "threads"]
    parser.add_argument(
        "--threads",
        type=int,
        default=option.default,
        metavar="N",
        help=option.metadata["help"] + " (default: %(default)s)",
    )


def _add_config_flags(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    """One flag per Config field; only flags actually given override the config file."""
    group = parser.add_argument_group("configuration (each overrides --config)")
    for f in fields(Config):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata["help"]}
        if f.type in ("list[int]", "int | list[int]"):
            kwargs.update(nargs="+", type=int, metavar="N")
        elif f.type == "bool":
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif f.type == "dict":
            kwargs.update(type=_json_table, metavar="JSON")
        else:
            kwargs.update(type={"int": int, "float": float, "str": str}[f.type])
            choices = f.metadata["choices"]
            if choices is not None and not callable(choices):
                kwargs["metavar"] = "{" + ",".join(choices) + "}"
        group.add_argument(flag, **kwargs)


def _json_table(text: str) -> dict:
    """A ``--prior-args '{"scale": 2.0}'`` value: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not a JSON object ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"k\": 1}}': {text!r}")
    return value


def _version() -> str:
    """pyro-vae's version beside those of the libraries whose behaviour it depends on."""
    import pyro
    import torch

    from .. import __version__

    return f"pyro-vae {__version__} (pyro-ppl {pyro.__version__}, torch {torch.__version__})"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyro-vae", description="Variational autoencoders the Pyro way.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train a VAE and write a run folder", formatter_class=_DefaultsHelpFormatter
    )
    train.add_argument("--config", type=Path, help="TOML config file (e.g. a run's config.toml)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run")
    train.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    _add_config_flags(train)

    sample = commands.add_parser(
        "sample",
        help="draw images from a trained model",
        description="Decode N draws from the prior, z ~ p(z), into their mean images E[x|z] "
        "and save them as one titled PNG grid. For a cvae or m2 run, --label K draws class K, "
        "E[x|z, y=K] with z ~ p(z|y=K) (or p(z)), and --label all one row per class.",
        formatter_class=_DefaultsHelpFormatter,
    )
    sample.add_argument("run_dir", type=Path)
    sample.add_argument(
        "--n", type=int, help="number of images (default: 64, or 10 per class with --label all)"
    )
    sample.add_argument("--seed", type=int, default=0, help="seed of the prior draws")
    sample.add_argument(
        "--label",
        metavar="K|all",
        help="cvae and m2 runs only: draw class K, or one row per class with 'all' (the default "
        "there)",
    )
    sample.add_argument(
        "--out",
        type=Path,
        help="PNG path, replaced if it exists, or FILE.npz for the numbers (any data shape: "
        "'mean' E[x|z], 'x' a draw from p(x|z), 'z', and 'y' for a cvae or m2); default "
        "RUN_DIR/plots/prior-samples-seed<SEED>-n<N>.png (for a cvae or m2 run "
        "samples-label<K>-seed<SEED>-n<N>.png, or samples-label-all-seed<SEED>-n<N>-each.png)",
    )
    sample.add_argument("--device", default="cpu", help="cpu or cuda")
    _add_threads_flag(sample)
    sample.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    evaluate = commands.add_parser(
        "evaluate", help="estimate log p(x), ELBO, KL and active units of a trained run"
    )
    evaluate.add_argument("run_dir", type=Path)
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="FILE.npz", help="another dataset file to score")
    source.add_argument("--dataset", metavar="NAME", help="another dataset by name")
    evaluate.add_argument("--data-dir", default="", help="where --dataset is stored")
    evaluate.add_argument("--split", choices=("test", "train"), default="test")
    evaluate.add_argument(
        "--k", type=int, help="importance samples per datapoint (default: the run's eval_k)"
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the evaluation's draws")
    evaluate.add_argument("--device", default="cpu")
    _add_threads_flag(evaluate)
    evaluate.add_argument(
        "--out",
        type=Path,
        metavar="FILE.json",
        help="JSON path, replaced if it exists (its folder is checked before scoring); default "
        "RUN_DIR/eval.json for the run's own test split, RUN_DIR/eval-NAME.json for "
        "--data/--dataset NAME, eval-NAME-train.json for --split train",
    )
    evaluate.add_argument(
        "--dist-timeout",
        type=float,
        help="under torchrun, seconds a rank waits for a silent peer before it stops "
        "(default: the run's own dist_timeout)",
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    impute = commands.add_parser(
        "impute",
        help="fill the missing entries of an .npz file with a trained run",
        description="Fill the missing entries of FILE.npz's x (NaN, or False in a boolean "
        "array mask) with the run's model, trained on data with missing entries: the single "
        "imputation E[x_mis|x_obs] by self-normalized importance sampling with K particles, "
        "and M multiple imputations by sampling importance resampling (Mattei & Frellsen "
        "2019). Writes x, draws, mask and ess_fraction to --out, and a figure beside it.",
        formatter_class=_DefaultsHelpFormatter,
    )
    impute.add_argument("run_dir", type=Path)
    impute.add_argument("--data", required=True, metavar="FILE.npz", help="data to impute")
    impute.add_argument("--out", required=True, type=Path, metavar="FILE.npz", help="new file")
    impute.add_argument(
        "--draws", type=int, default=10, metavar="M", help="multiple imputations (0: none)"
    )
    impute.add_argument(
        "--k", type=int, help="importance samples per datapoint (default: the run's eval_k)"
    )
    impute.add_argument("--seed", type=int, default=0, help="seed of the imputation's draws")
    impute.add_argument("--figure", type=Path, help="new PNG path; default the --out path as .png")
    impute.add_argument("--device", default="cpu", help="cpu or cuda")
    impute.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads_flag(impute)
    impute.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    compare = commands.add_parser(
        "compare",
        help="train and evaluate a grid of config values x seeds, several cells at once",
        description="Train every cell of the grid (the --vary values x --seeds) with everything "
        "else fixed, each as an ordinary `pyro-vae train` run in its own process, evaluate each "
        "the same way and write comparison.csv, .md and .png into --out. Rerunning the same "
        "command resumes: finished cells are not run again.",
    )
    compare.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a config key and its values, e.g. latent_dim=2,10,50 or 'hidden=[400,200],[64]' "
        "(brackets hold a value with commas); several --vary make a grid",
    )
    for axis, metavar in (("objectives", "SPEC"), ("priors", "NAME"), ("likelihoods", "NAME")):
        compare.add_argument(
            f"--{axis}", nargs="+", metavar=metavar, help=f"--vary {axis[:-1]}=..., one per word"
        )
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="N")
    compare.add_argument("--out", type=Path, required=True, help="the comparison folder")
    compare.add_argument("--config", type=Path, help="TOML config for everything else")
    compare.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="cells run at once (one thread each)"
    )
    compare.add_argument(
        "--print-commands",
        action="store_true",
        help="run nothing: write each cell's config-request.toml and print one shell line per "
        "cell still to do (for a job scheduler); rerun without this flag for the report",
    )
    compare.add_argument(
        "--no-progress", action="store_true", help="one line per cell start and end, no epochs"
    )
    compare.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    _add_config_flags(compare, exclude=COMPARE_EXCLUDED)

    bench = commands.add_parser("bench", help="measure training speed against hand-written PyTorch")
    bench.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    add_bench_arguments(bench)

    listing = commands.add_parser("list", help="list built-in parts, datasets and objectives")
    listing.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    return parser


def _config_from_args(args: argparse.Namespace, exclude: Sequence[str] = ()) -> Config:
    if args.config:
        _refuse_config_of_a_python_model(args.config)
    cfg = Config.from_file(args.config) if args.config else Config()
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(Config)
        if hasattr(args, f.name) and f.name not in exclude
    }
    return cfg.replace(**overrides)


def _given(args: argparse.Namespace, exclude: Sequence[str] = ()) -> list[str]:
    """The config fields set by flags on the command line (a flag's default is SUPPRESS)."""
    return [f.name for f in fields(Config) if hasattr(args, f.name) and f.name not in exclude]


def _refuse_config_of_a_python_model(path: Path) -> None:
    """The config.toml of a run whose model or data came from Python names the built-in
    defaults for them, so rerunning it would quietly train another model, or on other data."""
    from .data_record import from_python
    from .run_folder import RunFolder

    info = RunFolder(path.parent).read_info()
    if from_python(info):
        raise ConfigError(
            f"{path} belongs to a run trained on data passed from Python; its dataset key is "
            "the default, not those data, so a rerun from it would train on other data. Rerun "
            "from your script (train(cfg, data=...)), or copy the file, set dataset to a "
            "file holding the data (an .npz) and pass the copy"
        )
    if info.get("model_source") == "python":
        raise ConfigError(
            f"{path} belongs to a run whose model was passed from Python "
            f"({info.get('model_class', 'unknown class')}); its model keys are the built-in "
            "defaults, not that model, so a rerun from it would train another model. Rerun "
            "from your script (train(cfg, model=...)), or copy the file, set model (and the "
            "parts) to what you want and pass the copy"
        )


def _cmd_train(args: argparse.Namespace) -> None:
    from .runtime import apply_threads
    from .train import train

    if args.resume is None:  # a resumed run applies its own config's threads in train()
        apply_threads(_config_from_args(args).threads)

    if args.resume is not None:
        overrides = {f.name for f in fields(Config) if hasattr(args, f.name)} - {"epochs"}
        if args.config or overrides:
            raise ConfigError(
                "--resume continues a run with its own config.toml; only --epochs may be given "
                f"(got {', '.join(sorted(overrides)) or '--config'})"
            )
        train(
            resume=args.resume, progress=not args.no_progress, epochs=getattr(args, "epochs", None)
        )
        return
    cfg = _config_from_args(args)
    from .unused import refuse_unused

    refuse_unused([cfg], _given(args))
    if args.config and not hasattr(args, "out") and not args.overwrite and cfg.out:
        from .distributed import launched_as_main
        from .run_folder import RunFolder

        if RunFolder(cfg.out).holds_run():  # a run's own config.toml: rerun it in a new folder
            if launched_as_main():
                print(
                    f"{args.config} names out = {cfg.out}, which holds a run: this run goes to "
                    "a new folder under runs/ (--out DIR chooses one, --overwrite replaces it)"
                )
            cfg = cfg.replace(out="")
    train(cfg, overwrite=args.overwrite, progress=not args.no_progress)


def _cmd_sample(args: argparse.Namespace) -> None:
    from ..convention import data_support, standard_vae
    from ..families.m2 import standard_m2
    from ..rng import isolated_rng
    from .atomic import check_output_path
    from .data_record import recorded_max
    from .load import load_run
    from .plots import save_image_grid, white_of
    from .runtime import apply_threads
    from .sampling import label_classes, save_draws

    if note := apply_threads(args.threads):
        print(note, file=sys.stderr)
    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    numbers = args.out is not None and args.out.suffix.lower() == ".npz"
    if not numbers:
        _check_grid_size(args.n or 0)
    if args.out is not None and args.out.suffix.lower() not in (".png", ".npz"):
        raise ConfigError(f"--out {args.out}: name the output FILE.png (images) or FILE.npz")
    if args.out is not None:  # a file there is replaced, as the default names are
        check_output_path(args.out, "--out", ".npz" if numbers else ".png", replace=True)
    run = load_run(args.run_dir, args.device)
    if run.note:
        print(run.note, file=sys.stderr)
    vae = standard_m2(run.model) or standard_vae(run.model)
    if vae is None:
        raise ModelError(
            f"the run's model ({type(run.model).__name__}) has its own model() and guide(), "
            "which pyro-vae sample cannot draw from; load it with pyro_vae.load_run and draw "
            "with pyro.infer.Predictive(model.model, ...) in Python"
        )
    conditional = label_classes(vae, args.label) > 0
    if numbers:
        print(save_draws(vae, args.out, args.n, args.label, args.seed, args.device))
        return
    white = white_of(data_support(run.model), recorded_max(run.info))
    run_name = run.folder.path.resolve().name
    if conditional:
        with isolated_rng(args.seed, args.device):
            out, drawn = _sample_classes(args, vae, run, run_name, white)
    else:
        n = args.n or 64
        out = args.out or _in_plots(run, f"prior-samples-seed{args.seed}-n{n}.png")
        with isolated_rng(args.seed, args.device):
            images = vae.sample(n)
        title = f"{run_name}: {n} samples from the prior (E[x|z]), seed {args.seed}"
        drawn = save_image_grid(images, out, title=title, white=white)
    if not drawn:
        raise ConfigError(
            f"data shape {run.data_shape} is not an image, so there is nothing to draw; "
            "--out FILE.npz writes the samples' numbers"
        )
    print(out)


def _in_plots(run: LoadedRun, name: str) -> Path:
    """``RUN_DIR/plots/NAME``, making plots/ again if it was removed."""
    return run.folder.plots_folder() / name


MAX_GRID_IMAGES = 1024  # a 32 x 32 grid; 2,000 images took 16 s to draw into a 2.4 MB PNG


def _check_grid_size(images: int, how: str = "") -> None:
    """Refuse a PNG grid too large to read or to draw in reasonable time."""
    if images > MAX_GRID_IMAGES:
        raise ConfigError(
            f"--n: {images} images{how} are more than a PNG grid shows legibly (at most "
            f"{MAX_GRID_IMAGES}); write them as numbers with --out FILE.npz, or ask for fewer"
        )


def _sample_classes(
    args: argparse.Namespace, model: CVAE | M2, run: LoadedRun, run_name: str, white: float
) -> tuple[Path, bool]:
    """``pyro-vae sample --label K|all`` for a cvae or m2 run: the PNG path and whether it was
    drawn."""
    import torch

    from .plots import class_samples, plot_class_samples, prior_name, save_image_grid
    from .sampling import parse_label

    classes = model.num_classes
    prior = prior_name(model)
    if args.label in (None, "all"):
        n = args.n or 10
        _check_grid_size(n * classes, f" ({n} for each of {classes} classes)")
        out = args.out or _in_plots(run, f"samples-label-all-seed{args.seed}-n{n}-each.png")
        title = (
            f"{run_name}: {n} samples per label, one row per label "
            f"(E[x|z, y], z ~ {prior}), seed {args.seed}"
        )
        return out, plot_class_samples(model, out, n, title=title, white=white)
    label = parse_label(args.label, classes)
    n = args.n or 64
    out = args.out or _in_plots(run, f"samples-label{label}-seed{args.seed}-n{n}.png")
    images = class_samples(model, torch.full((n,), label))
    title = (
        f"{run_name}: {n} samples of label {label} (E[x|z, y={label}], z ~ {prior}), "
        f"seed {args.seed}"
    )
    return out, save_image_grid(images, out, title=title, white=white)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from .distributed import launched_as_main
    from .evaluate import evaluate
    from .runtime import apply_threads

    if note := apply_threads(args.threads):
        print(note, file=sys.stderr)
    if args.k is not None and args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    if args.dist_timeout is not None and not args.dist_timeout > 0:
        raise ConfigError(f"--dist-timeout must be > 0 seconds, got {args.dist_timeout}")
    result = evaluate(
        args.run_dir,
        data=args.data or args.dataset,
        data_dir=args.data_dir,
        split=args.split,
        k=args.k,
        seed=args.seed,
        device=args.device,
        out=args.out,
        log=lambda line: print(line, file=sys.stderr),
        progress=not args.no_progress and launched_as_main(),
        dist_timeout=args.dist_timeout,
    )
    if launched_as_main():
        print(result.table())
        print(f"written to {result.path}")
        if result.confusion_path is not None:
            print(f"confusion matrix: {result.confusion_path}")


def _cmd_impute(args: argparse.Namespace) -> None:
    from .impute import impute_file
    from .runtime import apply_threads

    if note := apply_threads(args.threads):
        print(note, file=sys.stderr)
    done = impute_file(
        args.run_dir, args.data, args.out, draws=args.draws, k=args.k, seed=args.seed,
        device=args.device, figure=args.figure, progress=not args.no_progress,
    )  # fmt: skip
    ess = float(done.result.ess_fraction.mean())
    print(
        f"imputed {100 * done.missing_fraction:.1f}% of the entries of {len(done.result.mean)} "
        f"datapoints (K={done.result.k}, {args.draws} draws; mean effective sample size "
        f"{100 * ess:.1f}% of K): {done.out}"
    )
    if done.figure is not None:
        print(f"figure: {done.figure}")


def _cmd_compare(args: argparse.Namespace) -> None:
    from .compare import AXES, cell_commands, compare, parse_grid
    from .runtime import apply_threads
    from .unused import refuse_unused

    grid = parse_grid(args.vary, {axis: getattr(args, f"{axis}s") for axis in AXES})
    base = _config_from_args(args, exclude=COMPARE_EXCLUDED)
    combos = itertools.product(*grid.values())
    cells = [base.replace(**dict(zip(grid, combo, strict=True))) for combo in combos]
    refuse_unused(cells, [*_given(args, COMPARE_EXCLUDED), *grid])
    if note := apply_threads(base.threads):
        print(note, file=sys.stderr)
    if args.print_commands:
        lines = cell_commands(base, grid, args.seeds, args.out)
        print("\n".join(lines) if lines else "# every cell is done; rerun without --print-commands")
        return
    compare(
        base,
        grid,
        args.seeds,
        args.out,
        jobs=args.jobs,
        progress=not args.no_progress,
        command=shlex.join(["pyro-vae", *args.argv]),
    )


def _cmd_bench(args: argparse.Namespace) -> None:
    from .bench import run_from_args
    from .runtime import apply_threads

    apply_threads(args.threads[0])  # run_from_args applies each of --threads in turn
    run_from_args(args)


def _cmd_list(args: argparse.Namespace) -> None:
    from .listing import describe_builtins

    print(describe_builtins())


COMMANDS = {
    "train": _cmd_train,
    "sample": _cmd_sample,
    "evaluate": _cmd_evaluate,
    "impute": _cmd_impute,
    "compare": _cmd_compare,
    "bench": _cmd_bench,
    "list": _cmd_list,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Pyro's ELBOs log "Guessed max_plate_nesting = 1" at INFO for any traced model: a
    # line between the command's own that tells its user nothing
    logging.getLogger("pyro.infer.elbo").setLevel(logging.WARNING)
    # every figure is drawn off screen (Agg): a backend the environment names is never used,
    # and one matplotlib does not know (MPLBACKEND=bogus) failed `import matplotlib` itself
    os.environ.pop("MPLBACKEND", None)
    args = build_parser().parse_args(argv)
    args.argv = argv
    started = time.time()
    try:
        COMMANDS[args.command](args)
    except PyroVAEError as err:
        if args.debug:
            raise
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return 2
    except (OSError, UnicodeError, MemoryError, RuntimeError) as err:
        # the user's paths, disk or sizes (torch reports a failed CPU allocation as a
        # RuntimeError): one line; any other RuntimeError is a bug and keeps its traceback
        out_of_memory = "can't allocate memory" in str(err) or "out of memory" in str(err)
        if args.debug or (isinstance(err, RuntimeError) and not out_of_memory):
            raise
        from .run_folder import explain_system_error

        reason = err if not isinstance(err, RuntimeError) else MemoryError()
        print(f"pyro-vae: error: {explain_system_error(reason, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from .distributed import launched_as_main

        if launched_as_main():  # one line for a whole torchrun launch
            print(f"pyro-vae: interrupted; {_after_interrupt(args, started)}", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()
    return 0


def _after_interrupt(args: argparse.Namespace, started: float) -> str:
    """What a Ctrl-C left behind, and how to go on, for the command that was interrupted
    (``started``: when it began, which tells a run's checkpoint from one it found there)."""
    if args.command == "train":
        return _after_interrupted_training(args, started)
    if args.command == "compare":
        return "finished cells are kept: the same command continues the comparison"
    return "no file was written or changed (outputs are written whole, at the end)"


def _after_interrupted_training(args: argparse.Namespace, started: float) -> str:
    """Where an interrupted ``train`` left its folder, read from the folder itself: nothing
    made yet (interrupted while loading the data), a run without a checkpoint, a replaced
    run put back, or a run to resume."""
    from .run_folder import RunFolder

    run = getattr(args, "resume", None) or getattr(args, "out", None)
    if run is None:
        return (
            "every checkpoint written is intact: pyro-vae train --resume RUN_DIR continues "
            "the run (RUN_DIR: the new folder under runs/, if it was made); one stopped in its "
            "first epoch starts afresh"
        )
    folder = RunFolder(run)
    if not folder.holds_run():
        return f"nothing was saved ({run} holds no run): the same command starts it again"
    try:
        checkpointed = folder.checkpoint_path.stat().st_mtime
    except OSError:
        return f"{run} has no checkpoint yet: pyro-vae train --resume {run} starts it afresh"
    if checkpointed < started and args.resume is None:
        return (
            f"{run} holds the run it held before, unchanged (the new run had no checkpoint "
            "yet): the same command replaces it again"
        )
    return f"every checkpoint written is intact: pyro-vae train --resume {run} continues the run"


def _leave_process_group() -> None:
    """Under torchrun, leave the process group before exit (see close_process_group)."""
    if "torch.distributed" in sys.modules:  # never import torch just to find out
        from .distributed import close_process_group

        close_process_group()


class _SinkWhenClosed:
    """A standard stream that becomes a sink when its reader goes away (``pyro-vae train |
    head -1``): the run goes on, instead of dying of a BrokenPipeError blamed on the disk."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._sink()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._sink()

    def _sink(self) -> None:
        """Point the stream's file descriptor at /dev/null: later writes, and the flush at
        exit, succeed and go nowhere."""
        os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def run() -> None:
    """The ``pyro-vae`` console command: :func:`main`, then exit with its status.

    Output whose reader went away is dropped (the command carries on). A rank that
    torchrun launched exits through :func:`exit_rank`, so that torch's teardown of the
    process group's threads cannot abort a run that finished.
    """
    if os.environ.get(DIE_WITH_READER) != "1":
        sys.stdout, sys.stderr = _SinkWhenClosed(sys.stdout), _SinkWhenClosed(sys.stderr)
    code = main()
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        from .distributed import exit_rank

        exit_rank(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
