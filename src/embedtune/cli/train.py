"""``embedtune train`` and ``embedtune demo``: settings from flags, then the training pipeline, then a summary."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING

from embedtune.config import ExperimentConfig, build_config, config_from_dict
from embedtune.data.beir import write_beir
from embedtune.data.builders.stdlib_code import build_stdlib_retrieval_set
from embedtune.evaluation.report import format_comparison
from embedtune.evaluation.run_report import write_report
from embedtune.model_paths import check_model_available
from embedtune.runs import CHOSEN_BASE, STATUS_FINISHED, read_run_record
from embedtune.runs.layout import REPORT_FILE
from embedtune.runs.store import resolve_run
from embedtune.runs.writer import check_resumable

if TYPE_CHECKING:
    from embedtune.config import ExperimentConfig
    from embedtune.training.pipeline import RunResult

DEMO_DATA_DIR = Path("demo-data")
DEMO_SETTINGS = (
    "name=stdlib-demo",
    "train.epochs=2",
    "train.learning_rate=5e-5",
    "model.max_seq_length=128",
    "eval.batch_size=64",
)
_FLAG_SETTINGS = {
    "data": "data.path",
    "train_file": "data.train_file",
    "model": "model.name_or_path",
    "name": "name",
    "runs_dir": "runs_dir",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "batch_size": "train.batch_size",
    "lr": "train.learning_rate",
}


def add_train_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune train``."""
    train = commands.add_parser(
        "train",
        help="Fine-tune a model; writes runs/<YYYYmmdd-HHMMSS>-<name>/.",
        description="Fine-tune a model with InfoNCE (in-batch + hard negatives), keep the best dev checkpoint unless "
        "the untouched model is better, and report base vs fine-tuned on the held-out test split. "
        "Settings: defaults < --config file < flags < --set.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", help="YAML or JSON config file.")
    train.add_argument("--data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/).")
    train.add_argument("--train-file", help="JSONL training file {query, pos, neg, neg_weights}.")
    train.add_argument("--model", help="Base model folder or name (default all-MiniLM-L6-v2).")
    train.add_argument("--name", help="Run name.")
    train.add_argument("--runs-dir", help="Folder of run folders (default runs).")
    train.add_argument("--epochs", help="Training epochs.")
    train.add_argument("--max-steps", help="Stop after this many steps.")
    train.add_argument("--batch-size", help="Pairs per batch.")
    train.add_argument("--lr", help="Peak learning rate.")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Any setting, e.g. loss.scale=30."
    )
    train.add_argument(
        "--resume",
        metavar="RUN",
        help="Continue a failed, interrupted or killed run (folder or name under --runs-dir) from its last "
        "checkpoint, with its own settings.",
    )
    train.add_argument(
        "--check",
        action="store_true",
        help="Validate the data, settings and model name, print the plan, create nothing.",
    )
    train.set_defaults(handler=run_train)


def settings_help() -> str:
    """List every setting ``--set`` accepts: ``section.key (default): help``, one per line, by section."""
    lines = ["settings (--set KEY=VALUE, or in a --config file):"]
    hints = typing.get_type_hints(ExperimentConfig)
    for field in dataclasses.fields(ExperimentConfig):
        section = hints[field.name]
        if dataclasses.is_dataclass(section):
            defaults = section()
            lines += [
                _setting_line(f"{field.name}.{f.name}", getattr(defaults, f.name), f)
                for f in dataclasses.fields(section)
            ]
        else:
            lines.append(_setting_line(field.name, field.default, field))
    return "\n".join(lines)


def _setting_line(key: str, default: object, field: dataclasses.Field) -> str:
    return f"  {key} ({default}): {field.metadata.get('help', '')}"


def run_train(args: argparse.Namespace) -> int:
    """Resolve the settings and train (or, with ``--check``, only validate); returns the exit code."""
    flags = {setting: getattr(args, flag) for flag, setting in _FLAG_SETTINGS.items()}
    if args.resume is not None:
        return _resume(args, [flag for flag, value in flags.items() if value is not None and flag != "runs_dir"])
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None] + args.set
    config = build_config(args.config, overrides)
    if args.check:
        return _check(config)
    return _train(config)


