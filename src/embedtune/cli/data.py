"""``embedtune data check PATH``: validate a data set with the regular loaders and print its statistics and warnings.

Bad data stops with the loaders' one-line ``error: file:line: field '...': ...`` (exit 2, printed by
:func:`embedtune.cli.main`); a valid data set prints its statistics as a table and its warnings (exit 0, warnings
included), or the whole report as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from embedtune.data.check import check_path
from embedtune.data.check_stats import DEFAULT_MODEL, WHITESPACE

SPREAD_KEYS = {"mean", "min", "max"}
"""Keys of a per-record spread, printed on one line (``mean 1.13, min 1, max 5``)."""
KIND_NAMES = {"beir": "BEIR folder", "training": "training file", "pairs": "labelled-pairs file"}
LENGTH_COLUMNS = ("texts", "mean", "median", "p95", "max", "truncated")


def add_data_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune data`` and its action ``check``.

    Args:
        commands: The sub-parsers of the ``embedtune`` parser.
    """
    data = commands.add_parser(
        "data",
        help="Validate data sets and describe them.",
        description="Work with data sets: BEIR folders, training JSONL files (query/pos/neg) and labelled-pairs "
        "JSONL files (text1/text2/label).",
    )
    actions = data.add_subparsers(dest="data_command", required=True)
    check = actions.add_parser(
        "check",
        help="Validate a data set and print its statistics and problems.",
        description="Read PATH with the same loaders training uses (a bad record stops with one line naming file, "
        "line and field; exit 2), then print counts, token lengths, duplicates and split overlaps. Warnings do not "
        "change the exit code (0).",
    )
    check.add_argument("path", metavar="PATH", help="A BEIR folder, a training JSONL file or a labelled-pairs file.")
    check.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Model folder or name whose tokenizer counts lengths (default {DEFAULT_MODEL}, offline), or "
        f"'{WHITESPACE}' to count whitespace-separated words.",
    )
    check.add_argument(
        "--max-seq-length",
        type=_positive_int,
        metavar="N",
        help="Length limit in tokens for the truncation count (default: the model's max_seq_length; none for "
        f"'{WHITESPACE}').",
    )
    check.add_argument(
        "--beir",
        metavar="FOLDER",
        help="For a JSONL file: a BEIR folder whose dev/test queries and test-relevant documents must not appear.",
    )
    check.add_argument(
        "--feature-weights", metavar="FILE", help="Weight config for a training file whose records give neg_features."
    )
    check.add_argument("--json", action="store_true", help="Print the whole report as one JSON object.")
    data.set_defaults(handler=run_data)


def run_data(args: argparse.Namespace) -> int:
    """Run ``embedtune data check``: print the report of ``args.path``; returns 0 (a DataError propagates).

    Raises:
        DataError: when the data set is invalid (``embedtune`` prints it as one line, exit 2).
        ValueError: for ``--beir`` given with a BEIR folder.
        ModelNotFoundError: when the tokenizer of ``--model`` cannot be loaded.
    """
    report = check_path(
        args.path,
        model=args.model,
        beir=args.beir,
        max_seq_length=args.max_seq_length,
        feature_weights=args.feature_weights,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(render_report(report.to_dict())))
    return 0


def render_report(report: dict[str, Any]) -> list[str]:
    """Lay out a report (as :meth:`~embedtune.data.check.CheckReport.to_dict` gives it) as lines of text.

    Args:
        report: The report's dictionary.

    Returns:
        A heading, the statistics table, the token-length table and the warnings with their examples.
    """
    warnings = report["warnings"]
    verdict = "valid, no warnings" if not warnings else f"valid, {len(warnings)} warning(s)"
    lines = [f"{report['path']} ({KIND_NAMES.get(report['kind'], report['kind'])}): {verdict}", "", "Statistics"]
    rows = list(_count_rows(report["counts"], 1))
    width = max(len(label) for label, _ in rows)
    lines += [f"{label:<{width}}  {value}".rstrip() for label, value in rows]
    limit = report["max_seq_length"]
    limit_text = f"max_seq_length {limit}" if limit is not None else "no max_seq_length"
    lines += ["", f"Token lengths ({report['tokenizer']}, {limit_text})", _length_row("", LENGTH_COLUMNS)]
    for name, stats in report["lengths"].items():
        lines.append(_length_row(name, [_number(stats[column]) for column in LENGTH_COLUMNS]))
    if warnings:
        lines += ["", f"Warnings ({len(warnings)})"]
        for warning in warnings:
            lines.append(f"  - {warning['message']} [{warning['code']}]")
            lines += [f"      {example}" for example in warning["examples"]]
            if warning["count"] > len(warning["examples"]):
                lines.append(f"      ... and {warning['count'] - len(warning['examples'])} more")
    return lines


def _count_rows(counts: dict[str, Any], depth: int) -> list[tuple[str, str]]:
    """Flatten nested counts into ``(indented label, value)`` rows; a nested mapping gets a heading row."""
    rows: list[tuple[str, str]] = []
    indent = "  " * depth
    for key, value in counts.items():
        label = indent + key.replace("_", " ")
        if isinstance(value, dict) and value and set(value) <= SPREAD_KEYS:
            rows.append((label, ", ".join(f"{name} {_number(number)}" for name, number in value.items())))
        elif isinstance(value, dict):
            rows.append((label, "" if value else "none"))
            rows += _count_rows(value, depth + 1)
        else:
            rows.append((label, _number(value)))
    return rows


def _length_row(name: str, cells: Any) -> str:
    """One row of the token-length table: a name column, then right-aligned cells."""
    return f"  {name:<10}" + "".join(f"{cell:>11}" for cell in cells)


def _number(value: Any) -> str:
    """Format a count (``1,234``), a mean (``12.38``) or a missing value (``-``)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _positive_int(text: str) -> int:
    """Parse ``--max-seq-length``: a positive integer, else argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
