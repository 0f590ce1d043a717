"""The ``gluebox`` command: argument parsing and the one-line error contract.

Each subcommand lives in ``gluebox.commands``; this module only turns the command line
(and an optional YAML file) into arguments, and errors into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from gluebox import __version__
from gluebox.errors import GlueboxError
from gluebox.runs.folders import record_command

EPILOG = ("Run `gluebox COMMAND --help` for a command's flags and examples. Docs: README.md, and docs/ "
          "(docs/cli.md lists every flag).")

EXAMPLES = {
    "train": [
        "gluebox train --task_name mrpc --model_name_or_path distilbert-base-uncased   # downloads from the Hub",
        "gluebox train --data_dir glue_data/MRPC --epochs 1 --output_dir runs/mrpc",
        "gluebox train --train_file reviews.csv --validation_file reviews_dev.csv --text_column review "
        "--text_pair_column none --label_column sentiment --output_dir runs/reviews",
        "gluebox train --data_dir glue_data/MRPC --peft lora --learning_rate 5e-4 --output_dir runs/mrpc-lora",
    ],
    "evaluate": ["gluebox evaluate runs/mrpc --output metrics.json"],
    "predict": ["gluebox predict runs/mrpc --output predictions.tsv",
                "gluebox predict runs/reviews --file reviews_dev.csv --output predictions.csv"],
    "cache": ["gluebox cache --model_name_or_path distilbert-base-uncased --task_name mrpc   # downloads from the Hub"],
    "plot": ["gluebox plot runs/mrpc runs/mrpc-lora --output curves.png"],
    "compare": ["gluebox compare runs/mrpc runs/mrpc-again"],
    "push": ["gluebox push runs/mrpc my-mrpc-model --private   # uploads to the Hub"],
    "sweep": ["gluebox sweep docs/sweep-mrpc.yaml --output_dir runs/sweep-mrpc   # downloads from the Hub"],
    "glue": ["gluebox glue --tasks mrpc --data_dir glue_data --output_dir runs/glue",
             "gluebox glue --check runs/glue/submission.zip --data_dir glue_data"],
}
"""Each command's ``--help`` examples. A test runs every one not marked as reaching the network, on tiny data
(tests/test_docs.py); docs/cli.md shows them."""

NEEDS_NETWORK = ("downloads from the Hub", "uploads to the Hub")
"""The comments that mark an example which reaches the network (the tests cannot run it)."""


def examples_epilog(command: str) -> str:
    """The ``examples:`` block at the end of ``gluebox COMMAND --help``."""
    return "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line with exit code 2 (no usage dump), and a mistyped
    flag gets the closest flag of its command as a suggestion."""

    commands: "argparse._SubParsersAction | None" = None
    """The subcommands' parsers (on the top-level parser)."""

    def error(self, message: str):
        raise GlueboxError(f"{message} (see `{self.prog} --help`)")

    def parse_args(self, args=None, namespace=None):
        # parse_known_args, then the unknown flags are reported by the parser of their command.
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(namespace, "command", None)
            parser = self.commands.choices.get(command, self) if self.commands is not None else self
            parser.error(f"unrecognized arguments: {' '.join(extras)}{parser.suggestion(extras)}")
        return namespace

    def suggestion(self, extras: list[str]) -> str:
        """``; did you mean --flag?`` for the first unknown flag that is close to one of this parser's."""
        import difflib

        flags = [option for option in self._option_string_actions if option.startswith("--")]
        for extra in extras:
            if not extra.startswith("-"):
                continue
            name = extra.split("=", 1)[0]
            close = difflib.get_close_matches(name if name.startswith("--") else f"-{name}", flags, n=1, cutoff=0.6)
            if close:
                return f"; did you mean {close[0]}?"
        return ""


def plain_help(text: str) -> str:
    """``text`` as argparse help shows it: argparse formats help with ``%`` (``%(default)s``), so a
    literal ``%`` (a config field's "13% less") is doubled."""
    return text.replace("%", "%%")


RESUME_HELP = ("Continue an interrupted run from its last checkpoint, with the settings in RUN_DIR/config.yaml. "
               "It finishes exactly as an uninterrupted run would.")


def _add_train_flags(parser: argparse.ArgumentParser, exclude: frozenset[str] = frozenset(),
                     resume: tuple[str, str] = ("RUN_DIR", RESUME_HELP)) -> None:
    """One flag per TrainConfig field (but ``exclude``); defaults are applied later so that YAML can sit between."""
    from gluebox.config import config_fields, text_flag, value_type

    for f in config_fields():
        if f.name in exclude:
            continue
        names = [f"--{f.name}", *f.metadata.get("aliases", ())]
        help_text = plain_help(f.metadata["help"] + (f" (default: {f.default})" if f.default is not None else ""))
        kind = str if text_flag(f) else value_type(f)
        if kind is bool:
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
            continue
        parser.add_argument(
            *names, dest=f.name, type=kind, default=argparse.SUPPRESS, help=help_text,
            choices=f.metadata.get("choices") if f.name != "task_name" else None,
            metavar=f.name.upper() if f.metadata.get("choices") is None or f.name == "task_name" else None,
        )
    parser.add_argument("--config", default=None, help="YAML file of flag values; command-line flags win over it.")
    parser.add_argument("--resume", default=None, metavar=resume[0], help=resume[1])


