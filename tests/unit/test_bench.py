"""pyro-vae bench: quick by default, the full measurement behind --full, every default shown."""

import argparse
import dataclasses

import pytest

from pyro_vae.app.bench import BenchRow, BenchSettings, format_table
from pyro_vae.app.bench_args import FULL, QUICK, add_bench_arguments, bench_sizes
from pyro_vae.app.cli import build_parser


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser.parse_args(argv)


def test_full_is_the_measurement_behind_results_md():
    defaults = {f.name: f.default for f in dataclasses.fields(BenchSettings)}
    assert bench_sizes(parse("--full")) == FULL == {name: defaults[name] for name in FULL}


def test_quick_by_default_and_a_size_given_wins_over_both():
    assert bench_sizes(parse()) == QUICK
    assert all(QUICK[name] <= FULL[name] for name in QUICK) and QUICK != FULL
    for argv in ([], ["--full"]):
        assert bench_sizes(parse(*argv, "--steps", "7"))["steps"] == 7
    assert parse().threads == [1, 2] and parse("--threads", "3").threads == [3]


def test_bench_help_shows_every_default():
    (commands,) = build_parser()._subparsers._group_actions
    bench = commands.choices["bench"]
    options = [a for a in bench._actions if a.help and a.dest not in ("help", "debug")]
    assert len(options) == 12
    for action in options:
        assert "(default: " in action.help, action.option_strings
    steps = next(a for a in options if a.dest == "steps").help
    assert f"(default: {QUICK['steps']}; {FULL['steps']} with --full)" in steps


def test_the_table_names_each_rows_thread_count():
    rows = [
        BenchRow("training step, batch 128", 5.0, 4.0, "ms/step", "hand-written", "<= 1.10", t)
        for t in (1, 2)
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split()[:2] == ["threads", "measure"]
    assert [line.split()[0] for line in lines[1::2]] == ["1", "2"]
    assert all(line.split()[-3] == "1.250" for line in lines[1::2])


@pytest.mark.parametrize("argv", [["--threads"], ["--threads", "two"]])
def test_threads_must_be_counts(argv):
    with pytest.raises(SystemExit):
        parse(*argv)


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--steps", "0"], "--steps must be >= 1, got 0"),
     (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
     (["--out", "table.txt"], "name the output file FILE.csv"),
     (["--device", "cuda"], "no CUDA GPU is visible")],
)  # fmt: skip
def test_bad_bench_options_are_refused_before_any_measurement(flags, message, tmp_path, capsys):
    import torch

    from pyro_vae.app.cli import main

    if "cuda" in flags and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["bench", "--threads", "1", *flags]) == 2
    printed = capsys.readouterr()
    assert message in printed.err and "training step" not in printed.err
