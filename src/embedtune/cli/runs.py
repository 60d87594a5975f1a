"""``embedtune runs list|show|compare``: read run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedtune import runs
from embedtune.evaluation.run_report import compare_report
from embedtune.runs.record import RUN_FILE


def add_runs_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune runs`` and its actions."""
    runs = commands.add_parser("runs", help="List, show and compare run folders.", description="Read run folders.")
    runs.add_argument("--runs-dir", default="runs", help="Folder of run folders (default runs).")
    # --runs-dir also after the action (`runs list --runs-dir X`), as other commands take it; SUPPRESS keeps the value
    # given before the action when it is not repeated after it.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--runs-dir", default=argparse.SUPPRESS, help="Folder of run folders (default runs).")
    actions = runs.add_subparsers(dest="runs_command", required=True)
    actions.add_parser(
        "list", parents=[after], help="One line per run.", description="List runs, oldest first, with their status."
    )
    show = actions.add_parser("show", parents=[after], help="Everything about one run.", description="Show one run.")
    show.add_argument("run", help="Run folder, folder name or run name.")
    compare = actions.add_parser(
        "compare",
        parents=[after],
        help="Config differences and metrics side by side.",
        description="Compare two or more runs.",
    )
    compare.add_argument("runs", nargs="+", help="Two or more runs.")
    compare.add_argument(
        "--write",
        metavar="FILE",
        help="Also write the comparison as Markdown to FILE, with a bar figure <FILE stem>-metrics.png beside it.",
    )
    runs.set_defaults(handler=run_runs)


def run_runs(args: argparse.Namespace) -> int:
    """Print the requested view of the run folders; returns the exit code."""
    args.runs_dir = str(Path(args.runs_dir).expanduser())
    if args.runs_command == "list":
        check_runs_dir_exists(args.runs_dir)
        print(runs.format_run_list(runs.find_runs(args.runs_dir)))
    elif args.runs_command == "show":
        check_runs_dir_exists(args.runs_dir, [args.run])
        print(runs.format_run_show(runs.load_run(runs.resolve_run(args.run, args.runs_dir))))
    else:
        if len(args.runs) < 2:
            raise ValueError("runs compare needs at least two runs")
        check_runs_dir_exists(args.runs_dir, args.runs)
        infos = [runs.load_run(runs.resolve_run(ref, args.runs_dir)) for ref in args.runs]
        print(runs.format_run_compare(infos))
        if args.write:
            print(f"Wrote {compare_report([info.path for info in infos], args.write)}")
    return 0


def check_runs_dir_exists(runs_dir: str, refs: list[str] | None = None) -> None:
    """Refuse a ``--runs-dir`` that does not exist, unless every run reference is itself a run folder's path.

    A missing folder is most often a mistyped ``--runs-dir``: saying "No runs found." would hide it.

    Args:
        runs_dir: The ``--runs-dir`` given (default ``runs``).
        refs: The run references of ``show`` / ``compare``; ``None`` for ``list``.

    Raises:
        FileNotFoundError: naming the folder, when it does not exist and some reference needs it.
    """
    if Path(runs_dir).exists() or (refs is not None and all((Path(ref) / RUN_FILE).is_file() for ref in refs)):
        return
    raise FileNotFoundError(
        f"runs folder {runs_dir} not found: no run has been written there (a training run creates it; "
        "--runs-dir names another folder)"
    )