DESCRIPTIONS = {
    "train": "Fine-tune a model on a GLUE task or your own data, and write a run directory.",
    "evaluate": "Score a finished run (or a checkpoint) on its validation splits, another split or a file.",
    "predict": "Write one prediction per input row with a finished run (or a checkpoint).",
    "cache": "Download a model, its tokenizer and a task's data into the local caches, for offline use.",
    "plot": "Plot runs' training loss per step, and validation loss and main metric per validation.",
    "compare": "Tell whether two runs are identical (exit 0) or where they first differ (exit 1).",
    "push": "Upload a finished run's best model (and LoRA adapter) to the Hugging Face Hub.",
    "sweep": "Search hyperparameters on Ray Tune, each trial a gluebox run, and write a leaderboard.",
    "glue": "Run the GLUE benchmark: every task, the GLUE score and a submission.zip; or check a submission.",
}
"""Each command's one-line summary: the first line of its ``--help`` and its line in ``gluebox --help``."""


def _command(commands: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    """A subcommand's parser, whose ``--help`` opens with its one-line summary and ends with its examples."""
    return commands.add_parser(name, help=DESCRIPTIONS[name], description=DESCRIPTIONS[name],
                               epilog=examples_epilog(name), formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gluebox", description="Fine-tune transformer encoders on GLUE tasks or your own data, "
                     "on small CPU-only machines.", epilog=EPILOG)
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks for errors.")
    parser.add_argument("--version", action="version", version=f"gluebox {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.commands = commands

    train = _command(commands, "train")
    _add_train_flags(train)

    evaluate = _command(commands, "evaluate")
    evaluate.add_argument("run", help="Run directory, or a .ckpt file inside one.")
    evaluate.add_argument("--split", default=None, help="Split to score (default: every validation split).")
    evaluate.add_argument("--file", default=None, help="Score this labelled file instead (task's layout, or .csv/.jsonl).")
    evaluate.add_argument("--data_dir", default=None, help="GLUE folder to read the split from (default: the run's).")
    evaluate.add_argument("--output", default=None, help="Also write the metrics as JSON here.")
    evaluate.add_argument("--eval_batch_size", type=int, default=None, help="Examples per batch (default: the run's).")

    predict = _command(commands, "predict")
    predict.add_argument("run", help="Run directory, or a .ckpt file inside one.")
    predict.add_argument("--split", default=None, help="Split to predict (default: the task's test split).")
    predict.add_argument("--file", default=None, help="Predict this file instead (.tsv/.csv/.jsonl).")
    predict.add_argument("--data_dir", default=None, help="GLUE folder to read the split from (default: the run's).")
    predict.add_argument("--task_name", default=None, help="Predict another GLUE task's data with this run (e.g. ax with an mnli run).")
    predict.add_argument("--output", required=True, help="Where to write: .tsv (GLUE submission format), .csv or .jsonl.")
    predict.add_argument("--eval_batch_size", type=int, default=None, help="Examples per batch (default: the run's).")

    cache = _command(commands, "cache")
    cache.add_argument("--model_name_or_path", default="distilbert-base-uncased",
                       help="Hugging Face model id whose weights and tokenizer to download.")
    cache.add_argument("--task_name", default="mrpc", help="GLUE task whose data (the hub dataset nyu-mll/glue) to "
                       "download.")
    cache.add_argument("--data_dir", default=None, help="Check a local GLUE folder instead of downloading the data.")
    cache.add_argument("--no_data", action="store_true", help="Cache only the model and tokenizer.")

    plot = _command(commands, "plot")
    plot.add_argument("runs", nargs="+", help="Run directories.")
    plot.add_argument("--output", default="learning_curves.png", help="PNG to write; a .md table is written beside it.")
    plot.add_argument("--title", default=None, help="Title of the figure (default: none).")

    compare = _command(commands, "compare")
    compare.add_argument("run_a", help="A run directory.")
    compare.add_argument("run_b", help="The run directory to compare it with.")
    compare.add_argument("--tolerance", type=float, default=1e-4,
                         help="When the runs differ: the absolute difference within which their metrics count as "
                              "agreeing (default: 1e-4).")

    push = _command(commands, "push")
    push.add_argument("run", metavar="RUN", help="A complete run directory.")
    push.add_argument("repo_id", metavar="REPO_ID",
                      help="NAME (in your account) or NAMESPACE/NAME; created if it does not exist. The token: "
                           "HF_TOKEN, else the one `hf auth login` stored.")
    push.add_argument("--private", action="store_true", help="Create the repository private (an existing public one "
                      "is refused).")

    sweep = _command(commands, "sweep")
    sweep.add_argument("sweep_file", help="YAML sweep file: base config, search space, trials (see docs/sweeps.md).")
    sweep.add_argument("--address", default=None,
                       help="Ray cluster to run on: auto, HOST:6379 or ray://HOST:10001. "
                            "Default: a local Ray instance on this machine (loopback only), shut down at the end.")
    sweep.add_argument("--output_dir", default=None, help="The sweep's folder (default: the sweep file's, or runs/sweep-<name>-<time>).")
    sweep.add_argument("--overwrite", action="store_true",
                       help="Replace an existing gluebox sweep folder: only the files gluebox wrote in it go; "
                            "anything else there stops it with one line that names them.")

    from gluebox.suite.spec import SET_BY_SUITE

    glue = _command(commands, "glue")
    glue.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                      help="Tasks to run (comma- or space-separated; default: the nine of the GLUE score). "
                           "AX is predicted with the mnli run.")
    glue.add_argument("--output_dir", default=None,
                      help="The suite's folder (default: $GLUEBOX_RUNS_DIR (or ./runs) / glue-<model>-<time>).")
    glue.add_argument("--overrides", default=None, metavar="FILE",
                      help="YAML file of per-task flag values, e.g. {rte: {epochs: 10, learning_rate: 3e-5}}.")
    glue.add_argument("--address", default=None,
                      help="Ray cluster to run the tasks on in parallel (auto, HOST:6379 or ray://HOST:10001); "
                           "default: one after another on this machine.")
    glue.add_argument("--cpus_per_task", type=float, default=1, help="With --address: CPUs Ray reserves for each task "
                      "(and its torch threads unless --num_threads is set).")
    glue.add_argument("--gpus_per_task", type=float, default=0, help="With --address: GPUs Ray reserves for each task.")
    glue.add_argument("--check", default=None, metavar="ZIP",
                      help="Only check a submission zip against the test files (--data_dir: a glue_data/ folder; "
                           "default: the official test sets' sizes); exit 0 when valid, 1 with its problems.")
    _add_train_flags(glue, exclude=SET_BY_SUITE, resume=(
        "SUITE", "Continue a suite: complete tasks are skipped, interrupted ones resumed, failed ones run again."))
    for command in commands.choices.values():  # `gluebox COMMAND ... --debug` works as `gluebox --debug COMMAND ...`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def run_command(args: argparse.Namespace) -> int:
    if args.command == "train":
        from gluebox.commands.train import train_command

        return train_command(args)
    if args.command == "evaluate":
        from gluebox.commands.evaluate import evaluate

        evaluate(args.run, split=args.split, file=args.file, data_dir=args.data_dir, output=args.output, batch_size=args.eval_batch_size)
        return 0
    if args.command == "predict":
        from gluebox.commands.predict import predict

        predict(args.run, output=args.output, split=args.split, file=args.file, data_dir=args.data_dir,
                task_name=args.task_name, batch_size=args.eval_batch_size)
        return 0
    if args.command == "cache":
        from gluebox.commands.cache import cache

        cache(args.model_name_or_path, args.task_name, data_dir=args.data_dir, with_data=not args.no_data)
        return 0
    if args.command == "plot":
        from gluebox.commands.plot import plot

        plot(args.runs, args.output, title=args.title)
        return 0
    if args.command == "push":
        from gluebox.commands.push import push

        push(args.run, args.repo_id, private=args.private)
        return 0
    if args.command == "sweep":
        from gluebox.commands.sweep import sweep

        sweep(args.sweep_file, address=args.address, output_dir=args.output_dir, overwrite=args.overwrite)
        return 0
    if args.command == "glue":
        from gluebox.commands.glue import glue

        return glue(args)
    if args.command == "compare":
        from gluebox.commands.compare import compare

        return 0 if compare(args.run_a, args.run_b, tolerance=args.tolerance) else 1
    build_parser().print_help()
    return 2


VALUE_FREE_OPTIONS = frozenset({"--debug", "--no_data", "--overwrite", "--help", "-h"})
"""Options of evaluate and predict that take no value (every other one takes one)."""


def _option(argv: list[str], name: str) -> str | None:
    """The last value given to ``name`` (``--name V`` or ``--name=V``), or None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _recorded(path: str, name: str) -> str | None:
    """A setting a run (a run directory, a checkpoint inside one, or a GLUE suite) was started with."""
    import json
    from pathlib import Path

    import yaml

    target = Path(path)
    folders = [target] if target.is_dir() else list(target.parents)
    for folder in folders:
        if (folder / "config.yaml").is_file():
            saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
            return saved.get(name) if isinstance(saved, dict) else None
        if (folder / "suite.json").is_file():
            configs = json.loads((folder / "suite.json").read_text(encoding="utf-8")).get("configs") or {}
            return next((c.get(name) for c in configs.values()), None)
    return None


def early_setting(argv: list[str], name: str, variable: str, default: str, resumable: bool = False) -> str:
    """A setting of this command that must be known before torch is imported (``reproducibility``,
    ``allocator``), read from the command line without parsing it.

    ``train`` and ``glue``: the flag, else the ``--config`` file's, else ``$VARIABLE``; with
    ``--resume``, the run's (or suite's) recorded setting, unless the setting is ``resumable`` and the flag
    is given. ``evaluate`` and ``predict``: the run's
    recorded setting. ``sweep``: its base config's. Anything unreadable gives ``default``; the command
    itself then reports the problem.
    """
    flag = f"--{name}"
    try:
        command = next((a for a in argv if not a.startswith("-")), None)
        if command is None:
            return default
        rest = argv[argv.index(command) + 1:]
        if command in ("evaluate", "predict"):
            i = 0
            while i < len(rest):
                if not rest[i].startswith("-"):
                    return str(_recorded(rest[i], name) or default)
                i += 1 if rest[i] in VALUE_FREE_OPTIONS or "=" in rest[i] else 2
            return default
        if command in ("train", "glue"):
            if resumable and _option(rest, flag) is not None:
                return _option(rest, flag)
            if _option(rest, "--resume") is not None:
                return str(_recorded(_option(rest, "--resume"), name) or default)
            if _option(rest, flag) is not None:
                return _option(rest, flag)
            if _option(rest, "--config") is not None:
                from gluebox.config import read_yaml_mapping

                value = read_yaml_mapping(_option(rest, "--config")).get(name)
                if value is not None:
                    return str(value)
            return os.environ.get(variable) or default
        if command == "sweep" and rest and not rest[0].startswith("-"):
            from gluebox.config import read_yaml_mapping

            base = read_yaml_mapping(rest[0]).get("base") or {}
            if isinstance(base, str):
                base = read_yaml_mapping(base)
            return str(base.get(name) or os.environ.get(variable) or default)
    except Exception:  # an unreadable file: the command reports it
        pass
    return default


def reproducibility_mode(argv: list[str]) -> str:
    """The ``--reproducibility`` mode of this command, read before torch is imported (it must be pinned
    first; a portable run then checks that its kernels were pinned). See :func:`early_setting`."""
    from gluebox.reproducibility import FAST, VARIABLE

    return early_setting(argv, "reproducibility", VARIABLE, FAST)


def allocator_choice(argv: list[str]) -> str:
    """The ``--allocator`` of this command, read before Python has allocated much (see :func:`early_setting`)."""
    from gluebox.allocator import MIMALLOC, VARIABLE

    return early_setting(argv, "allocator", VARIABLE, MIMALLOC, resumable=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    record_command(argv)
    debug = "--debug" in argv or os.environ.get("GLUEBOX_DEBUG") == "1"
    from gluebox.reproducibility import MODES, pin

    mode = reproducibility_mode(argv)
    if mode in MODES:  # else argparse or the config check says what is wrong
        pin(mode)
    try:
        args = build_parser().parse_args(argv)
        return run_command(args)
    except GlueboxError as error:
        from gluebox.training.tracking import redact

        if debug:
            traceback.print_exc()
        if not getattr(error, "quiet", False):  # another process of the run says it
            print(f"gluebox: {error.label}: {redact(str(error))}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        print("gluebox: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("gluebox: error: out of memory; lower --train_batch_size or set --memory_budget", file=sys.stderr)
        return 1


ALLOCATING_COMMANDS = frozenset({"train", "evaluate", "predict", "glue", "sweep", "cache"})
"""The commands that hold a model and its tensors, and so run under ``--allocator``."""


def entry() -> int:
    """The ``gluebox`` console command (and ``python -m gluebox``): :func:`main`, under the chosen allocator.

    Only this entry re-executes the process (:func:`gluebox.allocator.reexecute_under`); :func:`main`
    called from Python keeps the caller's allocator.
    """
    from gluebox import allocator

    argv = sys.argv[1:]
    try:
        reexecuted = allocator.settle_after_reexecution()
        command = next((a for a in argv if not a.startswith("-")), None)
        if not reexecuted and command in ALLOCATING_COMMANDS and "--help" not in argv and "-h" not in argv:
            allocator.reexecute_under(allocator_choice(argv))
    except KeyboardInterrupt:  # Ctrl+C while the command restarts itself
        print("gluebox: interrupted", file=sys.stderr)
        return 130
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(entry())
