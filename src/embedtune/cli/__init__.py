"""The ``embedtune`` command line: train, eval, runs list/show/compare, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from embedtune.config import ConfigError
from embedtune.data.errors import DataError

DEMO_DATA_DIR = Path("demo-data")
DEMO_SETTINGS = (
    "name=stdlib-demo",
    "train.epochs=2",
    "train.learning_rate=5e-5",
    "model.max_seq_length=128",
    "eval.batch_size=64",
)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code (0 success, 2 bad input or settings)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_console_logging(verbose=args.verbose, quiet=args.quiet)
    try:
        return args.handler(args)
    except (DataError, ConfigError, ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def configure_console_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Show embedtune's progress (INFO) and everyone's warnings on stderr; ``verbose`` adds the libraries' INFO.

    The root logger is set to INFO so that a run's ``train.log`` receives every library's messages either way.
    """

    def visible(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or verbose:
            return True
        return record.name.startswith("embedtune") and not quiet

    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "embedtune-console"]:
        root.removeHandler(existing)
    handler = logging.StreamHandler()
    handler.set_name("embedtune-console")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(visible)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command (each has ``--help``)."""
    parser = argparse.ArgumentParser(prog="embedtune", description="Fine-tune and evaluate text-embedding models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Also log the libraries' progress.")
    parser.add_argument("-q", "--quiet", action="store_true", help="Log only warnings and errors.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands)
    _add_eval(commands)
    _add_runs(commands)
    _add_demo(commands)
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="Fine-tune a model; writes runs/<YYYYmmdd-HHMMSS>-<name>/.",
        description="Fine-tune a model with InfoNCE (in-batch + hard negatives), pick the best dev checkpoint, and "
        "report base vs fine-tuned on the test split. Settings: defaults < --config file < flags < --set.",
    )
    train.add_argument("--config", type=Path, help="YAML or JSON config file.")
    train.add_argument("--data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/).")
    train.add_argument("--train-file", help="JSONL training file {query, pos, neg, neg_weights}.")
    train.add_argument("--model", help="Base model folder or name (default all-MiniLM-L6-v2).")
    train.add_argument("--name", help="Run name.")
    train.add_argument("--runs-dir", help="Folder of run folders (default runs).")
    train.add_argument("--epochs", type=float, help="Training epochs.")
    train.add_argument("--max-steps", type=int, help="Stop after this many steps.")
    train.add_argument("--batch-size", type=int, help="Pairs per batch.")
    train.add_argument("--lr", type=float, help="Peak learning rate.")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Any setting, e.g. loss.scale=30."
    )
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from embedtune.config import build_config
    from embedtune.training.pipeline import run_training

    flags = {
        "data.path": args.data,
        "data.train_file": args.train_file,
        "model.name_or_path": args.model,
        "name": args.name,
        "runs_dir": args.runs_dir,
        "train.epochs": args.epochs,
        "train.max_steps": args.max_steps,
        "train.batch_size": args.batch_size,
        "train.learning_rate": args.lr,
    }
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None] + args.set
    run_training(build_config(args.config, overrides))
    return 0


def _add_eval(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="Evaluate a model on a BEIR split, optionally side by side with a baseline.",
        description="Rank the whole corpus for every judged query of a split and report nDCG@10, MAP@100, "
        "Recall@10, Recall@100 and MRR@10 (trec_eval definitions).",
    )
    evaluate.add_argument("--model", required=True, help="Model folder or name.")
    evaluate.add_argument("--data", required=True, help="BEIR folder.")
    evaluate.add_argument("--split", default="test", help="qrels split to evaluate (default test).")
    evaluate.add_argument("--baseline", help="Model to report side by side, e.g. the base model.")
    evaluate.add_argument("--query-prefix", default="", help="Prepended to every query.")
    evaluate.add_argument("--passage-prefix", default="", help="Prepended to every document.")
    evaluate.add_argument("--max-seq-length", type=int, help="Truncation length in tokens.")
    evaluate.add_argument("--batch-size", type=int, default=64, help="Texts per forward pass.")
    evaluate.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from embedtune.data.beir import load_beir
    from embedtune.evaluation.report import format_comparison
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
    from embedtune.models.loading import load_model

    beir = load_beir(args.data, splits=[args.split])
    evaluator = RetrievalEvaluator(
        beir.corpus,
        beir.queries,
        beir.qrels[args.split],
        query_prefix=args.query_prefix,
        passage_prefix=args.passage_prefix,
        batch_size=args.batch_size,
    )
    scores = evaluator(load_model(args.model, args.max_seq_length))
    if args.baseline:
        baseline = evaluator(load_model(args.baseline, args.max_seq_length))
        print(format_comparison(baseline, scores, args.split))
    else:
        print("\n".join(f"{name:<14}{value:.4f}" for name, value in scores.items()))
    return 0


def _add_runs(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="List, show and compare run folders.", description="Read run folders.")
    runs.add_argument("--runs-dir", default="runs", help="Folder of run folders (default runs).")
    actions = runs.add_subparsers(dest="runs_command", required=True)
    actions.add_parser("list", help="One line per run.", description="List runs, oldest first.")
    show = actions.add_parser("show", help="Everything about one run.", description="Show one run.")
    show.add_argument("run", help="Run folder, folder name or run name.")
    compare = actions.add_parser(
        "compare", help="Config differences and metrics side by side.", description="Compare two or more runs."
    )
    compare.add_argument("runs", nargs="+", help="Two or more runs.")
    runs.set_defaults(handler=_runs)


def _runs(args: argparse.Namespace) -> int:
    from embedtune.runs import format as runs

    if args.runs_command == "list":
        print(runs.format_run_list(runs.find_runs(args.runs_dir)))
    elif args.runs_command == "show":
        print(runs.format_run_show(runs.load_run(runs.resolve_run(args.run, args.runs_dir))))
    else:
        if len(args.runs) < 2:
            raise ValueError("runs compare needs at least two runs")
        infos = [runs.load_run(runs.resolve_run(ref, args.runs_dir)) for ref in args.runs]
        print(runs.format_run_compare(infos))
    return 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="Fine-tune all-MiniLM-L6-v2 on a code-search set built from the Python standard library.",
        description="Build the built-in demo set (query: first docstring sentence of a public stdlib function; "
        "document: its source without the docstring; split by top-level package), fine-tune all-MiniLM-L6-v2 on "
        "it and print the base vs fine-tuned table.",
    )
    demo.add_argument("--data-dir", type=Path, default=DEMO_DATA_DIR, help="Where the demo BEIR folder is written.")
    demo.add_argument("--runs-dir", default="runs", help="Folder of run folders (default runs).")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override a demo setting.")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from embedtune.config import build_config
    from embedtune.training.pipeline import run_training

    data_dir = prepare_demo_data(args.data_dir)
    overrides = [*DEMO_SETTINGS, f"data.path={data_dir}", f"runs_dir={args.runs_dir}", *args.set]
    run_training(build_config(overrides=overrides))
    return 0


def prepare_demo_data(parent: Path) -> Path:
    """Build the stdlib code-search set as a BEIR folder under ``parent`` (once per Python version).

    Returns:
        The BEIR folder.
    """
    from embedtune.data.beir import write_beir
    from embedtune.data.builders.stdlib_code import build_stdlib_retrieval_set

    folder = parent / f"stdlib-py{sys.version_info.major}.{sys.version_info.minor}"
    if not (folder / "corpus.jsonl").is_file():
        write_beir(build_stdlib_retrieval_set(), folder)
    return folder


if __name__ == "__main__":
    sys.exit(main())
