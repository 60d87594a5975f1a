"""``embedtune report RUN``: write a finished run's ``report.md`` and figures."""

from __future__ import annotations

import argparse

from embedtune.evaluation.run_report import write_report
from embedtune.runs import resolve_run


def add_report_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune report``."""
    report = commands.add_parser(
        "report",
        help="Write a finished run's report.md with figures.",
        description="Write <run folder>/report.md and PNG figures under <run folder>/figures/ from the run's "
        "records: the verdict, base vs fine-tuned tables, per-query differences, training curves and the "
        "forgetting check. Regenerating replaces the previous report files only.",
    )
    report.add_argument("run", help="Run folder, folder name or run name.")
    report.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Write the report and print its path; returns the exit code."""
    print(write_report(resolve_run(args.run, args.runs_dir)))
    return 0
