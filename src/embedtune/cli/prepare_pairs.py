"""``embedtune prepare pairs``: a mined training file → labelled pairs with curriculum phases."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedtune.config import ConfigError
from embedtune.data.builders.graded_pairs import build_graded_pairs


def register_pairs(subparsers: argparse._SubParsersAction) -> None:
    """Register ``embedtune prepare pairs MINED OUT``.

    Args:
        subparsers: The sub-parsers of ``embedtune prepare``.
    """
    pairs = subparsers.add_parser(
        "pairs",
        help="Turn a mined training file into labelled pairs with difficulty phases.",
        description="Read a training file written by 'embedtune mine' (with pos_scores and neg_scores) and write "
        'labelled pairs {"text1", "text2", "label", "phase"}: label 1.0 for each positive, 0.0 for each mined '
        "negative; phase = the record's difficulty (hardest negative score minus best positive score) cut into "
        "--phases at --thresholds, or into equal-size quantiles.",
    )
    pairs.add_argument("mined", metavar="MINED", help="Training JSONL file written by 'embedtune mine'.")
    pairs.add_argument("out", metavar="OUT", help="Labelled-pairs JSONL file to write.")
    pairs.add_argument(
        "--phases",
        default="easy,medium,hard",
        help="Phase names, easiest first, comma-separated (default easy,medium,hard).",
    )
    pairs.add_argument(
        "--thresholds",
        help="Difficulty cut points between phases, comma-separated, increasing (default: equal-size phases).",
    )
    pairs.add_argument("--overwrite", action="store_true", help="Replace OUT if it exists.")
    pairs.set_defaults(handler=run_prepare_pairs)


def run_prepare_pairs(args: argparse.Namespace) -> int:
    """Write the pairs and print the summary; returns the exit code, 0.

    Raises:
        embedtune.config.ConfigError: for bad ``--phases`` or ``--thresholds`` (naming the option).
        embedtune.errors.DataError: for a malformed or unscored mined file; FileExistsError and OSError for OUT.
    """
    phases = [name.strip() for name in args.phases.split(",")]
    thresholds = None
    if args.thresholds is not None:
        try:
            thresholds = [float(value) for value in args.thresholds.split(",")]
        except ValueError:
            raise ConfigError(f"--thresholds: expected comma-separated numbers, got {args.thresholds!r}") from None
    try:
        summary = build_graded_pairs(
            Path(args.mined).expanduser(), Path(args.out).expanduser(), phases, thresholds, args.overwrite
        )
    except ConfigError as error:
        raise ConfigError(str(error).replace("curriculum.", "--", 1)) from None
    print(f"Wrote {args.out} from {args.mined}")
    print("\n".join(summary.lines()))
    return 0