def _resume(args: argparse.Namespace, settings_given: list[str]) -> int:
    """Continue the run ``args.resume`` with the settings recorded in its ``run.json``."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.training.pipeline import run_training

    if settings_given or args.set or args.config or args.check:
        raise ValueError("--resume continues a run with its own settings: drop --config, --set and the setting flags")
    folder = resolve_run(args.resume, args.runs_dir or "runs")
    if read_run_record(folder).status == STATUS_FINISHED and not (folder / REPORT_FILE).is_file():
        # stopped while writing its report (Ctrl-C): the run itself is complete and recorded
        print(f"run {folder} had finished; its report was missing and is now written: {write_report(folder)}")
        return 0
    config = config_from_dict(check_resumable(folder).config)
    config = dataclasses.replace(config, runs_dir=str(folder.parent))
    result = run_training(config, resume=folder)
    print(format_summary(result, config))
    return 0


def _check(config: ExperimentConfig) -> int:
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.training.preflight import check_run_inputs

    data, _ = check_run_inputs(config)  # what a run checks before its model loads
    model = check_model_available(config.model.name_or_path)
    counts = ", ".join(f"{key} {value}" for key, value in data.counts.items())
    print(f"ok: {counts}\ndev: {data.dev.source}\nreported split '{data.report.name}': {data.report.source}")
    print(f"model: {model}; runs folder: {config.runs_dir}")
    return 0


def _train(config: ExperimentConfig) -> int:
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.training.pipeline import run_training

    result = run_training(config)
    print(format_summary(result, config))
    return 0


def format_summary(result: RunResult, config: ExperimentConfig) -> str:
    """Format the end-of-run summary: the table, run folder, model path, verdict and the next command."""
    report, selection = result.metrics.report, result.metrics.selection
    split = report.split if report.is_held_out else f"{report.split}, selection split, not held out"
    what = "the base model" if selection.chosen == CHOSEN_BASE else f"checkpoint of step {selection.step}"
    next_command = f"embedtune runs show {result.folder.name}"
    if config.data.path:
        next_command += f"   |   embedtune eval --model {result.folder} --data {config.data.path}"
    return "\n".join(
        [
            "",
            format_comparison(report.base, report.fine_tuned, split),
            "",
            f"Run folder: {result.folder}",
            f"Model:      {result.folder / 'model'} ({what})",
            f"Verdict:    {selection.verdict}",
            *_seen_unseen_lines(result.metrics.seen_unseen),
            f"Next:       {next_command}",
        ]
    )


def _seen_unseen_lines(record: dict | None) -> list[str]:
    """Return the summary's line on seen vs unseen queries (none for a run without the split)."""
    return [f"Seen/unseen: {record['verdict']}"] if record else []


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune demo``."""
    demo = commands.add_parser(
        "demo",
        help="Fine-tune all-MiniLM-L6-v2 on a code-search set built from the Python standard library.",
        description="Build the built-in demo set (query: first docstring sentence of a public stdlib function; "
        "document: its source without the docstring; split by top-level package), fine-tune all-MiniLM-L6-v2 on "
        "it and print the base vs fine-tuned table.",
    )
    demo.add_argument("--data-dir", default=str(DEMO_DATA_DIR), help="Where the demo BEIR folder is written.")
    demo.add_argument("--runs-dir", default="runs", help="Folder of run folders (default runs).")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override a demo setting.")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Build the demo data (once) and train on it; returns the exit code."""
    data_dir = prepare_demo_data(Path(args.data_dir).expanduser())
    overrides = [*DEMO_SETTINGS, f"data.path={data_dir}", f"runs_dir={args.runs_dir}", *args.set]
    return _train(build_config(overrides=overrides))


def prepare_demo_data(parent: Path) -> Path:
    """Build the stdlib code-search set as a BEIR folder under ``parent`` (once per Python version).

    Returns:
        The BEIR folder.
    """
    folder = parent / f"stdlib-py{sys.version_info.major}.{sys.version_info.minor}"
    if not (folder / "corpus.jsonl").is_file():
        write_beir(build_stdlib_retrieval_set(), folder)
    return folder
