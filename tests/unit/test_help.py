"""`pyro-vae train --help` and `sample --help` show every option's default."""

import re

from pyro_vae.app.cli import build_parser
from pyro_vae.app.config import Config


def subcommand_help(name: str) -> str:
    (commands,) = build_parser()._subparsers._group_actions
    return commands.choices[name].format_help()


def option_blocks(text: str) -> dict[str, str]:
    """Each option's help, keyed by its flag, with the wrapped lines joined."""
    blocks: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        match = re.match(r"  (--[a-z-]+)", line)
        if match:
            flag = match.group(1)
            blocks[flag] = line
        elif flag and line.startswith("      "):
            blocks[flag] += " " + line.strip()
        else:
            flag = None
    return {flag: " ".join(block.split()) for flag, block in blocks.items()}


def test_train_help_shows_each_config_default():
    blocks = option_blocks(subcommand_help("train"))
    for name, default, _ in Config.describe():
        block = blocks["--" + name.replace("_", "-")]
        if default in ("", {}):  # nothing to show; the help says what empty means
            continue
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        assert f"(default: {shown})" in block or "default" in block, block
    assert "(default: 30)" in blocks["--epochs"] and "(default: 400)" in blocks["--hidden"]
    assert "(default: 1)" in blocks["--threads"]


def test_sample_help_names_the_default_file_and_every_default():
    blocks = option_blocks(subcommand_help("sample"))
    assert "prior-samples-seed<SEED>-n<N>.png" in blocks["--out"].replace("- ", "-")
    for flag in ("--n", "--seed", "--device", "--threads"):
        assert "(default: " in blocks[flag], blocks[flag]


def test_an_interrupted_command_says_what_it_left_and_how_to_go_on(monkeypatch, capsys):
    from pyro_vae.app import cli

    def interrupted(args):
        raise KeyboardInterrupt

    for name in ("train", "evaluate", "compare"):
        monkeypatch.setitem(cli.COMMANDS, name, interrupted)
    assert cli.main(["train", "--out", "runs/mine"]) == 130
    assert "nothing was saved (runs/mine holds no run)" in capsys.readouterr().err
    assert cli.main(["evaluate", "runs/mine"]) == 130
    assert "no file was written or changed" in capsys.readouterr().err
    assert cli.main(["compare", "--vary", "latent_dim=2,3", "--out", "c"]) == 130
    assert "the same command continues the comparison" in capsys.readouterr().err


def test_an_interrupted_train_advises_from_what_its_folder_holds(monkeypatch, capsys, tmp_path):
    """Found by a hostile probe: Ctrl-C while the data loaded (before the folder is made)
    said `pyro-vae train --resume DIR continues the run`, of a DIR that did not exist, and
    after an --overwrite without a checkpoint it offered to 'continue' the run put back."""
    import json
    import os

    from pyro_vae.app import cli

    run = tmp_path / "run"
    stage = {}

    def interrupted(args):
        if "files" in stage:
            run.mkdir(exist_ok=True)
            for name, text in stage["files"].items():
                (run / name).write_text(text)
            if "age" in stage:  # a checkpoint written before the command started
                os.utime(run / "checkpoint.pt", (stage["age"], stage["age"]))
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "train", interrupted)
    record = {"run.json": json.dumps({"pyro_vae_version": "0.1.0"}), "config.toml": ""}
    said = {}
    for case, files, argv in (
        ("nothing made", None, ["--out", str(run)]),
        ("first epoch", record, ["--out", str(run)]),
        ("replacement put back", {**record, "checkpoint.pt": "old"}, ["--out", str(run)]),
        ("resumed", {**record, "checkpoint.pt": "old"}, ["--resume", str(run)]),
        ("checkpointed", {**record, "checkpoint.pt": "new"}, ["--out", str(run)]),
    ):
        stage.clear()
        if files is not None:
            stage["files"] = files
            if case != "checkpointed" and "checkpoint.pt" in files:
                stage["age"] = 1e9
        assert cli.main(["train", *argv]) == 130
        said[case] = capsys.readouterr().err.strip()
        assert "\n" not in said[case], case
    assert f"nothing was saved ({run} holds no run): the same command" in said["nothing made"]
    assert f"has no checkpoint yet: pyro-vae train --resume {run} starts" in said["first epoch"]
    assert "holds the run it held before, unchanged" in said["replacement put back"]
    for case in ("resumed", "checkpointed"):
        assert f"pyro-vae train --resume {run} continues the run" in said[case], case


def test_out_of_memory_names_flags_of_the_command_that_ran_out(monkeypatch, capsys):
    """Found by a CLI probe: `pyro-vae sample RUN --n 100000` ran out of memory and was told
    to use a smaller model, --batch-size or dataset, none of which sample takes."""
    from pyro_vae.app import cli

    def out_of_memory(args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 1 GB")

    (commands,) = build_parser()._subparsers._group_actions
    minimal = {"sample": ["r"], "evaluate": ["r"], "impute": ["r", "--data", "d.npz"]}
    minimal["impute"] += ["--out", "o.npz"]
    minimal["compare"] = ["--vary", "latent_dim=2,3", "--out", "c"]
    for name, parser in commands.choices.items():
        if name == "list":
            continue
        monkeypatch.setitem(cli.COMMANDS, name, out_of_memory)
        assert cli.main([name, *minimal.get(name, [])]) == 2
        message = capsys.readouterr().err
        flags = re.findall(r"--[a-z][a-z-]*", message)
        assert message.startswith("pyro-vae: error: out of memory; ") and flags, message
        assert set(flags) <= set(parser._option_string_actions), (name, message)
